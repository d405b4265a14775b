// Quantized weights as a code grid: every weight is one entry of a small ascending table, scaled and
// shifted per group, value = α_g·table[code] + β_g. ggml's 4- and 8-bit block types (Q8_0, Q4_0,
// Q4_K, IQ4_NL) and NUPES's power grid all have this form, so one code optimizer (learn-codes.ts)
// serves them all. For ggml types the grid is read from blocks that ggml's own quantizer wrote:
// their scales stay, only the codes are chosen again, and packing writes the codes back into the
// same blocks (so the file is standard GGUF that llama.cpp reads).
import { native } from '../engine/native.js';
import { T } from '../engine/types.js';

export interface CodeGrid {
  /** ascending code values */
  table: Float64Array;
  /** weights per group (a group shares α and β); groups run along rows */
  groupSize: number;
  alpha: Float32Array;
  beta: Float32Array;
  /** index into `table` for every weight, row after row */
  codes: Uint16Array;
}

/** The dequantized weights of a grid: value_i = α_g·table[code_i] + β_g. */
export function gridValues(g: CodeGrid, out = new Float32Array(g.codes.length)): Float32Array {
  const { table, groupSize, alpha, beta, codes } = g;
  for (let i = 0; i < codes.length; i++) {
    const k = (i / groupSize) | 0;
    out[i] = alpha[k] * table[codes[i]] + beta[k];
  }
  return out;
}

/** The nearest table entry to each weight (round-to-nearest on the grid). */
export function nearestCodes(g: Omit<CodeGrid, 'codes'>, w: Float32Array): Uint16Array {
  const codes = new Uint16Array(w.length);
  const { table, groupSize, alpha, beta } = g;
  for (let i = 0; i < w.length; i++) {
    const k = (i / groupSize) | 0;
    codes[i] = nearestIndex(table, alpha[k] === 0 ? 0 : (w[i] - beta[k]) / alpha[k]);
  }
  return codes;
}

/** index of the entry of an ascending table nearest to t */
export function nearestIndex(table: Float64Array, t: number): number {
  let lo = 0, hi = table.length - 1;
  if (t <= table[lo]) return lo;
  if (t >= table[hi]) return hi;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (table[mid] <= t) lo = mid; else hi = mid;
  }
  return t - table[lo] <= table[hi] - t ? lo : hi;
}

// ---------------------------------------------------------------------------------------------
// ggml block types

/** ggml's IQ4_NL code values (ggml-common.h kvalues_iq4nl) */
const IQ4_NL_VALUES = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/** the ggml types whose codes Hone can learn: name → type id */
export const LEARNABLE_TYPES = { q8_0: T.Q8_0, q4_0: T.Q4_0, q4_k: T.Q4_K, iq4_nl: 20 } as const;
export type LearnableType = keyof typeof LEARNABLE_TYPES;

interface BlockLayout {
  /** weights per block and bytes per block */
  qk: number;
  bytes: number;
  table: Float64Array;
  /** per 32-weight group of block `blk`: [α, β] */
  groups(blk: DataView): [number, number][];
  /** byte offset within the block and nibble (0 low, 1 high, -1 a whole signed byte) of weight j */
  slot(j: number): [number, number];
}

const range = (a: number, b: number) => Float64Array.from({ length: b - a + 1 }, (_, i) => a + i);

/** IEEE half → float */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** float → IEEE half, round to nearest even */
export function floatToHalf(x: number): number {
  const f32 = new Float32Array([x]), u = new Uint32Array(f32.buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff, man = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (man ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const m = man | 0x800000, shift = 14 - e;
    let h = m >> shift;
    const rem = m & ((1 << shift) - 1), half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (man >> 13);
  const rem = man & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

/** the value an F16 field stores for x */
export const roundHalf = (x: number) => halfToFloat(floatToHalf(x));

const nibbles32 = (j: number): [number, number] => [2 + (j % 16), j < 16 ? 0 : 1];

const LAYOUTS: Record<number, BlockLayout> = {
  // Q8_0: d (f16), 32 × int8; w = d·q
  [T.Q8_0]: {
    qk: 32, bytes: 34, table: range(-128, 127),
    groups: (b) => [[halfToFloat(b.getUint16(0, true)), 0]],
    slot: (j) => [2 + j, -1],
  },
  // Q4_0: d (f16), 16 bytes of nibbles (weight j < 16 low, j ≥ 16 high); w = d·(n − 8)
  [T.Q4_0]: {
    qk: 32, bytes: 18, table: range(-8, 7),
    groups: (b) => [[halfToFloat(b.getUint16(0, true)), 0]],
    slot: nibbles32,
  },
  // IQ4_NL: d (f16), nibbles as Q4_0; w = d·K[n]
  [LEARNABLE_TYPES.iq4_nl]: {
    qk: 32, bytes: 18, table: Float64Array.from(IQ4_NL_VALUES),
    groups: (b) => [[halfToFloat(b.getUint16(0, true)), 0]],
    slot: nibbles32,
  },
  // Q4_K: d, dmin (f16), 12 bytes of 6-bit scales and mins for 8 sub-blocks of 32, 128 bytes of
  // nibbles: weights 64c..64c+31 in the low nibbles of bytes 32c.., 64c+32.. in the high ones;
  // w = d·sc_s·n − dmin·m_s
  [T.Q4_K]: {
    qk: 256, bytes: 144, table: range(0, 15),
    groups: (b) => {
      const d = halfToFloat(b.getUint16(0, true)), dmin = halfToFloat(b.getUint16(2, true));
      const q = (i: number) => b.getUint8(4 + i);
      const out: [number, number][] = [];
      for (let s = 0; s < 8; s++) {
        const sc = s < 4 ? q(s) & 63 : (q(s + 4) & 0xf) | ((q(s - 4) >> 6) << 4);
        const m = s < 4 ? q(s + 4) & 63 : (q(s + 4) >> 4) | ((q(s) >> 6) << 4);
        out.push([d * sc, -dmin * m]);
      }
      return out;
    },
    slot: (j) => {
      const c = j >> 6, l = j & 63;
      return [16 + 32 * c + (l & 31), l < 32 ? 0 : 1];
    },
  },
};

function layoutOf(type: number): BlockLayout {
  const l = LAYOUTS[type];
  if (!l) throw new Error(`Hone cannot learn codes for ggml type ${type}; use one of ${Object.keys(LEARNABLE_TYPES).join(', ')}`);
  return l;
}

/** The grid of ggml-quantized bytes (any of LEARNABLE_TYPES), its codes as stored. */
export function gridOfBlocks(type: number, bytes: Uint8Array, n: number): CodeGrid {
  const L = layoutOf(type);
  const nb = n / L.qk;
  if (!Number.isInteger(nb) || bytes.length < nb * L.bytes) throw new Error(`gridOfBlocks: ${n} weights do not fill whole ${L.qk}-weight blocks of ${bytes.length} bytes`);
  const alpha = new Float32Array(n / 32), beta = new Float32Array(n / 32), codes = new Uint16Array(n);
  const zero = -L.table[0];
  for (let b = 0; b < nb; b++) {
    const view = new DataView(bytes.buffer, bytes.byteOffset + b * L.bytes, L.bytes);
    L.groups(view).forEach(([a, c], s) => { alpha[b * (L.qk / 32) + s] = a; beta[b * (L.qk / 32) + s] = c; });
    for (let j = 0; j < L.qk; j++) {
      const [off, nib] = L.slot(j);
      const byte = view.getUint8(off);
      codes[b * L.qk + j] = nib < 0 ? ((byte << 24) >> 24) + zero : nib === 0 ? byte & 0xf : byte >> 4;
    }
  }
  // Q8_0 codes are signed bytes: table index = q + 128; nibble types index the table directly
  return { table: L.table, groupSize: 32, alpha, beta, codes };
}

/** whether the type stores one F16 scale per 32 weights at the block's start (its α can be refit) */
export const hasOwnScale = (type: number) => layoutOf(type).qk === 32;

/**
 * A copy of ggml blocks holding the grid's codes, and for types with one scale per block
 * (hasOwnScale) its α as that scale; Q4_K's scales stay as ggml's quantizer chose them.
 */
export function packGrid(type: number, blocks: Uint8Array, grid: CodeGrid): Uint8Array {
  const L = layoutOf(type);
  const out = Uint8Array.from(blocks);
  const view = new DataView(out.buffer);
  const zero = -L.table[0];
  const codes = grid.codes;
  for (let b = 0; b < codes.length / L.qk; b++) {
    const base = b * L.bytes;
    if (L.qk === 32) view.setUint16(base, floatToHalf(grid.alpha[b]), true);
    for (let j = 0; j < L.qk; j++) {
      const [off, nib] = L.slot(j);
      const c = codes[b * L.qk + j];
      if (nib < 0) out[base + off] = (c - zero) & 0xff;
      else if (nib === 0) out[base + off] = (out[base + off] & 0xf0) | c;
      else out[base + off] = (out[base + off] & 0x0f) | (c << 4);
    }
  }
  return out;
}

/** ggml's own quantizer (no importance matrix): rows × rowLen weights → blocks, and their grid. */
export function referenceQuantize(type: number, w: Float32Array, rows: number, rowLen: number): { blocks: Uint8Array; grid: CodeGrid } {
  const blocks = native().quantize(type, w, rows, rowLen);
  return { blocks, grid: gridOfBlocks(type, blocks, w.length) };
}
