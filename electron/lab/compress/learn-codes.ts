// Codes learned against calibration activations (NUPES's second idea, applied to any code grid):
// instead of rounding each weight to its nearest code, choose the codes — anywhere on the grid, not
// only the two neighbours — and the groups' scales that minimise the layer's output error on the
// calibration tokens,
//   L = Σ_r (ŵ_r − w_r) H (ŵ_r − w_r)ᵀ,   H = XᵀX / N   (X [N, cols]: the layer's inputs),
// i.e. the mean squared error of the layers' outputs. Rows are independent. The optimizer is exact
// coordinate descent: for weight i of a row the loss is a parabola in its value (curvature H_ii,
// slope 2G_i with G = (Ŵ − W)·H), so the best code is the grid value nearest the parabola's
// minimum. Every accepted change lowers L, so the result is never worse than the start (ggml's own
// codes, or NUPES's round-to-nearest).
//
// At real sizes (a 7B down projection: H is 11008², G 4096 × 11008) the work is GPTQ-shaped: the
// columns go in blocks of LEARN_BLOCK; inside a block the native kernel (native/src/compress.cc)
// runs the coordinate steps and each block's group scales, keeping only the block's columns of G
// current, and after the block one product on the engine brings all of G up to date,
// G += Δ·H[block, :]. The products — G's start, the block updates, the row scales' curvatures and
// the output errors — are ggml graphs (a GPU when there is one); H and G stay on the engine.
import { Graph, GraphBuilder, allocStatic, type Tensor } from '../engine/graph.js';
import { native } from '../engine/native.js';
import { T } from '../engine/types.js';
import type { Engine } from '../engine/backend.js';
import { gridValues, type CodeGrid } from './grid.js';

/** columns per block of the coordinate descent (a multiple of every ggml group size: 32) */
export const LEARN_BLOCK = 256;
/** coordinate sweeps over each row unless told otherwise */
export const LEARN_SWEEPS = 4;

export interface LearnOptions {
  /** coordinate sweeps over each row (default LEARN_SWEEPS) */
  sweeps?: number;
  /** also refit each group's scale α by its exact Newton step (default off) */
  scales?: boolean;
  /** scales are stored as F16 (ggml blocks): the refit keeps only what F16 holds */
  roundHalf?: boolean;
  /** 1 where a weight's code may change (pruned weights keep theirs: zero stays zero) */
  movable?: Uint8Array;
}

export interface LearnResult {
  grid: CodeGrid;
  /** output error L before and after */
  before: number;
  after: number;
}

/**
 * One layer's curvature H on the engine, and the products its codes are learned with. Layouts:
 * W, E and every [rows, cols] matrix row-major as in GGUF; on the engine H [cols, cols] and
 * Gᵀ, P [cols][rows] (ggml [rows, cols]: a column of G is one contiguous row, so a block of
 * columns is one slab).
 */
export class LayerCurvature {
  private readonly b = new GraphBuilder(64);
  private readonly u = new GraphBuilder(64);
  private readonly buffer: number;
  private readonly h: Tensor;
  private readonly g: Tensor;
  private readonly p: Tensor;
  private readonly x: Tensor;
  private readonly d: Tensor;
  private readonly hs: Tensor;
  private readonly productGraph: Graph;
  private readonly updateGraph: Graph;

  constructor(readonly engine: Engine, readonly H: Float32Array, readonly rows: number, readonly cols: number) {
    if (H.length !== cols * cols) throw new Error(`the curvature of a layer with ${cols} inputs is ${cols}² values; got ${H.length}`);
    const { b, u } = this;
    b.on(engine);
    u.on(engine);
    this.h = b.tensor(T.F32, [cols, cols], 'curvature');
    this.g = b.tensor(T.F32, [rows, cols], 'gradient_t');
    this.p = b.tensor(T.F32, [rows, cols], 'product_t');
    this.buffer = allocStatic(engine, b, `learned codes' curvature (${rows} × ${cols})`);
    try {
      this.h.set(H);
      // P = X·H, as Pᵀ: P[j][r] = Σ_k X[r][k]·H[j][k] (H symmetric)
      this.x = b.input(T.F32, [cols, rows], 'x');
      this.productGraph = new Graph(engine, b, [b.cpy(b.mulMat(this.x, this.h), this.p)]);
      // G += Δ·H[block, :]: Δ [rows][LEARN_BLOCK], Hs = H's block columns [cols][LEARN_BLOCK]
      this.d = u.input(T.F32, [LEARN_BLOCK, rows], 'delta');
      this.hs = u.input(T.F32, [LEARN_BLOCK, cols], 'curvature_block');
      this.updateGraph = new Graph(engine, u, [u.addInplace(this.g, u.mulMat(this.d, this.hs))]);
    } catch (e) {
      this.release();
      throw e;
    }
  }

  /** P = X·H on the engine (X [rows, cols]); P stays there, transposed */
  private product(X: Float32Array) {
    this.x.set(X);
    this.productGraph.compute();
  }

  /** X·H [rows, cols] row-major, read back (H symmetric: ggml's mul_mat(H, X)) */
  rowProduct(X: Float32Array): Float32Array {
    const b = new GraphBuilder(8);
    b.on(this.engine);
    const x = b.input(T.F32, [this.cols, this.rows], 'x');
    const y = b.mulMat(this.h, x);
    const g = new Graph(this.engine, b, [y]);
    try {
      x.set(X);
      g.compute();
      return y.get();
    } finally { g.free(); b.free(); }
  }

  /** L = Σ_r e_r H e_rᵀ of values Ŵ against W (both [rows, cols]) */
  outputError(w: Float32Array, values: Float32Array): number {
    const { rows, cols } = this;
    const E = Float32Array.from(values, (v, i) => v - w[i]);
    this.product(E);
    return sumProducts(E, this.p.get(), rows, cols);
  }

  /** The codes (and with `scales` the group scales) of `start` that minimise L for weights w. */
  learn(w: Float32Array, start: CodeGrid, opts: LearnOptions = {}): LearnResult {
    const { rows, cols, H } = this;
    const sweeps = opts.sweeps ?? LEARN_SWEEPS;
    const { table, groupSize } = start;
    if (cols % groupSize !== 0) throw new Error(`learnCodes: groups of ${groupSize} do not divide rows of ${cols}`);
    if (w.length !== rows * cols || start.codes.length !== w.length) throw new Error(`learnCodes: weights and codes must be ${rows} × ${cols}`);
    const grid: CodeGrid = { table, groupSize, alpha: Float32Array.from(start.alpha), beta: start.beta, codes: Uint16Array.from(start.codes) };
    const E = gridValues(grid);
    for (let i = 0; i < E.length; i++) E[i] -= w[i];
    this.product(E);
    this.p.copyTo(this.g); // G = E·H
    const before = sumProducts(E, this.g.get(), rows, cols);
    let loss = before;
    const rowScales = !!opts.scales && groupSize >= cols;
    const active = new Uint8Array(rows).fill(1), changed = new Int32Array(rows);
    const hBlock = new Float32Array(LEARN_BLOCK * LEARN_BLOCK), delta = new Float32Array(rows * LEARN_BLOCK), hs = new Float32Array(cols * LEARN_BLOCK);
    for (let s = 0; s < sweeps; s++) {
      changed.fill(0);
      for (let b0 = 0; b0 < cols; b0 += LEARN_BLOCK) {
        const width = Math.min(LEARN_BLOCK, cols - b0);
        for (let i = 0; i < width; i++) hBlock.set(H.subarray((b0 + i) * cols + b0, (b0 + i) * cols + b0 + width), i * width);
        const dL = native().learnBlock({
          codes: grid.codes, alpha: grid.alpha, beta: grid.beta, table, movable: opts.movable,
          slab: this.g.read(b0 * rows, width * rows), hBlock, delta, active, changed,
          rows, cols, b0, width, stride: LEARN_BLOCK, groupSize, scales: !!opts.scales && !rowScales, roundHalf: !!opts.roundHalf, threads: this.engine.threads,
        });
        if (dL === 0) continue; // nothing moved: G is current
        loss += dL;
        // the last sweep reads G only to the right of this block: update those columns alone
        const c0 = s === sweeps - 1 ? b0 + width : 0;
        if (c0 >= cols) continue;
        for (let j = c0; j < cols; j++) hs.set(H.subarray(j * cols + b0, j * cols + b0 + width), j * LEARN_BLOCK);
        if (c0 === 0) {
          this.d.set(delta);
          this.hs.set(hs);
          this.updateGraph.compute();
        } else this.updateTail(c0, delta, hs);
      }
      if (rowScales) loss += this.refitRowScales(grid, active, changed);
      let any = false;
      for (let r = 0; r < rows; r++) if (!changed[r]) active[r] = 0; else any = true;
      if (!any) break;
    }
    return { grid, before, after: loss };
  }

  /** G[:, c0:] += Δ·H[block, c0:] (Δ [rows][LEARN_BLOCK], hs H's block columns [cols][LEARN_BLOCK]) */
  private updateTail(c0: number, delta: Float32Array, hs: Float32Array) {
    const { rows, cols } = this;
    const b = new GraphBuilder(8);
    b.on(this.engine);
    const d = b.input(T.F32, [LEARN_BLOCK, rows], 'delta');
    const h = b.input(T.F32, [LEARN_BLOCK, cols - c0], 'curvature_block_tail');
    const g = b.view(this.g, [rows, cols - c0], [rows * 4], c0 * rows * 4); // Gᵀ's rows c0… = G's columns c0…
    const graph = new Graph(this.engine, b, [b.addInplace(g, b.mulMat(d, h))]);
    try {
      d.set(delta);
      h.set(hs.subarray(c0 * LEARN_BLOCK, cols * LEARN_BLOCK));
      graph.compute();
    } finally { graph.free(); b.free(); }
  }

  /**
   * One group per row (NUPES): each row's α by its Newton step, L(α + δ) = L + 2δ·a + δ²·c with
   * a = Σ_j G_j t_j, c = t H tᵀ (t the row's table values); an accepted δ moves G_r by δ·(tH)_r.
   */
  private refitRowScales(grid: CodeGrid, active: Uint8Array, changed: Int32Array): number {
    const { rows, cols } = this;
    const t = new Float32Array(rows * cols);
    for (let i = 0; i < t.length; i++) t[i] = grid.table[grid.codes[i]];
    this.product(t);
    const P = this.p.get(), G = this.g.get();
    const a = new Float64Array(rows), c = new Float64Array(rows), step = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      if (!active[r]) continue;
      let sa = 0, sc = 0;
      for (let j = 0; j < cols; j++) { const v = t[r * cols + j]; sa += G[j * rows + r] * v; sc += P[j * rows + r] * v; }
      a[r] = sa;
      c[r] = sc;
    }
    let loss = 0, moved = false;
    for (let r = 0; r < rows; r++) {
      if (!active[r] || !(c[r] > 0)) continue;
      const next = Math.fround(grid.alpha[r] - a[r] / c[r]);
      const d = next - grid.alpha[r];
      const dL = 2 * d * a[r] + d * d * c[r];
      if (d === 0 || !(dL < 0) || !Number.isFinite(next)) continue;
      grid.alpha[r] = next;
      step[r] = d;
      loss += dL;
      changed[r]++;
      moved = true;
    }
    if (moved) {
      for (let j = 0; j < cols; j++) for (let r = 0; r < rows; r++) if (step[r]) G[j * rows + r] += step[r] * P[j * rows + r];
      this.g.set(G);
    }
    return loss;
  }

  free() { this.release(); }

  private release() {
    this.productGraph?.free();
    this.updateGraph?.free();
    if (this.buffer !== undefined) this.engine.native.freeBuffer(this.buffer);
    this.b.free();
    this.u.free();
  }
}

/** Σ_rj E[r][j]·P[j][r]: E [rows, cols] row-major against a transposed product */
function sumProducts(E: Float32Array, Pt: Float32Array, rows: number, cols: number): number {
  let s = 0;
  for (let j = 0; j < cols; j++) {
    let sj = 0;
    for (let r = 0; r < rows; r++) sj += E[r * cols + j] * Pt[j * rows + r];
    s += sj;
  }
  return s;
}

/** learned codes for one layer: H on the engine for the call */
export function learnCodes(engine: Engine, w: Float32Array, rows: number, cols: number, H: Float32Array, start: CodeGrid, opts: LearnOptions = {}): LearnResult {
  const c = new LayerCurvature(engine, H, rows, cols);
  try { return c.learn(w, start, opts); } finally { c.free(); }
}
