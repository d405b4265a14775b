// The gradient w.r.t. a matmul's input through a frozen weight: for y = W x and L = Σ y ⊙ R,
// dL/dx = Wᵀ R exactly, with W dequantized by ggml's own dequantizer.
import type { Engine } from '../../electron/lab/engine/backend.js';
import { Graph, GraphBuilder, allocStatic } from '../../electron/lab/engine/graph.js';
import { native } from '../../electron/lab/engine/native.js';
import { T, ggmlTypeByName } from '../../electron/lab/engine/types.js';
import { randn } from '../../electron/lab/model/tiny.js';
import { headInputGrad } from '../../electron/lab/model/backward.js';

/** max |Hone's dL/dx − Wᵀ R| relative to max |Wᵀ R| */
export function inputGradError(engine: Engine, typeName: string): number {
  const type = ggmlTypeByName(typeName).id;
  const K = 256, N = 48, M = 5; // W [K, N] (ggml order), x [K, M]
  const w = randn(1, K * N, 0.1);
  const wq = type === T.F32 ? new Uint8Array(w.buffer) : native().quantize(type, w, N, K);
  const wd = native().dequantize(type, wq, K * N);
  const store = new GraphBuilder(8);
  const W = store.tensor(type, [K, N], 'W');
  const x = store.param([K, M], 'x');
  const buf = allocStatic(engine, store, 'frozen weight test');
  W.set(wq);
  x.set(randn(2, K * M, 1));
  const b = new GraphBuilder();
  const R = b.input(T.F32, [N, M], 'R');
  const graph = new Graph(engine, b, [b.sum(b.mul(b.mulMat(W, x), R))], { backward: true });
  const r = randn(3, N * M, 1);
  R.set(r);
  graph.compute();
  const error = transposedProductError(wd, r, graph.grad(x).get(), K, N, M);
  graph.free();
  b.free();
  engine.native.freeBuffer(buf);
  store.free();
  return error;
}

/** max |got − Wᵀ·R| relative to max |Wᵀ·R|, in float64: W [K, N] (ggml order), R [N, M], got [K, M] */
function transposedProductError(w: Float32Array, r: Float32Array, got: Float32Array, K: number, N: number, M: number): number {
  let err = 0, scale = 0;
  for (let m = 0; m < M; m++) {
    for (let k = 0; k < K; k++) {
      let s = 0;
      for (let n = 0; n < N; n++) s += w[n * K + k] * r[m * N + n];
      err = Math.max(err, Math.abs(s - got[m * K + k]));
      scale = Math.max(scale, Math.abs(s));
    }
  }
  return err / scale;
}


/**
 * The head's backward a vocabulary chunk at a time (model/backward.ts headInputGrad) against Wᵀ·R in
 * float64, W [K, V] dequantized by ggml: max error relative to max |Wᵀ R|, chunked by `chunk` rows.
 */
export function headGradError(engine: Engine, typeName: string, chunk: number): number {
  const type = ggmlTypeByName(typeName).id;
  const K = 256, V = 1000, M = 3; // a head [K, V] (ggml order), dLogits [V, M]
  const w = randn(4, K * V, 0.1);
  const wq = type === T.F32 ? new Uint8Array(w.buffer) : native().quantize(type, w, V, K);
  const wd = native().dequantize(type, wq, K * V);
  const store = new GraphBuilder(8);
  const W = store.tensor(type, [K, V], 'W');
  const buf = allocStatic(engine, store, 'head chunk test');
  W.set(wq);
  const b = new GraphBuilder().on(engine);
  const R = b.input(T.F32, [V, M], 'R');
  const out = headInputGrad(b, W, R, chunk);
  const graph = new Graph(engine, b, [out]);
  const r = randn(5, V * M, 1);
  R.set(r);
  graph.compute();
  const error = transposedProductError(wd, r, out.get(), K, V, M);
  graph.free();
  b.free();
  store.free();
  engine.native.freeBuffer(buf);
  return error;
}
