// Hone's GGUF variant for NUPES power-grid weights (compress/nupes.ts). llama.cpp has no such type,
// so only Hone reads these files; it dequantizes each NUPES weight once when loading (weight-only
// quantization: the file is small, memory holds F16).
//   <name>            I8 [cols/2, rows]: codes q + qmax ∈ [0, 2·qmax] (bits ≤ 4), two per byte: weight
//                     2j in the low nibble of byte j, 2j+1 in the high one
//   <name>.nupes_scale F32 [rows]:      α_r = s_r^{1/a}
//   <name>.nupes_exponent F32 [1]:      a (a tensor, not metadata: it is known only once the layer
//                                       is quantized, after the header is written)
//   metadata hone.nupes.bits (u32) marks the file
// value = α_r · sign(q)·|q|^{1/a}
import { readTensorBytes, type GgufFile, type GgufTensorInfo } from './gguf.js';

export const NUPES_BITS_KEY = 'hone.nupes.bits';
export const nupesScaleName = (name: string) => `${name}.nupes_scale`;
export const nupesExponentName = (name: string) => `${name}.nupes_exponent`;

export function isNupesFile(f: GgufFile): boolean {
  return f.metadata.has(NUPES_BITS_KEY);
}

/** whether tensor `name` of the file holds NUPES codes */
export function isNupesTensor(f: GgufFile, name: string): boolean {
  return isNupesFile(f) && f.tensors.some((t) => t.name === nupesExponentName(name));
}

/** the weight's shape [cols, rows] (the file stores two codes per byte) */
export function nupesShape(info: GgufTensorInfo): number[] {
  return [info.shape[0] * 2, ...info.shape.slice(1)];
}

/** codes q + qmax (0..15) → bytes, two per byte */
export function packNibbles(codes: Uint8Array | Uint16Array): Uint8Array {
  const out = new Uint8Array(codes.length / 2);
  for (let j = 0; j < out.length; j++) out[j] = codes[2 * j] | (codes[2 * j + 1] << 4);
  return out;
}

/** a NUPES weight's values as F32, row-major [rows][cols] (ggml order) */
export function dequantizeNupes(f: GgufFile, info: GgufTensorInfo): Float32Array {
  const scaleInfo = f.tensors.find((t) => t.name === nupesScaleName(info.name));
  const expInfo = f.tensors.find((t) => t.name === nupesExponentName(info.name));
  if (!expInfo || !scaleInfo) throw new Error(`${f.path}: NUPES tensor ${info.name} has no exponent or no ${nupesScaleName(info.name)}; the file is damaged`);
  const [cols, rows] = nupesShape(info);
  const bits = Number(f.metadata.get(NUPES_BITS_KEY)!.value), qmax = 2 ** (bits - 1) - 1;
  const packed = readTensorBytes(f.path, info);
  const sb = readTensorBytes(f.path, scaleInfo);
  const alpha = new Float32Array(sb.buffer, sb.byteOffset, rows);
  const out = new Float32Array(cols * rows);
  const eb = readTensorBytes(f.path, expInfo);
  const inv = 1 / eb.readFloatLE(0);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) {
      const i = r * cols + j;
      const q = ((i & 1 ? packed[i >> 1] >> 4 : packed[i >> 1] & 0xf)) - qmax;
      out[r * cols + j] = q === 0 ? 0 : alpha[r] * (q < 0 ? -((-q) ** inv) : q ** inv);
    }
  }
  return out;
}
