// Codes learned against calibration activations (NUPES's second idea, applied to any code grid):
// instead of rounding each weight to its nearest code, choose the codes — anywhere on the grid, not
// only the two neighbours — and the groups' scales that minimise the layer's output error on the
// calibration tokens,
//   L = Σ_r (ŵ_r − w_r) H (ŵ_r − w_r)ᵀ,   H = XᵀX / N   (X [N, cols]: the layer's inputs),
// i.e. the mean squared error of the layer's outputs. Rows are independent. The optimizer is exact
// coordinate descent: for weight i of a row the loss is a parabola in its value (curvature H_ii,
// slope 2G_i with G = e H), so the best code is the grid value nearest the parabola's minimum;
// G is kept current with one row of H per change. Every accepted change lowers L, so the result
// is never worse than the start (ggml's own codes, or NUPES's round-to-nearest).
import { nearestIndex, type CodeGrid } from './grid.js';

export interface LearnOptions {
  /** coordinate sweeps over each row (default 4) */
  sweeps?: number;
  /** also refit each group's scale α by its exact Newton step, rounded by `roundScale` (default off) */
  scales?: boolean;
  /** how a scale is stored (F16 for ggml blocks): the refit keeps only what storage can hold */
  roundScale?: (a: number) => number;
  /** 1 where a weight's code may change (pruned weights keep theirs: zero stays zero) */
  movable?: Uint8Array;
}

export interface LearnResult {
  grid: CodeGrid;
  /** output error L before and after */
  before: number;
  after: number;
}

/** L for a grid: Σ_r e_r H e_rᵀ. w [rows, cols] row-major; H [cols, cols] */
export function outputError(w: Float32Array, rows: number, cols: number, H: Float64Array, values: Float32Array): number {
  let total = 0;
  const e = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) e[j] = values[r * cols + j] - w[r * cols + j];
    total += quadForm(e, H, cols);
  }
  return total;
}

function quadForm(e: Float64Array, H: Float64Array, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i++) {
    if (e[i] === 0) continue;
    let hi = 0;
    for (let j = 0; j < n; j++) hi += H[i * n + j] * e[j];
    s += e[i] * hi;
  }
  return s;
}

export function learnCodes(w: Float32Array, rows: number, cols: number, H: Float64Array, start: CodeGrid, opts: LearnOptions = {}): LearnResult {
  const sweeps = opts.sweeps ?? 4;
  const round = opts.roundScale ?? ((a: number) => a);
  const { table, groupSize } = start;
  if (cols % groupSize !== 0) throw new Error(`learnCodes: groups of ${groupSize} do not divide rows of ${cols}`);
  const codes = Uint16Array.from(start.codes), alpha = Float32Array.from(start.alpha), beta = start.beta;
  const e = new Float64Array(cols), G = new Float64Array(cols), t = new Float64Array(groupSize);
  let before = 0, after = 0;
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    const value = (j: number) => { const g = (o + j) / groupSize | 0; return alpha[g] * table[codes[o + j]] + beta[g]; };
    for (let j = 0; j < cols; j++) e[j] = value(j) - w[o + j];
    G.fill(0);
    for (let i = 0; i < cols; i++) {
      if (e[i] === 0) continue;
      const ei = e[i], hi = i * cols;
      for (let j = 0; j < cols; j++) G[j] += ei * H[hi + j];
    }
    let loss = 0;
    for (let j = 0; j < cols; j++) loss += e[j] * G[j];
    before += loss;
    const move = (i: number, d: number) => {
      e[i] += d;
      const hi = i * cols;
      for (let j = 0; j < cols; j++) G[j] += d * H[hi + j];
    };
    for (let s = 0; s < sweeps; s++) {
      let changed = 0;
      for (let i = 0; i < cols; i++) {
        const h = H[i * cols + i];
        if (!(h > 0) || (opts.movable && !opts.movable[o + i])) continue;
        const g = (o + i) / groupSize | 0;
        if (alpha[g] === 0) continue;
        const cur = alpha[g] * table[codes[o + i]] + beta[g];
        const k = nearestIndex(table, (cur - G[i] / h - beta[g]) / alpha[g]);
        const d = alpha[g] * table[k] + beta[g] - cur;
        const dL = 2 * d * G[i] + d * d * h;
        if (d === 0 || !(dL < 0)) continue;
        codes[o + i] = k;
        move(i, d);
        loss += dL;
        changed++;
      }
      if (opts.scales) {
        // each group's α: L(α + δ) = L + 2δ·Σ G_i t_i + δ²·tᵀ H_gg t, t_i = table[code_i]
        for (let g0 = 0; g0 < cols; g0 += groupSize) {
          const g = (o + g0) / groupSize | 0;
          let a = 0, c = 0;
          for (let i = 0; i < groupSize; i++) { t[i] = table[codes[o + g0 + i]]; a += G[g0 + i] * t[i]; }
          for (let i = 0; i < groupSize; i++) {
            if (t[i] === 0) continue;
            let hi = 0;
            for (let j = 0; j < groupSize; j++) hi += H[(g0 + i) * cols + g0 + j] * t[j];
            c += t[i] * hi;
          }
          if (!(c > 0)) continue;
          const next = round(alpha[g] - a / c);
          const d = next - alpha[g];
          const dL = 2 * d * a + d * d * c;
          if (d === 0 || !(dL < 0) || !Number.isFinite(next)) continue;
          alpha[g] = next;
          for (let i = 0; i < groupSize; i++) if (t[i] !== 0) move(g0 + i, d * t[i]);
          loss += dL;
          changed++;
        }
      }
      if (!changed) break;
    }
    after += loss;
  }
  return { grid: { table, groupSize, alpha, beta, codes }, before, after };
}
