// A compression stage reads a model GGUF tensor by tensor and writes a new one: every tensor either
// copied as it is or replaced. Tensors stream through (one in memory at a time), so a stage needs
// memory for its largest tensor, not for the model.
import { basename } from 'node:path';
import { native } from '../engine/native.js';
import { T } from '../engine/types.js';
import { readTensorBytes, type GgufFile, type GgufTensorInfo, type GgufValue } from './gguf.js';
import { dequantizeFromFile } from './llama.js';
import { dequantizeNupes, isNupesTensor, nupesShape } from './nupes-weights.js';
import { kv, writeGguf, type GgufTensorOut } from './gguf-writer.js';

/** a tensor's values as F32 (ggml's dequantizer, or Hone's for NUPES codes) */
export function readValues(f: GgufFile, info: GgufTensorInfo): Float32Array {
  return isNupesTensor(f, info.name) ? dequantizeNupes(f, info) : dequantizeFromFile(f.path, info);
}

export const f32Bytes = (w: Float32Array) => new Uint8Array(w.buffer, w.byteOffset, w.byteLength);

/** values stored as `type` (F32, F16 or any type ggml quantizes), rows of shape[0] */
export function encode(w: Float32Array, shape: number[], type: number): Uint8Array {
  if (type === T.F32) return f32Bytes(w);
  return native().quantize(type, w, shape.slice(1).reduce((a, b) => a * b, 1), shape[0]);
}

/** Tensors a stage skips entirely (NUPES scales belong to their weight). */
const isAuxiliary = (name: string) => name.endsWith('.nupes_scale') || name.endsWith('.nupes_exponent');

/**
 * Writes `path` from `src`: for each tensor, `replace(info)` returns its new form(s) — name, shape and
 * type at once, data as a thunk run when the tensor is written — or null to copy it unchanged (NUPES
 * weights are decoded to F32 when copied, so stages see plain weights). `metadata` edits the
 * source's metadata (keys with undefined are removed).
 */
export function rewriteModel(src: GgufFile, path: string, replace: (info: GgufTensorInfo) => GgufTensorOut[] | null, metadata: Record<string, GgufValue | undefined>, opts: { overwrite?: boolean; signal?: AbortSignal; onTensor?: (done: number, total: number, name: string) => void } = {}) {
  const tensors: GgufTensorOut[] = [];
  const list = src.tensors.filter((t) => !isAuxiliary(t.name));
  list.forEach((info, i) => {
    const step = <X>(f: () => X) => () => {
      opts.signal?.throwIfAborted();
      opts.onTensor?.(i + 1, list.length, info.name);
      return f();
    };
    const r = replace(info);
    if (r) {
      tensors.push(...r.map((t, k) => (k === 0 && typeof t.data === 'function' ? { ...t, data: step(t.data) } : t)));
    } else if (isNupesTensor(src, info.name)) {
      tensors.push({ name: info.name, shape: nupesShape(info), type: T.F32, data: step(() => f32Bytes(dequantizeNupes(src, info))) });
    } else {
      tensors.push({ name: info.name, shape: info.shape, type: info.type, data: step(() => readTensorBytes(src.path, info)) });
    }
  });
  const md = new Map(src.metadata);
  for (const key of [...md.keys()]) if (key.startsWith('hone.nupes.')) md.delete(key);
  for (const [k, v] of Object.entries(metadata)) v === undefined ? md.delete(k) : md.set(k, v);
  writeGguf(path, md, tensors, { overwrite: opts.overwrite });
}

export const modelName = (f: GgufFile, suffix: string) => kv.str(`${String(f.metadata.get('general.name')?.value ?? basename(f.path, '.gguf'))}-${suffix}`);
