// The llama-family graph on ggml, for every architecture unit (model/arch/: llama — with Mistral —,
// qwen2, qwen3, phi3): hyperparameters from GGUF metadata, the weight plan the unit lays out, weights
// loaded from the file, and the forward graph, op for op what llama.cpp computes (src/models/*.cpp)
// so the logits agree.
import { GgufError, GgufValueType, meta, metaNumber, readGguf, readTensorBytes, type GgufFile, type GgufTensorInfo } from './gguf.js';
import { Graph, GraphBuilder, Tensor, allocStatic, attnSumReady, type RopeParams } from '../engine/graph.js';
import { int8Available, packInt8, type Int8Weights } from './int8-weights.js';
import type { Engine } from '../engine/backend.js';
import { GGML_TYPES, T, ggmlTypeName } from '../engine/types.js';
import { native } from '../engine/native.js';
import { dequantizeNupes, isNupesTensor, nupesShape } from './nupes-weights.js';
import type { Architecture, BlockField, BlockMath } from './architecture.js';
import { architectureOf } from './architectures.js';

/** ggml types a frozen weight may have: those ggml's matmul accepts as its first operand. */
export const WEIGHT_TYPES = new Set(
  ['F32', 'F16', 'BF16', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K', 'IQ2_XXS', 'IQ2_XS', 'IQ3_XXS', 'IQ1_S', 'IQ4_NL', 'IQ3_S', 'IQ2_S', 'IQ4_XS', 'IQ1_M', 'TQ1_0', 'TQ2_0', 'MXFP4']
    .map((n) => [...GGML_TYPES.values()].find((t) => t.name === n)!.id),
);

export interface Hparams {
  /** general.architecture: the unit in model/arch/ that described the file */
  arch: string;
  nVocab: number;
  nCtxTrain: number;
  nEmbd: number;
  nLayer: number;
  nHead: number;
  nHeadKv: number;
  headDim: number;
  nFf: number;
  rmsEps: number;
  /** rope of the layers that attend globally (sliding-window layers: ropeOf) */
  rope: RopeParams;
  /** what the block computes beyond the llama block (Gemma's scales, GeGLU, sliding windows) */
  math: BlockMath;
}

/** the llama block's math: nothing scaled, SwiGLU, every layer global */
const LLAMA_MATH = (hd: number): BlockMath => ({ embedScale: 1, attnScale: 1 / Math.sqrt(hd), act: 'silu' });

/** whether layer `il` attends through a sliding window */
export const isSwaLayer = (hp: Hparams, il: number) => !!hp.math.swa?.layers[il];

/** the rope layer `il` turns with: sliding-window layers their own base, unscaled */
export function ropeOf(hp: Hparams, il: number): RopeParams {
  return isSwaLayer(hp, il) ? { ...hp.rope, freqBase: hp.math.swa!.freqBase, freqScale: 1 } : hp.rope;
}

const ROPE_MODE = { normal: 0, neox: 2 } as const;

/** the architecture unit of a GGUF, or a GgufError saying why Hone cannot train it */
export function architectureOfFile(f: GgufFile): Architecture {
  const arch = meta<string>(f, 'general.architecture');
  if (arch === undefined) throw new GgufError(f.path, 'general.architecture is missing, so Hone cannot tell which model this is');
  const experts = Number(metaNumber(f, `${arch}.expert_count`) ?? 0);
  const unit = architectureOf(String(arch), Number.isFinite(experts) ? experts : 0);
  if (typeof unit === 'string') throw new GgufError(f.path, unit);
  return unit;
}

/**
 * The attention factor ggml's YaRN rope is given, as llama.cpp's context sets it: YaRN's magnitude
 * scale mscale(s) = 0.1·ln(s) + 1 (over mscale of the log multiplier where the file has one),
 * divided by the 1 + 0.1·ln(s) that ggml's rope multiplies in again.
 */
export function yarnAttnFactor(factor: number, logMul: number): number {
  const mscale = (m: number) => (factor <= 1 ? 1 : 0.1 * m * Math.log(factor) + 1);
  const f = logMul !== 0 ? mscale(1) / mscale(logMul) : mscale(1);
  return Math.fround(f / (1 + 0.1 * Math.log(factor)));
}

export function hparamsOf(f: GgufFile): Hparams {
  const unit = architectureOfFile(f);
  const arch = unit.name;
  // every number checked where it is read: a header that passes gives a graph ggml can build
  const number = (key: string, kind: 'count' | 'positive'): number | undefined => {
    const v = f.metadata.get(`${arch}.${key}`);
    if (v === undefined) return undefined;
    const x = metaNumber(f, `${arch}.${key}`);
    const ok = typeof x === 'number' && Number.isFinite(x) && x > 0 && (kind === 'positive' || (Number.isInteger(x) && x <= 2 ** 31));
    if (!ok) throw new GgufError(f.path, `metadata "${arch}.${key}" is ${v.type === GgufValueType.ARRAY ? 'an array' : JSON.stringify(String(v.value))}, not ${kind === 'count' ? 'a whole number above 0' : 'a finite number above 0'}`);
    return x;
  };
  const need = (key: string, kind: 'count' | 'positive' = 'count'): number => {
    const v = number(key, kind);
    if (v === undefined) throw new GgufError(f.path, `metadata "${arch}.${key}" is missing`);
    return v;
  };
  const nEmbd = need('embedding_length');
  const nHead = need('attention.head_count');
  const nHeadKv = number('attention.head_count_kv', 'count') ?? nHead;
  if (nHead % nHeadKv !== 0) throw new GgufError(f.path, `${nHead} attention heads cannot share ${nHeadKv} key/value heads evenly (${arch}.attention.head_count_kv)`);
  const headDim = number('attention.key_length', 'count') ?? nEmbd / nHead;
  if (!Number.isInteger(headDim)) throw new GgufError(f.path, `the embedding length ${nEmbd} does not split into ${nHead} heads (${arch}.attention.head_count)`);
  const tokens = meta<string[]>(f, 'tokenizer.ggml.tokens');
  const nVocab = number('vocab_size', 'count') ?? (Array.isArray(tokens) ? tokens.length : 0);
  if (!nVocab) throw new GgufError(f.path, `the vocabulary is missing: neither ${arch}.vocab_size nor tokenizer.ggml.tokens is there`);
  const nCtxTrain = need('context_length');
  // rope scaling: linear stretches every frequency; Llama 3.1's factors and phi3's long-rope are
  // tensors of per-frequency factors (Architecture.ropeFactors) with ggml's plain rope
  const scaling = meta<string>(f, `${arch}.rope.scaling.type`) ?? 'none';
  if (!['none', 'linear', 'longrope', 'yarn'].includes(scaling)) throw new GgufError(f.path, `rope scaling "${scaling}" is not supported yet (Hone handles none, linear, YaRN, long-rope and Llama-3 frequency factors)`);
  const factor = number('rope.scaling.factor', 'positive') ?? 0;
  const yarn = scaling === 'yarn' && factor > 1;
  const nLayer = need('block_count');
  const math = unit.math?.(number, { nLayer, d: nEmbd, nHead, hd: headDim }, (key) => meta(f, `${arch}.${key}`)) ?? {};
  if (typeof math === 'string') throw new GgufError(f.path, math);
  if (math.swa && math.swa.layers.length !== nLayer) throw new GgufError(f.path, `${arch}.attention.sliding_window_pattern lists ${math.swa.layers.length} layers, not ${nLayer}`);
  return {
    arch,
    nVocab,
    nCtxTrain,
    nEmbd,
    nLayer,
    nHead,
    nHeadKv,
    headDim,
    nFf: need('feed_forward_length'),
    rmsEps: need('attention.layer_norm_rms_epsilon', 'positive'),
    rope: {
      nDims: number('rope.dimension_count', 'count') ?? headDim,
      mode: ROPE_MODE[unit.rope],
      nCtxOrig: number('rope.scaling.original_context_length', 'count') ?? nCtxTrain,
      freqBase: number('rope.freq_base', 'positive') ?? 10000,
      freqScale: (scaling === 'linear' && factor > 0) || yarn ? 1 / factor : 1,
      extFactor: yarn ? 1 : 0,
      attnFactor: (yarn ? yarnAttnFactor(factor, metaNumber(f, `${arch}.rope.scaling.yarn_log_multiplier`) ?? 0) : 1) * (number('rope.scaling.attn_factor', 'positive') ?? 1),
      betaFast: yarn ? number('rope.scaling.yarn_beta_fast', 'positive') ?? 32 : 32,
      betaSlow: yarn ? number('rope.scaling.yarn_beta_slow', 'positive') ?? 1 : 1,
    },
    math: { ...LLAMA_MATH(headDim), ...math },
  };
}

export interface LayerOf<X> {
  attnNorm: X;
  wq: X; wk: X; wv: X; wo: X;
  bq?: X; bk?: X; bv?: X; bo?: X;
  /** qwen3, gemma3: RMS norms of each query and key head [headDim], before rope */
  qNorm?: X; kNorm?: X;
  /** gemma3: RMS norm of the attention's output, before the residual */
  postAttnNorm?: X;
  ffnNorm: X;
  wGate: X; wUp: X; wDown: X;
  /** gemma3: RMS norm of the feed-forward's output, before the residual */
  postFfnNorm?: X;
}

export interface WeightsOf<X> {
  tokEmbd: X;
  outputNorm: X;
  output: X;
  outputBias?: X;
  ropeFreqs?: X;
  layers: LayerOf<X>[];
}

export type Layer = LayerOf<Tensor>;
export type LayerField = BlockField;
/** a block's tensors in a fixed order (streaming reads them one by one) */
export const LAYER_FIELDS: LayerField[] = ['attnNorm', 'wq', 'wk', 'wv', 'wo', 'bq', 'bk', 'bv', 'bo', 'qNorm', 'kNorm', 'postAttnNorm', 'ffnNorm', 'wGate', 'wUp', 'wDown', 'postFfnNorm'];
export type Weights = WeightsOf<Tensor>;

/**
 * A weight the graph reads: a tensor of the file, or a row range of a fused one (phi3's q, k and v
 * in attn_qkv), named as its own tensor would be (blk.0.attn_q.weight) with the offset of its rows,
 * so loading, streaming, checkpoints and adapters treat it as any other weight.
 */
export interface PlanTensor extends GgufTensorInfo {
  /** the file tensor it is rows of, and its first row there */
  part?: { of: string; row: number };
}

/** the file tensor name of each fused weight's parts, in row order: attn_qkv.weight → q, k, v */
export function fusedParts(plan: WeightsOf<PlanTensor>): Map<string, PlanTensor[]> {
  const out = new Map<string, PlanTensor[]>();
  for (const L of plan.layers) {
    for (const f of LAYER_FIELDS) {
      const t = L[f];
      if (t?.part) out.set(t.part.of, [...(out.get(t.part.of) ?? []), t]);
    }
  }
  return out;
}

/**
 * Finds every tensor the graph needs in the file and checks its shape and type against the
 * metadata, as the architecture unit lays the block out. Throws a GgufError naming the first
 * tensor that is missing or wrong.
 */
export function planWeights(file: GgufFile, hp: Hparams): WeightsOf<PlanTensor> {
  const unit = architectureOfFile(file);
  const byName = new Map(file.tensors.map((t) => [t.name, t]));
  const { nEmbd: d, nHead, nHeadKv, headDim: hd, nFf, nVocab } = hp;
  function take(name: string, shape: number[]): GgufTensorInfo;
  function take(name: string, shape: number[], optional: true): GgufTensorInfo | undefined;
  function take(name: string, shape: number[], optional = false): GgufTensorInfo | undefined {
    const info = byName.get(name);
    if (!info) {
      if (optional) return undefined;
      throw new GgufError(file.path, `tensor "${name}" is missing; a ${hp.arch} model needs it`);
    }
    const stored = isNupesTensor(file, name) ? nupesShape(info) : info.shape;
    const got = stored.concat(Array(4 - stored.length).fill(1));
    const want = shape.concat(Array(4 - shape.length).fill(1));
    if (got.some((x, i) => x !== want[i])) throw new GgufError(file.path, `tensor "${name}" has shape [${stored}] but the metadata implies [${shape}]`);
    if (shape.length > 1 && !WEIGHT_TYPES.has(info.type) && !isNupesTensor(file, name)) throw new GgufError(file.path, `tensor "${name}" has type ${ggmlTypeName(info.type)}, which ggml cannot multiply; Hone cannot use this file`);
    if (shape.length === 1 && info.type !== T.F32) throw new GgufError(file.path, `tensor "${name}" is ${ggmlTypeName(info.type)}; norms and biases must be F32`);
    return info;
  }
  /** a fused weight's row ranges, each as a weight of its own */
  const split = (info: GgufTensorInfo, parts: [LayerField, number][], p: string): [LayerField, PlanTensor][] => {
    if (isNupesTensor(file, info.name)) throw new GgufError(file.path, `tensor "${info.name}" is a fused weight in Hone's NUPES form, which Hone cannot split for training; train the model before quantizing it`);
    const rows = info.shape[1], rowBytes = info.bytes / rows;
    let row = 0;
    return parts.map(([field, n]) => {
      const t: PlanTensor = { name: `${p}${FIELD_NAMES[field]}`, shape: [info.shape[0], n], type: info.type, offset: info.offset + row * rowBytes, bytes: n * rowBytes, part: { of: info.name, row } };
      row += n;
      return [field, t];
    });
  };
  const tokEmbd = take('token_embd.weight', [d, nVocab]);
  const dims = { d, nq: nHead * hd, nkv: nHeadKv * hd, hd, ff: nFf };
  const layers: LayerOf<PlanTensor>[] = [];
  for (let i = 0; i < hp.nLayer; i++) {
    const p = `blk.${i}.`;
    const L: Partial<LayerOf<PlanTensor>> = {};
    for (const bt of unit.block(dims)) {
      const info = bt.optional ? take(p + bt.name, bt.shape, true) : take(p + bt.name, bt.shape);
      if (!info) continue;
      if (typeof bt.field === 'string') L[bt.field] = info;
      else for (const [field, t] of split(info, bt.field, p)) L[field] = t;
    }
    layers.push(L as LayerOf<PlanTensor>);
  }
  const extra = file.tensors.find((t) => Number(/^blk\.(\d+)\./.exec(t.name)?.[1] ?? -1) >= hp.nLayer);
  if (extra) throw new GgufError(file.path, `tensor "${extra.name}" belongs to a block past ${hp.arch}.block_count (${hp.nLayer}): the header and the tensors disagree`);
  return {
    tokEmbd,
    outputNorm: take('output_norm.weight', [d]),
    output: byName.has('output.weight') ? take('output.weight', [d, nVocab]) : tokEmbd,
    outputBias: take('output.bias', [nVocab], true),
    ropeFreqs: unit.ropeFactors ? take(unit.ropeFactors, [hp.rope.nDims / 2], true) : undefined,
    layers,
  };
}

/** the separate tensor's name of each field (a fused weight's parts are named so) */
const FIELD_NAMES: Record<LayerField, string> = {
  attnNorm: 'attn_norm.weight', wq: 'attn_q.weight', wk: 'attn_k.weight', wv: 'attn_v.weight', wo: 'attn_output.weight',
  bq: 'attn_q.bias', bk: 'attn_k.bias', bv: 'attn_v.bias', bo: 'attn_output.bias', qNorm: 'attn_q_norm.weight', kNorm: 'attn_k_norm.weight',
  postAttnNorm: 'post_attention_norm.weight', ffnNorm: 'ffn_norm.weight', wGate: 'ffn_gate.weight', wUp: 'ffn_up.weight', wDown: 'ffn_down.weight',
  postFfnNorm: 'post_ffw_norm.weight',
};

/** A model's header, read once: its hyperparameters and every tensor the graph reads, checked. */
export interface ModelHeader {
  file: GgufFile;
  hp: Hparams;
  plan: WeightsOf<PlanTensor>;
}

/** the header of the GGUF at `source` (or of one already read), checked against the architecture */
export function modelHeader(source: string | GgufFile): ModelHeader {
  const file = typeof source === 'string' ? readGguf(source) : source;
  const hp = hparamsOf(file);
  return { file, hp, plan: planWeights(file, hp) };
}

/** Maps every entry of a weights structure (a tensor shared by two slots stays shared). */
function mapWeights<X, Y>(w: WeightsOf<X>, f: (x: X) => Y): WeightsOf<Y> {
  const cache = new Map<X, Y>();
  const m = (x: X) => { if (!cache.has(x)) cache.set(x, f(x)); return cache.get(x)!; };
  const o = (x: X | undefined) => (x === undefined ? undefined : m(x));
  return {
    tokEmbd: m(w.tokEmbd), outputNorm: m(w.outputNorm), output: m(w.output), outputBias: o(w.outputBias), ropeFreqs: o(w.ropeFreqs),
    layers: w.layers.map((L) => ({
      attnNorm: m(L.attnNorm), wq: m(L.wq), wk: m(L.wk), wv: m(L.wv), wo: m(L.wo),
      bq: o(L.bq), bk: o(L.bk), bv: o(L.bv), bo: o(L.bo), qNorm: o(L.qNorm), kNorm: o(L.kNorm), postAttnNorm: o(L.postAttnNorm),
      ffnNorm: m(L.ffnNorm), wGate: m(L.wGate), wUp: m(L.wUp), wDown: m(L.wDown), postFfnNorm: o(L.postFfnNorm),
    })),
  };
}

/** The linear modules adapters attach to, named as Hone's CLI names them. */
export type Module = 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down';

/**
 * A trained linear layer in place of the frozen y = W x: the hook returns W'x before the bias
 * (LoRA: W x + s·B(A x); HUT: a transformed W applied to x). W: [in, out], x: [in, n].
 */
export type AdapterHook = (b: GraphBuilder, layer: number, module: Module, W: Tensor, x: Tensor) => Tensor;

/** Describes the file's tensors for `hone info`. */
export function describe(f: GgufFile) {
  const hp = hparamsOf(f);
  planWeights(f, hp);
  const params = f.tensors.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
  const types = new Map<string, number>();
  for (const t of f.tensors) types.set(ggmlTypeName(t.type), (types.get(ggmlTypeName(t.type)) ?? 0) + 1);
  return { hparams: hp, parameters: params, tensorTypes: Object.fromEntries(types), tied: !f.tensors.some((t) => t.name === 'output.weight') };
}

/** one tensor of a GGUF file as F32 values (a copy), by ggml's own dequantizer */
export function dequantizeFromFile(path: string, info: GgufTensorInfo): Float32Array {
  const raw = readTensorBytes(path, info);
  const n = info.shape.reduce((a, c) => a * c, 1);
  if (info.type === T.F32) return new Float32Array(raw.buffer, raw.byteOffset, n);
  return native().dequantize(info.type, raw, n);
}

export class LlamaModel implements ModelHeader {
  private constructor(
    readonly file: GgufFile,
    readonly hp: Hparams,
    readonly plan: WeightsOf<PlanTensor>,
    readonly weights: Weights,
    private readonly builder: GraphBuilder,
    readonly bufferId: number,
    readonly engine: Engine,
    /** int8 packs of the Q8_0 linear weights, when loaded with `int8` on an engine that runs them */
    readonly int8: Int8Weights | null = null,
  ) {}

  /**
   * Reads the header, checks every tensor the graph needs, and loads the weights onto the engine's
   * device. With `master`, every weight is dequantized once to an F32 trainable tensor (full-
   * parameter training); otherwise weights keep the file's types, except NUPES power-grid weights
   * (Hone's own GGUF variant, model/nupes-weights.ts), dequantized once to F16. With `int8`, Q8_0
   * linear weights also get int8 packs where the engine runs them (model/int8-weights.ts).
   */
  static load(source: string | ModelHeader, engine: Engine, opts: { master?: boolean; int8?: boolean } = {}): LlamaModel {
    const { file, hp, plan } = typeof source === 'string' ? modelHeader(source) : source; // a header already read is not read again
    const path = file.path;
    const b = new GraphBuilder(file.tensors.length + 16);
    const loaded: [Tensor, GgufTensorInfo][] = [];
    const weights = mapWeights(plan, (info) => {
      const t = opts.master ? b.tensor(T.F32, isNupesTensor(file, info.name) ? nupesShape(info) : info.shape, info.name, 'param')
        : isNupesTensor(file, info.name) ? b.tensor(T.F16, nupesShape(info), info.name)
        : b.tensor(info.type, info.shape, info.name);
      loaded.push([t, info]);
      return t;
    });
    const bufferId = allocStatic(engine, b, `${opts.master ? 'F32 master weights' : 'weights'} of ${path}`);
    let int8: Int8Weights | null = null;
    try {
      for (const [t, info] of loaded) {
        if (isNupesTensor(file, info.name)) {
          const w = dequantizeNupes(file, info);
          t.set(t.type === T.F32 ? w : native().quantize(T.F16, w, info.shape[1], 2 * info.shape[0]));
        } else if (t.type === info.type) t.loadFromFile(path, info.offset);
        else t.set(dequantizeFromFile(path, info));
      }
      if (opts.int8 && !opts.master && int8Available(engine)) int8 = packInt8(engine, weights, path);
    } catch (e) {
      engine.native.freeBuffer(bufferId);
      b.free();
      throw e;
    }
    return new LlamaModel(file, hp, plan, weights, b, bufferId, engine, int8);
  }

  free() {
    this.int8?.free();
    this.engine.native.freeBuffer(this.bufferId);
    this.builder.free();
  }
}

export interface ForwardInputs {
  /** I32 [T·B]: token ids, sequence after sequence */
  tokens: Tensor;
  /** I32 [T·B]: position of each token in its sequence */
  positions: Tensor;
  /** F32 [T, T]: causal mask (0 or -inf), shared by every head and sequence */
  mask: Tensor;
  /** F32 [T, T]: the causal mask within a sliding window, made by the first sliding-window layer
   *  whose window is shorter than T (model graphs leave it out otherwise) */
  swaMask?: Tensor;
  window?: number;
  /** F32 [1, 1, T·B]: each position's query scale, made by the first layer of a model with an
   *  attention temperature whose original context is shorter than T (attnTempInput) */
  attnTemp?: Tensor;
  temp?: { scale: number; from: number };
}

/** Creates the graph inputs for B sequences of T tokens. */
export function forwardInputs(b: GraphBuilder, nTokens: number, nSeq: number): ForwardInputs {
  return {
    tokens: b.input(T.I32, [nTokens * nSeq], 'tokens'),
    positions: b.input(T.I32, [nTokens * nSeq], 'positions'),
    mask: b.input(T.F32, [nTokens, nTokens], 'kq_mask'),
  };
}

/** Fills the token ids, positions 0..T-1 per sequence and the causal mask. */
export function setForwardInputs(inp: ForwardInputs, tokens: Int32Array, nTokens: number, nSeq: number) {
  inp.tokens.set(tokens);
  setAttentionInputs(inp, nTokens, nSeq);
}

/** Positions and mask only: what a block graph (without the embedding lookup) needs. */
export function setAttentionInputs(inp: Pick<ForwardInputs, 'positions' | 'mask' | 'swaMask' | 'window' | 'attnTemp' | 'temp'>, nTokens: number, nSeq: number) {
  const pos = new Int32Array(nTokens * nSeq);
  for (let s = 0; s < nSeq; s++) for (let t = 0; t < nTokens; t++) pos[s * nTokens + t] = t;
  inp.positions.set(pos);
  // a model whose every layer attends through a window shorter than T reads no plain causal mask
  if (inp.mask.hasMemory) inp.mask.set(causalMask(nTokens));
  if (inp.swaMask) inp.swaMask.set(causalMask(nTokens, inp.window));
  if (inp.attnTemp && inp.temp) inp.attnTemp.set(Float32Array.from(pos, (p) => attnTempAt(p, inp.temp!)));
}

/** the attention temperature's query scale at position p: 1 + β·ln(⌊p / from⌋ + 1), as llama.cpp's
 *  llm_graph_input_attn_temp (1 below `from`) */
export function attnTempAt(p: number, t: { scale: number; from: number }): number {
  return Math.log(Math.floor(p / t.from) + 1) * t.scale + 1;
}

/** the static input of the temperature's scales where some position reaches `from`, else none */
export function attnTempInput(b: GraphBuilder, hp: Hparams, nTokens: number, nSeq: number): Pick<ForwardInputs, 'attnTemp' | 'temp'> {
  const temp = hp.math.attnTemp;
  return temp && nTokens > temp.from ? { attnTemp: b.tensor(T.F32, [1, 1, nTokens * nSeq], 'attn_temp'), temp } : {};
}

/** mask[q][k] = 0 where k <= q (and q − k < window), −inf elsewhere, as llama.cpp's is_masked_swa:
 *  row q is query position q, stored [T_k, T_q] in ggml order */
export function causalMask(n: number, window = Infinity): Float32Array {
  const m = new Float32Array(n * n);
  for (let q = 0; q < n; q++) for (let k = 0; k < n; k++) if (k > q || q - k >= window) m[q * n + k] = -Infinity;
  return m;
}

/** the mask layer `il` attends with: the sliding window's where it is shorter than the sequence */
export function maskOf(b: GraphBuilder, hp: Hparams, il: number, inp: Pick<ForwardInputs, 'mask' | 'swaMask' | 'window'>, nTokens: number): Tensor {
  const window = hp.math.swa?.window ?? Infinity;
  if (!isSwaLayer(hp, il) || nTokens <= window) return inp.mask;
  if (!inp.swaMask) {
    inp.swaMask = b.input(T.F32, [nTokens, nTokens], 'kq_mask_swa');
    inp.window = window;
  }
  return inp.swaMask;
}

/**
 * One transformer block: x [d, T·B] -> x' [d, T·B]. Attention per sequence and head with the
 * causal mask (or its sliding window), GQA by broadcasting, then the SwiGLU (GeGLU) feed-forward;
 * both with pre-RMS-norm (and post-norm where the layer has one) and residual, as llama.cpp's graphs.
 */
export function buildBlock(b: GraphBuilder, hp: Hparams, L: Layer, il: number, x: Tensor, inp: ForwardInputs, ropeFreqs: Tensor | null, nTokens: number, nSeq: number, adapt?: AdapterHook): Tensor {
  return blockForward(b, hp, L, il, x, inp, ropeFreqs, nTokens, nSeq, adapt).out;
}

/** A block's activations, kept for its explicit backward (model/backward.ts). */
export interface BlockActs {
  x: Tensor; h: Tensor; q3: Tensor; k3: Tensor; v3: Tensor; probs: Tensor; attn: Tensor;
  x1: Tensor; h2: Tensor; gate: Tensor; up: Tensor; act: Tensor; out: Tensor;
  /** qwen3, gemma3: each query and key head before its norm [hd, heads, n] */
  qh?: Tensor; kh?: Tensor;
  /** gemma3: the attention's and the feed-forward's outputs before their post-norms [d, n] */
  ao?: Tensor; fo?: Tensor;
}

export function blockForward(b: GraphBuilder, hp: Hparams, L: Layer, il: number, x: Tensor, inp: ForwardInputs, ropeFreqs: Tensor | null, nTokens: number, nSeq: number, adapt?: AdapterHook): BlockActs {
  const { nHead, nHeadKv, headDim: hd } = hp;
  const n = nTokens * nSeq;
  const linear = (mod: Module, W: Tensor, h: Tensor, bias?: Tensor) => {
    const y = adapt ? adapt(b, il, mod, W, h) : b.mulMat(W, h);
    return bias ? b.add(y, bias) : y;
  };
  const cb = (t: Tensor, name: string) => b.named(t, `blk.${il}.${name}`); // llama.cpp's names, per block
  const rope = ropeOf(hp, il);
  const temp = hp.math.attnTemp;
  if (temp && nTokens > temp.from && !inp.attnTemp) {
    inp.attnTemp = b.input(T.F32, [1, 1, nTokens * nSeq], 'attn_temp');
    inp.temp = temp;
  }
  const h = cb(b.mul(b.rmsNorm(x, hp.rmsEps), L.attnNorm), 'attn_norm');
  // q, k, v: [hd, heads, n] after rope
  let q = b.reshape(cb(linear('q', L.wq, h, L.bq), 'Qcur'), hd, nHead, n);
  let k = b.reshape(cb(linear('k', L.wk, h, L.bk), 'Kcur'), hd, nHeadKv, n);
  const v = cb(linear('v', L.wv, h, L.bv), 'Vcur');
  const qh = q, kh = k;
  if (L.qNorm) q = cb(b.mul(b.rmsNorm(q, hp.rmsEps), L.qNorm), 'Qcur_normed');
  if (L.kNorm) k = cb(b.mul(b.rmsNorm(k, hp.rmsEps), L.kNorm), 'Kcur_normed');
  q = b.rope(q, inp.positions, ropeFreqs, rope);
  k = b.rope(k, inp.positions, ropeFreqs, rope);
  if (inp.attnTemp) q = cb(b.mul(q, inp.attnTemp), 'Qcur_attn_temp_scaled'); // [hd, heads, n] ⊙ [1, 1, n]
  // per sequence and head, with (head, sequence) flattened into dim 2, sequence outer:
  // q, k, v [hd, T, heads·B]. Matmul broadcasting then pairs q head h of sequence s with kv head
  // h/(heads/kvHeads) of s (GQA), and ggml's backward supports it (it does not support
  // broadcasting with a 4th dimension).
  const heads = (t: Tensor, nh: number) => b.reshape(b.cont(b.permute(b.reshape(t, hd, nh, nTokens, nSeq), 0, 2, 1, 3)), hd, nTokens, nh * nSeq);
  const q3 = heads(q, nHead);
  const k3 = heads(k, nHeadKv);
  const v3 = heads(v, nHeadKv);
  const kq = cb(b.softMaxExt(cb(b.mulMat(k3, q3), 'kq'), maskOf(b, hp, il, inp, nTokens), hp.math.attnScale), 'kq_soft_max'); // [T_k, T_q, heads·B]
  // Σ over keys of v·p: on CPUs with AVX-512 by Hone's causal kernel, else against vᵀ [T, hd, kvHeads·B]
  const o3 = attnSumReady(b, hd) ? b.attnSum(v3, kq, 'keys') : b.mulMat(b.cont(b.transpose(v3)), kq);
  const kqv = b.reshape(o3, hd, nTokens, nHead, nSeq); // [hd, T_q, heads, B]
  const attn = cb(b.reshape(b.cont(b.permute(kqv, 0, 2, 1, 3)), hd * nHead, n), 'kqv_out');
  const ao = cb(linear('o', L.wo, attn, L.bo), 'attn_out');
  const x1 = cb(b.add(x, L.postAttnNorm ? cb(b.mul(b.rmsNorm(ao, hp.rmsEps), L.postAttnNorm), 'attn_post_norm') : ao), 'ffn_inp');

  const h2 = cb(b.mul(b.rmsNorm(x1, hp.rmsEps), L.ffnNorm), 'ffn_norm');
  const gate = cb(linear('gate', L.wGate, h2), 'ffn_gate');
  const up = cb(linear('up', L.wUp, h2), 'ffn_up');
  const act = cb(hp.math.act === 'gelu' ? b.geglu(gate, up) : b.mul(b.silu(gate), up), 'ffn_act');
  const fo = cb(linear('down', L.wDown, act), 'ffn_out');
  const out = cb(b.add(x1, L.postFfnNorm ? cb(b.mul(b.rmsNorm(fo, hp.rmsEps), L.postFfnNorm), 'ffn_post_norm') : fo), 'l_out');
  return {
    x, h, q3, k3, v3, probs: kq, attn, x1, h2, gate, up, act, out,
    ...(L.qNorm && { qh }), ...(L.kNorm && { kh }), ...(L.postAttnNorm && { ao }), ...(L.postFfnNorm && { fo }),
  };
}

/** the token embeddings of `tokens` [T·B], scaled as the architecture scales them: [d, T·B] */
export function embed(b: GraphBuilder, hp: Hparams, tokEmbd: Tensor, tokens: Tensor): Tensor {
  const x = b.named(b.getRows(tokEmbd, tokens), 'inp_embd');
  return hp.math.embedScale === 1 ? x : b.named(b.scale(x, hp.math.embedScale), 'inp_scaled');
}

/**
 * The forward pass: tokens -> logits [nVocab, T·B]. `adapt` adds trainable adapters to linear
 * layers; without it this is exactly llama.cpp's graph (without KV cache).
 */
export function buildForward(b: GraphBuilder, m: { hp: Hparams; weights: Weights }, inp: ForwardInputs, nTokens: number, nSeq: number, adapt?: AdapterHook): Tensor {
  const { hp, weights: w } = m;
  let x = embed(b, hp, w.tokEmbd, inp.tokens); // [d, T·B]
  for (let il = 0; il < hp.nLayer; il++) x = buildBlock(b, hp, w.layers[il], il, x, inp, w.ropeFreqs ?? null, nTokens, nSeq, adapt);
  x = b.named(b.mul(b.rmsNorm(x, hp.rmsEps), w.outputNorm), 'result_norm');
  let logits = b.mulMat(w.output, x);
  if (w.outputBias) logits = b.add(logits, w.outputBias);
  return b.named(logits, 'result_output');
}

export interface LossInputs {
  /** I32 [m]: positions (0..T·B−1) whose next token is a target; padding repeats position 0 */
  positions: Tensor;
  /** I32 [m]: i·nVocab + the target token of row i, its place in the [V, m] probabilities seen flat */
  labelIndex: Tensor;
  /** F32 [1, m]: 1 / (number of real targets) for real targets, 0 for padding: the loss is the
   *  mean over real targets, and no gradient flows from padding rows */
  weight: Tensor;
}

export function lossInputs(b: GraphBuilder, m: number): LossInputs {
  return { positions: b.input(T.I32, [m], 'loss_positions'), labelIndex: b.input(T.I32, [m], 'loss_label_index'), weight: b.input(T.F32, [1, m], 'loss_row_weight') };
}

/**
 * Mean next-token cross-entropy over the trained positions only: the output head runs on those m
 * hidden states, not on every position (answers are often a small part of instruction data).
 */
export function buildLoss(b: GraphBuilder, m: { hp: Hparams; weights: Weights }, inp: ForwardInputs, loss: LossInputs, nTokens: number, nSeq: number, adapt?: AdapterHook): Tensor {
  const { hp, weights: w } = m;
  let x = embed(b, hp, w.tokEmbd, inp.tokens);
  for (let il = 0; il < hp.nLayer; il++) x = buildBlock(b, hp, w.layers[il], il, x, inp, w.ropeFreqs ?? null, nTokens, nSeq, adapt);
  return b.named(headLoss(b, hp, w, x, loss).loss, 'loss');
}

/** below this a target's probability counts as this (a per-token loss of at most −ln 1e-30 ≈ 69) */
const MIN_PROB = 1e-30;

/**
 * The head on the last block's output x [d, T·B] at the trained positions: the loss and what its
 * backward needs (model/backward.ts headBackward). The loss is −Σ weight·ln p(target), with p the
 * softmax of the logits picked at each target: one vectorized softmax pass over the [V, m] logits,
 * which the backward reuses (ggml's fused cross-entropy takes a scalar exp per logit, and a one-hot
 * V×m label matrix).
 */
export function headLoss(b: GraphBuilder, hp: Hparams, w: Pick<Weights, 'outputNorm' | 'output' | 'outputBias'>, x: Tensor, loss: LossInputs) {
  const picked = b.getRows(x, loss.positions); // [d, m]
  const h = b.mul(b.rmsNorm(picked, hp.rmsEps), w.outputNorm);
  let logits = b.mulMat(w.output, h); // [V, m]
  if (w.outputBias) logits = b.add(logits, w.outputBias);
  const [V, m] = logits.shape;
  const probs = b.softMax(logits); // [V, m]
  const pTarget = b.reshape(b.getRows(b.reshape(probs, 1, V * m), loss.labelIndex), 1, m); // [1, m]
  const out = b.scale(b.sum(b.mul(b.log(b.scaleBias(pTarget, 1, MIN_PROB)), loss.weight)), -1);
  return { loss: out, picked, h, probs, pTarget };
}

/** Fills the loss inputs from a batch's targets: (position, token) pairs, at most m of them. */
export function setLossInputs(l: LossInputs, nVocab: number, m: number, targets: [number, number][]) {
  if (targets.length === 0) throw new Error('a batch without any trained token');
  if (targets.length > m) throw new Error(`${targets.length} targets do not fit the graph's ${m}`);
  const pos = new Int32Array(m);
  const index = Int32Array.from({ length: m }, (_, i) => i * nVocab);
  const weight = new Float32Array(m);
  targets.forEach(([p, tok], i) => { pos[i] = p; index[i] = i * nVocab + tok; weight[i] = 1 / targets.length; });
  l.positions.set(pos);
  l.labelIndex.set(index);
  l.weight.set(weight);
}

/** A reusable forward graph for B×T tokens: build once, evaluate many token batches. */
export class ForwardPass {
  readonly b = new GraphBuilder();
  readonly inp: ForwardInputs;
  readonly logits: Tensor;
  readonly graph: Graph;
  constructor(readonly model: LlamaModel, readonly nTokens: number, readonly nSeq = 1) {
    this.inp = forwardInputs(this.b, nTokens, nSeq);
    this.logits = buildForward(this.b, model, this.inp, nTokens, nSeq);
    // llama.cpp's arithmetic: ggml's kernels only (no OpenBLAS, no Hone kernels: the builder is
    // not put `on` the engine), so evaluation equals llama.cpp's in every build
    this.graph = new Graph(model.engine, this.b, [this.logits], { exact: true });
  }
  /** logits [nVocab × T·B] for the given tokens (length T·B) */
  run(tokens: Int32Array): Float32Array {
    if (tokens.length !== this.nTokens * this.nSeq) throw new Error(`expected ${this.nTokens * this.nSeq} tokens, got ${tokens.length}`);
    setForwardInputs(this.inp, tokens, this.nTokens, this.nSeq);
    this.graph.compute();
    return this.logits.get();
  }
  free() {
    this.graph.free();
    this.b.free();
  }
}
