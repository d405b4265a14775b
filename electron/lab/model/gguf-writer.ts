// GGUF writing: header, metadata, tensor table, then aligned tensor data streamed to disk.
// Written to a temporary file beside the target, fsynced and renamed, so a crash never leaves a
// half-written model under the user's chosen name.
import { closeSync, existsSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { settled, tempFor } from '../store/temp-files.js';
import { GGUF_MAGIC, GgufValueType, type GgufScalar, type GgufValue } from './gguf.js';
import { rowBytes } from '../engine/types.js';

export interface GgufTensorOut {
  name: string;
  shape: number[];
  type: number;
  /** the tensor's bytes in ggml layout, or a function producing them when written */
  data: Uint8Array | (() => Uint8Array);
}

const ALIGN = 32;

class Bytes {
  private parts: Buffer[] = [];
  size = 0;
  push(b: Buffer) { this.parts.push(b); this.size += b.length; }
  u32(v: number) { const b = Buffer.alloc(4); b.writeUInt32LE(v); this.push(b); }
  u64(v: number | bigint) { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); this.push(b); }
  str(s: string) { const b = Buffer.from(s, 'utf8'); this.u64(b.length); this.push(b); }
  scalar(type: GgufValueType, v: GgufScalar) {
    const b = Buffer.alloc(8);
    switch (type) {
      case GgufValueType.U8: b.writeUInt8(Number(v)); return this.push(b.subarray(0, 1));
      case GgufValueType.I8: b.writeInt8(Number(v)); return this.push(b.subarray(0, 1));
      case GgufValueType.U16: b.writeUInt16LE(Number(v)); return this.push(b.subarray(0, 2));
      case GgufValueType.I16: b.writeInt16LE(Number(v)); return this.push(b.subarray(0, 2));
      case GgufValueType.U32: b.writeUInt32LE(Number(v)); return this.push(b.subarray(0, 4));
      case GgufValueType.I32: b.writeInt32LE(Number(v)); return this.push(b.subarray(0, 4));
      case GgufValueType.F32: b.writeFloatLE(Number(v)); return this.push(b.subarray(0, 4));
      case GgufValueType.BOOL: b.writeUInt8(v ? 1 : 0); return this.push(b.subarray(0, 1));
      case GgufValueType.STRING: return this.str(String(v));
      case GgufValueType.U64: b.writeBigUInt64LE(BigInt(v)); return this.push(b);
      case GgufValueType.I64: b.writeBigInt64LE(BigInt(v)); return this.push(b);
      case GgufValueType.F64: b.writeDoubleLE(Number(v)); return this.push(b);
      default: throw new Error(`cannot write metadata type ${type}`);
    }
  }
  concat() { return Buffer.concat(this.parts); }
}

/** Shorthands for metadata values. */
export const kv = {
  u32: (value: number): GgufValue => ({ type: GgufValueType.U32, value }),
  f32: (value: number): GgufValue => ({ type: GgufValueType.F32, value }),
  str: (value: string): GgufValue => ({ type: GgufValueType.STRING, value }),
  bool: (value: boolean): GgufValue => ({ type: GgufValueType.BOOL, value }),
};

export interface WriteOptions {
  /** replace an existing file at `path` (default: refuse, naming the file) */
  overwrite?: boolean;
}

export function writeGguf(path: string, metadata: Map<string, GgufValue>, tensors: GgufTensorOut[], opts: WriteOptions = {}): void {
  if (!opts.overwrite && existsSync(path)) throw new Error(`${path} already exists; choose another name or remove it first`);
  const h = new Bytes();
  h.u32(GGUF_MAGIC);
  h.u32(3);
  h.u64(tensors.length);
  const md = new Map(metadata);
  md.set('general.alignment', kv.u32(ALIGN));
  h.u64(md.size);
  for (const [key, v] of md) {
    h.str(key);
    h.u32(v.type);
    if (v.type === GgufValueType.ARRAY) {
      h.u32(v.itemType);
      h.u64(v.value.length);
      for (const x of v.value) h.scalar(v.itemType, x);
    } else {
      h.scalar(v.type, v.value);
    }
  }
  let offset = 0;
  const sizes: number[] = [];
  for (const t of tensors) {
    const bytes = rowBytes(t.type, t.shape[0]) * t.shape.slice(1).reduce((a, b) => a * b, 1);
    sizes.push(bytes);
    h.str(t.name);
    h.u32(t.shape.length);
    for (const d of t.shape) h.u64(d);
    h.u32(t.type);
    h.u64(offset);
    offset += Math.ceil(bytes / ALIGN) * ALIGN;
  }
  const header = h.concat();
  const tmp = tempFor(path);
  const fd = openSync(tmp, 'w');
  try {
    let pos = 0;
    const write = (b: Uint8Array) => { let done = 0; while (done < b.length) done += writeSync(fd, b, done, b.length - done, pos + done); pos += b.length; };
    write(header);
    write(Buffer.alloc(Math.ceil(pos / ALIGN) * ALIGN - pos));
    tensors.forEach((t, i) => {
      const data = typeof t.data === 'function' ? t.data() : t.data;
      if (data.length !== sizes[i]) throw new Error(`tensor ${t.name}: ${data.length} bytes given, ${sizes[i]} expected for its shape and type`);
      write(data);
      write(Buffer.alloc(Math.ceil(data.length / ALIGN) * ALIGN - data.length));
    });
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    settled(tmp);
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
  settled(tmp);
}
