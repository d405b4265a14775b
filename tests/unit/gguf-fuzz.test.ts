// A fuzz test of Hone's own GGUF reader, the check every command runs before anything native opens
// a model: 10,000 seeded mutations of a valid model's header (bytes flipped, counts and lengths
// set to extremes, values retyped, the file cut short). Each must either read or be refused with a
// GgufError naming the file: never another exception, never a hang, never a crash.
import { mkdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { T } from '../../electron/lab/engine/types.js';
import { Rng } from '../../electron/lab/data/pack.js';
import { GgufError, GgufValueType, readGguf } from '../../electron/lab/model/gguf.js';
import { kv, writeGguf } from '../../electron/lab/model/gguf-writer.js';
import { modelHeader } from '../../electron/lab/model/llama.js';
import { testDir } from '../helpers/models.js';
import { readFileSync } from 'node:fs';

const dir = join(testDir, `fuzz-${process.pid}`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** a valid llama GGUF, as small as a model can be: d 8, 1 layer, 2 heads, 16 tokens */
function seedModel(path: string) {
  const d = 8, ff = 16, V = 16;
  const md = new Map([
    ['general.architecture', kv.str('llama')],
    ['general.name', kv.str('fuzz seed')],
    ['llama.context_length', kv.u32(64)],
    ['llama.embedding_length', kv.u32(d)],
    ['llama.block_count', kv.u32(1)],
    ['llama.feed_forward_length', kv.u32(ff)],
    ['llama.attention.head_count', kv.u32(2)],
    ['llama.attention.head_count_kv', kv.u32(2)],
    ['llama.attention.layer_norm_rms_epsilon', kv.f32(1e-5)],
    ['llama.rope.freq_base', kv.f32(10000)],
    ['tokenizer.ggml.model', kv.str('llama')],
    ['tokenizer.ggml.tokens', { type: GgufValueType.ARRAY, itemType: GgufValueType.STRING, value: Array.from({ length: V }, (_, i) => `t${i}`) }],
  ]);
  const t = (name: string, shape: number[]) => ({ name, shape, type: T.F32, data: new Uint8Array(4 * shape.reduce((a, b) => a * b, 1)) });
  writeGguf(path, md, [
    t('token_embd.weight', [d, V]), t('output_norm.weight', [d]), t('output.weight', [d, V]),
    t('blk.0.attn_norm.weight', [d]), t('blk.0.attn_q.weight', [d, d]), t('blk.0.attn_k.weight', [d, d]), t('blk.0.attn_v.weight', [d, d]),
    t('blk.0.attn_output.weight', [d, d]), t('blk.0.ffn_norm.weight', [d]), t('blk.0.ffn_gate.weight', [d, ff]),
    t('blk.0.ffn_up.weight', [d, ff]), t('blk.0.ffn_down.weight', [ff, d]),
  ], { overwrite: true });
}

/** one mutation of the header bytes [0, headerEnd) of `base`, drawn from `rng` */
function mutate(base: Buffer, headerEnd: number, rng: Rng): { bytes: Buffer; size: number; what: string } {
  const b = Buffer.from(base);
  const at = () => Math.floor(rng.next() * headerEnd);
  const kind = Math.floor(rng.next() * 6);
  switch (kind) {
    case 0: { // a few bytes flipped
      const n = 1 + Math.floor(rng.next() * 4);
      for (let i = 0; i < n; i++) b[at()] ^= 1 + Math.floor(rng.next() * 255);
      return { bytes: b, size: b.length, what: `${n} bytes flipped` };
    }
    case 1: { // a u32 or u64 anywhere set to an extreme
      const p = Math.min(at(), b.length - 8);
      const v = [0n, 1n, 0xffffffffn, 0x7fffffffffffffffn, 0xffffffffffffffffn, 1n << 40n][Math.floor(rng.next() * 6)];
      if (rng.next() < 0.5) b.writeUInt32LE(Number(v & 0xffffffffn), p); else b.writeBigUInt64LE(v, p);
      return { bytes: b, size: b.length, what: `value ${v} at ${p}` };
    }
    case 2: { // cut short inside the header
      const size = at();
      return { bytes: b.subarray(0, size), size, what: `cut at ${size}` };
    }
    case 3: { // cut short inside the tensors' data
      const size = headerEnd + Math.floor(rng.next() * (b.length - headerEnd));
      return { bytes: b.subarray(0, size), size, what: `data cut at ${size}` };
    }
    case 4: { // a byte range shuffled
      const p = at(), n = Math.min(16, headerEnd - p);
      const piece = Array.from(b.subarray(p, p + n));
      rng.shuffle(piece).forEach((x, i) => { b[p + i] = x; });
      return { bytes: b, size: b.length, what: `bytes ${p}..${p + n} shuffled` };
    }
    default: { // a value type id retyped (u32 at a 4-aligned place set to a small type id)
      const p = at() & ~3;
      b.writeUInt32LE(Math.floor(rng.next() * 14), p);
      return { bytes: b, size: b.length, what: `type ${b.readUInt32LE(p)} at ${p}` };
    }
  }
}

describe("Hone's GGUF reader under 10,000 mutated headers", () => {
  it('reads each or refuses it with a GgufError naming the file', () => {
    mkdirSync(dir, { recursive: true });
    const seed = join(dir, 'seed.gguf');
    seedModel(seed);
    const base = readFileSync(seed);
    const headerEnd = readGguf(seed).dataOffset;
    expect(modelHeader(seed).hp.nLayer).toBe(1); // the seed itself is valid
    const rng = new Rng(20261207);
    const path = join(dir, 'case.gguf');
    const counts = { read: 0, refused: 0 };
    const wrong: string[] = [];
    for (let i = 0; i < 10_000; i++) {
      const m = mutate(base, headerEnd, rng);
      writeFileSync(path, m.bytes);
      truncateSync(path, m.size);
      try {
        const { hp } = modelHeader(path);
        // what reads is a model a graph can be built from
        const counts_ = [hp.nEmbd, hp.nLayer, hp.nHead, hp.nHeadKv, hp.headDim, hp.nFf, hp.nVocab, hp.nCtxTrain];
        if (!counts_.every((x) => Number.isInteger(x) && x > 0) || !(hp.rmsEps > 0) || !Number.isFinite(hp.rope.freqBase)) wrong.push(`case ${i} (${m.what}) read as ${JSON.stringify(hp)}`);
        counts.read++;
      } catch (e) {
        if (e instanceof GgufError && e.message.startsWith(`${path}: `)) counts.refused++;
        else if (wrong.length < 10) wrong.push(`case ${i} (${m.what}): ${(e as Error)?.constructor?.name}: ${(e as Error).message}`);
        else wrong.push('');
      }
    }
    expect(wrong, wrong.slice(0, 10).join('\n')).toEqual([]);
    expect(counts.refused).toBeGreaterThan(5000); // most mutations break something
    expect(counts.read).toBeGreaterThan(0); // some hit bytes that do not matter (names, values)
  }, 120_000);
});
