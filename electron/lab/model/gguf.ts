// GGUF reading: the header (metadata and tensor table) is parsed from the file in chunks; tensor
// data is never read here. Every way a file can be wrong becomes a GgufError naming the file.
import { FileError } from '../store/file-error.js';
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { GGML_TYPES, ggmlTypeName, rowBytes } from '../engine/types.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian

export enum GgufValueType {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7, STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
}

export type GgufScalar = number | bigint | boolean | string;
export type GgufValue =
  | { type: Exclude<GgufValueType, GgufValueType.ARRAY>; value: GgufScalar }
  | { type: GgufValueType.ARRAY; itemType: GgufValueType; value: GgufScalar[] };

export interface GgufTensorInfo {
  name: string;
  /** ggml order: ne[0] is the contiguous (row) dimension */
  shape: number[];
  type: number;
  /** absolute byte offset of the data in the file */
  offset: number;
  bytes: number;
}

export interface GgufFile {
  path: string;
  version: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  alignment: number;
  dataOffset: number;
  fileSize: number;
}

/** a GGUF file Hone cannot read or use */
export class GgufError extends FileError {
  get path() { return this.file; }
}

class Cut extends Error {}

/** Buffered little-endian reader over a file descriptor, reading forward in chunks. */
class FileCursor {
  private buf = Buffer.alloc(0);
  private bufStart = 0;
  pos = 0;
  constructor(private fd: number, readonly size: number) {}

  private need(n: number): number {
    const rel = this.pos - this.bufStart;
    if (rel + n <= this.buf.length) return rel;
    if (this.pos + n > this.size) throw new Cut();
    const len = Math.max(n, 1 << 20);
    const chunk = Buffer.alloc(Math.min(len, this.size - this.pos));
    readSync(this.fd, chunk, 0, chunk.length, this.pos);
    this.buf = chunk;
    this.bufStart = this.pos;
    return 0;
  }
  u8() { const r = this.need(1); this.pos += 1; return this.buf.readUInt8(r); }
  i8() { const r = this.need(1); this.pos += 1; return this.buf.readInt8(r); }
  u16() { const r = this.need(2); this.pos += 2; return this.buf.readUInt16LE(r); }
  i16() { const r = this.need(2); this.pos += 2; return this.buf.readInt16LE(r); }
  u32() { const r = this.need(4); this.pos += 4; return this.buf.readUInt32LE(r); }
  i32() { const r = this.need(4); this.pos += 4; return this.buf.readInt32LE(r); }
  f32() { const r = this.need(4); this.pos += 4; return this.buf.readFloatLE(r); }
  f64() { const r = this.need(8); this.pos += 8; return this.buf.readDoubleLE(r); }
  u64() { const r = this.need(8); this.pos += 8; return this.buf.readBigUInt64LE(r); }
  i64() { const r = this.need(8); this.pos += 8; return this.buf.readBigInt64LE(r); }
  /** a u64 that must fit a JS number */
  count(what: string): number {
    const v = this.u64();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`${what} is ${v}, far too large: the header is corrupt`);
    return Number(v);
  }
  str(): string {
    const n = this.count('a string length');
    if (n > this.size) throw new Cut();
    const r = this.need(n);
    this.pos += n;
    return this.buf.toString('utf8', r, r + n);
  }
}

function readScalar(c: FileCursor, type: GgufValueType): GgufScalar {
  switch (type) {
    case GgufValueType.U8: return c.u8();
    case GgufValueType.I8: return c.i8();
    case GgufValueType.U16: return c.u16();
    case GgufValueType.I16: return c.i16();
    case GgufValueType.U32: return c.u32();
    case GgufValueType.I32: return c.i32();
    case GgufValueType.F32: return c.f32();
    case GgufValueType.BOOL: return c.u8() !== 0;
    case GgufValueType.STRING: return c.str();
    case GgufValueType.U64: return c.u64();
    case GgufValueType.I64: return c.i64();
    case GgufValueType.F64: return c.f64();
    default: throw new Error(`unknown metadata value type ${type}`);
  }
}

/** Reads a GGUF file's header. Throws GgufError with the file name and what is wrong. */
export function readGguf(path: string): GgufFile {
  let fd: number;
  // stat first: opening a pipe would wait for a writer forever, a folder fails with a bare EISDIR
  let kind: string | null = null;
  try {
    const st = statSync(path);
    kind = st.isDirectory() ? 'a folder' : st.isFile() ? null : 'not a regular file (a pipe, device or socket)';
  } catch (e) {
    throw new GgufError(path, `cannot open: ${(e as Error).message}`);
  }
  if (kind) throw new GgufError(path, `is ${kind}; give the path of a .gguf model file`);
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new GgufError(path, `cannot open: ${(e as Error).message}`);
  }
  try {
    const size = fstatSync(fd).size;
    const c = new FileCursor(fd, size);
    let stage = 'the file header';
    try {
      if (size < 4 || c.u32() !== GGUF_MAGIC) throw new GgufError(path, 'not a GGUF file (it does not start with "GGUF"); Hone reads GGUF models such as those llama.cpp, Ollama and LM Studio use');
      const version = c.u32();
      if (version < 2 || version > 3) throw new GgufError(path, `GGUF version ${version} is not supported (Hone reads versions 2 and 3)`);
      const nTensors = c.count('the tensor count');
      const nKv = c.count('the metadata count');
      const metadata = new Map<string, GgufValue>();
      for (let i = 0; i < nKv; i++) {
        stage = `metadata entry ${i + 1} of ${nKv}`;
        const key = c.str();
        stage = `metadata "${key}"`;
        if (metadata.has(key)) throw new GgufError(path, `metadata "${key}" appears twice; the file is damaged`);
        const type = c.u32() as GgufValueType;
        if (type === GgufValueType.ARRAY) {
          const itemType = c.u32() as GgufValueType;
          const n = c.count(`the length of "${key}"`);
          if (n > size) throw new Cut();
          const value: GgufScalar[] = new Array(n);
          for (let j = 0; j < n; j++) value[j] = readScalar(c, itemType);
          metadata.set(key, { type, itemType, value });
        } else {
          metadata.set(key, { type, value: readScalar(c, type) } as GgufValue);
        }
      }
      const alignment = Number(metadata.get('general.alignment')?.value ?? 32);
      if (!Number.isInteger(alignment) || alignment <= 0 || alignment % 8 !== 0) throw new GgufError(path, `general.alignment is ${alignment}, which is not a positive multiple of 8`);
      const infos: { name: string; shape: number[]; type: number; rel: number }[] = [];
      for (let i = 0; i < nTensors; i++) {
        stage = `tensor entry ${i + 1} of ${nTensors}`;
        const name = c.str();
        stage = `tensor "${name}"`;
        const nDims = c.u32();
        if (nDims < 1 || nDims > 4) throw new GgufError(path, `tensor "${name}" has ${nDims} dimensions (ggml allows 1 to 4)`);
        const shape: number[] = [];
        for (let d = 0; d < nDims; d++) shape.push(c.count(`dimension ${d} of "${name}"`));
        const type = c.u32();
        if (!GGML_TYPES.has(type)) throw new GgufError(path, `tensor "${name}" has unknown type id ${type}; this file may need a newer Hone (known types: ${[...GGML_TYPES.values()].map((t) => t.name).join(', ')})`);
        const rel = c.count(`the data offset of "${name}"`);
        if (infos.some((t) => t.name === name)) throw new GgufError(path, `tensor "${name}" appears twice; the file is damaged`);
        infos.push({ name, shape, type, rel });
      }
      const dataOffset = Math.ceil(c.pos / alignment) * alignment;
      const tensors: GgufTensorInfo[] = infos.map(({ name, shape, type, rel }) => {
        if (shape[0] % GGML_TYPES.get(type)!.blockSize !== 0) {
          throw new GgufError(path, `tensor "${name}" has rows of ${shape[0]} elements, not a multiple of the ${ggmlTypeName(type)} block size`);
        }
        const bytes = rowBytes(type, shape[0]) * shape.slice(1).reduce((a, b) => a * b, 1);
        const offset = dataOffset + rel;
        if (offset + bytes > size) {
          throw new GgufError(path, `the file is cut short: tensor "${name}" needs bytes ${offset}..${offset + bytes} but the file has ${size} bytes (was the download or copy interrupted?)`);
        }
        return { name, shape, type, offset, bytes };
      });
      // the layout llama.cpp requires: each tensor where the one before it ends, padded to the
      // alignment (so no two overlap, and any file llama.cpp loads, Hone reads)
      let expected = 0;
      for (const t of tensors) {
        const rel = t.offset - dataOffset;
        if (rel !== expected) throw new GgufError(path, `tensor "${t.name}" starts at data offset ${rel} where llama.cpp expects ${expected} (tensors lie one after another, aligned to ${alignment} bytes); the file is damaged`);
        expected += Math.ceil(t.bytes / alignment) * alignment;
      }
      return { path, version, metadata, tensors, alignment, dataOffset, fileSize: size };
    } catch (e) {
      if (e instanceof GgufError) throw e;
      if (e instanceof Cut) throw new GgufError(path, `the file is cut short in ${stage} (${size} bytes); was the download or copy interrupted?`);
      throw new GgufError(path, `corrupt header in ${stage}: ${(e as Error).message}`);
    }
  } finally {
    closeSync(fd);
  }
}

/** Typed metadata access. */
export function meta<T extends GgufScalar | GgufScalar[]>(f: GgufFile, key: string): T | undefined {
  return f.metadata.get(key)?.value as T | undefined;
}

export function metaNumber(f: GgufFile, key: string): number | undefined {
  const v = f.metadata.get(key);
  if (!v || v.type === GgufValueType.ARRAY) return undefined;
  return typeof v.value === 'bigint' ? Number(v.value) : (v.value as number);
}

/** a tensor's bytes as stored in the file (a file cut short inside them is an error naming the tensor) */
export function readTensorBytes(path: string, info: GgufTensorInfo): Buffer {
  const raw = Buffer.alloc(info.bytes);
  const fd = openSync(path, 'r');
  let got = 0;
  try {
    while (got < info.bytes) {
      const n = readSync(fd, raw, got, info.bytes - got, info.offset + got);
      if (n === 0) break;
      got += n;
    }
  } finally { closeSync(fd); }
  if (got < info.bytes) throw new GgufError(path, `tensor "${info.name}" is cut short (the file ends inside its data)`);
  return raw;
}
