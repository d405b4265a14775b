// Compression math on plain arrays: code grids against ggml's own dequantizer, learned codes against
// round-to-nearest, NUPES's exponent on bell-shaped weights, pruning masks.
import { describe, expect, it } from 'vitest';
import { native } from '../../electron/lab/engine/native.js';
import { randn } from '../../electron/lab/model/tiny.js';
import { LEARNABLE_TYPES, floatToHalf, gridOfBlocks, gridValues, halfToFloat, hasOwnScale, packGrid, referenceQuantize, roundHalf } from '../../electron/lab/compress/grid.js';
import { learnCodes, outputError } from '../../electron/lab/compress/learn-codes.js';
import { powerGrid, searchExponentData, searchExponentDataFree, weightError } from '../../electron/lab/compress/nupes.js';
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

describe('learned codes', () => {
  const H = gram(cols, 600, 11);
  const w = randn(5, rows * cols, 0.05);

  for (const [name, type] of Object.entries(LEARNABLE_TYPES)) {
    it(`${name}: lower output error than ggml's quantizer, never higher along the way`, () => {
      const { grid } = referenceQuantize(type, w, rows, cols);
      const ref = outputError(w, rows, cols, H, gridValues(grid));
      const r = learnCodes(w, rows, cols, H, grid, { scales: hasOwnScale(type), roundScale: roundHalf });
      expect(r.before).toBeCloseTo(ref, 6);
      expect(outputError(w, rows, cols, H, gridValues(r.grid))).toBeCloseTo(r.after, 6);
      expect(r.after).toBeLessThan(0.9 * ref);
      // more sweeps never undo what fewer found
      const r1 = learnCodes(w, rows, cols, H, grid, { sweeps: 1 });
      expect(r.after).toBeLessThanOrEqual(r1.after + 1e-12);
    });
  }
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

  it('data-driven: searched exponent and learned codes lower the output error further', () => {
    const H = gram(cols, 600, 13);
    const uniform = outputError(w, rows, cols, H, gridValues(powerGrid(w, rows, cols, 1, 4)));
    const s = searchExponentData(w, rows, cols, 4, H);
    const g = powerGrid(w, rows, cols, s.exponent, 4);
    const searched = outputError(w, rows, cols, H, gridValues(g));
    const learned = learnCodes(w, rows, cols, H, g, { scales: true });
    expect(searched).toBeLessThan(uniform);
    expect(learned.after).toBeLessThan(0.8 * searched);
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

  const H = gram(cols, 600, 17);
  const w = randn(19, rows * cols, 0.05);
  const norms = Float64Array.from({ length: cols }, (_, j) => H[j * cols + j]);
  const scores = pruneScores(w, rows, cols, 'wanda', norms);
  const err = (keep: Uint8Array) => outputError(w, rows, cols, H, applyMask(Float32Array.from(w), keep));

  it('every accepted move lowers the layer error by exactly its predicted energy; the error never rises across epochs; density holds', () => {
    const keep0 = pruneMask(scores, rows, cols, { kind: 'unstructured', sparsity: 0.5, per: 'row' });
    const r = icbsLayer(w, rows, cols, H, scores, keep0, { ...ICBS_DEFAULTS, blockSize: 32, epochs: 3 }, { actualCheck: true });
    expect(r.moves.length).toBeGreaterThan(5);
    for (const m of r.moves) {
      expect(m.predicted).toBeLessThan(0);
      expect(m.actual).toBeCloseTo(m.predicted, 8);
    }
    expect(r.errors[0]).toBeCloseTo(err(keep0), 8);
    expect(r.errors.at(-1)!).toBeCloseTo(err(r.keep), 8);
    for (let e = 1; e < r.errors.length; e++) expect(r.errors[e]).toBeLessThanOrEqual(r.errors[e - 1]);
    expect(r.errors.at(-1)!).toBeLessThan(0.95 * r.errors[0]);
    expect(sparsityOf(r.keep)).toBe(sparsityOf(keep0));
  });

  it('with N:M groups every group keeps its count', () => {
    const keep0 = pruneMask(scores, rows, cols, { kind: 'nm', n: 2, m: 4 });
    const r = icbsLayer(w, rows, cols, H, scores, keep0, { ...ICBS_DEFAULTS, blockSize: 32, epochs: 2, groupSize: 4 });
    for (let g = 0; g < r.keep.length; g += 4) expect(r.keep[g] + r.keep[g + 1] + r.keep[g + 2] + r.keep[g + 3]).toBe(2);
    expect(r.errors.at(-1)!).toBeLessThan(r.errors[0]);
  });
});
