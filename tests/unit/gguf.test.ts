// GGUF reading and writing, and every way a model file can be wrong.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, openSync, readFileSync, truncateSync, writeFileSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GgufError, GgufValueType, readGguf } from '../../electron/lab/model/gguf.js';
import { writeGguf, kv } from '../../electron/lab/model/gguf-writer.js';
import { LlamaModel, attnTempAt, describe as describeModel, yarnAttnFactor } from '../../electron/lab/model/llama.js';
import { openEngine } from '../../electron/lab/engine/backend.js';
import { T } from '../../electron/lab/engine/types.js';
import { testDir, tinyModel } from '../helpers/models.js';

const dir = join(testDir, 'bad-input');
mkdirSync(dir, { recursive: true });

function honeCli(...args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', 'electron/cli/hone.ts', ...args], { encoding: 'utf8' });
}

/** the CLI fails with exit 1 and one line on stderr naming the file and the problem */
function expectCleanFailure(file: string, pattern: RegExp) {
  const r = honeCli('info', file);
  expect(r.status).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toContain(file);
  expect(lines[0]).toMatch(pattern);
}

describe('GGUF round trip', () => {
  it('writes metadata of every type and tensors that read back byte for byte', () => {
    const path = join(dir, 'roundtrip.gguf');
    const md = new Map([
      ['general.architecture', kv.str('llama')],
      ['test.u32', kv.u32(7)],
      ['test.f32', kv.f32(0.5)],
      ['test.bool', kv.bool(true)],
      ['test.i64', { type: GgufValueType.I64, value: -5n } as const],
      ['test.arr', { type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value: ['a', 'b', 'ç'] } as const],
    ]);
    const data = new Float32Array([1, 2, 3, 4, 5, 6]);
    writeGguf(path, md as never, [{ name: 'x', shape: [3, 2], type: T.F32, data: new Uint8Array(data.buffer) }], { overwrite: true });
    const f = readGguf(path);
    expect(f.metadata.get('test.u32')?.value).toBe(7);
    expect(f.metadata.get('test.f32')?.value).toBe(0.5);
    expect(f.metadata.get('test.bool')?.value).toBe(true);
    expect(f.metadata.get('test.i64')?.value).toBe(-5n);
    expect(f.metadata.get('test.arr')?.value).toEqual(['a', 'b', 'ç']);
    expect(f.tensors).toEqual([{ name: 'x', shape: [3, 2], type: T.F32, offset: f.dataOffset, bytes: 24 }]);
    expect(f.dataOffset % 32).toBe(0);
    const raw = readFileSync(path).subarray(f.dataOffset, f.dataOffset + 24);
    expect(new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + 24))).toEqual(data);
  });

  it('refuses to overwrite an existing file unless asked', () => {
    const path = join(dir, 'exists.gguf');
    writeFileSync(path, 'keep me');
    expect(() => writeGguf(path, new Map(), [])).toThrow(/already exists/);
    expect(readFileSync(path, 'utf8')).toBe('keep me');
  });

  it('reads the vocabulary, hyperparameters and tensor table of a tiny model', () => {
    const f = readGguf(tinyModel({}));
    const d = describeModel(f);
    expect(d.hparams).toMatchObject({ arch: 'llama', nVocab: 32000, nEmbd: 64, nLayer: 2, nHead: 4, nHeadKv: 4, nFf: 160 });
    const perLayer = 2 * 64 /* norms */ + 4 * 64 * 64 /* q k v o */ + 3 * 64 * 160 /* gate up down */;
    expect(d.parameters).toBe(2 * 64 * 32000 /* embedding, output */ + 64 /* output norm */ + 2 * perLayer);
  });
});

describe('mistral3', () => {
  it('reads YaRN and the attention temperature', () => {
    const path = tinyModel({ arch: 'mistral3', vocab: 'llama-spm' });
    const hp = describeModel(readGguf(path)).hparams;
    // ×4 YaRN over 16 positions; no log multiplier: ggml multiplies back the 1 + 0.1·ln 4 it is divided by
    expect(hp.rope).toMatchObject({ freqScale: 0.25, extFactor: 1, betaFast: 32, betaSlow: 1, nCtxOrig: 16, attnFactor: 1 });
    expect(hp.math.attnTemp).toEqual({ scale: Math.fround(0.1), from: 16 });
    expect(yarnAttnFactor(4, 1)).toBeCloseTo(1 / (1 + 0.1 * Math.log(4)), 6);
    // 1 below the original context, then 1 + β·ln(⌊p/16⌋ + 1)
    const t = hp.math.attnTemp!;
    expect([0, 15, 16, 47, 48].map((p) => attnTempAt(p, t))).toEqual([1, 1, 1 + t.scale * Math.log(2), 1 + t.scale * Math.log(3), 1 + t.scale * Math.log(4)]);
  });
});

describe('bad model files give one clear error naming the file', () => {
  const good = tinyModel({});

  it('a file that is not GGUF', () => {
    const path = join(dir, 'notes.gguf');
    writeFileSync(path, 'these are my notes, not a model\n');
    expect(() => readGguf(path)).toThrow(GgufError);
    expect(() => readGguf(path)).toThrow(/notes\.gguf: not a GGUF file/);
    expectCleanFailure(path, /not a GGUF file/);
  });

  it('a GGUF cut short inside its tensor data', () => {
    const path = join(dir, 'cut-data.gguf');
    copyFileSync(good, path);
    const size = readFileSync(path).length;
    truncateSync(path, size - 1000);
    expect(() => readGguf(path)).toThrow(/cut-data\.gguf: the file is cut short: tensor "blk\.1\.ffn_down\.weight"/);
    expectCleanFailure(path, /cut short/);
  });

  it('a GGUF cut short inside its header', () => {
    const path = join(dir, 'cut-header.gguf');
    copyFileSync(good, path);
    truncateSync(path, 5000);
    expect(() => readGguf(path)).toThrow(/cut-header\.gguf: the file is cut short in metadata "tokenizer\.ggml\.tokens"/);
    expectCleanFailure(path, /cut short/);
  });

  it('a tensor of a type ggml does not know', () => {
    const path = join(dir, 'unknown-type.gguf');
    writeGguf(path, new Map([['general.architecture', kv.str('llama')]]), [{ name: 'mystery', shape: [4], type: T.F32, data: new Uint8Array(16) }], { overwrite: true });
    // patch the type id (u32 after name, n_dims and one u64 dim) to 99
    const buf = readFileSync(path);
    const at = buf.indexOf(Buffer.from('mystery')) + 7 + 4 + 8;
    expect(buf.readUInt32LE(at)).toBe(T.F32);
    const fd = openSync(path, 'r+');
    const b = Buffer.alloc(4);
    b.writeUInt32LE(99);
    writeSync(fd, b, 0, 4, at);
    closeSync(fd);
    expect(() => readGguf(path)).toThrow(/unknown-type\.gguf: tensor "mystery" has unknown type id 99/);
    expectCleanFailure(path, /unknown type id 99/);
  });

  it('a model missing a tensor its architecture needs', () => {
    const path = join(dir, 'missing-tensor.gguf');
    const f = readGguf(good);
    const keep = f.tensors.filter((t) => t.name !== 'blk.1.ffn_up.weight');
    const raw = readFileSync(good);
    writeGguf(path, f.metadata, keep.map((t) => ({ name: t.name, shape: t.shape, type: t.type, data: raw.subarray(t.offset, t.offset + t.bytes) })), { overwrite: true });
    const engine = openEngine({ backend: 'cpu' });
    expect(() => LlamaModel.load(path, engine)).toThrow(/missing-tensor\.gguf: tensor "blk\.1\.ffn_up\.weight" is missing/);
    engine.free();
    expectCleanFailure(path, /is missing/);
  });

  it('an architecture Hone cannot train is refused by name with the list it can', () => {
    const path = join(dir, 'gpt2.gguf');
    writeGguf(path, new Map([['general.architecture', kv.str('gpt2')]]), [], { overwrite: true });
    expectCleanFailure(path, /architecture "gpt2" is not one Hone can train; Hone trains llama, qwen2, qwen3, phi3, gemma3/);
  });

  it('a file that does not exist', () => {
    expectCleanFailure(join(dir, 'nowhere.gguf'), /cannot open/);
  });
});
