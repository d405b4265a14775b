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
// negative coupling; Hone keeps them). H couples only weights of one row, so blocks in different rows
// are independent: the layer's rows are split over threads, each with its own blocks, tabu list and
// random stream (native/src/compress.cc runs the blocks; annealCardinality below is the same
// annealer in TypeScript, for tests against exhaustive search).
import { Rng } from '../data/pack.js';
import { native } from '../engine/native.js';
import type { Engine } from '../engine/backend.js';
import { LayerCurvature } from './learn-codes.js';
import { kthSmallest } from './prune.js';

export interface IcbsOptions {
  /** keep an N:M pattern: blocks are whole groups of m inputs, swaps stay inside a group */
  groupSize?: number;
  /** weights per block (n); half of them currently pruned (default 128) */
  blockSize: number;
  /** passes over each layer's weights per epoch: blocks per layer = passes · rows·cols / n */
  passes: number;
  /** the most blocks per epoch over the whole model, shared by the layers in proportion to their
   *  weights (a 1B model's 0.25 passes would be 2M blocks) */
  maxBlocks: number;
  /** the block linears' weights in the model (for maxBlocks' shares; default: this layer's) */
  modelWeights?: number;
  epochs: number;
  restarts: number;
  /** FIFO of recently used indices, as a fraction of the candidates (0.4) */
  tabuFraction: number;
  /** lowest-scoring initially pruned and highest-scoring initially kept weights never enter a block */
  fixPruned: number;
  fixKept: number;
  seed: number;
}

export const ICBS_DEFAULTS: IcbsOptions = { blockSize: 128, passes: 0.25, maxBlocks: 100_000, epochs: 3, restarts: 2, tabuFraction: 0.4, fixPruned: 0.42, fixKept: 0.35, seed: 1 };

/** blocks per epoch for a layer of N weights */
export function icbsBlocks(opt: IcbsOptions, N: number): number {
  const share = (opt.maxBlocks * N) / (opt.modelWeights ?? N);
  return Math.max(1, Math.ceil(Math.min((opt.passes * N) / opt.blockSize, share)));
}

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
  /** blocks per epoch */
  blocks: number;
  /** layer output error after each epoch (index 0: the initial mask) */
  errors: number[];
  /** predicted (energy) and actual change of L of every accepted move (actual: with actualCheck) */
  moves: { predicted: number; actual: number }[];
}

/** blocks per native call: the job can be cancelled between calls */
const BLOCKS_PER_CALL = 4096;

/**
 * Improves the keep-mask of one layer. w0 [rows, cols] dense weights, H [cols, cols], scores (for
 * block selection; Wanda's), keep the initial mask (not modified). The blocks run natively
 * (native/src/compress.cc), rows split over the engine's threads; G = (w − w0)·H starts as one
 * product on the engine. `actualCheck` recomputes L after each move, on one thread (tests).
 */
export function icbsLayer(engine: Engine, w0: Float32Array, rows: number, cols: number, H: Float32Array, scores: Float32Array, keep0: Uint8Array, opt: IcbsOptions, opts: { actualCheck?: boolean; signal?: AbortSignal } = {}): IcbsLayerResult {
  const keep = Uint8Array.from(keep0);
  const N = rows * cols;
  // G = (w − w0)·H, w − w0 = −w0 on pruned entries
  const E = new Float32Array(N);
  for (let k = 0; k < N; k++) if (!keep[k]) E[k] = -w0[k];
  const c = new LayerCurvature(engine, H, rows, cols);
  let G: Float32Array;
  try { G = c.rowProduct(E); } finally { c.free(); }
  const error = () => { let s = 0; for (let k = 0; k < N; k++) if (!keep[k]) s -= w0[k] * G[k]; return s; };
  const gs = opt.groupSize ?? 0;
  const fixed = gs ? new Uint8Array(N) : fixedWeights(scores, keep0, opt.fixPruned, opt.fixKept); // N:M: every group may be revisited
  const blocks = icbsBlocks(opt, N);
  const errors = [error()];
  const moves: IcbsLayerResult['moves'] = [];
  for (let ep = 0; ep < opt.epochs; ep++) {
    for (let done = 0, call = 0; done < blocks; done += BLOCKS_PER_CALL, call++) {
      opts.signal?.throwIfAborted();
      const r = native().icbsEpoch({
        w0, h: H, g: G, scores, keep, fixed, rows, cols, blockSize: opt.blockSize, groupSize: gs, blocks: Math.min(BLOCKS_PER_CALL, blocks - done),
        restarts: opt.restarts, tabuFraction: opt.tabuFraction, seed: (opt.seed + 7919 * ep + 104729 * call) >>> 0, threads: engine.threads, check: !!opts.actualCheck,
      });
      for (let i = 0; i < r.length; i += 2) moves.push({ predicted: r[i], actual: r[i + 1] });
    }
    errors.push(error());
  }
  return { keep, blocks, errors, moves };
}

/** the weights no block revisits: the lowest-scoring `fixPruned` of the pruned ones, the highest-
 *  scoring `fixKept` of the kept ones (ties at a threshold go with it) */
export function fixedWeights(scores: Float32Array, keep: Uint8Array, fixPruned: number, fixKept: number): Uint8Array {
  const N = scores.length;
  let nPruned = 0;
  for (let k = 0; k < N; k++) nPruned += keep[k] ? 0 : 1;
  const pruned = new Float32Array(nPruned), kept = new Float32Array(N - nPruned);
  for (let k = 0, a = 0, b = 0; k < N; k++) if (keep[k]) kept[b++] = scores[k]; else pruned[a++] = scores[k];
  const fp = Math.floor(fixPruned * pruned.length), fk = Math.floor(fixKept * kept.length);
  const low = fp ? kthSmallest(pruned, fp - 1) : -Infinity, high = fk ? kthSmallest(kept, kept.length - fk) : Infinity;
  const fixed = new Uint8Array(N);
  for (let k = 0; k < N; k++) fixed[k] = (!keep[k] && scores[k] <= low) || (keep[k] && scores[k] >= high) ? 1 : 0;
  return fixed;
}
