// Full-parameter training, GaLore and Natural GaLore: the explicit gradients of every weight equal
// ggml's autodiff; GaLore at full rank with T = 1 takes AdamW's steps; below full rank its update
// lies in the projector's subspace and its optimizer state is a fraction of AdamW's; Natural GaLore
// with no history is GaLore; the Woodbury direction equals a dense solve; the randomized SVD finds
// the top singular subspace.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEngine, type Engine } from '../../electron/lab/engine/backend.js';
import { Graph, GraphBuilder } from '../../electron/lab/engine/graph.js';
import { loadDataset, type Dataset } from '../../electron/lab/data/dataset.js';
import { writeSampleChat } from '../../electron/lab/data/samples.js';
import { referenceLoss } from '../helpers/reference-loss.js';
import { LlamaModel, forwardInputs, modelHeader, lossInputs, setForwardInputs, setLossInputs } from '../../electron/lab/model/llama.js';
import { FullModel, choleskySolve, fullMemoryPlan, namedWeights, naturalDirection, type GaloreConfig } from '../../electron/lab/tune/galore.js';
import { symmetricEigen, topSingularVectors } from '../../electron/lab/tune/svd.js';
import { OPTIMIZER_DEFAULTS, InMemoryTrainer, targetCapacity } from '../../electron/lab/tune/trainer.js';
import { randn } from '../../electron/lab/model/tiny.js';
import { SAMPLE_TEXT, readTensorsF64, refModelOf, testDir, tinyModel } from '../helpers/models.js';
import { refForward, refLoss } from '../helpers/reference.js';
import { centralDifference } from '../helpers/gradcheck.js';
import { tokenize } from '../../electron/lab/engine/llamacpp.js';

const SEQ = 32, BATCH = 2;
const opt = { ...OPTIMIZER_DEFAULTS, weightDecay: 0.01 };

function setup(engine: Engine, path: string, cfg: GaloreConfig, ds: Dataset) {
  const model = LlamaModel.load(path, engine, { master: true });
  const full = new FullModel(engine, model, cfg, opt);
  full.init();
  const cap = targetCapacity(ds.train, BATCH);
  const trainer = new InMemoryTrainer(engine, model, full, BATCH, SEQ, { train: cap, eval: cap }, opt);
  return { model, full, trainer, free: () => { trainer.free(); full.free(); model.free(); } };
}

function steps(s: ReturnType<typeof setup>, ds: Dataset, n: number) {
  for (let t = 1; t <= n; t++) {
    s.trainer.accumulate(ds.train.slice((t * BATCH) % ds.train.length, (t * BATCH) % ds.train.length + BATCH), true);
    s.trainer.step(t, 1e-3, 1);
  }
}

const weightsOf = (s: ReturnType<typeof setup>) => namedWeights(s.model.weights).map((w) => w.get());
function maxRelDiff(a: Float32Array[], b: Float32Array[]) {
  let worst = 0;
  a.forEach((x, i) => {
    const scale = x.reduce((m, v) => Math.max(m, Math.abs(v)), 1e-6);
    for (let k = 0; k < x.length; k++) worst = Math.max(worst, Math.abs(x[k] - b[i][k]) / scale);
  });
  return worst;
}

describe('full-parameter training and GaLore', () => {
  let engine: Engine, ds: Dataset;
  const path = tinyModel({ type: 'q8_0', nLayer: 2, nEmbd: 64, nHead: 4, nHeadKv: 2, nFf: 128 });
  beforeAll(async () => {
    engine = openEngine({ backend: 'cpu' });
    ds = await loadDataset(writeSampleChat(join(testDir, `galore-${process.pid}.jsonl`)), path, { seq: SEQ, valFraction: 0 });
  });
  afterAll(() => engine.free());

  for (const spec of [
    { type: 'f16', nLayer: 2, nEmbd: 64, nHead: 4, nHeadKv: 2, nFf: 128 },
    { arch: 'qwen2', type: 'f32', nLayer: 1, nEmbd: 64, nHead: 4, nHeadKv: 2, nFf: 128, tied: true },
    { arch: 'qwen3', type: 'f32', nLayer: 2, nEmbd: 64, nHead: 4, nHeadKv: 2, nFf: 128 },
    { arch: 'phi3', type: 'f32', nLayer: 1, nEmbd: 64, nHead: 4, nHeadKv: 2, nFf: 128 },
  ] as const) {
    const what = 'tied' in spec ? ', tied head, biases' : spec.arch === 'qwen3' ? ', q/k head norms' : spec.arch === 'phi3' ? ', fused weights\' parts' : '';
    it(`every weight's explicit gradient equals autodiff (${'arch' in spec ? spec.arch : 'llama'}${what})`, async () => {
      const p = tinyModel(spec);
      const d = await loadDataset(writeSampleChat(join(testDir, `galore-g-${process.pid}.jsonl`)), p, { seq: SEQ, valFraction: 0 });
      const s = setup(engine, p, { method: 'full', rank: 1, updateGap: 1, scale: 1, history: 0, damping: 1 }, d);
      const windows = d.train.slice(0, BATCH);
      s.trainer.accumulate(windows, true);
      const explicit = s.full.trainables.map((t) => t.acc.get());

      const cap = targetCapacity(d.train, BATCH);
      const b = new GraphBuilder();
      const inp = forwardInputs(b, SEQ, BATCH);
      const li = lossInputs(b, cap);
      const ref = referenceLoss(b, s.model, inp, li, SEQ, BATCH);
      const g = new Graph(engine, b, [ref.loss], { backward: true });
      const tokens = new Int32Array(SEQ * BATCH);
      const targets: [number, number][] = [];
      windows.forEach((w, i) => { tokens.set(w.input, i * SEQ); w.trained.forEach((f, k) => f && targets.push([i * SEQ + k, w.target[k]])); });
      setForwardInputs(inp, tokens, SEQ, BATCH);
      setLossInputs(li, s.model.hp.nVocab, cap, targets);
      ref.setTargets(targets.length);
      g.compute();
      s.full.trainables.forEach((t, i) => {
        const a = g.grad(t.param).get();
        const scale = a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        expect(scale, t.name).toBeGreaterThan(0);
        let worst = 0;
        for (let k = 0; k < a.length; k++) worst = Math.max(worst, Math.abs(a[k] - explicit[i][k]));
        expect(worst / scale, t.name).toBeLessThan(1e-4);
      });
      g.free(); b.free(); s.free();
    });
  }

  // ggml's autodiff has no GELU: gemma3's oracle is central differences of the float64 reference
  // (tests/helpers/reference.ts), three entries of every weight, over 20 tokens (past the window of 16)
  it('every weight\'s explicit gradient equals finite differences (gemma3: √d embeddings, head and post-norms, GeGLU, sliding window, tied)', async () => {
    const p = tinyModel({ arch: 'gemma3', vocab: 'llama-spm', type: 'f32', nLayer: 2, nEmbd: 64, nHead: 4, nHeadKv: 2, headDim: 32, nFf: 128, tied: true });
    const tokens = (await tokenize(p, `${SAMPLE_TEXT} ${SAMPLE_TEXT}`)).slice(0, 21);
    const model = LlamaModel.load(p, engine, { master: true });
    const full = new FullModel(engine, model, { method: 'full', rank: 1, updateGap: 1, scale: 1, history: 0, damping: 1 }, opt);
    full.init();
    const n = tokens.length - 1;
    const window = { input: Int32Array.from(tokens.slice(0, -1)), target: Int32Array.from(tokens.slice(1)), trained: new Uint8Array(n).fill(1) };
    const cap = targetCapacity([window], 1);
    const trainer = new InMemoryTrainer(engine, model, full, 1, n, { train: cap, eval: cap }, opt);
    const loss = trainer.accumulate([window], true).loss;
    const w = readTensorsF64(p);
    const ref = refModelOf(p, w);
    const f = () => refLoss(refForward(ref, tokens.slice(0, -1)), tokens.slice(1), ref.vocab);
    expect(Math.abs(loss - f()) / f()).toBeLessThan(2e-4);
    let checked = 0;
    for (const t of full.trainables) {
      const g = t.acc.get(), theta = w.get(t.name)!;
      expect(theta, t.name).toBeDefined();
      // the embeddings: entries of rows the text reads; elsewhere evenly spaced
      const at = t.name === 'token_embd.weight' ? [tokens[0] * ref.d, tokens[3] * ref.d + 7, tokens[11] * ref.d + 40] : [0, Math.floor(theta.length / 2), theta.length - 1];
      for (const i of at) {
        const fd = centralDifference(theta, i, f, 1e-4);
        expect(Math.abs(g[i] - fd), `${t.name}[${i}]: ${g[i]} vs ${fd}`).toBeLessThanOrEqual(1e-2 * Math.max(Math.abs(fd), 1e-2));
        checked++;
      }
    }
    expect(full.trainables.map((t) => t.name)).toContain('blk.1.post_ffw_norm.weight');
    expect(checked).toBe(3 * full.trainables.length);
    trainer.free(); full.free(); model.free();
  });

  it('GaLore with r = full rank and T = 1 takes AdamW\'s steps', () => {
    const adam = setup(engine, path, { method: 'full', rank: 1, updateGap: 1, scale: 1, history: 0, damping: 1 }, ds);
    const galore = setup(engine, path, { method: 'galore', rank: 1 << 20, updateGap: 1, scale: 1, history: 0, damping: 1 }, ds);
    const w0 = weightsOf(adam);
    steps(adam, ds, 3);
    steps(galore, ds, 3);
    const wa = weightsOf(adam), wg = weightsOf(galore);
    expect(maxRelDiff(w0, wa)).toBeGreaterThan(1e-3); // the weights did move
    expect(maxRelDiff(wa, wg)).toBeLessThan(1e-5);
    adam.free(); galore.free();
  });

  it('below full rank: updates stay in the projector\'s subspace; the state is under 35% of AdamW\'s', () => {
    const cfg: GaloreConfig = { method: 'galore', rank: 8, updateGap: 2, scale: 0.5, history: 0, damping: 1 };
    const s = setup(engine, path, cfg, ds);
    const adam = setup(engine, path, { ...cfg, method: 'full' }, ds);
    const adamBytes = adam.full.optimizerBytes;
    adam.free();
    // GaLore manages the blocks' linear weights; on those its state is under 35% of AdamW's
    const plan = fullMemoryPlan(modelHeader(path), cfg);
    const linears = s.model.weights.layers.flatMap((L) => [L.wq, L.wk, L.wv, L.wo, L.wGate, L.wUp, L.wDown]);
    expect(s.full.projected.map((p) => p.t.param).sort()).toEqual(linears.sort());
    const galoreState = s.full.projected.reduce((a, p) => a + 4 * (p.t.m.elements + p.t.v.elements + p.proj.elements), 0);
    const adamState = linears.reduce((a, w) => a + 8 * w.elements, 0);
    expect(galoreState / adamState).toBeLessThan(0.35);
    expect(plan.projected).toEqual({ galore: galoreState, adamw: adamState });
    // the estimate shown before a run is what the run allocates
    expect(plan.optimizer).toBe(s.full.optimizerBytes);
    expect(s.full.optimizerBytes).toBeLessThan(adamBytes);
    expect(fullMemoryPlan(modelHeader(path), { ...cfg, method: 'full' }).optimizer).toBe(adamBytes);
    const wq = s.model.weights.layers[1].wq; // [64, 64]: right projection
    const before = wq.get();
    steps(s, ds, 1);
    const after = wq.get();
    const p = s.full.projected.find((x) => x.t.param === wq)!;
    expect(p.identity).toBe(false);
    // weight decay shrinks W along every direction; take it out, then ΔW·(I − QᵀQ) must vanish
    const Q = p.proj.get(), n = p.n, r = p.r;
    const decay = 1 - 1e-3 * opt.weightDecay;
    let resid = 0, total = 0;
    for (let o = 0; o < p.m; o++) {
      const d = Array.from({ length: n }, (_, i) => after[o * n + i] - decay * before[o * n + i]);
      const coef = Array.from({ length: r }, (_, j) => d.reduce((acc, x, i) => acc + x * Q[j * n + i], 0));
      for (let i = 0; i < n; i++) {
        let proj = 0;
        for (let j = 0; j < r; j++) proj += coef[j] * Q[j * n + i];
        resid += (d[i] - proj) ** 2;
        total += d[i] ** 2;
      }
    }
    expect(total).toBeGreaterThan(0);
    expect(Math.sqrt(resid / total)).toBeLessThan(1e-3);
    s.free();
  });

  it('Natural GaLore with no history is GaLore; with history it differs', () => {
    const base: GaloreConfig = { method: 'galore', rank: 8, updateGap: 2, scale: 0.5, history: 0, damping: 1e-3 };
    const g = setup(engine, path, base, ds);
    const n0 = setup(engine, path, { ...base, method: 'natural-galore', history: 0 }, ds);
    const n4 = setup(engine, path, { ...base, method: 'natural-galore', history: 4 }, ds);
    for (const s of [g, n0, n4]) steps(s, ds, 3);
    expect(maxRelDiff(weightsOf(g), weightsOf(n0))).toBeLessThan(1e-6);
    expect(maxRelDiff(weightsOf(g), weightsOf(n4))).toBeGreaterThan(1e-4);
    g.free(); n0.free(); n4.free();
  });
});

describe('the numerical pieces', () => {
  it('the Woodbury direction λ(λI + HHᵀ)⁻¹g equals a dense solve', () => {
    const D = 12, s = 3, lambda = 0.05;
    const hist = [0, 1, 2].map((i) => randn(40 + i, D, 1));
    const g = randn(7, D, 1);
    const F = new Float64Array(D * D);
    for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) F[i * D + j] = (i === j ? lambda : 0) + hist.reduce((a, h) => a + h[i] * h[j], 0);
    const dense = choleskySolve(F, Float64Array.from(g), D).map((x) => x * lambda);
    const fast = naturalDirection(g, hist, lambda);
    expect(s).toBe(hist.length);
    for (let i = 0; i < D; i++) expect(fast[i]).toBeCloseTo(dense[i], 4);
    expect(naturalDirection(g, [], lambda)).toEqual(g);
  });

  it('the randomized SVD finds the top singular subspace', () => {
    const m = 40, n = 24, r = 4;
    // G = low rank (decaying) + noise
    const U = randn(1, m * 6, 1), V = randn(2, 6 * n, 1), noise = randn(3, m * n, 0.01);
    const G = new Float32Array(m * n);
    for (let o = 0; o < m; o++) for (let i = 0; i < n; i++) { let x = noise[o * n + i]; for (let k = 0; k < 6; k++) x += U[o * 6 + k] * V[k * n + i] / (k + 1); G[o * n + i] = x; }
    const gram = new Float64Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) { let x = 0; for (let o = 0; o < m; o++) x += G[o * n + i] * G[o * n + j]; gram[i * n + j] = x; }
    const best = symmetricEigen(gram, n).values.slice(0, r).reduce((a, b) => a + b, 0);
    for (const side of ['right', 'left'] as const) {
      const Q = topSingularVectors(G, m, n, r, side);
      const len = side === 'right' ? n : m;
      let captured = 0;
      for (let j = 0; j < r; j++) {
        const q = Q.subarray(j * len, (j + 1) * len);
        if (side === 'right') for (let o = 0; o < m; o++) { let x = 0; for (let i = 0; i < n; i++) x += G[o * n + i] * q[i]; captured += x * x; }
        else for (let i = 0; i < n; i++) { let x = 0; for (let o = 0; o < m; o++) x += G[o * n + i] * q[o]; captured += x * x; }
      }
      expect(captured / best).toBeGreaterThan(0.9999);
      expect(captured / best).toBeLessThan(1.0001);
    }
  });
});
