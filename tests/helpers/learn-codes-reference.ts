// Learned codes in float64 TypeScript, one row at a time, in the order the engine's version
// (electron/lab/compress/learn-codes.ts) takes them: per block of LEARN_BLOCK columns the
// coordinate steps, then the scales of the groups inside the block; a group as long as the row
// (NUPES) has its scale refit after each sweep. The oracle of the engine's blocked products.
import { LEARN_BLOCK, type LearnOptions, type LearnResult } from '../../electron/lab/compress/learn-codes.js';
import { nearestIndex, roundHalf, type CodeGrid } from '../../electron/lab/compress/grid.js';

type Matrix = Float32Array | Float64Array;

/** L = Σ_r e_r H e_rᵀ in float64 */
export function outputErrorReference(w: Float32Array, rows: number, cols: number, H: Matrix, values: Float32Array): number {
  let total = 0;
  const e = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) e[j] = values[r * cols + j] - w[r * cols + j];
    for (let i = 0; i < cols; i++) {
      if (e[i] === 0) continue;
      let hi = 0;
      for (let j = 0; j < cols; j++) hi += H[i * cols + j] * e[j];
      total += e[i] * hi;
    }
  }
  return total;
}

export function learnCodesReference(w: Float32Array, rows: number, cols: number, H: Matrix, start: CodeGrid, opts: LearnOptions = {}): LearnResult {
  const sweeps = opts.sweeps ?? 4;
  const round = opts.roundHalf ? (a: number) => roundHalf(Math.fround(a)) : Math.fround; // as the kernel: to F32, then F16
  const { table, groupSize } = start;
  const codes = Uint16Array.from(start.codes), alpha = Float32Array.from(start.alpha), beta = start.beta;
  const e = new Float64Array(cols), G = new Float64Array(cols), t = new Float64Array(groupSize);
  let before = 0, after = 0;
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    const value = (j: number) => { const g = (o + j) / groupSize | 0; return alpha[g] * table[codes[o + j]] + beta[g]; };
    for (let j = 0; j < cols; j++) e[j] = value(j) - w[o + j];
    G.fill(0);
    for (let i = 0; i < cols; i++) if (e[i] !== 0) for (let j = 0; j < cols; j++) G[j] += e[i] * H[i * cols + j];
    let loss = 0;
    for (let j = 0; j < cols; j++) loss += e[j] * G[j];
    before += loss;
    const move = (i: number, d: number) => { e[i] += d; for (let j = 0; j < cols; j++) G[j] += d * H[i * cols + j]; };
    // a group's α: L(α + δ) = L + 2δ·Σ G_i t_i + δ²·tᵀ H_gg t
    const refit = (g0: number) => {
      const g = (o + g0) / groupSize | 0;
      let a = 0, c = 0;
      for (let i = 0; i < groupSize; i++) { t[i] = table[codes[o + g0 + i]]; a += G[g0 + i] * t[i]; }
      for (let i = 0; i < groupSize; i++) if (t[i] !== 0) for (let j = 0; j < groupSize; j++) c += t[i] * H[(g0 + i) * cols + g0 + j] * t[j];
      if (!(c > 0)) return 0;
      const next = round(alpha[g] - a / c), d = next - alpha[g], dL = 2 * d * a + d * d * c;
      if (d === 0 || !(dL < 0) || !Number.isFinite(next)) return 0;
      alpha[g] = next;
      for (let i = 0; i < groupSize; i++) if (t[i] !== 0) move(g0 + i, d * t[i]);
      loss += dL;
      return 1;
    };
    for (let s = 0; s < sweeps; s++) {
      let changed = 0;
      for (let b0 = 0; b0 < cols; b0 += LEARN_BLOCK) {
        const end = Math.min(cols, b0 + LEARN_BLOCK);
        for (let i = b0; i < end; i++) {
          const h = H[i * cols + i];
          if (!(h > 0) || (opts.movable && !opts.movable[o + i])) continue;
          const g = (o + i) / groupSize | 0;
          if (alpha[g] === 0) continue;
          const cur = value(i);
          const k = nearestIndex(table, (cur - G[i] / h - beta[g]) / alpha[g]);
          const d = alpha[g] * table[k] + beta[g] - cur, dL = 2 * d * G[i] + d * d * h;
          if (d === 0 || !(dL < 0)) continue;
          codes[o + i] = k;
          move(i, d);
          loss += dL;
          changed++;
        }
        if (opts.scales && groupSize < cols) for (let g0 = b0; g0 < end; g0 += groupSize) changed += refit(g0);
      }
      if (opts.scales && groupSize >= cols) changed += refit(0);
      if (!changed) break;
    }
    after += loss;
  }
  return { grid: { table, groupSize, alpha, beta, codes }, before, after };
}
