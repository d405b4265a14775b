// NUPES: non-uniform quantization on a power grid (Yvinec, Dapogny, Bailly; docs/methods.md).
//   t_a(x) = sign(x)·|x|^a,  a ∈ [0.2, 1]  (a < 1 puts more levels near zero: bell-shaped weights)
//   per output row r: s_r = max_j |t_a(W_rj)| / qmax,  q = round(t_a(W)/s_r) ∈ [−qmax, qmax],
//   Ŵ = t_{1/a}(s_r·q) = s_r^{1/a}·t_{1/a}(q)
// As a CodeGrid: table = t_{1/a}(−qmax..qmax), one group per row with α_r = s_r^{1/a}, β = 0.
// The exponent is searched per layer: data-free on the weights' own error ‖W − Ŵ‖², data-driven on
// the layer's output error tr(E H Eᵀ); with data the codes are then learned over the whole grid
// (learn-codes.ts). a = 1 is uniform symmetric round-to-nearest, the baseline NUPES must beat.
// The search's ~40 evaluations run natively on every core, over at most SEARCH_ROWS rows evenly
// spread through the layer (the error is a sum over rows: a sample of them estimates it; an 8B
// model's 14336-wide layers would otherwise cost minutes each).
import type { CodeGrid } from './grid.js';
import { native } from '../engine/native.js';
import { defaultThreads } from '../engine/backend.js';

export const MIN_EXPONENT = 0.2;

const pow = (x: number, a: number) => (x < 0 ? -((-x) ** a) : x ** a);

/** The power grid of exponent a with codes rounded in the transformed domain (NUPES's RTN). */
export function powerGrid(w: Float32Array, rows: number, cols: number, a: number, bits: number): CodeGrid {
  if (!(a >= MIN_EXPONENT && a <= 1)) throw new Error(`NUPES exponent must lie in [${MIN_EXPONENT}, 1], got ${a}`);
  const qmax = 2 ** (bits - 1) - 1;
  const table = Float64Array.from({ length: 2 * qmax + 1 }, (_, i) => pow(i - qmax, 1 / a));
  const alpha = new Float32Array(rows), beta = new Float32Array(rows), codes = new Uint16Array(w.length);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let j = 0; j < cols; j++) m = Math.max(m, Math.abs(w[r * cols + j]));
    const s = m ** a / qmax;
    alpha[r] = s === 0 ? 0 : s ** (1 / a);
    for (let j = 0; j < cols; j++) {
      const q = s === 0 ? 0 : Math.round(pow(w[r * cols + j], a) / s);
      codes[r * cols + j] = Math.max(-qmax, Math.min(qmax, q)) + qmax;
    }
  }
  return { table, groupSize: cols, alpha, beta, codes };
}

/** ‖W − Ŵ‖² of a grid */
export function weightError(w: Float32Array, g: CodeGrid): number {
  let s = 0;
  for (let i = 0; i < w.length; i++) {
    const k = (i / g.groupSize) | 0;
    const d = g.alpha[k] * g.table[g.codes[i]] + g.beta[k] - w[i];
    s += d * d;
  }
  return s;
}

export interface ExponentSearch {
  exponent: number;
  error: number;
  /** the error at a = 1 (uniform round-to-nearest), for comparison */
  uniformError: number;
}

/**
 * The exponent minimising `error(a)` over [0.2, 1]: a grid of step 0.05, then golden-section search
 * around the best grid point (the error is not smooth in a — codes jump — so the grid comes first).
 */
export function searchExponent(error: (a: number) => number): ExponentSearch {
  let best = 1, bestErr = error(1);
  const uniformError = bestErr;
  for (let a = MIN_EXPONENT; a < 1 - 1e-9; a += 0.05) {
    const e = error(a);
    if (e < bestErr) { best = a; bestErr = e; }
  }
  let lo = Math.max(MIN_EXPONENT, best - 0.05), hi = Math.min(1, best + 0.05);
  const phi = (Math.sqrt(5) - 1) / 2;
  let x1 = hi - phi * (hi - lo), x2 = lo + phi * (hi - lo);
  let f1 = error(x1), f2 = error(x2);
  for (let i = 0; i < 12; i++) {
    if (f1 < f2) { hi = x2; x2 = x1; f2 = f1; x1 = hi - phi * (hi - lo); f1 = error(x1); }
    else { lo = x1; x1 = x2; f1 = f2; x2 = lo + phi * (hi - lo); f2 = error(x2); }
  }
  for (const [a, e] of [[x1, f1], [x2, f2]]) if (e < bestErr) { best = a; bestErr = e; }
  return { exponent: best, error: bestErr, uniformError };
}

/** rows the exponent search evaluates, at most (evenly spaced) */
export const SEARCH_ROWS = 512;

/** Σ_rj d_j·(ŵ_rj − w_rj)² of the power grid of exponent a over the sampled rows (d = 1 without weights) */
function sampledError(w: Float32Array, rows: number, cols: number, bits: number, a: number, weights?: Float64Array): number {
  return native().powerGridError({ w, rows, cols, bits, exponent: a, weights, rowStep: Math.ceil(rows / SEARCH_ROWS), threads: defaultThreads() });
}

/** data-free: the exponent minimising ‖W − Ŵ‖² (over the sampled rows) */
export function searchExponentDataFree(w: Float32Array, rows: number, cols: number, bits: number): ExponentSearch {
  return searchExponent((a) => sampledError(w, rows, cols, bits, a));
}

/**
 * data-driven: the exponent minimising the layer's output error weighted by diag(H) (each input
 * feature's mean square on the calibration tokens, `d`), Σ_rj H_jj·e_rj²: the full tr(E H Eᵀ) costs
 * a matrix product per candidate; the learned codes that follow use all of H.
 */
export function searchExponentData(w: Float32Array, rows: number, cols: number, bits: number, d: Float64Array): ExponentSearch {
  return searchExponent((a) => sampledError(w, rows, cols, bits, a, d));
}
