// HUT and MoS: Hone's explicit gradients (float32, ggml, model/backward.ts through each method's
// TrainedLinear) equal central finite differences of the float64 reference forward, where this test
// computes each method's trained weight W' from the parameters itself (its own float64 reading of
// the math in tune/hut.ts and tune/mos.ts). Also: W' = W at step 0, and the parameter counts.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEngine, type Engine } from '../../electron/lab/engine/backend.js';
import { Graph, GraphBuilder } from '../../electron/lab/engine/graph.js';
import { tokenize } from '../../electron/lab/engine/llamacpp.js';
import { buildLossAndGrads } from '../../electron/lab/model/backward.js';
import { LlamaModel, buildLoss, forwardInputs, lossInputs, setForwardInputs, setLossInputs, type Module } from '../../electron/lab/model/llama.js';
import { randn } from '../../electron/lab/model/tiny.js';
import { MODULES, adapterHook, moduleDims, parameterCount, type Adapter } from '../../electron/lab/tune/adapter.js';
import { Hut } from '../../electron/lab/tune/hut.js';
import { Lora } from '../../electron/lab/tune/lora.js';
import { Mos, mosConfigError } from '../../electron/lab/tune/mos.js';
import { Perp } from '../../electron/lab/tune/perp.js';
import { GGUF_NAMES } from '../../electron/lab/tune/adapter.js';
import { writeMasks } from '../../electron/lab/model/masks.js';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { SAMPLE_TEXT, refModelOf, testDir, tinyModel } from '../helpers/models.js';
import { refForward, refLoss, type RefLayer, type RefModel } from '../helpers/reference.js';
import { centralDifference } from '../helpers/gradcheck.js';

const SPEC = { type: 'f32', nLayer: 2, nEmbd: 32, nHead: 4, nHeadKv: 2, nFf: 64 };
const KEY: Record<Module, keyof RefLayer> = { q: 'wq', k: 'wk', v: 'wv', o: 'wo', gate: 'wGate', up: 'wUp', down: 'wDown' };

/** loss and every trainable's gradient through the trainer's explicit backward, all positions trained */
function engineGrads(engine: Engine, model: LlamaModel, tokens: number[], adapter: Adapter) {
  const n = tokens.length - 1, V = model.hp.nVocab;
  const b = new GraphBuilder();
  const inp = forwardInputs(b, n, 1);
  const li = lossInputs(b, n);
  const { loss, grads } = buildLossAndGrads(b, model, inp, li, n, 1, (l, m) => {
    const linear = adapter.linear(b, l, m);
    return linear && { linear };
  });
  const outs = adapter.trainables.map((t) => grads.get(t.param)!);
  const g = new Graph(engine, b, [loss, ...outs]);
  setForwardInputs(inp, Int32Array.from(tokens.slice(0, -1)), n, 1);
  setLossInputs(li, V, n, tokens.slice(1).map((t, i) => [i, t]));
  g.compute();
  const res = { loss: loss.get()[0], grads: new Map(adapter.trainables.map((t, i) => [t.name, outs[i].get()])) };
  g.free(); b.free();
  return res;
}

/** the loss of the model with the adapter's hook (evaluation graph) */
function evalLoss(engine: Engine, model: LlamaModel, tokens: number[], adapter?: Adapter) {
  const n = tokens.length - 1, V = model.hp.nVocab;
  const b = new GraphBuilder();
  const inp = forwardInputs(b, n, 1);
  const li = lossInputs(b, n);
  const loss = buildLoss(b, model, inp, li, n, 1, adapter && adapterHook(adapter));
  const g = new Graph(engine, b, [loss]);
  setForwardInputs(inp, Int32Array.from(tokens.slice(0, -1)), n, 1);
  setLossInputs(li, V, n, tokens.slice(1).map((t, i) => [i, t]));
  g.compute();
  const v = loss.get()[0];
  g.free(); b.free();
  return v;
}

type Params = Map<string, Float64Array>;
/** W' [out][in] of (layer, module) from the parameters, or null where the layer stays frozen */
type Transform = (p: Params, W: Float64Array, layer: number, module: Module, inDim: number, outDim: number) => Float64Array | null;

function withWeights(ref: RefModel, p: Params, transform: Transform, dims: (m: Module) => [number, number]): RefModel {
  return {
    ...ref,
    layers: ref.layers.map((L, il) => {
      const out: RefLayer = { ...L };
      for (const m of MODULES) {
        const [i, o] = dims(m);
        const w = transform(p, L[KEY[m]] as Float64Array, il, m, i, o);
        if (w) (out as unknown as Record<string, Float64Array>)[KEY[m]] = w;
      }
      return out;
    }),
  };
}

/** central differences of the float64 loss against the engine's gradients, on sampled entries */
function checkGradients(ref: RefModel, tokens: number[], params: Params, grads: Map<string, Float32Array>, loss: number, transform: Transform, dims: (m: Module) => [number, number], samples = 10) {
  const inputs = tokens.slice(0, -1), labels = tokens.slice(1);
  const f = () => refLoss(refForward(withWeights(ref, params, transform, dims), inputs), labels, ref.vocab);
  expect(Math.abs(f() - loss) / loss).toBeLessThan(2e-4);
  const h = 1e-4;
  let num2 = 0, den2 = 0;
  for (const [name, theta] of params) {
    const g = grads.get(name)!;
    expect(g.length, name).toBe(theta.length);
    const step = Math.max(1, Math.floor(theta.length / samples));
    for (let i = (name.length * 7) % step; i < theta.length; i += step) {
      const fd = centralDifference(theta, i, f, h);
      num2 += (g[i] - fd) ** 2;
      den2 += fd ** 2;
      expect(Math.abs(g[i] - fd), `${name}[${i}]`).toBeLessThanOrEqual(1e-2 * Math.max(Math.abs(fd), 1e-2));
    }
  }
  expect(den2).toBeGreaterThan(0);
  expect(Math.sqrt(num2 / den2)).toBeLessThan(1e-2);
}

/** random parameters set on the engine, returned as the float64 copies the reference perturbs */
function randomize(adapter: Adapter, fill: (name: string, n: number, seed: number) => Float32Array): Params {
  const p: Params = new Map();
  adapter.trainables.forEach((t, k) => {
    const v = fill(t.name, t.param.elements, 100 + k);
    t.param.set(v);
    p.set(t.name, Float64Array.from(v));
  });
  return p;
}

describe('HUT, MoS and PERP gradients equal finite differences of the float64 reference', () => {
  let engine: Engine, model: LlamaModel, tokens: number[], ref: RefModel;
  beforeAll(async () => {
    engine = openEngine({ backend: 'cpu' });
    const path = tinyModel(SPEC);
    model = LlamaModel.load(path, engine);
    tokens = (await tokenize(path, SAMPLE_TEXT)).slice(0, 8);
    ref = refModelOf(path);
  });
  afterAll(() => { model.free(); engine.free(); });
  const dims = (m: Module) => moduleDims(model.hp, m);

  it('HUT (scaling): W\' = diag(ΣM_A) W diag(ΣM_B); identity at step 0', () => {
    const r = 3;
    const hut = new Hut(engine, model.hp, { rank: r, alpha: 6, targets: ['q', 'v', 'down'], form: 'scaling' });
    hut.init(1);
    expect(evalLoss(engine, model, tokens, hut)).toBeCloseTo(evalLoss(engine, model, tokens), 6);
    const params = randomize(hut, (_n, n, seed) => randn(seed, n, 0.1).map((x) => 1 / r + x));
    const { loss, grads } = engineGrads(engine, model, tokens, hut);
    const sums = (m: Float64Array, rows: number) => Float64Array.from({ length: rows }, (_, i) => m.subarray(i * r, (i + 1) * r).reduce((a, b) => a + b, 0));
    const transform: Transform = (p, W, il, m, inDim, outDim) => {
      const base = `blk.${il}.${({ q: 'attn_q', v: 'attn_v', down: 'ffn_down' } as Record<string, string>)[m]}.weight`;
      const ma = p.get(`${base}.hut_ma`), mb = p.get(`${base}.hut_mb`);
      if (!ma || !mb) return null;
      const a = sums(ma, outDim), b = sums(mb, inDim);
      return W.map((w, k) => a[Math.floor(k / inDim)] * w * b[k % inDim]);
    };
    checkGradients(ref, tokens, params, grads, loss, transform, dims);
    hut.free();
  });

  it('HUT (hadamard): W\' = W ⊙ (1 + s·BA); identity at step 0', () => {
    const r = 2, s = 1.5;
    const hut = new Hut(engine, model.hp, { rank: r, alpha: s * r, targets: ['k', 'o', 'gate'], form: 'hadamard' });
    hut.init(1);
    expect(evalLoss(engine, model, tokens, hut)).toBeCloseTo(evalLoss(engine, model, tokens), 6);
    const params = randomize(hut, (_n, n, seed) => randn(seed, n, 0.3));
    const { loss, grads } = engineGrads(engine, model, tokens, hut);
    const transform: Transform = (p, W, il, m, inDim) => {
      const base = `blk.${il}.${({ k: 'attn_k', o: 'attn_output', gate: 'ffn_gate' } as Record<string, string>)[m]}.weight`;
      const A = p.get(`${base}.hut_a`), B = p.get(`${base}.hut_b`);
      if (!A || !B) return null;
      return W.map((w, k) => {
        const o = Math.floor(k / inDim), i = k % inDim;
        let ba = 0;
        for (let j = 0; j < r; j++) ba += B[o * r + j] * A[j * inDim + i];
        return w * (1 + s * ba);
      });
    };
    checkGradients(ref, tokens, params, grads, loss, transform, dims);
    hut.free();
  });

  it('PERP (MaskLoRA): W\' = W + s·(BA ⊙ M) with the pruning mask; identity at step 0', () => {
    const r = 2, s = 2;
    const targets: Module[] = ['q', 'up', 'down'];
    const masks = targets.flatMap((m) => [0, 1].map((il) => {
      const [inDim, outDim] = dims(m);
      return { name: `blk.${il}.${GGUF_NAMES[m]}.weight`, shape: [inDim, outDim], keep: Uint8Array.from({ length: inDim * outDim }, (_, k) => ((k * 2654435761) >>> 28) & 1) };
    }));
    const maskFile = join(mkdtempSync(join(testDir, 'perp-')), 'masks.gguf');
    writeMasks(maskFile, masks);
    const perp = new Perp(engine, model.hp, model.weights, { rank: r, alpha: s * r, targets, masks: maskFile, norms: false });
    perp.init(1);
    expect(evalLoss(engine, model, tokens, perp)).toBeCloseTo(evalLoss(engine, model, tokens), 6);
    const params = randomize(perp, (_n, n, seed) => randn(seed, n, 0.3));
    const { loss, grads } = engineGrads(engine, model, tokens, perp);
    const keepOf = new Map(masks.map((m) => [m.name, m.keep]));
    const transform: Transform = (p, W, il, m, inDim) => {
      const base = `blk.${il}.${GGUF_NAMES[m]}.weight`;
      const A = p.get(`${base}.lora_a`), B = p.get(`${base}.lora_b`), keep = keepOf.get(base);
      if (!A || !B || !keep) return null;
      return W.map((w, k) => {
        if (!keep[k]) return w;
        const o = Math.floor(k / inDim), i = k % inDim;
        let ba = 0;
        for (let j = 0; j < r; j++) ba += B[o * r + j] * A[j * inDim + i];
        return w + s * ba;
      });
    };
    checkGradients(ref, tokens, params, grads, loss, transform, dims);
    perp.free();
  });

  it('MoS: gradients through the shard gather sum over the layers sharing a shard; ΔW = 0 at step 0', () => {
    const cfg = { rank: 4, budget: 3, shards: 2, privateRank: 1, subset: true, dissociate: true, alpha: 8, targets: MODULES };
    const mos = new Mos(engine, model.hp, cfg);
    mos.init(7);
    expect(evalLoss(engine, model, tokens, mos)).toBeCloseTo(evalLoss(engine, model, tokens), 6);
    const idx = new Map([...mos.draws].map(([k, d]) => [k, { a: Int32Array.from(d.idxA.get()), b: Int32Array.from(d.idxB.get()) }]));
    // some public shard is drawn by both layers: the gradient sum over layers is exercised
    const q0 = new Set(idx.get('0.q')!.a), q1 = idx.get('1.q')!.a;
    expect(q1.some((x) => q0.has(x))).toBe(true);
    const params = randomize(mos, (_n, n, seed) => randn(seed, n, 0.3));
    const { loss, grads } = engineGrads(engine, model, tokens, mos);
    const { rank: r, shards: l } = cfg, s = cfg.alpha / cfg.rank;
    /** rows [r][dim]: row j is shards idx[j], idx[j+r], … laid end to end */
    const rows = (pool: Float64Array, dim: number, ix: Int32Array) => {
      const w = dim / l;
      return Array.from({ length: r }, (_, j) => {
        const row = new Float64Array(dim);
        for (let k = 0; k < l; k++) row.set(pool.subarray(ix[j + k * r] * w, (ix[j + k * r] + 1) * w), k * w);
        return row;
      });
    };
    const transform: Transform = (p, W, il, m, inDim, outDim) => {
      const ix = idx.get(`${il}.${m}`)!;
      const A = rows(p.get(`mos.${m}.pool_a`)!, inDim, ix.a), Bt = rows(p.get(`mos.${m}.pool_b`)!, outDim, ix.b);
      return W.map((w, k) => {
        const o = Math.floor(k / inDim), i = k % inDim;
        let d = 0;
        for (let j = 0; j < r; j++) d += Bt[j][o] * A[j][i];
        return w + s * d;
      });
    };
    checkGradients(ref, tokens, params, grads, loss, transform, dims, 8);
    mos.free();
  });

  it('trainable parameters equal the closed forms', () => {
    const sum = (f: (i: number, o: number) => number, targets: Module[]) => targets.reduce((a, m) => a + f(...dims(m)), 0);
    const L = model.hp.nLayer;
    const lora = new Lora(engine, model.hp, { rank: 4, alpha: 8, targets: MODULES });
    expect(parameterCount(lora)).toBe(L * sum((i, o) => 4 * (i + o), MODULES)); // r(d_in + d_out) per layer
    const hut = new Hut(engine, model.hp, { rank: 4, alpha: 8, targets: MODULES, form: 'scaling' });
    expect(parameterCount(hut)).toBe(parameterCount(lora)); // the same r(d_in + d_out)
    const mos = new Mos(engine, model.hp, { rank: 3, budget: 2, shards: 4, privateRank: 1, subset: true, dissociate: true, alpha: 16, targets: ['q', 'down'] });
    expect(parameterCount(mos)).toBe(2 * L * sum((i, o) => i + o, ['q', 'down'])); // R_v·L(d_in + d_out) per module type
    lora.free(); hut.free(); mos.free();
    expect(mosConfigError(model.hp, { ...MOS_BAD, targets: ['q'] })).toMatch(/public shards/);
  });
});

const MOS_BAD = { rank: 16, budget: 2, shards: 2, privateRank: 1, subset: true, dissociate: true, alpha: 16 };
