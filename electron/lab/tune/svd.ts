// Top singular vectors for GaLore's projector, on the CPU: randomized subspace iteration on G
// (Halko, Martinsson, Tropp 2011) with a Rayleigh–Ritz step solved by Jacobi, in float64.
// G is row-major [rows][cols] (a PyTorch-layout weight gradient: rows = outputs).
// Cost: (2q + 2)·rows·cols·k multiply-adds for k = r + oversampling; fine for the models this runs
// on today (the range finder's products are the part to move onto ggml for 7B-size matrices).
import { Rng } from '../data/pack.js';

/** eigen-decomposition of a symmetric n×n matrix (row-major, float64) by cyclic Jacobi: values descending, vectors as rows */
export function symmetricEigen(a: Float64Array, n: number): { values: Float64Array; vectors: Float64Array } {
  const A = Float64Array.from(a);
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) V[i * n + i] = 1;
  for (let sweep = 0; sweep < 60; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += A[p * n + q] ** 2;
    if (off < 1e-30) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = A[p * n + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (A[q * n + q] - A[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < n; k++) { // A ← Jᵀ A J
          const akp = A[k * n + p], akq = A[k * n + q];
          A[k * n + p] = c * akp - s * akq;
          A[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = A[p * n + k], aqk = A[q * n + k];
          A[p * n + k] = c * apk - s * aqk;
          A[q * n + k] = s * apk + c * aqk;
        }
        for (let k = 0; k < n; k++) { // columns of V are eigenvectors
          const vkp = V[k * n + p], vkq = V[k * n + q];
          V[k * n + p] = c * vkp - s * vkq;
          V[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => A[j * n + j] - A[i * n + i]);
  const values = Float64Array.from(order, (i) => A[i * n + i]);
  const vectors = new Float64Array(n * n);
  order.forEach((col, row) => { for (let k = 0; k < n; k++) vectors[row * n + k] = V[k * n + col]; });
  return { values, vectors };
}

/** Σ a_i·b_i over a's length */
function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/** orthonormalizes k vectors of length n (rows of q) in place, modified Gram–Schmidt twice */
function orthonormalize(q: Float64Array, k: number, n: number) {
  for (let pass = 0; pass < 2; pass++) {
    for (let i = 0; i < k; i++) {
      const vi = q.subarray(i * n, (i + 1) * n);
      for (let j = 0; j < i; j++) {
        const vj = q.subarray(j * n, (j + 1) * n);
        const d = dot(vi, vj);
        for (let t = 0; t < n; t++) vi[t] -= d * vj[t];
      }
      const norm = Math.sqrt(dot(vi, vi));
      if (norm < 1e-300) { vi.fill(0); vi[i % n] = 1; continue; } // a rank-deficient G: any unit vector
      for (let t = 0; t < n; t++) vi[t] /= norm;
    }
  }
}

/** y[k][rows] = G · x[k][cols] (each row of x a vector) */
function applyG(G: Float32Array, rows: number, cols: number, x: Float64Array, k: number): Float64Array {
  const y = new Float64Array(k * rows);
  for (let o = 0; o < rows; o++) {
    const g = G.subarray(o * cols, (o + 1) * cols);
    for (let j = 0; j < k; j++) {
      y[j * rows + o] = dot(g, x.subarray(j * cols, (j + 1) * cols));
    }
  }
  return y;
}

/** y[k][cols] = Gᵀ · x[k][rows] */
function applyGt(G: Float32Array, rows: number, cols: number, x: Float64Array, k: number): Float64Array {
  const y = new Float64Array(k * cols);
  for (let o = 0; o < rows; o++) {
    const g = G.subarray(o * cols, (o + 1) * cols);
    for (let j = 0; j < k; j++) {
      const c = x[j * rows + o];
      if (c === 0) continue;
      const yj = y.subarray(j * cols, (j + 1) * cols);
      for (let i = 0; i < cols; i++) yj[i] += c * g[i];
    }
  }
  return y;
}

/**
 * The top-r right (`side` 'right': length `cols`) or left ('left': length `rows`) singular vectors
 * of G, as r rows of a row-major Float32Array [r][len] (ggml [len, r]).
 */
export function topSingularVectors(G: Float32Array, rows: number, cols: number, r: number, side: 'right' | 'left', seed = 1, iterations = 3): Float32Array {
  const len = side === 'right' ? cols : rows, other = side === 'right' ? rows : cols;
  const k = Math.min(len, other, r + 8);
  const fwd = (x: Float64Array) => (side === 'right' ? applyG(G, rows, cols, x, k) : applyGt(G, rows, cols, x, k)); // len → other
  const back = (x: Float64Array) => (side === 'right' ? applyGt(G, rows, cols, x, k) : applyG(G, rows, cols, x, k)); // other → len
  const rng = new Rng(seed);
  let q: Float64Array = Float64Array.from({ length: k * len }, () => rng.next() - 0.5);
  orthonormalize(q, k, len);
  for (let it = 0; it < iterations; it++) {
    q = back(fwd(q));
    orthonormalize(q, k, len);
  }
  // Rayleigh–Ritz: S = (G q)ᵀ(G q) [k×k]; its top eigenvectors rotate q onto the singular vectors
  const b = fwd(q);
  const S = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    for (let j = i; j < k; j++) {
      let s = 0;
      for (let t = 0; t < other; t++) s += b[i * other + t] * b[j * other + t];
      S[i * k + j] = S[j * k + i] = s;
    }
  }
  const { vectors } = symmetricEigen(S, k);
  const out = new Float32Array(r * len);
  for (let e = 0; e < Math.min(r, k); e++) {
    for (let j = 0; j < k; j++) {
      const c = vectors[e * k + j];
      for (let t = 0; t < len; t++) out[e * len + t] += c * q[j * len + t];
    }
  }
  return out;
}
