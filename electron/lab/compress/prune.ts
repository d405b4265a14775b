// Unstructured and N:M pruning of one weight matrix: scores, masks, thresholds. Pure functions over
// row-major [rows = outputs, cols = inputs] arrays (the GGUF order of a linear weight).
//   magnitude: S_ij = |W_ij|
//   Wanda:     S_ij = |W_ij|·‖X_j‖₂  (‖X_j‖ the norm of input feature j over the calibration tokens)
// A mask holds 1 where a weight is kept, 0 where it is pruned; it is stored beside the weights, never
// inferred from W ≠ 0 (a weight that happens to be zero is not a pruned one).

export type PruneScore = 'magnitude' | 'wanda';

export type Pattern =
  /** a fraction of each matrix, of each output row, or of all block linears together (one
   *  threshold: `globalThreshold`, then `maskBelow`) pruned */
  | { kind: 'unstructured'; sparsity: number; per: 'matrix' | 'row' | 'global' }
  /** in every m consecutive inputs of a row, n kept (2:4 is what sparse kernels accelerate) */
  | { kind: 'nm'; n: number; m: number };

/** S for a matrix; `inNormSq` [cols] = Σ_tokens x_j² (diag of the calibration Gram) for Wanda */
export function pruneScores(w: Float32Array, rows: number, cols: number, score: PruneScore, inNormSq?: Float64Array): Float32Array {
  const s = new Float32Array(w.length);
  if (score === 'magnitude') {
    for (let i = 0; i < w.length; i++) s[i] = Math.abs(w[i]);
    return s;
  }
  if (!inNormSq || inNormSq.length !== cols) throw new Error(`Wanda needs the input norms of the layer (${cols} features); calibrate first`);
  const norm = Float64Array.from(inNormSq, Math.sqrt);
  for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) s[r * cols + j] = Math.abs(w[r * cols + j]) * norm[j];
  return s;
}

/** the k-th smallest (0-based) of xs, by quickselect on a copy */
export function kthSmallest(xs: Float32Array, k: number): number {
  const a = Float32Array.from(xs);
  let lo = 0, hi = a.length - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >> 1];
    let i = lo, j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) { const t = a[i]; a[i] = a[j]; a[j] = t; i++; j--; }
    }
    if (k <= j) hi = j; else if (k >= i) lo = i; else return a[k];
  }
  return a[k];
}

/** Prunes exactly `count` of the entries [from, from+n) with the lowest scores (ties: lower index first). */
function pruneLowest(s: Float32Array, keep: Uint8Array, from: number, n: number, count: number) {
  if (count <= 0) return;
  if (count >= n) { keep.fill(0, from, from + n); return; }
  const tau = kthSmallest(s.subarray(from, from + n), count - 1);
  let left = count;
  for (let i = from; i < from + n; i++) if (s[i] < tau) { keep[i] = 0; left--; }
  for (let i = from; i < from + n && left > 0; i++) if (s[i] === tau) { keep[i] = 0; left--; }
}

/** the keep-mask of a matrix for its scores and the pattern */
export function pruneMask(s: Float32Array, rows: number, cols: number, p: Pattern): Uint8Array {
  const keep = new Uint8Array(s.length).fill(1);
  if (p.kind === 'unstructured') {
    if (!(p.sparsity >= 0 && p.sparsity < 1)) throw new Error(`sparsity must be in [0, 1), got ${p.sparsity}`);
    if (p.per === 'global') throw new Error('a global target needs one threshold over every layer: globalThreshold, then maskBelow');
    if (p.per === 'matrix') pruneLowest(s, keep, 0, s.length, Math.floor(p.sparsity * s.length));
    else for (let r = 0; r < rows; r++) pruneLowest(s, keep, r * cols, cols, Math.floor(p.sparsity * cols));
    return keep;
  }
  const { n, m } = p;
  if (!(n > 0 && n < m) || cols % m !== 0) throw new Error(`an ${n}:${m} pattern needs 0 < n < m and rows whose length (${cols}) is a multiple of ${m}`);
  for (let g = 0; g < s.length; g += m) pruneLowest(s, keep, g, m, m - n);
  return keep;
}

/**
 * One threshold for several matrices (a global target): the score below which `sparsity` of all their
 * weights fall. Prune each matrix with `maskBelow`.
 */
export function globalThreshold(all: Float32Array[], sparsity: number): number {
  const total = all.reduce((a, s) => a + s.length, 0);
  const joined = new Float32Array(total);
  let o = 0;
  for (const s of all) { joined.set(s, o); o += s.length; }
  return kthSmallest(joined, Math.max(0, Math.floor(sparsity * total) - 1));
}

export function maskBelow(s: Float32Array, tau: number): Uint8Array {
  const keep = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) keep[i] = s[i] > tau ? 1 : 0;
  return keep;
}

/** w ⊙ mask, in place; returns w */
export function applyMask(w: Float32Array, keep: Uint8Array): Float32Array {
  for (let i = 0; i < w.length; i++) if (!keep[i]) w[i] = 0;
  return w;
}

export function sparsityOf(keep: Uint8Array): number {
  let z = 0;
  for (let i = 0; i < keep.length; i++) z += keep[i] ? 0 : 1;
  return z / keep.length;
}
