// Graph building over the native binding. A GraphBuilder owns a ggml context (tensor metadata only);
// tensors get memory either from Engine.alloc (weights, parameters: static buffers) or from the
// Graph's scheduler (inputs and intermediates). Build once, compute many times.
import { native, type External, type NativeContext, type NativeGraph } from './native.js';
import type { Engine } from './backend.js';
import { T } from './types.js';

export class Tensor {
  constructor(readonly h: External, public name = '') {}
  private info() { return native().tensorInfo(this.h); }
  get type(): number { return this.info()[0]; }
  /** ggml order: shape[0] is the contiguous dimension */
  get shape(): number[] { const i = this.info(); return [i[1], i[2], i[3], i[4]]; }
  get strides(): number[] { const i = this.info(); return [i[5], i[6], i[7], i[8]]; }
  get elements(): number { return this.shape.reduce((a, b) => a * b, 1); }
  /** whether it has memory (an input no node of its graph reads gets none) */
  get allocated(): boolean { return this.info()[9]; }
  set(data: ArrayBufferView, byteOffset = 0): void { native().tensorSet(this.h, data, byteOffset); }
  /** whether it has memory: a graph input that no node reads gets none */
  get hasMemory(): boolean { return native().tensorHasMemory(this.h); }
  /** values as float32 (converted from the tensor's type) */
  get(): Float32Array { return native().tensorGet(this.h); }
  /** elements [first, first + count) of a contiguous F32 tensor */
  read(first: number, count: number): Float32Array { return native().tensorRead(this.h, first, count); }
  loadFromFile(path: string, offset: number): void { native().tensorLoadFile(this.h, path, offset); }
  /** this tensor's bytes into `dst` (same type and shape; across buffers and devices) */
  copyTo(dst: Tensor): void { native().tensorCopy(this.h, dst.h); }
}

/** a Q8_0 weight W [k, n]'s int8 packs: of W, and of Wᵀ when n is a multiple of 32 */
export interface Int8Pack { w: Tensor; wT: Tensor | null }
export type Int8Packs = Map<Tensor, Int8Pack>;

/** whether x can feed the int8 kernels: an F32 matrix with contiguous rows */
export const int8Ready = (x: Tensor) => x.type === T.F32 && x.strides[0] === 4 && x.shape[2] === 1 && x.shape[3] === 1;

/** whether attnSum serves a graph of `b` with heads of hd values (HONE_ATTN_KERNEL=0 turns it off) */
export const attnSumReady = (b: GraphBuilder, hd: number) => b.cpu && hd % 16 === 0 && process.env.HONE_ATTN_KERNEL !== '0' && native().attnSumSupported();

export type Role = 'plain' | 'input' | 'param';
const roles = { plain: 0, input: 1, param: 2 } as const;

export class GraphBuilder {
  readonly ctx: NativeContext;
  /** the graph will run where BLAS does the matmuls: builders may pick BLAS-friendly forms */
  blas = false;
  /** the graph will run on the CPU engine: builders may use Hone's CPU kernels (native/src) */
  cpu = false;
  /** int8 packs of Q8_0 frozen weights (model/int8-weights.ts): products through them take the
   *  int8 kernels; the activations of each input are quantized once */
  int8: Int8Packs | null = null;
  private quantized = new WeakMap<Tensor, Tensor>();
  private quantized2 = new WeakMap<Tensor, Tensor>();
  constructor(maxTensors = 1 << 15) {
    this.ctx = new (native().Context)(maxTensors);
  }
  free() { this.ctx.free(); }
  /** for graphs that will run on `engine` (sets blas and cpu) */
  on(engine: Engine): this { this.blas = engine.blas; this.cpu = engine.kind === 'cpu'; return this; }

  tensor(type: number, shape: number[], name: string, role: Role = 'plain'): Tensor {
    return new Tensor(this.ctx.newTensor(type, shape, name, roles[role]), name);
  }
  input(type: number, shape: number[], name: string) { return this.tensor(type, shape, name, 'input'); }
  param(shape: number[], name: string) { return this.tensor(T.F32, shape, name, 'param'); }

  /** one op through the native op table (native/src/hone.cc): tensors in order, numbers by name */
  private op(name: string, ts: (Tensor | null)[], ns: Record<string, number | number[]> = {}): Tensor {
    return new Tensor(this.ctx.op(name, ts.map((t) => (t ? t.h : null)), ns));
  }

  /** names a node, as llama.cpp's cb(cur, "attn_norm", il) does: profiles and ggml's errors then say
   *  `blk.3.ffn_gate` rather than a node number */
  named(t: Tensor, name: string): Tensor {
    native().setName(t.h, name);
    t.name = name;
    return t;
  }

  // Shapes in ggml order ([ne0, ne1, …], ne0 contiguous). "like a" means a's shape; ops on two
  // tensors broadcast b over a where b's dims divide a's (add, sub, mul, div).

  /** a [k, n], b [k, m] → [n, m] = aᵀ·b (broadcast over dims 2, 3); Q8_0 a with int8 packs takes the int8 kernels */
  mulMat(a: Tensor, b: Tensor) {
    const pack = this.int8?.get(a);
    if (pack && int8Ready(b)) return this.int8MatMul(pack.w, b, a.shape[1]);
    return this.op('mul_mat', [a, b]);
  }
  /**
   * pack (of a Q8_0 matrix with `rows` rows, reduction k) · x [k, m] → [rows, m], in int8. With
   * `residual`, x's rounding errors are quantized again and multiplied too (twice the work; x then
   * carries about 14 bits instead of 8).
   */
  int8MatMul(pack: Tensor, x: Tensor, rows: number, residual = false) {
    const cache = residual ? this.quantized2 : this.quantized;
    let xq = cache.get(x);
    if (!xq) cache.set(x, (xq = this.op('q8_quantize', [x], { residual: residual ? 1 : 0 })));
    const y = this.op('q8_gemm', [pack, xq], { rows });
    if (!residual) return y;
    const m = x.shape[1];
    return this.add(this.view(y, [rows, m], [rows * 4], 0), this.view(y, [rows, m], [rows * 4], rows * m * 4));
  }
  /** a [n, k], b [m, k] → [n, m] = a·bᵀ (sum over the shared dim 1) */
  outProd(a: Tensor, b: Tensor) { return this.op('out_prod', [a, b]); }
  /**
   * Attention's sums for each head on the CPU (x86 AVX-512: attnSumReady), p [T_k, T_q, G] being
   * probabilities or their gradient: over queries a [hd, T_q, G] → [hd, T_k, G] (dV, dK), over keys
   * a [hd, T_k, Ga] → [hd, T_q, G] (O, dQ; head g reads a's head g / (G / Ga)). The mask is causal:
   * p is 0 where key > query, and those terms are skipped.
   */
  attnSum(a: Tensor, p: Tensor, over: 'queries' | 'keys') { return this.op('attn_sum', [a, p], { over_keys: over === 'keys' ? 1 : 0 }); }
  /** a + b, like a */
  add(a: Tensor, b: Tensor) { return this.op('add', [a, b]); }
  /** a += b in a's own memory (the result is a view of a): one pass over a, no copy back */
  addInplace(a: Tensor, b: Tensor) { return this.op('add_inplace', [a, b]); }
  /** a − b, like a */
  sub(a: Tensor, b: Tensor) { return this.op('sub', [a, b]); }
  /** a ⊙ b, like a */
  mul(a: Tensor, b: Tensor) { return this.op('mul', [a, b]); }
  /** a · s, like a */
  scale(a: Tensor, s: number) { return this.op('scale', [a], { s }); }
  /** a·s + bias, like a */
  scaleBias(a: Tensor, s: number, bias: number) { return this.op('scale_bias', [a], { s, bias }); }
  /** a², like a */
  sqr(a: Tensor) { return this.op('sqr', [a]); }
  /** √a, like a */
  sqrt(a: Tensor) { return this.op('sqrt', [a]); }
  /** ln a, like a */
  log(a: Tensor) { return this.op('log', [a]); }
  /** a / b, like a */
  div(a: Tensor, b: Tensor) { return this.op('div', [a, b]); }
  /** Σ a → [1] */
  sum(a: Tensor) { return this.op('sum', [a]); }
  /** a [n, m, …] → [1, m, …]: each row summed */
  sumRows(a: Tensor) { return this.op('sum_rows', [a]); }
  /** a·σ(a), like a */
  silu(a: Tensor) { return this.op('silu', [a]); }
  /** silu(gate) ⊙ up, like gate */
  swiglu(gate: Tensor, up: Tensor) { return this.op('swiglu', [gate, up]); }
  /** GELU, tanh form (ggml's CPU kernel reads it from an F16 table, as llama.cpp's graphs do), like a */
  gelu(a: Tensor) { return this.op('gelu', [a]); }
  /** gelu(gate) ⊙ up, like gate: Gemma's feed-forward */
  geglu(gate: Tensor, up: Tensor) { return this.op('geglu', [gate, up]); }
  tanh(a: Tensor) { return this.op('tanh', [a]); }
  /** each row of a [n, …] divided by its root mean square (+ eps), like a */
  rmsNorm(a: Tensor, eps: number) { return this.op('rms_norm', [a], { eps }); }
  /** a [n, rows], rows (I32 [m]) → [n, m]: the rows picked */
  getRows(a: Tensor, rows: Tensor) { return this.op('get_rows', [a, rows]); }
  /** softmax of each row, like a */
  softMax(a: Tensor) { return this.op('soft_max', [a]); }
  /** softmax(a·scale + mask) of each row (mask [n, m] added to every head; ALiBi slope maxBias), like a */
  softMaxExt(a: Tensor, mask: Tensor | null, scale: number, maxBias = 0) { return this.op('soft_max_ext', [a, mask], { scale, max_bias: maxBias }); }
  /** rotary embedding of a [hd, heads, n] at positions pos (I32 [n]), like a */
  rope(a: Tensor, pos: Tensor, freqFactors: Tensor | null, p: RopeParams) { return this.op('rope_ext', [a, pos, freqFactors], ropeArgs(p)); }
  /** writes the rows of `rows` into a at the row indices idx (I32, one per row); the result is a itself */
  setRows(a: Tensor, rows: Tensor, idx: Tensor) { return this.op('set_rows', [a, rows, idx]); }
  /** logits [V, n], labels (probabilities [V, n]) → [1]: mean cross-entropy */
  crossEntropy(logits: Tensor, labels: Tensor) { return this.op('cross_entropy_loss', [logits, labels]); }
  // ops of explicit backward passes (model/backward.ts)
  /** dy [n, m] scattered back to the rows it was gathered from → like `like` [n, rows] (repeats sum) */
  getRowsBack(dy: Tensor, rows: Tensor, like: Tensor) { return this.op('get_rows_back', [dy, rows, like]); }
  /** copies a into b (b keeps its memory: e.g. a static accumulator) */
  cpy(a: Tensor, b: Tensor) { return this.op('cpy', [a, b]); }
  /** d/dx of rmsNorm(x) given dy, like x */
  rmsNormBack(dy: Tensor, x: Tensor, eps: number) { return this.op('rms_norm_back', [dy, x], { eps }); }
  /** d/dx of silu(x) given dy, like x */
  siluBack(dy: Tensor, x: Tensor) { return this.op('silu_back', [dy, x]); }
  /** d/d(input) of soft_max_ext(input, mask, scale), given its output y; like y */
  softMaxExtBack(dy: Tensor, y: Tensor, scale: number, maxBias = 0) { return this.op('soft_max_ext_back', [dy, y], { scale, max_bias: maxBias }); }
  /** d/da of rope(a), like dy */
  ropeBack(dy: Tensor, pos: Tensor, freqFactors: Tensor | null, p: RopeParams) { return this.op('rope_ext_back', [dy, pos, freqFactors], ropeArgs(p)); }
  /** in-place AdamW update of `param`; params: F32 [7] = lr, β1, β2, ε, weight decay, 1/(1−β1^t), 1/(1−β2^t) */
  adamwStep(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, params: Tensor) { return this.op('opt_step_adamw', [param, grad, m, v, params]); }
  /** a tiled to the shape of `like` */
  repeat(a: Tensor, like: Tensor) { return this.op('repeat', [a, like]); }
  /** a contiguous copy of a (of a view, a transpose, a permute) */
  cont(a: Tensor) { return this.op('cont', [a]); }
  /** a converted to `type`, like a */
  cast(a: Tensor, type: number) { return this.op('cast', [a], { type }); }
  /** a [n, m, …] → [m, n, …] as a view (cont() to make it contiguous) */
  transpose(a: Tensor) { return this.op('transpose', [a]); }
  /** a view in which a's dim i becomes dim p_i (ggml_permute): (0, 2, 1, 3) swaps dims 1 and 2 */
  permute(a: Tensor, p0: number, p1: number, p2: number, p3: number) { return this.op('permute', [a], { axes: [p0, p1, p2, p3] }); }
  /** contiguous a as shape ne (1-4 dims, same element count) */
  reshape(a: Tensor, ...ne: number[]) { return this.op('reshape', [a], { ne }); }
  /** view with ne (1-4 dims), byte strides nb1.. and byte offset */
  view(a: Tensor, ne: number[], nb: number[], offset: number) { return this.op('view', [a], { ne, nb, offset }); }
}

const ropeArgs = (p: RopeParams) => ({
  n_dims: p.nDims, mode: p.mode, n_ctx_orig: p.nCtxOrig, freq_base: p.freqBase, freq_scale: p.freqScale,
  ext_factor: p.extFactor, attn_factor: p.attnFactor, beta_fast: p.betaFast, beta_slow: p.betaSlow,
});

export interface RopeParams {
  nDims: number;
  mode: number;
  nCtxOrig: number;
  freqBase: number;
  freqScale: number;
  extFactor: number;
  attnFactor: number;
  betaFast: number;
  betaSlow: number;
}

/** Allocates every tensor of `b` that has no memory yet in one static buffer on the engine's device;
 *  with `zero`, its bytes start as zeros (state a graph reads before anything wrote it) */
export function allocStatic(engine: Engine, b: GraphBuilder, label: string, opts: { zero?: boolean } = {}): number {
  return engine.native.allocContext(b.ctx, label, false, opts.zero ?? false);
}

export class Graph {
  readonly native: NativeGraph;
  /** with `backward`, outputs[0] is the loss and ggml's autodiff adds the gradients (the test oracle);
   *  with `exact`, every product runs on ggml's own kernels as in llama.cpp, none on OpenBLAS
   *  (evaluation: Hone's log-probs then equal llama.cpp's whether or not OpenBLAS is installed) */
  constructor(engine: Engine, b: GraphBuilder, outputs: Tensor[], opts: { backward?: boolean; maxNodes?: number; exact?: boolean } = {}) {
    this.native = new (native().Graph)(engine.native, b.ctx, outputs.map((t) => t.h), opts);
  }
  compute() { this.native.compute(); }
  /** computes on a worker thread (graphs of another engine may compute meanwhile) */
  computeAsync(): Promise<void> { return this.native.computeAsync(); }
  /** the gradient of the loss (first output) w.r.t. a parameter, after compute */
  grad(t: Tensor): Tensor {
    const g = this.native.grad(t.h);
    if (!g) throw new Error(`no gradient for ${t.name}; was it made with param()?`);
    return new Tensor(g, `grad(${t.name})`);
  }
  get nodes() { return this.native.nodeCount(); }
  get computeBytes() { return this.native.computeBytes(); }
  free() { this.native.free(); }
}
