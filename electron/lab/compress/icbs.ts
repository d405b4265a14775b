// iCBS: iterative combinatorial brain surgeon (Rosenberg et al.; docs/methods.md). Starting from a
// pruning mask (Wanda's), it revisits the mask block by block: a block is n weights — k currently
// pruned (the highest-scoring ones: likeliest mistakes) and n − k kept (the lowest-scoring) — and a
// combinatorial solver picks which k of them to prune, minimising a quadratic model of the loss; the
// move is applied only if it lowers the model's energy. Density never changes.
//
// The loss model here is the layer's output error on the calibration tokens,
//   L(w) = Σ_r (w_r − w0_r) H (w_r − w0_r)ᵀ,   H = XᵀX/N,  w0 the dense weights,
// whose second-order expansion is exact. (The paper's LLM setting uses an empirical Fisher from per-
// sample gradients of the model's loss; the layer-wise H needs no backward pass.) With x_i = 1 for
// "pruned", a block's change from the current weights is Δ = a − D x, a_i = w0_i·[pruned now],
// D = diag(w0_B), and
//   δL(x) = gᵀΔ + ½ ΔᵀH'Δ = xᵀ Q x + const,  H' = 2H (same-row pairs only), g = 2(w − w0)H
//   Q = ½ D H' D + diag(−D g − D H' a)        (x_i² = x_i folds the linear terms into the diagonal)
// The solver is simulated annealing with swap moves (one pruned ↔ one kept, so Σx stays k), β from
// 1e-3 to 100 geometrically ×1.1 with one sweep per stage, restarts, best state kept; the QUBO is
// scaled by 1/mean|Q_ij ≠ 0| first (the reference code also zeroes entries ≤ 1e-12, which drops every
// negative coupling; Hone keeps them).
import { Rng } from '../data/pack.js';

export interface IcbsOptions {
  /** keep an N:M pattern: blocks are whole groups of m inputs, swaps stay inside a group */
  groupSize?: number;
  /** weights per block (n); half of them currently pruned (default 128) */
  blockSize: number;
  /** passes over each layer's weights per epoch: blocks per layer = passes · rows·cols / n */
  passes: number;
  epochs: number;
  restarts: number;
  /** FIFO of recently used indices, as a fraction of the candidates (0.4) */
  tabuFraction: number;
  /** lowest-scoring initially pruned and highest-scoring initially kept weights never enter a block */
  fixPruned: number;
  fixKept: number;
  seed: number;
}

export const ICBS_DEFAULTS: IcbsOptions = { blockSize: 128, passes: 0.25, epochs: 3, restarts: 2, tabuFraction: 0.4, fixPruned: 0.42, fixKept: 0.35, seed: 1 };

/**
 * min xᵀQx over x ∈ {0,1}^n with Σx = k, by annealing from x0 (feasible). Q symmetric [n, n].
 * With `groupSize`, positions form consecutive groups of that size and a swap pairs two entries of the
 * same group, so each group keeps its count (N:M).
 */
export function annealCardinality(Q: Float64Array, n: number, x0: Uint8Array, rng: Rng, restarts: number, groupSize = 0): { x: Uint8Array; energy: number } {
  const energyOf = (x: Uint8Array) => {
    let e = 0;
    for (let i = 0; i < n; i++) if (x[i]) for (let j = 0; j < n; j++) if (x[j]) e += Q[i * n + j];
    return e;
  };
  let scale = 0, nz = 0;
  for (let i = 0; i < n * n; i++) if (Q[i] !== 0) { scale += Math.abs(Q[i]); nz++; }
  const inv = nz ? nz / scale : 1;
  let best = Uint8Array.from(x0), bestE = energyOf(x0);
  const on: number[] = [], off: number[] = [];
  const posOff = new Int32Array(n);
  for (let rs = 0; rs < restarts; rs++) {
    const x = Uint8Array.from(x0);
    const f = new Float64Array(n); // f_i = Σ_j Q_ij x_j
    for (let i = 0; i < n; i++) { let s = 0; for (let j = 0; j < n; j++) if (x[j]) s += Q[i * n + j]; f[i] = s; }
    let e = energyOf(x);
    let curBestE = e, curBest = Uint8Array.from(x);
    on.length = off.length = 0;
    for (let i = 0; i < n; i++) { if (x[i]) on.push(i); else { posOff[i] = off.length; off.push(i); } }
    if (!on.length || !off.length) break;
    for (let beta = 1e-3; beta <= 100; beta *= 1.1) {
      let changed = false;
      for (let t = 0; t < n; t++) {
        const a = Math.floor(rng.next() * on.length);
        const i = on[a];
        let j: number;
        if (groupSize) {
          // a random partner with x = 0 inside i's group
          const g0 = i - (i % groupSize);
          let zeros = 0;
          for (let k = g0; k < g0 + groupSize; k++) zeros += x[k] ? 0 : 1;
          if (!zeros) continue;
          let pick = Math.floor(rng.next() * zeros);
          j = g0;
          for (let k = g0; k < g0 + groupSize; k++) if (!x[k] && pick-- === 0) { j = k; break; }
        } else {
          j = off[Math.floor(rng.next() * off.length)];
        }
        const b = posOff[j];
        // unprune i, prune j
        const dE = -(2 * f[i] - Q[i * n + i]) + 2 * (f[j] - Q[i * n + j]) + Q[j * n + j];
        if (dE <= 0 || rng.next() < Math.exp(-beta * dE * inv)) {
          x[i] = 0; x[j] = 1; on[a] = j; off[b] = i; posOff[i] = b;
          for (let k = 0; k < n; k++) f[k] += Q[k * n + j] - Q[k * n + i];
          e += dE;
          changed = true;
          if (e < curBestE - 1e-15 * Math.abs(curBestE)) { curBestE = e; curBest = Uint8Array.from(x); }
        }
      }
      if (!changed && beta > 1) break;
    }
    const exact = energyOf(curBest); // re-summed: no drift from the running updates
    if (exact < bestE) { bestE = exact; best = curBest; }
  }
  return { x: best, energy: bestE };
}

/** the exact minimum by enumeration (tests; n ≤ 20) */
export function exhaustiveCardinality(Q: Float64Array, n: number, k: number): { x: Uint8Array; energy: number } {
  let bestE = Infinity, best = new Uint8Array(n);
  for (let m = 0; m < 1 << n; m++) {
    let c = 0;
    for (let i = 0; i < n; i++) c += (m >> i) & 1;
    if (c !== k) continue;
    let e = 0;
    for (let i = 0; i < n; i++) if ((m >> i) & 1) for (let j = 0; j < n; j++) if ((m >> j) & 1) e += Q[i * n + j];
    if (e < bestE) { bestE = e; best = Uint8Array.from({ length: n }, (_, i) => (m >> i) & 1); }
  }
  return { x: best, energy: bestE };
}

export interface IcbsLayerResult {
  keep: Uint8Array;
  /** layer output error after each epoch (index 0: the initial mask) */
  errors: number[];
  /** predicted (energy) and actual change of L of every accepted move */
  moves: { predicted: number; actual: number }[];
}

/**
 * Improves the keep-mask of one layer. w0 [rows, cols] dense weights, H [cols, cols], scores (for
 * block selection; Wanda's), keep the initial mask (not modified). `actualCheck` recomputes L after
 * each move (tests).
 */
export function icbsLayer(w0: Float32Array, rows: number, cols: number, H: Float64Array, scores: Float32Array, keep0: Uint8Array, opt: IcbsOptions, opts: { actualCheck?: boolean; signal?: AbortSignal } = {}): IcbsLayerResult {
  const keep = Uint8Array.from(keep0);
  const rng = new Rng(opt.seed);
  const N = rows * cols;
  // G = (w − w0) H per row; w − w0 = −w0 on pruned entries
  const G = new Float64Array(N);
  const addRow = (r: number, i: number, d: number) => { const o = r * cols, hi = i * cols; for (let j = 0; j < cols; j++) G[o + j] += d * H[hi + j]; };
  for (let r = 0; r < rows; r++) for (let i = 0; i < cols; i++) if (!keep[r * cols + i]) addRow(r, i, -w0[r * cols + i]);
  const error = () => { let s = 0; for (let k = 0; k < N; k++) if (!keep[k]) s += -w0[k] * G[k]; return s; };
  // fixed sets: ranks within the initial pruned / kept sets
  const fixed = new Uint8Array(N);
  const pruned0 = [...Array(N).keys()].filter((k) => !keep0[k]).sort((a, b) => scores[a] - scores[b]);
  const kept0 = [...Array(N).keys()].filter((k) => keep0[k]).sort((a, b) => scores[b] - scores[a]);
  for (const k of pruned0.slice(0, Math.floor(opt.fixPruned * pruned0.length))) fixed[k] = 1;
  for (const k of kept0.slice(0, Math.floor(opt.fixKept * kept0.length))) fixed[k] = 1;
  const candidates = N - fixed.reduce((a, b) => a + b, 0);
  const tabuCap = Math.floor(opt.tabuFraction * candidates);
  const tabu: number[] = [], inTabu = new Uint8Array(N);
  const n = opt.blockSize, half = n >> 1, gs = opt.groupSize ?? 0;
  if (gs) fixed.fill(0); // N:M: every group may be revisited
  // rows per block: enough candidates for n, so that the block's weights share rows (H couples a row's weights)
  const rowsPerBlock = Math.max(1, Math.min(rows, Math.ceil((4 * n * rows) / Math.max(1, candidates))));
  const blocksPerEpoch = Math.max(1, Math.ceil((opt.passes * N) / n));
  const errors = [error()];
  const moves: IcbsLayerResult['moves'] = [];
  const Q = new Float64Array(n * n);
  for (let ep = 0; ep < opt.epochs; ep++) {
    for (let blk = 0; blk < blocksPerEpoch; blk++) {
      opts.signal?.throwIfAborted();
      const r0 = Math.floor(rng.next() * (rows - rowsPerBlock + 1));
      let block: number[];
      if (gs) {
        // whole groups, those holding the highest-scoring pruned weights first
        const cand: [number, number][] = [];
        for (let g = r0 * cols; g < (r0 + rowsPerBlock) * cols; g += gs) {
          if (inTabu[g]) continue;
          let top = -Infinity;
          for (let k = g; k < g + gs; k++) if (!keep[k]) top = Math.max(top, scores[k]);
          cand.push([g, top]);
        }
        cand.sort((a, b) => b[1] - a[1]);
        const chosen = cand.slice(0, Math.max(1, Math.floor(n / gs)));
        block = chosen.flatMap(([g]) => Array.from({ length: gs }, (_, t) => g + t));
      } else {
        const pr: number[] = [], kp: number[] = [];
        for (let k = r0 * cols; k < (r0 + rowsPerBlock) * cols; k++) if (!fixed[k] && !inTabu[k]) (keep[k] ? kp : pr).push(k);
        pr.sort((a, b) => scores[b] - scores[a]);
        kp.sort((a, b) => scores[a] - scores[b]);
        const kq = Math.min(half, pr.length), kk = Math.min(n - kq, kp.length);
        if (kq === 0 || kk === 0) continue;
        block = [...pr.slice(0, kq), ...kp.slice(0, kk)];
      }
      const m = block.length;
      // Q = ½ D H' D + diag(−D g − D H' a) with H' = 2H on same-row pairs, g = 2G, a = w0·[pruned]
      Q.fill(0, 0, m * m);
      for (let p = 0; p < m; p++) {
        const kp_ = block[p], rp = (kp_ / cols) | 0, ip = kp_ % cols;
        let lin = -w0[kp_] * 2 * G[kp_];
        for (let q = 0; q < m; q++) {
          const kq_ = block[q];
          if (((kq_ / cols) | 0) !== rp) continue;
          const h = H[ip * cols + (kq_ % cols)];
          Q[p * m + q] = w0[kp_] * w0[kq_] * h;
          if (!keep[kq_]) lin -= w0[kp_] * 2 * h * w0[kq_];
        }
        Q[p * m + p] += lin;
      }
      const x0 = Uint8Array.from(block, (k) => (keep[k] ? 0 : 1));
      const sub = m === n ? Q : Q.subarray(0, m * m);
      let e0 = 0;
      for (let p = 0; p < m; p++) if (x0[p]) for (let q = 0; q < m; q++) if (x0[q]) e0 += sub[p * m + q];
      const { x, energy } = annealCardinality(sub, m, x0, rng, opt.restarts, gs);
      for (const k of block) { tabu.push(k); inTabu[k] = 1; }
      while (tabu.length > tabuCap) inTabu[tabu.shift()!] = 0;
      if (!(energy < e0 - 1e-12 * Math.abs(e0))) continue;
      const before = opts.actualCheck ? error() : 0;
      for (let p = 0; p < m; p++) {
        if (x[p] === x0[p]) continue;
        const k = block[p], r = (k / cols) | 0, i = k % cols;
        keep[k] = x[p] ? 0 : 1;
        addRow(r, i, x[p] ? -w0[k] : w0[k]); // w − w0 changes by −w0 (pruned) or +w0 (restored)
      }
      moves.push({ predicted: energy - e0, actual: opts.actualCheck ? error() - before : NaN });
    }
    errors.push(error());
  }
  return { keep, errors, moves };
}
