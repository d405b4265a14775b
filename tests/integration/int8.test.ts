// The int8 kernels through Q8_0 weights (native/src/q8_gemm.h, model/int8-weights.ts): the forward
// equals ggml's own Q8_0 mul_mat (the same activation quantization; only the order of float sums
// differs), and the input gradient through the pack of Wᵀ equals Wᵀ·dy with W dequantized by ggml,
// to int8 rounding. Skipped, saying why, on CPUs without AVX-512 VNNI.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openHostEngine, type Engine } from '../../electron/lab/engine/backend.js';
import { Graph, GraphBuilder, allocStatic, type Tensor } from '../../electron/lab/engine/graph.js';
import { native } from '../../electron/lab/engine/native.js';
import { T } from '../../electron/lab/engine/types.js';
import { int8Available, packInt8 } from '../../electron/lab/model/int8-weights.js';
import type { Weights } from '../../electron/lab/model/llama.js';
import { randn } from '../../electron/lab/model/tiny.js';
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { writeSampleChat } from '../../electron/lab/data/samples.js';
import { TRAIN_DEFAULTS, runTraining } from '../../electron/lab/tune/run.js';
import { testDir, tinyModel } from '../helpers/models.js';

const supported = native().int8Supported();
if (!supported) console.warn('int8 kernel tests skipped: this CPU has no AVX-512 VNNI (the CPU engine uses ggml\'s Q8_0 kernels here)');

/** max |a − b| / max |b| */
function relErr(a: Float32Array, b: Float32Array): number {
  let err = 0, scale = 0;
  for (let i = 0; i < b.length; i++) { err = Math.max(err, Math.abs(a[i] - b[i])); scale = Math.max(scale, Math.abs(b[i])); }
  return err / scale;
}

describe.skipIf(!supported)('int8 products through Q8_0 weights (CPU, AVX-512 VNNI)', () => {
  let engine: Engine;
  // without BLAS, so that ggml's mul_mat through Q8_0 runs its own int8 kernels, not a dequantized sgemm
  beforeAll(() => { engine = openHostEngine(2, false); });
  afterAll(() => engine.free());

  /** a Q8_0 weight W [K, N] (N rows of K) in a static buffer, its packs, and W dequantized by ggml */
  function weight(K: number, N: number, seed: number) {
    const wq = native().quantize(T.Q8_0, randn(seed, K * N, 0.1), N, K);
    const store = new GraphBuilder(4);
    const W = store.tensor(T.Q8_0, [K, N], 'W');
    const buf = allocStatic(engine, store, 'int8 test weight');
    W.set(wq);
    const packs = packInt8(engine, { layers: [], output: W } as unknown as Weights, 'test')!;
    return { W, pack: packs.packs.get(W)!, wd: native().dequantize(T.Q8_0, wq, K * N), free: () => { packs.free(); engine.native.freeBuffer(buf); store.free(); } };
  }

  function compute(build: (b: GraphBuilder, x: Tensor) => Tensor[], xShape: number[], x: Float32Array): Float32Array[] {
    const b = new GraphBuilder();
    const xin = b.input(T.F32, xShape, 'x');
    const outs = build(b, xin);
    const g = new Graph(engine, b, outs);
    xin.set(x);
    g.compute();
    const r = outs.map((t) => t.get());
    g.free();
    b.free();
    return r;
  }

  it('the CPU engine offers them here', () => expect(int8Available(engine)).toBe(process.env.HONE_INT8 !== '0'));

  // shapes: rows not a multiple of 16 (a padded group), columns not a multiple of the 6-column tile,
  // and a reduction of 80 blocks (two slices of the reduction, the second accumulating)
  for (const [K, N, M] of [[96, 40, 13], [2560, 70, 7], [512, 1376, 64]]) {
    it(`forward ${N}×${K} by ${K}×${M}: ggml's Q8_0 mul_mat to float rounding`, () => {
      const w = weight(K, N, K + N);
      const x = randn(7, K * M, 1);
      const [int8, ggml] = compute((b, xin) => [b.int8MatMul(w.pack.w, xin, N), b.mulMat(w.W, xin)], [K, M], x);
      expect(relErr(int8, ggml)).toBeLessThan(2e-6);
      // and both are the exact product to int8 rounding of the activations
      const exact = new Float32Array(N * M);
      for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) { let s = 0; for (let k = 0; k < K; k++) s += w.wd[n * K + k] * x[m * K + k]; exact[m * N + n] = s; }
      expect(relErr(int8, exact)).toBeLessThan(2e-2);
      w.free();
    });
  }

  it('with the residual term, x carries about 14 bits: the exact product to a few parts in 10⁵', () => {
    const [K, N, M] = [512, 200, 9];
    const w = weight(K, N, 17);
    const x = randn(8, K * M, 1);
    const [one, two] = compute((b, xin) => [b.int8MatMul(w.pack.w, xin, N), b.int8MatMul(w.pack.w, xin, N, true)], [K, M], x);
    const exact = new Float32Array(N * M);
    for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) { let s = 0; for (let k = 0; k < K; k++) s += w.wd[n * K + k] * x[m * K + k]; exact[m * N + n] = s; }
    expect(relErr(one, exact)).toBeGreaterThan(1e-3);
    expect(relErr(two, exact)).toBeLessThan(1e-4);
    w.free();
  });

  for (const [K, N, M] of [[96, 64, 13], [512, 1376, 20]]) {
    it(`input gradient Wᵀ·dy through the pack of Wᵀ (W ${N}×${K}, dy ${N}×${M}) to int8 rounding`, () => {
      const w = weight(K, N, 3 * K + N);
      expect(w.pack.wT).not.toBeNull();
      const dy = randn(11, N * M, 1);
      const [int8] = compute((b, d) => [b.int8MatMul(w.pack.wT!, d, K, true)], [N, M], dy);
      const exact = new Float32Array(K * M);
      for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) { let s = 0; for (let n = 0; n < N; n++) s += w.wd[n * K + k] * dy[m * N + n]; exact[m * K + k] = s; }
      // Wᵀ requantized per 32 values along W's rows (dy, with its residual term, adds little): a few
      // parts in a thousand; a wrong layout or scale would be off by order one
      const e = relErr(int8, exact);
      expect(e).toBeLessThan(2e-2);
      expect(e).toBeGreaterThan(0);
      w.free();
    });
  }

  it('a LoRA run on a Q8_0 model takes them, and its losses stay within 0.5% of the run without them', async () => {
    const model = tinyModel({ type: 'q8_0', nLayer: 2, nHead: 4, nHeadKv: 2 });
    const dir = mkdtempSync(join(testDir, 'int8-'));
    const data = writeSampleChat(join(dir, 'facts.jsonl'));
    const run = async (int8: boolean) => {
      const saved = process.env.HONE_INT8;
      process.env.HONE_INT8 = int8 ? '1' : '0';
      const r = { int8: false, losses: [] as number[] };
      try {
        await runTraining({ ...TRAIN_DEFAULTS, model, data, steps: 20, lr: 3e-3, seq: 32, batch: 2, valFraction: 0, saveEvery: 20, schedule: 'constant' }, {
          runDir: mkdtempSync(join(dir, 'run-')),
          onEvent: (e) => { if (e.type === 'start') r.int8 = e.int8; if (e.type === 'step') r.losses.push(e.loss); },
        });
      } finally {
        if (saved === undefined) delete process.env.HONE_INT8; else process.env.HONE_INT8 = saved;
      }
      return r;
    };
    const [fast, ggml] = [await run(true), await run(false)];
    expect([fast.int8, ggml.int8]).toEqual([true, false]);
    expect(fast.losses).toHaveLength(20);
    // with BLAS, ggml's path multiplies by the weights dequantized to F32 (the activations stay F32)
    for (let i = 0; i < 20; i++) expect(Math.abs(fast.losses[i] - ggml.losses[i])).toBeLessThan(5e-3 * ggml.losses[i]);
    expect(fast.losses[19]).toBeLessThan(0.8 * fast.losses[0]);
  });

  it('no packs where they would not fit in the memory allowed (the run then takes ggml\'s path)', () => {
    const w = weight(64, 64, 9);
    expect(packInt8(engine, { layers: [], output: w.W } as unknown as Weights, 'test', 1000)).toBeNull();
    w.free();
  });

  it('a weight whose rows are not a multiple of 32 gets no Wᵀ pack (its input gradient takes ggml\'s path)', () => {
    const w = weight(64, 40, 5);
    expect(w.pack.wT).toBeNull();
    w.free();
  });
});
