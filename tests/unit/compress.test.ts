// Compression math on plain arrays: code grids against ggml's own dequantizer, learned codes against
// round-to-nearest, NUPES's exponent on bell-shaped weights, pruning masks.
import { afterAll, describe, expect, it } from 'vitest';
import { native } from '../../electron/lab/engine/native.js';
import { randn } from '../../electron/lab/model/tiny.js';
import { LEARNABLE_TYPES, floatToHalf, gridOfBlocks, gridValues, halfToFloat, hasOwnScale, packGrid, referenceQuantize, roundHalf } from '../../electron/lab/compress/grid.js';
import { LEARN_BLOCK, LayerCurvature, learnCodes } from '../../electron/lab/compress/learn-codes.js';
import { openEngine } from '../../electron/lab/engine/backend.js';
import { learnCodesReference, outputErrorReference as outputError } from '../helpers/learn-codes-reference.js';
import { SEARCH_ROWS, powerGrid, searchExponentData, searchExponentDataFree, weightError } from '../../electron/lab/compress/nupes.js';
import { ICBS_DEFAULTS, annealCardinality, exhaustiveCardinality, icbsLayer } from '../../electron/lab/compress/icbs.js';
import { Rng } from '../../electron/lab/data/pack.js';
import { applyMask, globalThreshold, kthSmallest, maskBelow, pruneMask, pruneScores, sparsityOf } from '../../electron/lab/compress/prune.js';

const rows = 24, cols = 256;

/** inputs with correlated features and uneven scales, like a layer's activations: H = XᵀX/N */
function gram(n: number, tokens: number, seed: number): Float64Array {
  const z = randn(seed, tokens * 8, 1), mix = randn(seed + 1, 8 * n, 1), own = randn(seed + 2, tokens * n, 0.3);
  const scale = Float64Array.from({ length: n }, (_, j) => 0.2 + 3 * ((j * 7919) % 13) / 13);
  const H = new Float64Array(n * n), x = new Float64Array(n);
  for (let t = 0; t < tokens; t++) {
    for (let j = 0; j < n; j++) {
      let s = own[t * n + j];
      for (let k = 0; k < 8; k++) s += z[t * 8 + k] * mix[k * n + j];
      x[j] = s * scale[j];
    }
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) H[i * n + j] += (x[i] * x[j]) / tokens;
  }
  return H;
}

describe('code grids of ggml blocks', () => {
  it('F16 conversion round-trips every finite half and rounds to nearest even', () => {
    for (let h = 0; h < 0x7c00; h += 7) expect(floatToHalf(halfToFloat(h))).toBe(h);
    expect(halfToFloat(floatToHalf(1 + 2 ** -11))).toBe(1); // tie → even
    expect(halfToFloat(floatToHalf(1 + 3 * 2 ** -11))).toBe(1 + 2 ** -9);
  });

  for (const [name, type] of Object.entries(LEARNABLE_TYPES)) {
    it(`${name}: the grid's values are ggml's dequantized weights, and packing writes the codes back`, () => {
      const w = randn(3, rows * cols, 0.05);
      const { blocks, grid } = referenceQuantize(type, w, rows, cols);
      const ggml = native().dequantize(type, blocks, w.length);
      const plain = (x: Float32Array) => Array.from(x, (v) => v + 0); // -0 and 0 alike
      expect(plain(gridValues(grid))).toEqual(plain(ggml));
      // other codes (and, where the block has its own scale, other scales) survive a pack → ggml → unpack trip
      const codes = grid.codes.map((c, i) => (c + i) % grid.table.length);
      const alpha = hasOwnScale(type) ? grid.alpha.map((a, i) => roundHalf(a * (1 + (i % 3) / 10))) : grid.alpha;
      const packed = packGrid(type, blocks, { ...grid, codes, alpha });
      const back = gridOfBlocks(type, packed, w.length);
      expect(Array.from(back.codes)).toEqual(Array.from(codes));
      expect(plain(native().dequantize(type, packed, w.length))).toEqual(plain(gridValues({ ...grid, codes, alpha })));
    });
  }
});

// the engine's products on the CPU, with OpenBLAS (where the addon has it) and with ggml's own kernels
const engines = [openEngine({ backend: 'cpu' }), openEngine({ backend: 'cpu', blas: false })];
afterAll(() => engines.forEach((e) => e.free()));
const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

describe('learned codes', () => {
  // wider than two column blocks, the last one partial (Q4_K's rows are whole 256-blocks)
  const wide = 2 * LEARN_BLOCK + 32;
  const H64 = gram(wide, 600, 11), H = Float32Array.from(H64);
  const w = randn(5, rows * wide, 0.05);

  for (const [name, type] of Object.entries(LEARNABLE_TYPES)) {
    const n = type === LEARNABLE_TYPES.q4_k ? 2 * LEARN_BLOCK : wide;
    const Hn = n === wide ? H : Float32Array.from({ length: n * n }, (_, k) => H[Math.floor(k / n) * wide + (k % n)]);
    const wn = n === wide ? w : Float32Array.from({ length: rows * n }, (_, k) => w[Math.floor(k / n) * wide + (k % n)]);
    for (const engine of engines) {
      it(`${name} (${engine.blas ? 'OpenBLAS' : 'ggml'} products): the blocked engine version takes the float64 reference's steps, and beats ggml's quantizer`, () => {
        const { grid } = referenceQuantize(type, wn, rows, n);
        const ref = outputError(wn, rows, n, Hn, gridValues(grid));
        const opts = { scales: hasOwnScale(type), roundHalf: true };
        const r = learnCodes(engine, wn, rows, n, Hn, grid, opts);
        expect(rel(r.before, ref)).toBeLessThan(1e-5);
        // what it reports is what its codes give, measured independently in float64
        expect(rel(outputError(wn, rows, n, Hn, gridValues(r.grid)), r.after)).toBeLessThan(1e-4);
        expect(r.after).toBeLessThan(0.9 * ref);
        // the same steps as the one-row-at-a-time float64 oracle (float32 products may flip a near-tie)
        const o = learnCodesReference(wn, rows, n, Hn, grid, opts);
        let same = 0;
        for (let i = 0; i < o.grid.codes.length; i++) same += o.grid.codes[i] === r.grid.codes[i] ? 1 : 0;
        expect(same / o.grid.codes.length).toBeGreaterThan(0.995);
        expect(rel(r.after, o.after)).toBeLessThan(1e-3);
        // more sweeps never undo what fewer found
        const r1 = learnCodes(engine, wn, rows, n, Hn, grid, { ...opts, sweeps: 1 });
        expect(r.after).toBeLessThanOrEqual(r1.after * (1 + 1e-6));
        expect(r1.after).toBeLessThan(r1.before);
        // one sweep is all last sweep: each block updates only the columns right of it, and the
        // codes and the reported error are still the oracle's
        expect(rel(outputError(wn, rows, n, Hn, gridValues(r1.grid)), r1.after)).toBeLessThan(1e-4);
        const o1 = learnCodesReference(wn, rows, n, Hn, grid, { ...opts, sweeps: 1 });
        let same1 = 0;
        for (let i = 0; i < o1.grid.codes.length; i++) same1 += o1.grid.codes[i] === r1.grid.codes[i] ? 1 : 0;
        expect(same1 / o1.grid.codes.length).toBeGreaterThan(0.995);
      });
    }
  }

  it('pruned weights keep their codes; the output error of the engine agrees with float64', () => {
    const [engine] = engines;
    const { grid } = referenceQuantize(LEARNABLE_TYPES.q8_0, w, rows, wide);
    const movable = Uint8Array.from({ length: w.length }, (_, i) => (i % 3 ? 1 : 0));
    const r = learnCodes(engine, w, rows, wide, H, grid, { movable });
    for (let i = 0; i < w.length; i++) if (!movable[i]) expect(r.grid.codes[i]).toBe(grid.codes[i]);
    const c = new LayerCurvature(engine, H, rows, wide);
    try {
      const v = gridValues(r.grid);
      expect(rel(c.outputError(w, v), outputError(w, rows, wide, H64, v))).toBeLessThan(1e-5);
    } finally { c.free(); }
  });
});

describe('NUPES', () => {
  const w = randn(7, rows * cols, 0.05); // bell-shaped

  it('a = 1 is uniform symmetric round-to-nearest', () => {
    const g = powerGrid(w, rows, cols, 1, 4);
    for (let r = 0; r < rows; r++) {
      const m = Math.max(...w.subarray(r * cols, (r + 1) * cols).map(Math.abs));
      for (let j = 0; j < cols; j++) {
        const q = Math.max(-7, Math.min(7, Math.round((w[r * cols + j] / m) * 7)));
        expect(g.alpha[r] * g.table[g.codes[r * cols + j]]).toBeCloseTo((q * m) / 7, 6);
      }
    }
  });

  it('the data-free exponent on Gaussian weights is below 1 and beats uniform 4-bit round-to-nearest', () => {
    const s = searchExponentDataFree(w, rows, cols, 4);
    expect(s.exponent).toBeLessThan(0.95);
    expect(s.exponent).toBeGreaterThan(0.3);
    expect(s.error).toBeLessThan(0.9 * s.uniformError);
    expect(weightError(w, powerGrid(w, rows, cols, s.exponent, 4))).toBeCloseTo(s.error, 9);
  });

  it(`a layer of more than ${SEARCH_ROWS} rows is searched on evenly spaced rows`, () => {
    const tall = 2 * SEARCH_ROWS + 6, narrow = 64, step = Math.ceil(tall / SEARCH_ROWS);
    const wt = randn(23, tall * narrow, 0.05);
    const s = searchExponentDataFree(wt, tall, narrow, 4);
    const sample = Float32Array.from({ length: Math.ceil(tall / step) * narrow }, (_, k) => wt[Math.floor(k / narrow) * step * narrow + (k % narrow)]);
    expect(rel(s.error, weightError(sample, powerGrid(sample, sample.length / narrow, narrow, s.exponent, 4)))).toBeLessThan(1e-9);
  });

  it('data-driven: searched exponent and learned codes (row scales refit on the engine) lower the output error further', () => {
    const H = Float32Array.from(gram(cols, 600, 13));
    const uniform = outputError(w, rows, cols, H, gridValues(powerGrid(w, rows, cols, 1, 4)));
    const diag = Float64Array.from({ length: cols }, (_, j) => H[j * cols + j]);
    const s = searchExponentData(w, rows, cols, 4, diag);
    const g = powerGrid(w, rows, cols, s.exponent, 4);
    // the native search's error is the diag(H)-weighted error of the grid it names
    let weighted = 0;
    for (let i = 0; i < w.length; i++) weighted += diag[i % cols] * (g.alpha[(i / cols) | 0] * g.table[g.codes[i]] - w[i]) ** 2;
    expect(rel(s.error, weighted)).toBeLessThan(1e-9);
    const searched = outputError(w, rows, cols, H, gridValues(g));
    const learned = learnCodes(engines[0], w, rows, cols, H, g, { scales: true });
    expect(searched).toBeLessThan(uniform);
    expect(learned.after).toBeLessThan(0.8 * searched);
    expect(rel(outputError(w, rows, cols, H, gridValues(learned.grid)), learned.after)).toBeLessThan(1e-4);
    const o = learnCodesReference(w, rows, cols, H, g, { scales: true });
    expect(rel(learned.after, o.after)).toBeLessThan(1e-3);
    expect(learned.grid.alpha.some((a, r) => a !== g.alpha[r])).toBe(true); // the row scales moved
  });
});

describe('pruning masks', () => {
  const w = randn(9, rows * cols, 1);

  it('unstructured per matrix and per row prune exactly the lowest scores', () => {
    const s = pruneScores(w, rows, cols, 'magnitude');
    const m = pruneMask(s, rows, cols, { kind: 'unstructured', sparsity: 0.5, per: 'matrix' });
    expect(sparsityOf(m)).toBe(0.5);
    const tau = kthSmallest(s, rows * cols / 2 - 1);
    for (let i = 0; i < s.length; i++) expect(m[i]).toBe(s[i] <= tau ? 0 : 1);
    const pr = pruneMask(s, rows, cols, { kind: 'unstructured', sparsity: 0.3, per: 'row' });
    for (let r = 0; r < rows; r++) expect(cols - pr.subarray(r * cols, (r + 1) * cols).reduce((a, b) => a + b, 0)).toBe(Math.floor(0.3 * cols));
  });

  it('2:4 keeps the two largest of every four inputs', () => {
    const s = pruneScores(w, rows, cols, 'magnitude');
    const m = pruneMask(s, rows, cols, { kind: 'nm', n: 2, m: 4 });
    for (let g = 0; g < s.length; g += 4) {
      const kept = [0, 1, 2, 3].filter((i) => m[g + i]);
      expect(kept.length).toBe(2);
      const minKept = Math.min(...kept.map((i) => s[g + i]));
      for (const i of [0, 1, 2, 3].filter((i) => !m[g + i])) expect(s[g + i]).toBeLessThanOrEqual(minKept);
    }
    expect(() => pruneMask(s, rows, 250, { kind: 'nm', n: 2, m: 4 })).toThrow(/multiple of 4/);
  });

  it('Wanda weighs each input by its norm; a global threshold prunes the target fraction overall', () => {
    const norms = Float64Array.from({ length: cols }, (_, j) => (j % 2 ? 1e6 : 1e-6));
    const s = pruneScores(w, rows, cols, 'wanda', norms);
    const m = pruneMask(s, rows, cols, { kind: 'unstructured', sparsity: 0.5, per: 'row' });
    for (let i = 0; i < m.length; i++) expect(m[i]).toBe(i % 2); // the loud inputs survive
    expect(() => pruneScores(w, rows, cols, 'wanda')).toThrow(/calibrate/);
    const a = pruneScores(w.subarray(0, 1000), 1, 1000, 'magnitude'), b = pruneScores(w.subarray(1000, 3000).map((x) => x * 3), 1, 2000, 'magnitude');
    const tau = globalThreshold([a, b], 0.4);
    const pruned = [a, b].reduce((n, s) => n + s.length * sparsityOf(maskBelow(s, tau)), 0);
    expect(pruned).toBe(1200);
    expect(sparsityOf(maskBelow(a, tau))).toBeGreaterThan(sparsityOf(maskBelow(b, tau)));
    const x = Float32Array.from(w.subarray(0, 8));
    expect(Array.from(applyMask(x, Uint8Array.from([1, 0, 1, 0, 1, 0, 1, 0])).filter((_, i) => i % 2))).toEqual([0, 0, 0, 0]);
  });
});

describe('iCBS', () => {
  it('the annealer finds the exact optimum of small cardinality-constrained QUBOs', () => {
    for (let seed = 1; seed <= 5; seed++) {
      const n = 12, k = 5;
      const r = randn(seed, n * n, 1);
      const Q = new Float64Array(n * n);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) Q[i * n + j] = (r[i * n + j] + r[j * n + i]) / 2;
      const x0 = Uint8Array.from({ length: n }, (_, i) => (i < k ? 1 : 0));
      const exact = exhaustiveCardinality(Q, n, k);
      const sa = annealCardinality(Q, n, x0, new Rng(seed), 4);
      expect(sa.x.reduce((a, b) => a + b, 0)).toBe(k);
      expect(sa.energy).toBeCloseTo(exact.energy, 9);
    }
  });

  const H = Float32Array.from(gram(cols, 600, 17));
  const w = randn(19, rows * cols, 0.05);
  const norms = Float64Array.from({ length: cols }, (_, j) => H[j * cols + j]);
  const scores = pruneScores(w, rows, cols, 'wanda', norms);
  const err = (keep: Uint8Array) => outputError(w, rows, cols, H, applyMask(Float32Array.from(w), keep));

  it('every accepted move lowers the layer error by exactly its predicted energy; the error never rises across epochs; density holds', () => {
    const keep0 = pruneMask(scores, rows, cols, { kind: 'unstructured', sparsity: 0.5, per: 'row' });
    const r = icbsLayer(engines[0], w, rows, cols, H, scores, keep0, { ...ICBS_DEFAULTS, blockSize: 32, epochs: 3 }, { actualCheck: true });
    expect(r.moves.length).toBeGreaterThan(5);
    const scale = r.errors[0];
    for (const m of r.moves) {
      expect(m.predicted).toBeLessThan(0);
      expect(Math.abs(m.actual - m.predicted)).toBeLessThan(1e-5 * scale); // float32 G
    }
    // the error it reports is the float64 error of its mask
    expect(rel(r.errors[0], err(keep0))).toBeLessThan(1e-5);
    expect(rel(r.errors.at(-1)!, err(r.keep))).toBeLessThan(1e-4);
    for (let e = 1; e < r.errors.length; e++) expect(r.errors[e]).toBeLessThanOrEqual(r.errors[e - 1]);
    expect(r.errors.at(-1)!).toBeLessThan(0.95 * r.errors[0]);
    expect(sparsityOf(r.keep)).toBe(sparsityOf(keep0));
  });

  it('with N:M groups every group keeps its count', () => {
    const keep0 = pruneMask(scores, rows, cols, { kind: 'nm', n: 2, m: 4 });
    const r = icbsLayer(engines[0], w, rows, cols, H, scores, keep0, { ...ICBS_DEFAULTS, blockSize: 32, epochs: 2, groupSize: 4 });
    for (let g = 0; g < r.keep.length; g += 4) expect(r.keep[g] + r.keep[g + 1] + r.keep[g + 2] + r.keep[g + 3]).toBe(2);
    expect(r.errors.at(-1)!).toBeLessThan(r.errors[0]);
  });

  it('on threads (rows split between them) the moves still lower the error and keep the density', () => {
    const keep0 = pruneMask(scores, rows, cols, { kind: 'unstructured', sparsity: 0.5, per: 'row' });
    const engine = openEngine({ backend: 'cpu', threads: 3 });
    try {
      const r = icbsLayer(engine, w, rows, cols, H, scores, keep0, { ...ICBS_DEFAULTS, blockSize: 32, epochs: 3 });
      expect(rel(r.errors.at(-1)!, err(r.keep))).toBeLessThan(1e-4);
      expect(r.errors.at(-1)!).toBeLessThan(0.95 * r.errors[0]);
      expect(sparsityOf(r.keep)).toBe(sparsityOf(keep0));
    } finally { engine.free(); }
  });
});
