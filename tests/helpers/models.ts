// Tiny models for tests, made once per spec and cached in the OS temp folder.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTiny, type TinySpec } from '../../electron/lab/model/tiny.js';
import { readGguf } from '../../electron/lab/model/gguf.js';
import { native, projectRoot } from '../../electron/lab/engine/native.js';
import type { RefLayer, RefModel } from './reference.js';

/** the suite's scratch folder, under this run's TMPDIR; made here, so every test that imports it
 *  finds it whatever ran before (a fresh machine has no leftovers to lean on) */
export const testDir = join(tmpdir(), 'hone-tests');
mkdirSync(testDir, { recursive: true });

/** cached models are keyed by the factory's own source (the architectures' units write their
 *  tensors and metadata), so a change to it makes new ones */
const factorySources = ['model/tiny.ts', 'model/vocab.ts', 'model/gguf-writer.ts', 'model/architecture.ts', 'model/architectures.ts',
  ...readdirSync(join(projectRoot, 'electron/lab/model/arch')).sort().map((f) => `model/arch/${f}`)];
const factoryVersion = createHash('sha256')
  .update(factorySources.map((f) => readFileSync(join(projectRoot, 'electron/lab', f), 'utf8')).join())
  .digest('hex')
  .slice(0, 10);

export function tinyModel(spec: Partial<TinySpec>): string {
  mkdirSync(testDir, { recursive: true });
  const key = Object.entries(spec).sort().map(([k, v]) => `${k}-${v}`).join('_') || 'default';
  const path = join(testDir, `tiny_${factoryVersion}_${key}.gguf`);
  if (!existsSync(path)) {
    const tmp = `${path}.${process.pid}.gguf`;
    makeTiny(tmp, spec, { overwrite: true });
    renameSync(tmp, path);
  }
  return path;
}

/** Every tensor of a GGUF, dequantized to float64 by ggml's own dequantizer. */
export function readTensorsF64(path: string): Map<string, Float64Array> {
  const f = readGguf(path);
  const fd = openSync(path, 'r');
  const out = new Map<string, Float64Array>();
  for (const t of f.tensors) {
    const raw = Buffer.alloc(t.bytes);
    readSync(fd, raw, 0, t.bytes, t.offset);
    const n = t.shape.reduce((a, b) => a * b, 1);
    out.set(t.name, Float64Array.from(native().dequantize(t.type, raw, n)));
  }
  closeSync(fd);
  return out;
}

/** the float64 reference of a GGUF; its arrays are `w`'s (perturb them for finite differences) */
export function refModelOf(path: string, w = readTensorsF64(path)): RefModel {
  const f = readGguf(path);
  const arch = f.metadata.get('general.architecture')!.value as string;
  const num = (k: string) => Number(f.metadata.get(`${arch}.${k}`)?.value);
  const d = num('embedding_length'), nHead = num('attention.head_count');
  const hd = Number(f.metadata.get(`${arch}.attention.key_length`)?.value ?? d / nHead);
  const gemma = arch === 'gemma3';
  const window = num('attention.sliding_window'), period = num('attention.sliding_window_pattern');
  const layers: RefLayer[] = [];
  for (let i = 0; i < num('block_count'); i++) {
    const g = (n: string) => w.get(`blk.${i}.${n}`)!;
    layers.push({
      attnNorm: g('attn_norm.weight'), ffnNorm: g('ffn_norm.weight'),
      wq: g('attn_q.weight'), wk: g('attn_k.weight'), wv: g('attn_v.weight'), wo: g('attn_output.weight'),
      bq: w.get(`blk.${i}.attn_q.bias`), bk: w.get(`blk.${i}.attn_k.bias`), bv: w.get(`blk.${i}.attn_v.bias`),
      qNorm: w.get(`blk.${i}.attn_q_norm.weight`), kNorm: w.get(`blk.${i}.attn_k_norm.weight`),
      postAttnNorm: w.get(`blk.${i}.post_attention_norm.weight`), postFfnNorm: w.get(`blk.${i}.post_ffw_norm.weight`),
      wGate: g('ffn_gate.weight'), wUp: g('ffn_up.weight'), wDown: g('ffn_down.weight'),
      // gemma3: every period-th layer global, the others windowed (llama.cpp's set_swa_pattern)
      swa: gemma && window > 0 && i % period < period - 1 ? { window, ropeBase: num('rope.freq_base_swa') } : undefined,
    });
  }
  return {
    d, nHead, nHeadKv: num('attention.head_count_kv'), hd, ff: num('feed_forward_length'),
    vocab: num('vocab_size'), eps: num('attention.layer_norm_rms_epsilon'), ropeBase: num('rope.freq_base'),
    neox: arch !== 'llama', ropeFreqs: w.get('rope_freqs.weight'),
    ...(gemma && { embedScale: Math.sqrt(d), attnScale: 1 / Math.sqrt(hd), gelu: true }),
    tokEmbd: w.get('token_embd.weight')!, outputNorm: w.get('output_norm.weight')!,
    output: w.get('output.weight') ?? w.get('token_embd.weight')!, layers,
  };
}

/** A short English text tokenized by the model's own vocabulary. */
export const SAMPLE_TEXT = 'The quick brown fox jumps over the lazy dog. Hone trains language models on one GPU, then prunes and quantizes them.';
