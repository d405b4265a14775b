// The explicit block backward (model/backward.ts) equals ggml's autodiff on the same graph: the
// gradient of every adapter tensor and of the block input, through two blocks with grouped-query
// attention, two sequences, and frozen weights of several types.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEngine, type Engine } from '../../electron/lab/engine/backend.js';
import { Graph, GraphBuilder, allocStatic, type Tensor } from '../../electron/lab/engine/graph.js';
import { T } from '../../electron/lab/engine/types.js';
import { LlamaModel, blockForward, forwardInputs, setAttentionInputs, type BlockActs, type Module } from '../../electron/lab/model/llama.js';
import { blockBackward, type Grads } from '../../electron/lab/model/backward.js';
import { randn } from '../../electron/lab/model/tiny.js';
import { MODULES, lowRankLinear, moduleDims } from '../../electron/lab/tune/lora.js';
import { addGrad, adapterHook, type TrainedLinear } from '../../electron/lab/tune/adapter.js';
import { tinyModel } from '../helpers/models.js';

function compare(engine: Engine, type: string, onEngine = false, arch?: 'mistral3') {
  const model = LlamaModel.load(tinyModel({ type, nLayer: 2, nEmbd: 64, nHead: 4, nHeadKv: 2, nFf: 128, ...(arch && { arch, vocab: 'llama-spm' as const }) }), engine);
  const hp = model.hp;
  // mistral3's tiny model scales queries from position 16 on (its attention temperature)
  const nTok = arch ? 24 : 8, nSeq = 2, n = nTok * nSeq, r = 2;
  const store = new GraphBuilder(256);
  const x0 = store.param([hp.nEmbd, n], 'x0');
  const adapters = new Map<string, { linear: TrainedLinear }>();
  let seed = 5;
  const params: [Tensor, Float32Array][] = [[x0, randn(seed++, hp.nEmbd * n, 1)]];
  for (let il = 0; il < hp.nLayer; il++) {
    for (const m of MODULES) {
      const [i, o] = moduleDims(hp, m);
      const a = store.param([i, r], `${il}.${m}.a`), bb = store.param([r, o], `${il}.${m}.b`);
      params.push([a, randn(seed++, i * r, 0.3)], [bb, randn(seed++, r * o, 0.3)]);
      adapters.set(`${il}.${m}`, { linear: lowRankLinear(a, bb, 1.5, (g, grads, dA, dB) => { addGrad(g, grads, a, dA); addGrad(g, grads, bb, dB); }) });
    }
  }
  const buf = allocStatic(engine, store, 'backward test');
  for (const [t, v] of params) t.set(v);
  const lora = (il: number, m: Module) => adapters.get(`${il}.${m}`);
  // the autodiff side builds LoRA's forward itself, independently of lowRankLinear
  const hook = (g: GraphBuilder, il: number, m: Module, W: Tensor, x: Tensor) => {
    const [a, bb] = params.slice(1).filter(([t]) => t.name.startsWith(`${il}.${m}.`)).map(([t]) => t);
    return g.add(g.mulMat(W, x), g.scale(g.mulMat(bb, g.mulMat(a, x)), 1.5));
  };
  const R = randn(99, hp.nEmbd * n, 1);

  // autodiff: loss = Σ out ⊙ R
  const ga = new GraphBuilder();
  const inA = forwardInputs(ga, nTok, nSeq);
  let x = x0;
  for (let il = 0; il < hp.nLayer; il++) x = blockForward(ga, hp, model.weights.layers[il], il, x, inA, null, nTok, nSeq, hook).out;
  const rA = ga.input(T.F32, [hp.nEmbd, n], 'R');
  const gA = new Graph(engine, ga, [ga.sum(ga.mul(x, rA))], { backward: true });
  setAttentionInputs(inA, nTok, nSeq);
  rA.set(R);
  gA.compute();
  const auto = new Map(params.map(([t]) => [t, gA.grad(t).get()]));

  // explicit: forward keeping activations, then blocks backward from dOut = R
  // onEngine: the forms the trainer picks for this engine (BLAS outer products, Hone's CPU kernels)
  const ge = onEngine ? new GraphBuilder().on(engine) : new GraphBuilder();
  const inE = forwardInputs(ge, nTok, nSeq);
  const acts: BlockActs[] = [];
  let xe = x0;
  for (let il = 0; il < hp.nLayer; il++) { acts.push(blockForward(ge, hp, model.weights.layers[il], il, xe, inE, null, nTok, nSeq, hook)); xe = acts[il].out; }
  const rE = ge.input(T.F32, [hp.nEmbd, n], 'R');
  const grads: Grads = new Map();
  let d = rE;
  for (let il = hp.nLayer - 1; il >= 0; il--) d = blockBackward(ge, hp, model.weights.layers[il], il, acts[il], d, inE, null, nTok, nSeq, lora, grads);
  grads.set(x0, d);
  const outs = params.map(([t]) => grads.get(t)!);
  const gE = new Graph(engine, ge, outs);
  setAttentionInputs(inE, nTok, nSeq);
  rE.set(R);
  gE.compute();
  let worst = 0;
  params.forEach(([t], i) => {
    const e = outs[i].get(), a = auto.get(t)!;
    const scale = Math.max(...a.map(Math.abs));
    expect(scale, t.name).toBeGreaterThan(0);
    worst = Math.max(worst, Math.max(...e.map((v, j) => Math.abs(v - a[j]))) / scale);
  });
  gA.free(); ga.free(); gE.free(); ge.free(); engine.native.freeBuffer(buf); store.free(); model.free();
  return worst;
}

describe('explicit block backward equals autodiff', () => {
  let engine: Engine;
  beforeAll(() => { engine = openEngine({ backend: 'cpu' }); });
  afterAll(() => engine.free());
  for (const type of ['f32', 'f16', 'q8_0']) {
    it(type, () => expect(compare(engine, type)).toBeLessThan(type === 'f32' ? 1e-5 : 2e-3));
  }
  it('f32, in the forms the trainer picks for the CPU engine (BLAS, attention kernel)', () => expect(compare(engine, 'f32', true)).toBeLessThan(1e-5));
  it('mistral3 (YaRN rope, the attention temperature on positions 16 to 23)', () => expect(compare(engine, 'f32', true, 'mistral3')).toBeLessThan(1e-5));
});

describe('the trainer\'s explicit gradients equal autodiff of the same loss', () => {
  it('through the head (answer positions only), every block and all seven adapters', async () => {
    const { loadDataset } = await import('../../electron/lab/data/dataset.js');
    const { writeSampleChat } = await import('../../electron/lab/data/samples.js');
    const { Lora } = await import('../../electron/lab/tune/lora.js');
    const { InMemoryTrainer, OPTIMIZER_DEFAULTS, targetCapacity } = await import('../../electron/lab/tune/trainer.js');
    const { lossInputs, setForwardInputs, setLossInputs } = await import('../../electron/lab/model/llama.js');
    const { referenceLoss } = await import('../helpers/reference-loss.js');
    const { testDir } = await import('../helpers/models.js');
    const path = tinyModel({ type: 'q8_0', nHeadKv: 2 });
    const ds = await loadDataset(writeSampleChat(`${testDir}/bw-${process.pid}.jsonl`), path, { seq: 32, valFraction: 0 });
    const engine = openEngine({ backend: 'cpu' });
    const model = LlamaModel.load(path, engine);
    const lora = new Lora(engine, model.hp, { rank: 4, alpha: 8, targets: MODULES });
    lora.init(3);
    for (const t of lora.trainables) if (t.name.endsWith('lora_b')) t.param.set(randn(7, t.param.elements, 0.05)); // B ≠ 0: every path carries gradient
    const windows = ds.train.slice(0, 2);
    const cap = targetCapacity(ds.train, 2) + 5; // with padding rows
    const trainer = new InMemoryTrainer(engine, model, lora, 2, 32, { train: cap, eval: cap }, OPTIMIZER_DEFAULTS);
    const trained = trainer.accumulate(windows, true).loss;
    const explicit = lora.trainables.map((t) => t.acc.get());

    const b = new GraphBuilder();
    const inp = forwardInputs(b, 32, 2);
    const li = lossInputs(b, cap);
    const ref = referenceLoss(b, model, inp, li, 32, 2, adapterHook(lora));
    const g = new Graph(engine, b, [ref.loss], { backward: true });
    const tokens = new Int32Array(64);
    const targets: [number, number][] = [];
    windows.forEach((w, s) => { tokens.set(w.input, s * 32); w.trained.forEach((f, i) => f && targets.push([s * 32 + i, w.target[i]])); });
    setForwardInputs(inp, tokens, 32, 2);
    setLossInputs(li, model.hp.nVocab, cap, targets);
    ref.setTargets(targets.length);
    g.compute();
    // the loss itself: Hone's softmax-probability form = ggml's fused cross-entropy
    expect(Math.abs(trained - ref.loss.get()[0])).toBeLessThan(1e-5 * ref.loss.get()[0]);
    let worst = 0;
    lora.trainables.forEach((t, i) => {
      const a = g.grad(t.param).get();
      const scale = Math.max(...a.map(Math.abs));
      expect(scale, t.name).toBeGreaterThan(0);
      worst = Math.max(worst, Math.max(...a.map((v, j) => Math.abs(v - explicit[i][j]))) / scale);
    });
    expect(worst).toBeLessThan(1e-4);
    g.free(); b.free(); trainer.free(); lora.free(); model.free(); engine.free();
  });
});
