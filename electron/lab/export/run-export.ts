// Exports of a trained run (LoRA, HUT, MoS): llama.cpp adapter GGUF, merged GGUF (F32, F16 or Q8_0), PEFT
// adapter (safetensors + adapter_config.json, Hugging Face names), and an Ollama Modelfile.
// Every file goes to a temp name first; existing files are never overwritten without `overwrite`.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, renameSync, writeFileSync } from 'node:fs';
import { makeFolder } from '../store/folders.js';
import { basename, join, relative, resolve } from 'node:path';
import { native } from '../engine/native.js';
import { T } from '../engine/types.js';
import { GgufValueType, readGguf, type GgufFile, type GgufValue } from '../model/gguf.js';
import { hparamsOf, type Hparams, type Module } from '../model/llama.js';
import { listCheckpoints } from '../tune/checkpoint.js';
import { GGUF_NAMES, moduleDims } from '../tune/adapter.js';
import { isFullParameter, mosSettings } from '../tune/methods.js';
import { assembleRows } from '../tune/mos.js';
import { readMasks } from '../model/masks.js';
import { writeFileAtomic } from '../store/atomic-file.js';
import type { TrainConfig } from '../tune/run.js';
import { kv, writeGguf, type GgufTensorOut } from '../model/gguf-writer.js';

export type ExportFormat = 'adapter' | 'merged' | 'peft' | 'ollama';
export const EXPORT_FORMATS: ExportFormat[] = ['adapter', 'merged', 'peft', 'ollama'];
export type MergedType = 'f32' | 'f16' | 'q8_0';

export interface TrainedRun {
  config: TrainConfig;
  checkpoint: string;
  step: number;
  base: GgufFile;
  hp: Hparams;
  /** LoRA-shaped adapters per weight (blk.N.attn_q.weight): A [in, r] and B [r, out] in ggml order.
   *  LoRA's own; MoS's assembled per layer from its shard pools; none for HUT. */
  pairs: { weight: string; layer: number; module: Module; a: Float32Array; b: Float32Array; inDim: number; outDim: number }[];
  scale: number;
  /** whether the run trained the base weight `name` */
  trains(name: string): boolean;
  /** folds the training into the dequantized base weight `name` (ggml order, [out][in] rows) in place */
  merge(name: string, w: Float32Array): void;
}

/** The run's newest checkpoint, read for export. */
export function loadTrainedRun(runDir: string): TrainedRun {
  const cfgPath = join(runDir, 'config.json');
  if (!existsSync(cfgPath)) throw new Error(`${runDir} is not a Hone run (config.json is missing)`);
  const config = JSON.parse(readFileSync(cfgPath, 'utf8')) as TrainConfig;
  config.method ??= 'lora';
  const cks = listCheckpoints(runDir);
  if (!cks.length) throw new Error(`${runDir} has no checkpoint yet; train first`);
  const checkpoint = cks[cks.length - 1];
  const ck = readGguf(checkpoint);
  const raw = readFileSync(checkpoint);
  const bytes = (name: string) => {
    const t = ck.tensors.find((x) => x.name === name);
    if (!t) throw new Error(`${checkpoint}: tensor ${name} is missing`);
    return { buf: raw.buffer.slice(raw.byteOffset + t.offset, raw.byteOffset + t.offset + t.bytes), shape: t.shape };
  };
  const f32 = (name: string) => { const x = bytes(name); return { data: new Float32Array(x.buf), shape: x.shape }; };
  const base = readGguf(config.model);
  const hp = hparamsOf(base);
  const r = config.rank, scale = config.alpha / config.rank;
  const pairs: TrainedRun['pairs'] = [];
  const transforms = new Map<string, (w: Float32Array) => void>();
  let masks: Map<string, Uint8Array> | undefined;
  const perpMasks = () => (masks ??= readMasks(config.perpMasks!));
  for (let layer = 0; layer < hp.nLayer && !isFullParameter(config.method); layer++) {
    for (const module of config.targets) {
      const weight = `blk.${layer}.${GGUF_NAMES[module]}.weight`;
      const [inDim, outDim] = moduleDims(hp, module);
      if (config.method === 'lora') {
        pairs.push({ weight, layer, module, a: f32(`${weight}.lora_a`).data, b: f32(`${weight}.lora_b`).data, inDim, outDim });
      } else if (config.method === 'mos') {
        const m = mosSettings(config);
        const idx = (side: string) => new Int32Array(bytes(`mos.${layer}.${module}.idx_${side}`).buf);
        const a = assembleRows(f32(`mos.${module}.pool_a`).data, inDim / m.shards, idx('a'), r, m.shards); // [r][in]
        const bt = assembleRows(f32(`mos.${module}.pool_b`).data, outDim / m.shards, idx('b'), r, m.shards); // [r][out]
        const b = new Float32Array(outDim * r);
        for (let j = 0; j < r; j++) for (let o = 0; o < outDim; o++) b[o * r + j] = bt[j * outDim + o];
        pairs.push({ weight, layer, module, a, b, inDim, outDim });
      } else if (config.method === 'hut' && (config.hutForm ?? 'scaling') === 'scaling') {
        const ma = f32(`${weight}.hut_ma`).data, mb = f32(`${weight}.hut_mb`).data; // [out][r], [in][r]
        const sums = (m: Float32Array, n: number) => Float64Array.from({ length: n }, (_, i) => m.subarray(i * r, (i + 1) * r).reduce((x, y) => x + y, 0));
        const av = sums(ma, outDim), bv = sums(mb, inDim);
        transforms.set(weight, (w) => { for (let o = 0; o < outDim; o++) for (let i = 0; i < inDim; i++) w[o * inDim + i] *= av[o] * bv[i]; });
      } else if (config.method === 'perp') {
        if (!r) continue;
        // MaskLoRA: W += s·(BA ⊙ M) with the pruning stage's mask, so pruned weights stay exactly zero
        const a = f32(`${weight}.lora_a`).data, b = f32(`${weight}.lora_b`).data;
        const keep = config.perpMasks ? perpMasks().get(weight) : new Uint8Array(inDim * outDim).fill(1);
        if (!keep) throw new Error(`${config.perpMasks}: no mask for ${weight}`);
        transforms.set(weight, (w) => {
          const d = new Float32Array(w.length);
          addLoraDelta(d, a, b, inDim, outDim, r, scale);
          for (let k = 0; k < w.length; k++) if (keep[k]) w[k] += d[k]; else w[k] = 0;
        });
      } else if (config.method === 'hut') {
        const a = f32(`${weight}.hut_a`).data, b = f32(`${weight}.hut_b`).data;
        transforms.set(weight, (w) => {
          const d = new Float32Array(w.length);
          addLoraDelta(d, a, b, inDim, outDim, r, scale);
          for (let k = 0; k < w.length; k++) w[k] *= 1 + d[k];
        });
      }
    }
  }
  for (const p of pairs) transforms.set(p.weight, (w) => addLoraDelta(w, p.a, p.b, p.inDim, p.outDim, r, scale));
  if (config.method === 'perp') {
    // PERP's trained norms and biases replace the base's
    for (const t of ck.tensors) if (t.name.endsWith('.perp')) { const name = t.name.slice(0, -'.perp'.length); transforms.set(name, (w) => w.set(f32(t.name).data)); }
  }
  if (isFullParameter(config.method)) {
    // full-parameter runs checkpoint every weight under its own name: the trained F32 values replace the base's
    const baseNames = new Set(base.tensors.map((t) => t.name));
    for (const t of ck.tensors) if (baseNames.has(t.name)) transforms.set(t.name, (w) => w.set(f32(t.name).data));
  }
  const step = JSON.parse(String(ck.metadata.get('hone.checkpoint')!.value)).step as number;
  return {
    config, checkpoint, step, base, hp, pairs, scale,
    trains: (name) => transforms.has(name),
    merge: (name, w) => transforms.get(name)?.(w),
  };
}

/** formats that carry a LoRA-shaped adapter: not for HUT, whose update is not an added B·A */
function needsPairs(l: TrainedRun, format: string) {
  if (isFullParameter(l.config.method)) throw new Error(`a ${l.config.method} run trained every weight, so it has no ${format} form: export it as --format merged (or ollama)`);
  if (l.config.method === 'hut') throw new Error(`HUT transforms each trained weight instead of adding a low-rank term, so it has no ${format} form: export it as --format merged (or ollama)`);
}

const f32bytes = (x: Float32Array) => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);

/** llama.cpp's LoRA adapter GGUF: blk.N.<name>.weight.lora_a [in, r] / .lora_b [r, out], adapter.lora.alpha */
export function exportAdapterGguf(l: TrainedRun, path: string, overwrite = false) {
  needsPairs(l, 'llama.cpp adapter');
  const md = new Map<string, GgufValue>([
    ['general.architecture', kv.str(l.hp.arch)],
    ['general.type', kv.str('adapter')],
    ['general.name', kv.str(`${basename(l.config.model, '.gguf')}-hone-lora`)],
    ['adapter.type', kv.str('lora')],
    ['adapter.lora.alpha', kv.f32(l.config.alpha)],
  ]);
  const tensors: GgufTensorOut[] = l.pairs.flatMap((p) => [
    { name: `${p.weight}.lora_a`, shape: [p.inDim, l.config.rank], type: T.F32, data: f32bytes(p.a) },
    { name: `${p.weight}.lora_b`, shape: [l.config.rank, p.outDim], type: T.F32, data: f32bytes(p.b) },
  ]);
  writeGguf(path, md, tensors, { overwrite });
}

/** W [out][in] += s · B A, with A [r][in] and B [out][r] (row-major views of the ggml tensors) */
export function addLoraDelta(w: Float32Array, a: Float32Array, b: Float32Array, inDim: number, outDim: number, r: number, s: number) {
  for (let o = 0; o < outDim; o++) {
    const row = o * inDim;
    for (let k = 0; k < r; k++) {
      const c = s * b[o * r + k];
      if (c === 0) continue;
      const ak = k * inDim;
      for (let i = 0; i < inDim; i++) w[row + i] += c * a[ak + i];
    }
  }
}

const FILE_TYPE: Record<MergedType, number> = { f32: 0, f16: 1, q8_0: 7 };
const TYPE_ID: Record<MergedType, number> = { f32: T.F32, f16: T.F16, q8_0: T.Q8_0 };

/** The base with the adapter folded in, every 2-D weight stored as `type` (norms stay F32). */
export function exportMergedGguf(l: TrainedRun, path: string, type: MergedType, overwrite = false) {
  const fd = openSync(l.base.path, 'r');
  try {
    const tensors: GgufTensorOut[] = l.base.tensors.map((t) => {
      const is2d = t.shape.length >= 2;
      const rowLen = t.shape[0];
      const rows = t.shape.slice(1).reduce((a, b) => a * b, 1);
      const target = !is2d ? t.type : rowLen % 32 === 0 || type !== 'q8_0' ? TYPE_ID[type] : T.F16;
      const trained = l.trains(t.name);
      return {
        name: t.name, shape: t.shape, type: target,
        data: () => {
          const raw = Buffer.alloc(t.bytes);
          readSync(fd, raw, 0, t.bytes, t.offset);
          if (!trained && target === t.type) return raw;
          const w = native().dequantize(t.type, raw, rowLen * rows);
          l.merge(t.name, w);
          return target === T.F32 ? f32bytes(w) : native().quantize(target, w, rows, rowLen);
        },
      };
    });
    const md = new Map(l.base.metadata);
    md.set('general.file_type', kv.u32(FILE_TYPE[type]));
    md.set('general.name', kv.str(`${String(l.base.metadata.get('general.name')?.value ?? basename(l.config.model, '.gguf'))}-hone`));
    writeGguf(path, md, tensors, { overwrite });
  } finally {
    closeSync(fd);
  }
}

const HF_NAMES: Record<Module, string> = {
  q: 'self_attn.q_proj', k: 'self_attn.k_proj', v: 'self_attn.v_proj', o: 'self_attn.o_proj', gate: 'mlp.gate_proj', up: 'mlp.up_proj', down: 'mlp.down_proj',
};

/**
 * llama.cpp's converter permutes q and k rows of llama models (rotary pairs interleaved); Hugging
 * Face keeps halves. For output row index `g` in GGUF order, the row in Hugging Face order.
 */
export function hfRowOfGguf(g: number, headDim: number): number {
  const h = Math.floor(g / headDim), j = Math.floor((g % headDim) / 2), s = g % 2;
  return h * headDim + s * (headDim / 2) + j;
}

/** PEFT adapter: adapter_model.safetensors + adapter_config.json, as PEFT writes them for a llama model. */
export function exportPeft(l: TrainedRun, dir: string, overwrite = false) {
  needsPairs(l, 'PEFT adapter');
  makeFolder(dir, 'the export folder');
  const files = [join(dir, 'adapter_model.safetensors'), join(dir, 'adapter_config.json')];
  for (const f of files) if (!overwrite && existsSync(f)) throw new Error(`${f} already exists; choose another folder or remove it first`);
  const r = l.config.rank;
  const entries: { name: string; shape: number[]; data: Float32Array }[] = [];
  for (const p of l.pairs) {
    let b = p.b; // [out][r]
    if (l.hp.arch === 'llama' && (p.module === 'q' || p.module === 'k')) {
      b = new Float32Array(p.b.length);
      for (let g = 0; g < p.outDim; g++) b.set(p.b.subarray(g * r, (g + 1) * r), hfRowOfGguf(g, l.hp.headDim) * r);
    }
    const prefix = `base_model.model.model.layers.${p.layer}.${HF_NAMES[p.module]}`;
    entries.push({ name: `${prefix}.lora_A.weight`, shape: [r, p.inDim], data: p.a });
    entries.push({ name: `${prefix}.lora_B.weight`, shape: [p.outDim, r], data: b });
  }
  writeFileAtomic(files[0], safetensors(entries));
  const targets = [...new Set(l.config.targets.map((m) => HF_NAMES[m].split('.')[1]))];
  writeFileAtomic(files[1], Buffer.from(JSON.stringify({
    peft_type: 'LORA', task_type: 'CAUSAL_LM', r, lora_alpha: l.config.alpha, lora_dropout: 0, target_modules: targets, bias: 'none',
    fan_in_fan_out: false, inference_mode: true, base_model_name_or_path: String(l.base.metadata.get('general.name')?.value ?? basename(l.config.model)),
  }, null, 2)));
}

/** safetensors: u64 header length, JSON header, then the tensors' bytes */
export function safetensors(entries: { name: string; shape: number[]; data: Float32Array }[]): Buffer {
  let offset = 0;
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  for (const e of entries) {
    header[e.name] = { dtype: 'F32', shape: e.shape, data_offsets: [offset, offset + e.data.byteLength] };
    offset += e.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([len, Buffer.from(json), ...entries.map((e) => Buffer.from(f32bytes(e.data)))]);
}

/** the text of the model's end-of-turn / end-of-sequence tokens, for Ollama's stop parameters */
export function stopStrings(f: GgufFile): string[] {
  const tokens = f.metadata.get('tokenizer.ggml.tokens');
  if (!tokens || tokens.type !== GgufValueType.ARRAY) return [];
  const ids = ['tokenizer.ggml.eot_token_id', 'tokenizer.ggml.eos_token_id'].map((k) => f.metadata.get(k)?.value).filter((v) => v !== undefined).map(Number);
  return [...new Set(ids.map((i) => String(tokens.value[i])))];
}

/** An Ollama Modelfile beside `ggufPath` (a merged model), or base + ADAPTER for an adapter. */
export function exportModelfile(l: TrainedRun, dir: string, ggufPath: string, kind: 'merged' | 'adapter', overwrite = false) {
  const path = join(dir, kind === 'merged' ? 'Modelfile' : 'Modelfile.adapter');
  if (!overwrite && existsSync(path)) throw new Error(`${path} already exists`);
  const rel = (p: string) => (p.startsWith('/') || p.startsWith('.') ? p : `./${p}`);
  const lines = kind === 'merged'
    ? [`FROM ${rel(relative(dir, ggufPath))}`]
    : [`FROM ${resolve(l.config.model)}`, `ADAPTER ${rel(relative(dir, ggufPath))}`];
  for (const s of stopStrings(l.base)) lines.push(`PARAMETER stop ${JSON.stringify(s)}`);
  writeFileAtomic(path, Buffer.from(`# Made by Hone from ${basename(l.config.model)} (step ${l.step})\n${lines.join('\n')}\n`));
  return path;
}


/**
 * Writes one export format of a trained run into `dir` and returns the files written. With
 * `overwrite` false, existing files are refused, except that `ollama` reuses a merged GGUF of the
 * same type already there.
 */
export function writeExport(l: TrainedRun, dir: string, format: ExportFormat, type: MergedType, overwrite: boolean): string[] {
  makeFolder(dir, 'the export folder');
  const merged = join(dir, `model-${type}.gguf`);
  switch (format) {
    case 'adapter': {
      const adapter = join(dir, 'adapter.gguf');
      exportAdapterGguf(l, adapter, overwrite);
      return [adapter];
    }
    case 'merged':
      exportMergedGguf(l, merged, type, overwrite);
      return [merged];
    case 'ollama': {
      const reuse = !overwrite && existsSync(merged);
      if (!reuse) exportMergedGguf(l, merged, type, overwrite);
      return [...(reuse ? [] : [merged]), exportModelfile(l, dir, merged, 'merged', overwrite)];
    }
    case 'peft':
      exportPeft(l, join(dir, 'peft'), overwrite);
      return [join(dir, 'peft', 'adapter_model.safetensors'), join(dir, 'peft', 'adapter_config.json')];
  }
}
