// Exports of a trained run (LoRA, HUT, MoS): llama.cpp adapter GGUF, merged GGUF (F32, F16 or Q8_0), PEFT
// adapter (safetensors + adapter_config.json, Hugging Face names), and an Ollama Modelfile.
// Every file goes to a temp name first; existing files are never overwritten without `overwrite`.
import { closeSync, existsSync, openSync, readFileSync, readSync } from 'node:fs';
import { makeFolder } from '../store/folders.js';
import { basename, join, relative, resolve } from 'node:path';
import { native } from '../engine/native.js';
import { openEngine, type Engine } from '../engine/backend.js';
import { Graph, GraphBuilder, type Tensor } from '../engine/graph.js';
import { T } from '../engine/types.js';
import { GgufValueType, readGguf, readTensorBytes, type GgufFile, type GgufValue } from '../model/gguf.js';
import { fusedParts, modelHeader, type Hparams, type Module, type PlanTensor } from '../model/llama.js';
import { ARCHITECTURES } from '../model/architectures.js';
import { listCheckpoints, loadLatestCheckpoint } from '../tune/checkpoint.js';
import { GGUF_NAMES, moduleDims, type Adapter } from '../tune/adapter.js';
import { methodOf, modelView, type Method } from '../tune/methods.js';
import { OPTIMIZER_DEFAULTS } from '../tune/trainer.js';
import { writeFileAtomic } from '../store/atomic-file.js';
import type { TrainConfig } from '../tune/run.js';
import { kv, writeGguf, type GgufTensorOut } from '../model/gguf-writer.js';

export type ExportFormat = 'adapter' | 'merged' | 'peft' | 'ollama';
export const EXPORT_FORMATS: ExportFormat[] = ['adapter', 'merged', 'peft', 'ollama'];
export type MergedType = 'f32' | 'f16' | 'q8_0';

export interface LowRankPair { weight: string; layer: number; module: Module; a: Float32Array; b: Float32Array; inDim: number; outDim: number }

export interface TrainedRun {
  config: TrainConfig;
  method: Method;
  checkpoint: string;
  step: number;
  base: GgufFile;
  hp: Hparams;
  /** low-rank methods' adapters per weight (blk.N.attn_q.weight): A [in, r] and B [r, out] in ggml
   *  order, as row-major [r][in] and [out][r]. LoRA's own; MoS's assembled per layer from its shard
   *  pools. Read from the method's adapter on first use. */
  readonly pairs: LowRankPair[];
  scale: number;
  /** the parts of each fused file tensor (phi3's attn_qkv.weight: q, k, v), in row order */
  parts: Map<string, PlanTensor[]>;
  /** whether the run trained the base weight `name` */
  trains(name: string): boolean;
  /** folds the training into the dequantized base weight `name` (ggml order, [out][in] rows) in place */
  merge(name: string, w: Float32Array): void;
  /** releases the adapter and its engine */
  free(): void;
}

/** the (layer, module) of a linear weight's GGUF name (blk.3.ffn_gate.weight), or null */
function linearOf(name: string): { layer: number; module: Module } | null {
  const m = /^blk\.(\d+)\.(\w+)\.weight$/.exec(name);
  const module = m && (Object.keys(GGUF_NAMES) as Module[]).find((k) => GGUF_NAMES[k] === m[2]);
  return module ? { layer: Number(m[1]), module } : null;
}

/** computes `outputs` of a small graph built by `build` on the engine, with `input`'s values set first */
function computeOn(engine: Engine, build: (b: GraphBuilder) => { outputs: Tensor[]; inputs?: [Tensor, Float32Array][] }): Float32Array[] {
  const b = new GraphBuilder(256).on(engine);
  try {
    const { outputs, inputs = [] } = build(b);
    const g = new Graph(engine, b, outputs, { exact: true });
    try {
      for (const [t, x] of inputs) t.set(x);
      g.compute();
      return outputs.map((t) => t.get());
    } finally {
      g.free();
    }
  } finally {
    b.free();
  }
}

/**
 * The run's newest readable checkpoint, for export and compression. Adapter methods rebuild their
 * adapter from the header and load the checkpoint into it, so the merge is the method's own graph
 * (Adapter.merged) on ggml; full-parameter methods' trained weights are read from the checkpoint,
 * one tensor at a time.
 */
export function loadTrainedRun(runDir: string): TrainedRun {
  const cfgPath = join(runDir, 'config.json');
  if (!existsSync(cfgPath)) throw new Error(`${runDir} is not a Hone run (config.json is missing)`);
  let config: TrainConfig;
  try {
    config = JSON.parse(readFileSync(cfgPath, 'utf8')) as TrainConfig;
  } catch (e) {
    throw new Error(`${cfgPath} is not readable JSON (${(e as Error).message}); the run's settings are lost, so train it again`);
  }
  config.method ??= 'lora';
  const method = methodOf(config.method);
  if (!listCheckpoints(runDir).length) throw new Error(`${runDir} has no checkpoint yet; train first`);
  const header = modelHeader(config.model);
  const { file: base, hp } = header;
  const scale = config.alpha / config.rank;
  const parts = fusedParts(header.plan);
  const common = { config, method, base, hp, scale, parts };

  // a fused file tensor (phi3's attn_qkv) is trained and merged through its parts, row range by row range
  const rowsOf = (p: PlanTensor, w: Float32Array) => w.subarray(p.part!.row * p.shape[0], (p.part!.row + p.shape[1]) * p.shape[0]);
  const throughParts = (trains: (name: string) => boolean, merge: (name: string, w: Float32Array) => void) => ({
    trains: (name: string) => parts.get(name)?.some((p) => trains(p.name)) ?? trains(name),
    merge: (name: string, w: Float32Array) => {
      const of = parts.get(name);
      if (!of) return merge(name, w);
      for (const p of of) if (trains(p.name)) merge(p.name, rowsOf(p, w));
    },
  });

  if (method.full) {
    // every trained weight is in the checkpoint under its own name: the merge replaces the base's
    const checkpoint = listCheckpoints(runDir).at(-1)!;
    const ck = readGguf(checkpoint);
    const byName = new Map(ck.tensors.map((t) => [t.name, t]));
    return {
      ...common, checkpoint, step: checkpointStep(ck), pairs: [],
      ...throughParts((name) => byName.has(name), (name, w) => { if (byName.has(name)) w.set(new Float32Array(bytesOf(readTensorBytes(checkpoint, byName.get(name)!)))); }),
      free: () => {},
    };
  }

  const engine = openEngine();
  let adapter: Adapter;
  let loaded: ReturnType<typeof loadLatestCheckpoint>;
  try {
    adapter = method.build(engine, modelView(header), { ...config, dropout: 0 }, OPTIMIZER_DEFAULTS);
  } catch (e) {
    engine.free();
    throw e;
  }
  try {
    loaded = loadLatestCheckpoint(runDir, adapter);
  } catch (e) {
    adapter.free();
    engine.free();
    throw e;
  }
  let pairs: LowRankPair[] | undefined;
  const linears = (name: string) => { const l = linearOf(name); return l && config.targets.includes(l.module) ? l : null; };
  return {
    ...common, checkpoint: loaded!.path, step: loaded!.position.step,
    get pairs() {
      if (method.notLowRank || !adapter.lowRank) return [];
      pairs ??= adapterPairs(engine, adapter, hp, config.targets);
      return pairs;
    },
    ...throughParts((name) => !!adapter.replaces?.(name) || !!linears(name), (name, w) => {
      const copy = adapter.replaces?.(name);
      if (copy) { w.set(copy.get()); return; }
      const l = linears(name);
      if (!l) return;
      const [inDim, outDim] = moduleDims(hp, l.module);
      const [out] = computeOn(engine, (b) => {
        const W = b.input(T.F32, [inDim, outDim], name);
        const merged = adapter.merged?.(b, l.layer, l.module, W);
        if (!merged) throw new Error(`${method.name} has no merge for ${name}`);
        return { outputs: [merged], inputs: [[W, w.slice()]] };
      });
      w.set(out);
    }),
    free: () => { adapter.free(); engine.free(); },
  };
}

/** `use` on the run's newest checkpoint, freed afterwards */
export function withTrainedRun<R>(runDir: string, use: (l: TrainedRun) => R): R {
  const l = loadTrainedRun(runDir);
  try {
    return use(l);
  } finally {
    l.free();
  }
}

/** every targeted layer's A and B from the adapter's own tensors (MoS: gathered by its graph) */
function adapterPairs(engine: Engine, adapter: Adapter, hp: Hparams, targets: Module[]): LowRankPair[] {
  const pairs: LowRankPair[] = [];
  for (let layer = 0; layer < hp.nLayer; layer++) {
    for (const module of targets) {
      const [inDim, outDim] = moduleDims(hp, module);
      const [a, b] = computeOn(engine, (g) => {
        const ab = adapter.lowRank!(g, layer, module)!;
        return { outputs: [g.cont(ab.A), g.cont(ab.B)] };
      });
      pairs.push({ weight: `blk.${layer}.${GGUF_NAMES[module]}.weight`, layer, module, a, b, inDim, outDim });
    }
  }
  return pairs;
}

const bytesOf = (b: Buffer) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
const checkpointStep = (ck: GgufFile) => JSON.parse(String(ck.metadata.get('hone.checkpoint')?.value ?? '{"step":0}')).step as number;

/** formats that carry a LoRA-shaped adapter: only for methods whose change is an added B·A */
function needsPairs(l: TrainedRun, format: string) {
  if (l.method.notLowRank) throw new Error(`${l.method.notLowRank}, so it has no ${format} form: export it as --format merged (or ollama)`);
}

const f32bytes = (x: Float32Array) => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);

/**
 * The run's pairs per file tensor: a weight's own pair, or for a fused tensor (phi3's attn_qkv) one
 * pair of rank R = r·(parts trained) whose B·A equals each part's B·A on its rows: A stacks the parts'
 * A [r][in] as R rows, B [out][R] holds part k's B in its rows and rank columns k·r…, zeros elsewhere.
 */
export function filePairs(l: TrainedRun, pairs: LowRankPair[] = l.pairs): (Omit<LowRankPair, 'module'> & { rank: number })[] {
  const r = l.config.rank;
  const byWeight = new Map(pairs.map((p) => [p.weight, p]));
  const out: (Omit<LowRankPair, 'module'> & { rank: number })[] = [];
  const done = new Set<string>();
  for (const p of pairs) {
    const fused = [...l.parts].find(([, ps]) => ps.some((t) => t.name === p.weight));
    if (!fused) { out.push({ ...p, rank: r }); continue; }
    const [file, ps] = fused;
    if (done.has(file)) continue;
    done.add(file);
    const present = ps.filter((t) => byWeight.has(t.name));
    const R = r * present.length, inDim = p.inDim, outDim = ps.reduce((n, t) => n + t.shape[1], 0);
    const a = new Float32Array(R * inDim), b = new Float32Array(outDim * R);
    present.forEach((t, k) => {
      const q = byWeight.get(t.name)!;
      a.set(q.a, k * r * inDim);
      for (let o = 0; o < t.shape[1]; o++) b.set(q.b.subarray(o * r, (o + 1) * r), (t.part!.row + o) * R + k * r);
    });
    out.push({ weight: file, layer: p.layer, a, b, inDim, outDim, rank: R });
  }
  return out;
}

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
  // llama.cpp scales each tensor's B·A by alpha / (its rank): a fused pair of rank R has B scaled by R/r
  const tensors: GgufTensorOut[] = filePairs(l).flatMap((p) => [
    { name: `${p.weight}.lora_a`, shape: [p.inDim, p.rank], type: T.F32, data: f32bytes(p.a) },
    { name: `${p.weight}.lora_b`, shape: [p.rank, p.outDim], type: T.F32, data: f32bytes(p.rank === l.config.rank ? p.b : p.b.map((x) => (x * p.rank) / l.config.rank)) },
  ]);
  writeGguf(path, md, tensors, { overwrite });
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

/**
 * llama.cpp's converter permutes q and k rows of llama models (rotary pairs interleaved); Hugging
 * Face keeps halves. For output row index `g` in GGUF order, the row in Hugging Face order.
 */
export function hfRowOfGguf(g: number, headDim: number): number {
  const h = Math.floor(g / headDim), j = Math.floor((g % headDim) / 2), s = g % 2;
  return h * headDim + s * (headDim / 2) + j;
}

/**
 * PEFT adapter: adapter_model.safetensors + adapter_config.json, as PEFT writes them, with Hugging
 * Face's module names (the architecture unit's hfNames). A fused module (phi3's qkv_proj) gets the
 * fused pair of filePairs, its rank and alpha in rank_pattern/alpha_pattern (same scale alpha/r).
 */
export function exportPeft(l: TrainedRun, dir: string, overwrite = false) {
  needsPairs(l, 'PEFT adapter');
  makeFolder(dir, 'the export folder');
  const files = [join(dir, 'adapter_model.safetensors'), join(dir, 'adapter_config.json')];
  for (const f of files) if (!overwrite && existsSync(f)) throw new Error(`${f} already exists; choose another folder or remove it first`);
  const unit = ARCHITECTURES[l.hp.arch];
  const r = l.config.rank;
  // llama.cpp's converter interleaves the rotary pairs of llama's q and k rows; Hugging Face keeps halves
  const pairs = l.pairs.map((p) => {
    if (unit.rope !== 'normal' || (p.module !== 'q' && p.module !== 'k')) return p;
    const b = new Float32Array(p.b.length);
    for (let g = 0; g < p.outDim; g++) b.set(p.b.subarray(g * r, (g + 1) * r), hfRowOfGguf(g, l.hp.headDim) * r);
    return { ...p, b };
  });
  const entries: { name: string; shape: number[]; data: Float32Array }[] = [];
  const rankPattern: Record<string, number> = {}, alphaPattern: Record<string, number> = {};
  for (const p of filePairs(l, pairs)) {
    const hf = unit.hfNames[p.weight.replace(/^blk\.\d+\./, '')];
    if (!hf) throw new Error(`${p.weight} has no Hugging Face name for a ${l.hp.arch} model`);
    const prefix = `base_model.model.model.layers.${p.layer}.${hf}`;
    entries.push({ name: `${prefix}.lora_A.weight`, shape: [p.rank, p.inDim], data: p.a });
    entries.push({ name: `${prefix}.lora_B.weight`, shape: [p.outDim, p.rank], data: p.b });
    if (p.rank !== r) { rankPattern[hf.split('.')[1]] = p.rank; alphaPattern[hf.split('.')[1]] = (l.config.alpha * p.rank) / r; }
  }
  writeFileAtomic(files[0], safetensors(entries));
  const targets = [...new Set(entries.map((e) => e.name.split('.').at(-3)!))];
  writeFileAtomic(files[1], Buffer.from(JSON.stringify({
    peft_type: 'LORA', task_type: 'CAUSAL_LM', r, lora_alpha: l.config.alpha, lora_dropout: 0, target_modules: targets, bias: 'none',
    rank_pattern: rankPattern, alpha_pattern: alphaPattern,
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
