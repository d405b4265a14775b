// What a parameter-efficient method gives the training graph: its trainable tensors (with their
// gradient accumulators and AdamW moments), and for each adapted linear layer its forward and its
// explicit backward. LoRA (lora.ts), HUT (hut.ts) and MoS (mos.ts) implement it; the frozen base
// weight W is any ggml type. Shapes in ggml order: W [in, out], x [in, n], dy [out, n].
import type { Engine } from '../engine/backend.js';
import { GraphBuilder, allocStatic, type Tensor } from '../engine/graph.js';
import type { AdapterHook, Hparams, Module, Weights } from '../model/llama.js';
import { addGrad, type Grads, type TrainedLinear } from '../model/linear.js';
export { addGrad, type Grads, type TrainedLinear };

import { MODULES, type MethodName } from './method-info.js';
export { MODULES };

/** llama.cpp's tensor name of each module's weight */
export const GGUF_NAMES: Record<Module, string> = {
  q: 'attn_q', k: 'attn_k', v: 'attn_v', o: 'attn_output', gate: 'ffn_gate', up: 'ffn_up', down: 'ffn_down',
};

/** Modules reading the same input share one dropout mask per layer (a mask per module would
 * multiply the masks JavaScript draws each step); eval graphs apply none. */
export const DROPOUT_INPUT: Record<Module, string> = { q: 'attn_in', k: 'attn_in', v: 'attn_in', o: 'attn_out', gate: 'ffn_in', up: 'ffn_in', down: 'ffn_act' };

/** [in, out] of each module's frozen weight */
export function moduleDims(hp: Hparams, m: Module): [number, number] {
  const q = hp.nHead * hp.headDim, kv = hp.nHeadKv * hp.headDim;
  switch (m) {
    case 'q': return [hp.nEmbd, q];
    case 'k': case 'v': return [hp.nEmbd, kv];
    case 'o': return [q, hp.nEmbd];
    case 'gate': case 'up': return [hp.nEmbd, hp.nFf];
    case 'down': return [hp.nFf, hp.nEmbd];
  }
}

export function checkTargets(targets: Module[]) {
  const bad = targets.filter((t) => !MODULES.includes(t));
  if (bad.length || targets.length === 0) throw new Error(`targets must be some of ${MODULES.join(',')}; got "${targets.join(',')}"`);
}

export interface Trainable {
  name: string;
  param: Tensor;
  /** gradient accumulator, AdamW first and second moments: static, same shape as param */
  acc: Tensor;
  m: Tensor;
  v: Tensor;
}

/**
 * How a method's adapters stream with the blocks (tune/streaming-trainer.ts): the tensors that are one
 * layer's own (copied into a slot's stand-ins before that layer's block computes; the trained ones
 * get their gradients added back), and the linear over such stand-ins. Its gradients are keyed by
 * the stand-ins, or by tensors every layer shares (MoS's shard pools), which stay resident.
 */
export interface Layerwise {
  own(layer: number, module: Module): Tensor[];
  linearOver(b: GraphBuilder, module: Module, standIns: Tensor[]): TrainedLinear;
}

export interface HostState {
  save(): { name: string; shape?: number[]; data: Float32Array | (() => Float32Array) }[];
  load(read: (name: string) => Float32Array | null): void;
}

export interface Adapter {
  readonly method: MethodName;
  readonly trainables: Trainable[];
  readonly dropout: number;
  /** state that is not trained but belongs to the adapter (MoS's index draws): saved with checkpoints */
  readonly fixed?: Tensor[];
  /** full-parameter training: the trainables are the model's own weights, and the backward also
   *  gives the norms', biases', embeddings' and head's gradients */
  readonly full?: boolean;
  /** trains the norms' gains and the biases (PERP): the backward gives their gradients, and the graph
   *  uses `weightsFor`'s weights, where the trainables stand in for the model's norms and biases */
  readonly norms?: boolean;
  weightsFor?(w: Weights): Weights;
  /** per-layer adapters that can stream with the blocks (LoRA, HUT, MoS) */
  readonly layerwise?: Layerwise;
  /** a method's own optimizer (GaLore); without it the trainer runs AdamW on every trainable */
  optimizerStep?(t: number, lr: number, gradScale: number): void;
  /** state outside the trainables' tensors that checkpoints must carry (Natural GaLore's gradient
   *  history; streamed blocks' records): F32 tensors by name, `data` read when written */
  readonly hostState?: HostState;
  /** parameters trained, where not all are the trainables' tensors (streamed full-parameter training) */
  readonly parameters?: number;
  /** bytes of optimizer state, where it is not two moments per trainable parameter */
  readonly optimizerBytes?: number;
  /** fresh parameters from `seed`, optimizer state zero */
  init(seed: number): void;
  /** the adapted linear at (layer, module) for graphs built with `b`, or undefined if it stays frozen */
  linear(b: GraphBuilder, layer: number, module: Module): TrainedLinear | undefined;
  /** the merge: the trained weight W' [in, out] that replaces the frozen W [in, out] (F32) at
   *  (layer, module), built from the same tensors as `linear`; undefined where it stays frozen.
   *  Export and compression fold the training into the base with it. */
  merged?(b: GraphBuilder, layer: number, module: Module, W: Tensor): Tensor | undefined;
  /** low-rank methods: W' = W + scale·(B·A) with A [in, r] and B [r, out] (MoS: assembled from its
   *  pools), for the adapter GGUF and PEFT exports */
  lowRank?(b: GraphBuilder, layer: number, module: Module): { A: Tensor; B: Tensor } | undefined;
  /** the trained value of a model tensor the method trains outside the linears (PERP's norms and
   *  biases), by GGUF name */
  replaces?(name: string): Tensor | undefined;
  free(): void;
}

/** B·A as [in, out] (ggml order) from A [in, r] and B [r, out]: a low-rank update to a weight */
export function lowRankProduct(b: GraphBuilder, A: Tensor, B: Tensor): Tensor {
  return b.mulMat(b.cont(b.transpose(A)), B);
}

/** W + s·B·A [in, out]: the merge of a low-rank pair (LoRA, MoS) */
export function lowRankMerged(b: GraphBuilder, W: Tensor, A: Tensor, B: Tensor, s: number): Tensor {
  return b.add(W, b.scale(lowRankProduct(b, A, B), s));
}

export function parameterCount(a: Adapter): number {
  return a.parameters ?? a.trainables.reduce((s, t) => s + t.param.elements, 0);
}

/** the adapter as a forward hook, without dropout (evaluation graphs) */
export function adapterHook(a: Adapter): AdapterHook {
  return (b, layer, module, W, x) => a.linear(b, layer, module)?.forward(b, W, x) ?? b.mulMat(W, x);
}

/** Static storage for a method's trainables: parameter, accumulator and moments, one buffer. */
export class TrainableStore {
  readonly trainables: Trainable[] = [];
  readonly b: GraphBuilder;
  private bufferId = -1;
  constructor(maxTensors = 1 << 12) { this.b = new GraphBuilder(maxTensors); }

  add(shape: number[], name: string): Tensor {
    const param = this.b.param(shape, name);
    this.trainables.push({ name, param, acc: this.b.tensor(0, shape, `${name}.acc`), m: this.b.tensor(0, shape, `${name}.m`), v: this.b.tensor(0, shape, `${name}.v`) });
    return param;
  }

  /** the accumulators and moments start as zeros: a fresh accumulation computes acc·0 + g, which a
   *  NaN left in unwritten memory would poison */
  alloc(engine: Engine, label: string) {
    this.bufferId = allocStatic(engine, this.b, label, { zero: true });
  }

  /** zero accumulators and moments */
  resetState() {
    for (const t of this.trainables) for (const x of [t.acc, t.m, t.v]) x.set(new Float32Array(x.elements));
  }

  free(engine: Engine) {
    if (this.bufferId >= 0) engine.native.freeBuffer(this.bufferId);
    this.b.free();
  }
}

/** per-graph memo: a method's shared pieces (HUT's W', MoS's assembled A and B) are built once per graph */
export class PerGraph<V> {
  private readonly map = new WeakMap<GraphBuilder, Map<string, V>>();
  get(b: GraphBuilder, key: string, make: () => V): V {
    let m = this.map.get(b);
    if (!m) this.map.set(b, (m = new Map()));
    let v = m.get(key);
    if (v === undefined) m.set(key, (v = make()));
    return v;
  }
}
