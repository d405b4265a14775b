// One training step on ggml: forward + backward of a batch into gradient accumulators, then the
// optimizer: global gradient norm → clipping factor → AdamW on every trainable tensor. Four graphs,
// built once: train (B×T with backward), eval (loss only), norm, and AdamW.
import type { Engine } from '../engine/backend.js';
import { Graph, GraphBuilder, type Tensor } from '../engine/graph.js';
import { T } from '../engine/types.js';
import { Rng, type Window } from '../data/pack.js';
import { buildLoss, forwardInputs, lossInputs, setForwardInputs, setLossInputs, type ForwardInputs, type LlamaModel, type LossInputs, type Module } from '../model/llama.js';
import { buildLossAndGrads } from '../model/backward.js';
import { DROPOUT_INPUT, adapterHook, moduleDims, type Adapter } from './adapter.js';

export interface OptimizerConfig {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** clip the global gradient norm to this (0: no clipping) */
  maxGradNorm: number;
}

export const OPTIMIZER_DEFAULTS: OptimizerConfig = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1 };

interface LossGraph {
  b: GraphBuilder;
  inp: ForwardInputs;
  loss: LossInputs;
  out: Tensor;
  graph: Graph;
  m: number;
  /** dropout masks (train graph only): F32 [in, T·B] of 0 or 1/(1−p) */
  masks: Tensor[];
  /** train graph: 0 to start accumulating gradients anew, 1 to add */
  keep: Tensor | null;
}

/** the most targets any batch of `batch` windows can have: a batch that straddles two epochs can
 *  hold the same window twice, so `batch` times the largest count */
export function targetCapacity(windows: Window[], batch: number): number {
  const most = windows.reduce((m, w) => Math.max(m, w.trained.reduce((a, b) => a + b, 0)), 0);
  return Math.max(1, most * batch);
}

/** a batch's token ids (B windows of T) and its targets (position, token); a short last batch repeats
 *  windows but counts their targets once */
export function batchTokens(windows: Window[], T: number, batch: number): { tokens: Int32Array; targets: [number, number][] } {
  const tokens = new Int32Array(T * batch);
  const targets: [number, number][] = [];
  for (let s = 0; s < batch; s++) {
    const w = windows[s % windows.length];
    const counted = s < windows.length;
    tokens.set(w.input, s * T);
    if (counted) for (let i = 0; i < T; i++) if (w.trained[i]) targets.push([s * T + i, w.target[i]]);
  }
  return { tokens, targets };
}

/** acc ← acc·keep + g inside a graph (keep = 0 starts a new accumulation, 1 adds) */
export function accumulateInto(b: GraphBuilder, acc: Tensor, g: Tensor, keep: Tensor): Tensor {
  return b.cpy(b.add(b.mul(acc, keep), g), acc);
}

/** the factor that clips a gradient of norm `norm` to maxGradNorm (1 when it is within, or no clipping) */
export function clipScale(norm: number, cfg: OptimizerConfig): number {
  return cfg.maxGradNorm > 0 && norm > cfg.maxGradNorm ? cfg.maxGradNorm / norm : 1;
}

/**
 * The optimizer half of a step, over an adapter's accumulated gradients: the global gradient norm →
 * clipping factor → AdamW on every trainable (one ggml graph), or the method's own optimizer step.
 */
export class AdapterOptimizer {
  private readonly opt: { b: GraphBuilder; graph: Graph; params: Tensor; gscale: Tensor } | null = null;
  private readonly norm: { b: GraphBuilder; graph: Graph; out: Tensor };

  constructor(engine: Engine, readonly adapter: Adapter, readonly optCfg: OptimizerConfig) {
    const nb = new GraphBuilder(64 + 8 * adapter.trainables.length);
    let sumsq: Tensor | null = null;
    for (const t of adapter.trainables) {
      const s = nb.sum(nb.sqr(t.acc));
      sumsq = sumsq ? nb.add(sumsq, s) : s;
    }
    this.norm = { b: nb, out: sumsq!, graph: new Graph(engine, nb, [sumsq!]) };
    if (!adapter.optimizerStep) {
      const ob = new GraphBuilder(64 + 8 * adapter.trainables.length);
      const params = ob.input(T.F32, [7], 'adamw_params');
      const gscale = ob.input(T.F32, [1], 'grad_scale');
      const steps = adapter.trainables.map((t) => ob.adamwStep(t.param, ob.mul(t.acc, gscale), t.m, t.v, params));
      this.opt = { b: ob, graph: new Graph(engine, ob, steps), params, gscale };
    }
  }

  /** step `t` (1-based) on the gradients of `micro` micro-batches; returns the gradient norm */
  step(t: number, lr: number, micro: number): number {
    const norm = Math.sqrt(this.sumsq()) / micro;
    this.apply(t, lr, clipScale(norm, this.optCfg) / micro);
    return norm;
  }

  /** Σ g² over the trainables' accumulated gradients */
  sumsq(): number {
    this.norm.graph.compute();
    return this.norm.out.get()[0];
  }

  /** the update of step `t` with the gradients scaled by `gradScale` (clipping, accumulation) */
  apply(t: number, lr: number, gradScale: number) {
    if (!this.opt) { this.adapter.optimizerStep!(t, lr, gradScale); return; }
    const { beta1, beta2, eps, weightDecay } = this.optCfg;
    this.opt.gscale.set(new Float32Array([gradScale]));
    this.opt.params.set(new Float32Array([lr, beta1, beta2, eps, weightDecay, 1 / (1 - beta1 ** t), 1 / (1 - beta2 ** t)]));
    this.opt.graph.compute();
  }

  free() {
    this.norm.graph.free(); this.norm.b.free();
    this.opt?.graph.free(); this.opt?.b.free();
  }
}

/** what a micro-batch tells the backward: whether it is the step's last, the step and its learning
 *  rate (a streamed full-parameter block's optimizer step may then start as soon as its gradient is
 *  complete) */
export interface StepInfo { last: boolean; step: number; lr: number; micro: number }

/**
 * What a run needs of a trainer: the model in memory (InMemoryTrainer, here) or its blocks streamed
 * from the file (StreamingTrainer, streaming-trainer.ts). Results may be promises (streaming waits
 * on disk reads and on blocks' updates).
 */
export interface Trainer {
  /** forward + backward of one micro-batch; gradients add into the accumulators (zeroed when `first`) */
  accumulate(windows: Window[], first: boolean, dropoutSeed: number, info: StepInfo): { loss: number; targets: number } | Promise<{ loss: number; targets: number }>;
  /** mean loss over windows, forward only */
  evaluate(windows: Window[]): number | Promise<number>;
  /** optimizer step `t` (1-based) on `micro` accumulated micro-batches; returns the gradient norm */
  step(t: number, lr: number, micro: number): number | Promise<number>;
  /** every update begun has finished (a checkpoint then reads the state of one step) */
  settle(): Promise<void>;
  /** whether the trainable state is one step's: false while a failed step left some blocks updated */
  readonly consistent: boolean;
  /** bytes read from disk for training so far (streamed blocks, records) */
  readonly bytesRead: number;
  free(): void;
}

export class InMemoryTrainer implements Trainer {
  readonly consistent = true;
  readonly bytesRead = 0;
  private readonly train: LossGraph;
  private readonly evalGraph: LossGraph;
  private readonly optimizer: AdapterOptimizer;
  readonly T: number;

  constructor(readonly engine: Engine, readonly model: LlamaModel, readonly adapter: Adapter, readonly batch: number, seq: number, capacity: { train: number; eval: number }, readonly optCfg: OptimizerConfig) {
    this.T = seq;
    this.train = this.lossGraph(capacity.train, true);
    this.evalGraph = this.lossGraph(capacity.eval, false);

    this.optimizer = new AdapterOptimizer(engine, adapter, optCfg);
  }

  /**
   * The eval graph: the loss. The train graph: the loss and, by the explicit backward
   * (model/backward.ts), every adapter gradient added into its accumulator (acc·keep + grad, so
   * keep = 0 starts a new accumulation).
   */
  private lossGraph(m: number, backward: boolean): LossGraph {
    const b = new GraphBuilder();
    b.on(this.engine);
    b.int8 = this.model.int8?.packs ?? null;
    const inp = forwardInputs(b, this.T, this.batch);
    const loss = lossInputs(b, m);
    const model = { hp: this.model.hp, weights: this.adapter.weightsFor?.(this.model.weights) ?? this.model.weights };
    if (!backward) {
      const out = buildLoss(b, model, inp, loss, this.T, this.batch, adapterHook(this.adapter));
      return { b, inp, loss, out, graph: new Graph(this.engine, b, [out]), m, masks: [], keep: null };
    }
    const masks = new Map<string, Tensor>();
    const p = this.adapter.dropout;
    const n = this.T * this.batch;
    const maskOf = (layer: number, module: Module) => {
      const key = `${layer}.${DROPOUT_INPUT[module]}`;
      if (!masks.has(key)) masks.set(key, b.input(T.F32, [moduleDims(this.model.hp, module)[0], n], `dropout.${key}`));
      return masks.get(key)!;
    };
    const { loss: out, grads } = buildLossAndGrads(b, model, inp, loss, this.T, this.batch, (layer, module) => {
      const linear = this.adapter.linear(b, layer, module);
      return linear && { linear, mask: p > 0 ? maskOf(layer, module) : undefined };
    }, { full: this.adapter.full, norms: this.adapter.norms });
    const keep = b.input(T.F32, [1], 'keep_accumulated');
    const updates = this.adapter.trainables.map((t) => accumulateInto(b, t.acc, grads.get(t.param)!, keep));
    const graph = new Graph(this.engine, b, [out, ...updates]);
    return { b, inp, loss, out, graph, m, masks: [...masks.values()], keep };
  }

  /** fresh dropout masks from `seed` (so a resumed run draws the same ones) */
  private drawMasks(g: LossGraph, seed: number) {
    const p = this.adapter.dropout;
    const rng = new Rng(seed);
    const keep = 1 / (1 - p);
    for (const mask of g.masks) mask.set(Float32Array.from({ length: mask.elements }, () => (rng.next() < p ? 0 : keep)));
  }

  /** one training micro-batch's compute, each node timed on its own (bench: the per-op breakdown) */
  profile(windows: Window[]): [string, string, number, string][] {
    if (this.train.masks.length) this.drawMasks(this.train, 0);
    this.load(this.train, windows, { first: true });
    return this.train.graph.native.profile();
  }

  private run(g: LossGraph, windows: Window[], opts: { first?: boolean } = {}): { loss: number; targets: number } {
    const targets = this.load(g, windows, opts);
    g.graph.compute();
    return { loss: g.out.get()[0], targets };
  }

  /** sets a graph's inputs from a batch; returns the number of real targets */
  private load(g: LossGraph, windows: Window[], opts: { first?: boolean } = {}): number {
    const { T, batch } = this;
    const { tokens, targets } = batchTokens(windows, T, batch);
    setForwardInputs(g.inp, tokens, T, batch);
    setLossInputs(g.loss, this.model.hp.nVocab, g.m, targets);
    g.keep?.set(new Float32Array([opts.first ? 0 : 1]));
    return targets.length;
  }

  /** forward + backward of one micro-batch; gradients add into the accumulators (zeroed when `first`) */
  accumulate(windows: Window[], first: boolean, dropoutSeed = 0, _info?: StepInfo) {
    if (this.train.masks.length) this.drawMasks(this.train, dropoutSeed);
    return this.run(this.train, windows, { first });
  }

  /** mean loss over windows, forward only */
  evaluate(windows: Window[]): number {
    let sum = 0, n = 0;
    for (let i = 0; i < windows.length; i += this.batch) {
      const r = this.run(this.evalGraph, windows.slice(i, i + this.batch));
      sum += r.loss * r.targets;
      n += r.targets;
    }
    return sum / n;
  }

  /** AdamW step `t` (1-based) on the accumulated gradients of `micro` micro-batches; returns the gradient norm */
  step(t: number, lr: number, micro: number): number {
    return this.optimizer.step(t, lr, micro);
  }

  async settle() {}

  free() {
    for (const g of [this.train, this.evalGraph]) { g.graph.free(); g.b.free(); }
    this.optimizer.free();
  }
}
