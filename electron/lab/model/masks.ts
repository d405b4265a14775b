// Pruning masks on disk: one GGUF beside the pruned model, an I8 tensor per pruned weight (1 kept,
// 0 pruned) under the weight's own name. Later stages (PERP retraining, quantization) read which
// weights are pruned from here, never from W = 0.
import { kv, writeGguf, type GgufTensorOut } from './gguf-writer.js';
import { T } from '../engine/types.js';
import { meta, readGguf, readTensorBytes } from './gguf.js';

export function writeMasks(path: string, masks: { name: string; shape: number[]; keep: Uint8Array }[], overwrite = false) {
  const tensors: GgufTensorOut[] = masks.map((m) => ({ name: m.name, shape: m.shape, type: T.I8, data: m.keep }));
  writeGguf(path, new Map([['general.type', kv.str('hone-pruning-masks')]]), tensors, { overwrite });
}

/** weight name → keep mask (row-major, as the weight) */
export function readMasks(path: string): Map<string, Uint8Array> {
  const f = readGguf(path);
  if (meta<string>(f, 'general.type') !== 'hone-pruning-masks') throw new Error(`${path} is not a Hone pruning-mask file`);
  return new Map(f.tensors.map((t) => [t.name, new Uint8Array(readTensorBytes(f.path, t))]));
}
