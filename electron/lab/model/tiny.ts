// The tiny model factory (`hone make-tiny`): a GGUF of any architecture unit (model/arch/), laid out
// as the unit describes its blocks, with seeded random weights and a real tokenizer vocabulary, in
// any weight type ggml can quantize to. Tests and the demo use it.
import { GgufValueType, readGguf, type GgufValue } from './gguf.js';
import { availableParallelism } from 'node:os';
import { VOCABS, vocabPath, type VocabName } from './vocab.js';
import { kv, writeGguf, type GgufTensorOut } from './gguf-writer.js';
import { native } from '../engine/native.js';
import { GGML_TYPES, T, ggmlTypeByName, rowBytes } from '../engine/types.js';
import { WEIGHT_TYPES } from './llama.js';
import { ARCHITECTURES, ARCHITECTURE_NAMES } from './architectures.js';

export interface TinySpec {
  /** an architecture unit's name: llama, qwen2, qwen3, phi3 */
  arch: string;
  vocab: VocabName;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  nHeadKv: number;
  /** each head's size; 0: embedding / heads (Gemma's heads are wider than that) */
  headDim: number;
  nFf: number;
  nCtx: number;
  /** weight type of the 2-D tensors: f32, f16, bf16, q8_0, q4_k, … (norms stay F32) */
  type: string;
  ropeBase: number;
  /** Llama-3 style rope frequency factors (a rope_freqs.weight tensor) */
  ropeFreqs: boolean;
  tied: boolean;
  seed: number;
}

export const TINY_DEFAULTS: TinySpec = {
  arch: 'llama', vocab: 'llama-spm', nEmbd: 64, nLayer: 2, nHead: 4, nHeadKv: 4, headDim: 0, nFf: 160, nCtx: 256,
  type: 'f32', ropeBase: 10000, ropeFreqs: false, tied: false, seed: 1,
};

/** Seeded normal samples: mulberry32 + Box-Muller. */
export function randn(seed: number, n: number, std: number, mean = 0): Float32Array {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(next(), 1e-12), v = next();
    const r = Math.sqrt(-2 * Math.log(u));
    out[i] = mean + std * r * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) out[i + 1] = mean + std * r * Math.sin(2 * Math.PI * v);
  }
  return out;
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

export function makeTiny(path: string, partial: Partial<TinySpec> = {}, opts: { overwrite?: boolean } = {}): TinySpec {
  const spec: TinySpec = { ...TINY_DEFAULTS, ...Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined)) };
  const unit = ARCHITECTURES[spec.arch];
  if (!unit) throw new Error(`--arch must be one of ${ARCHITECTURE_NAMES.join(', ')}, got "${spec.arch}"`);
  if (partial.arch && !partial.vocab) spec.vocab = unit.tiny.vocab;
  const { arch, nEmbd: d, nHead, nHeadKv, nFf, nLayer } = spec;
  const sizes: [string, number][] = [['embd', d], ['layers', nLayer], ['heads', nHead], ['kv-heads', nHeadKv], ['ff', nFf], ['ctx', spec.nCtx]];
  for (const [flag, v] of sizes) if (!Number.isInteger(v) || v < 1 || v > 2 ** 20) throw new Error(`--${flag} must be a whole number from 1 to ${2 ** 20}, got ${v}`);
  const wtype = ggmlTypeByName(spec.type);
  if (!WEIGHT_TYPES.has(wtype.id)) throw new Error(`weight type ${wtype.name} cannot be multiplied by ggml; choose f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k …`);
  if (native().typeInfo(wtype.id)?.needsImatrix) throw new Error(`weight type ${wtype.name} needs an importance matrix to quantize; choose another type`);
  if (!spec.headDim && d % nHead !== 0) throw new Error(`embedding ${d} is not divisible by ${nHead} heads`);
  if (nHead % nHeadKv !== 0) throw new Error(`${nHead} heads are not a multiple of ${nHeadKv} KV heads`);
  if (!Number.isInteger(spec.headDim) || spec.headDim < 0 || spec.headDim % 2) throw new Error(`--head-dim must be an even whole number, got ${spec.headDim}`);
  const hd = spec.headDim || d / nHead;
  if (d % wtype.blockSize !== 0) throw new Error(`${wtype.name} packs rows in blocks of ${wtype.blockSize}; the embedding size (${d}) must be a multiple of it`);

  const vocabFile = readGguf(vocabPath(spec.vocab));
  const md = new Map<string, GgufValue>();
  md.set('general.architecture', kv.str(arch));
  md.set('general.name', kv.str(`hone-tiny-${arch}-${spec.type}`));
  md.set('general.file_type', kv.u32(wtype.id === T.F32 ? 0 : wtype.id === T.F16 ? 1 : wtype.id));
  md.set(`${arch}.context_length`, kv.u32(spec.nCtx));
  md.set(`${arch}.embedding_length`, kv.u32(d));
  md.set(`${arch}.block_count`, kv.u32(nLayer));
  md.set(`${arch}.feed_forward_length`, kv.u32(nFf));
  md.set(`${arch}.attention.head_count`, kv.u32(nHead));
  md.set(`${arch}.attention.head_count_kv`, kv.u32(nHeadKv));
  md.set(`${arch}.attention.layer_norm_rms_epsilon`, kv.f32(1e-5));
  md.set(`${arch}.rope.freq_base`, kv.f32(spec.ropeBase));
  md.set(`${arch}.rope.dimension_count`, kv.u32(hd));
  if (spec.headDim) {
    md.set(`${arch}.attention.key_length`, kv.u32(hd));
    md.set(`${arch}.attention.value_length`, kv.u32(hd));
  }
  for (const [k, v] of Object.entries(unit.tinyMeta?.(nLayer) ?? {})) md.set(`${arch}.${k}`, v);
  for (const [k, v] of vocabFile.metadata) if (k.startsWith('tokenizer.')) md.set(k, v);
  const nVocab = (vocabFile.metadata.get('tokenizer.ggml.tokens')!.value as unknown[]).length;
  // each tensor's bytes are built in memory at once, in one buffer of at most 4 GiB
  const largest = Math.max(nFf, nVocab) * rowBytes(wtype.id, d);
  if (largest > 2 ** 32) throw new Error(`a model of embedding ${d}, feed-forward ${nFf} and ${nVocab} tokens has a ${(largest / 2 ** 30).toFixed(1)} GiB tensor, more than the 4 GiB make-tiny builds at once: choose a smaller --embd or --ff`);
  md.set(`${arch}.vocab_size`, kv.u32(nVocab));
  const template = VOCABS[spec.vocab].template;
  if (unit.tiny.template && spec.vocab === unit.tiny.vocab) md.set('tokenizer.chat_template', kv.str(unit.tiny.template));
  else if (!md.has('tokenizer.chat_template') && template) md.set('tokenizer.chat_template', kv.str(template));
  if (!md.has('tokenizer.ggml.add_bos_token')) md.set('tokenizer.ggml.add_bos_token', { type: GgufValueType.BOOL, value: unit.tiny.addBos });

  const tensors: GgufTensorOut[] = [];
  const threads = availableParallelism();
  const add = (name: string, shape: number[], std: number, mean = 0, want = wtype.id) => {
    // as llama.cpp's quantizer does, rows that do not fill whole blocks fall back to F16
    const type = shape[0] % GGML_TYPES.get(want)!.blockSize === 0 ? want : T.F16;
    const rows = shape.slice(1).reduce((a, b) => a * b, 1);
    // randn's values, generated and quantized natively on every core, a row range per thread
    tensors.push({ name, shape, type, data: () => native().randomTensor(type, rows, shape[0], (hash(name) ^ spec.seed) >>> 0, std, mean, threads) });
  };
  add('token_embd.weight', [d, nVocab], unit.tiny.embedStd?.(d) ?? 1);
  add('output_norm.weight', [d], 0.1, 1, T.F32);
  if (!spec.tied) add('output.weight', [d, nVocab], 2 / Math.sqrt(d));
  if (spec.ropeFreqs) {
    // Llama-3 style: low frequencies stretched by up to 8, as its conversion computes them (phi3's
    // short long-rope factors are the same kind of tensor)
    if (!unit.ropeFactors) throw new Error(`${arch} models have no rope frequency factors`);
    const f = new Float32Array(hd / 2).map((_, i) => 1 + (7 * i) / Math.max(1, hd / 2 - 1));
    tensors.push({ name: unit.ropeFactors, shape: [hd / 2], type: T.F32, data: new Uint8Array(f.buffer) });
  }
  const dims = { d, nq: hd * nHead, nkv: hd * nHeadKv, hd, ff: nFf };
  for (let i = 0; i < nLayer; i++) {
    for (const t of unit.block(dims)) {
      if (t.optional && !t.tiny) continue;
      const name = `blk.${i}.${t.name}`;
      if (t.shape.length > 1) add(name, t.shape, 1 / Math.sqrt(t.shape[0])); // a weight [in, out]
      else if (t.name.includes('norm')) add(name, t.shape, 0.1, 1, T.F32);
      else add(name, t.shape, 0.1, 0, T.F32); // a bias
    }
  }
  writeGguf(path, md, tensors, opts);
  return spec;
}

