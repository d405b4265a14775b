// Streaming training (Fuyou-style, ALGORITHMS.md §4): the blocks' frozen weights are never all in
// memory. Forward and backward run one transformer block at a time; each block's weights are read
// straight from the GGUF file (asynchronous reads, O_DIRECT where allowed) into one of two slots, the
// next block's read running while the current block computes. Every block's input (the boundary
// activation, [d, T·B] F32) is kept in RAM; the activations inside a block are recomputed in its
// backward. Embeddings, the head and the adapters' trainables stay resident. The arithmetic is the
// in-memory trainer's, op for op (model/backward.ts), so the losses are the same.
//
// Limits of this first version (the memory plan may ask for more): adapter methods only (LoRA, HUT,
// MoS: frozen base), no dropout, boundaries in RAM (not swapped to the SSD).
import type { Engine } from '../engine/backend.js';
import { Graph, GraphBuilder, allocStatic, type Tensor } from '../engine/graph.js';
import { T as TYPES, ggmlTypeName } from '../engine/types.js';
import type { Window } from '../data/pack.js';
import type { GgufFile, GgufTensorInfo } from '../model/gguf.js';
import { blockForward, forwardInputs, headLoss, lossInputs, planWeights, setAttentionInputs, setLossInputs, type ForwardInputs, type Hparams, type Layer, type LayerOf, type LossInputs, type Module } from '../model/llama.js';
import { blockBackward, headBackward } from '../model/backward.js';
import type { Adapter } from '../tune/adapter.js';
import { AdapterOptimizer, batchTokens, type OptimizerConfig } from '../tune/trainer.js';
import { AsyncFiles, explainIoError } from './io.js';

type Slot = { b: GraphBuilder; buffer: number; layer: Layer; holds: number };
const FIELDS = ['attnNorm', 'wq', 'wk', 'wv', 'wo', 'bq', 'bk', 'bv', 'bo', 'ffnNorm', 'wGate', 'wUp', 'wDown'] as const;

interface BlockGraphs { fwd: { b: GraphBuilder; graph: Graph; inp: Pick<ForwardInputs, 'positions' | 'mask'>; x: Tensor; out: Tensor }; bwd: { b: GraphBuilder; graph: Graph; inp: Pick<ForwardInputs, 'positions' | 'mask'>; x: Tensor; dOut: Tensor; dx: Tensor } }

export class StreamingTrainer {
  readonly T: number;
  private readonly plan;
  private readonly resident: { b: GraphBuilder; buffer: number; tokEmbd: Tensor; outputNorm: Tensor; output: Tensor; outputBias?: Tensor; ropeFreqs?: Tensor };
  private readonly slotOf: Slot[] = [];
  private readonly slots: Slot[] = [];
  private readonly blocks: BlockGraphs[] = [];
  private readonly embed: { b: GraphBuilder; graph: Graph; tokens: Tensor; out: Tensor };
  private readonly head: { train: HeadGraph; eval: HeadGraph };
  private readonly optimizer: AdapterOptimizer;
  private readonly pending = new Map<number, Promise<void>>();
  /** each block's input of the current micro-batch: [d, T·B] */
  private readonly bounds: Float32Array[] = [];
  /** bytes of frozen weights read from the model file */
  bytesRead = 0;

  constructor(readonly engine: Engine, readonly file: GgufFile, readonly hp: Hparams, readonly adapter: Adapter, readonly batch: number, seq: number, capacity: { train: number; eval: number }, optCfg: OptimizerConfig, readonly files = new AsyncFiles(8), readonly direct = true) {
    if (adapter.full || adapter.norms || adapter.weightsFor) throw new Error(`streaming training keeps the base frozen: ${adapter.method} trains base weights, which this version cannot stream yet; use LoRA, HUT or MoS, or drop --offload`);
    if (adapter.dropout > 0) throw new Error('streaming training draws no dropout masks yet: set --dropout 0 with --offload');
    this.T = seq;
    this.plan = planWeights(file, hp);
    // resident: embeddings, output norm and head (a tied head is the embedding)
    const rb = new GraphBuilder(16);
    const load: [Tensor, GgufTensorInfo][] = [];
    const made = new Map<GgufTensorInfo, Tensor>();
    const res = (info: GgufTensorInfo | undefined) => {
      if (!info) return undefined;
      if (!made.has(info)) { const t = rb.tensor(info.type, info.shape, info.name); made.set(info, t); load.push([t, info]); }
      return made.get(info)!;
    };
    const r = { tokEmbd: res(this.plan.tokEmbd)!, outputNorm: res(this.plan.outputNorm)!, output: res(this.plan.output)!, outputBias: res(this.plan.outputBias), ropeFreqs: res(this.plan.ropeFreqs) };
    this.resident = { b: rb, buffer: allocStatic(engine, rb, `resident weights of ${file.path}`), ...r };
    for (const [t, info] of load) t.loadFromFile(file.path, info.offset);
    // two slots per block signature (tensor types and shapes), used alternately
    const bySig = new Map<string, Slot[]>();
    const seen = new Map<string, number>();
    this.plan.layers.forEach((L, j) => {
      const sig = FIELDS.map((f) => (L[f] ? `${f}:${ggmlTypeName(L[f]!.type)}:${L[f]!.shape}` : '')).join('|');
      if (!bySig.has(sig)) bySig.set(sig, [0, 1].map((k) => this.makeSlot(L, `slot ${bySig.size}.${k}`)));
      const k = seen.get(sig) ?? 0;
      seen.set(sig, k + 1);
      this.slotOf[j] = bySig.get(sig)![k % 2];
    });
    for (const ss of bySig.values()) this.slots.push(...ss);
    for (let j = 0; j < hp.nLayer; j++) this.blocks.push(this.blockGraphs(j));
    const eb = new GraphBuilder(16);
    eb.blas = engine.blas;
    const tokens = eb.input(TYPES.I32, [seq * batch], 'tokens');
    const out = eb.getRows(this.resident.tokEmbd, tokens);
    this.embed = { b: eb, graph: new Graph(engine, eb, [out]), tokens, out };
    this.head = { train: this.headGraph(capacity.train, true), eval: this.headGraph(capacity.eval, false) };
    this.optimizer = new AdapterOptimizer(engine, adapter, optCfg);
  }

  private makeSlot(L: LayerOf<GgufTensorInfo>, label: string): Slot {
    const b = new GraphBuilder(32);
    const t = (info?: GgufTensorInfo) => (info ? b.tensor(info.type, info.shape, `${label}.${info.name.split('.').slice(2).join('.')}`) : undefined);
    const layer = Object.fromEntries(FIELDS.map((f) => [f, t(L[f])])) as unknown as Layer;
    return { b, buffer: allocStatic(this.engine, b, `streamed block (${label})`), layer, holds: -1 };
  }

  private attention(b: GraphBuilder) {
    return { positions: b.input(TYPES.I32, [this.T * this.batch], 'positions'), mask: b.input(TYPES.F32, [this.T, this.T], 'kq_mask') };
  }

  private blockGraphs(j: number): BlockGraphs {
    const { hp, T, batch, adapter } = this;
    const d = hp.nEmbd, n = T * batch;
    const L = this.slotOf[j].layer;
    const rope = this.resident.ropeFreqs ?? null;
    const linearOf = (g: GraphBuilder) => (layer: number, m: Module) => { const l = adapter.linear(g, layer, m); return l && { linear: l }; };
    const hook = (g: GraphBuilder) => (g2: GraphBuilder, layer: number, m: Module, W: Tensor, x: Tensor) => adapter.linear(g, layer, m)?.forward(g2, W, x) ?? g2.mulMat(W, x);
    // forward: x_j → x_{j+1}
    const fb = new GraphBuilder();
    fb.blas = this.engine.blas;
    const finp = this.attention(fb);
    const fx = fb.input(TYPES.F32, [d, n], 'x_in');
    const fout = blockForward(fb, hp, L, j, fx, finp as ForwardInputs, rope, T, batch, hook(fb)).out;
    // backward: recompute the block from x_j, then its backward from d(x_{j+1}); gradients add into
    // the accumulators (zeroed at the start of a step)
    const bb = new GraphBuilder();
    bb.blas = this.engine.blas;
    const binp = this.attention(bb);
    const bx = bb.input(TYPES.F32, [d, n], 'x_in');
    const dOut = bb.input(TYPES.F32, [d, n], 'd_out');
    const acts = blockForward(bb, hp, L, j, bx, binp as ForwardInputs, rope, T, batch, hook(bb));
    const grads = new Map<Tensor, Tensor>();
    const dx = blockBackward(bb, hp, L, j, acts, dOut, binp as ForwardInputs, rope, T, batch, linearOf(bb), grads);
    const updates = adapter.trainables.filter((t) => grads.has(t.param)).map((t) => bb.cpy(bb.add(t.acc, grads.get(t.param)!), t.acc));
    return {
      fwd: { b: fb, graph: new Graph(this.engine, fb, [fout]), inp: finp, x: fx, out: fout },
      bwd: { b: bb, graph: new Graph(this.engine, bb, [dx, ...updates]), inp: binp, x: bx, dOut, dx },
    };
  }

  private headGraph(m: number, backward: boolean): HeadGraph {
    const b = new GraphBuilder();
    b.blas = this.engine.blas;
    const x = b.input(TYPES.F32, [this.hp.nEmbd, this.T * this.batch], 'x_last');
    const loss = lossInputs(b, this.hp.nVocab, m);
    if (!backward) {
      const out = headLoss(b, this.hp, this.resident, x, loss).loss;
      return { b, graph: new Graph(this.engine, b, [out]), x, loss, out, m };
    }
    const h = headBackward(b, this.hp, this.resident, x, loss, new Map());
    return { b, graph: new Graph(this.engine, b, [h.loss, h.dx]), x, loss, out: h.loss, dx: h.dx, m };
  }

  /** block j's weights into its slot (waits for a prefetch under way) */
  private async ensure(j: number): Promise<void> {
    const slot = this.slotOf[j];
    if (slot.holds === j) return;
    await (this.pending.get(j) ?? this.read(j));
  }

  /** starts reading block j into its slot while something else computes */
  private prefetch(j: number) {
    if (j < 0 || j >= this.hp.nLayer || this.slotOf[j].holds === j || this.pending.has(j)) return;
    this.pending.set(j, this.read(j));
  }

  private async read(j: number): Promise<void> {
    const slot = this.slotOf[j];
    const infos = this.plan.layers[j];
    try {
      const data = await Promise.all(FIELDS.map((f) => (infos[f] ? this.files.read(this.file.path, infos[f]!.offset, infos[f]!.bytes, this.direct) : null)));
      // only now does the slot change: its previous block's graphs ran before this resolved
      FIELDS.forEach((f, k) => { if (data[k]) slot.layer[f]!.set(data[k]!); });
      for (const b of data) this.bytesRead += b?.length ?? 0;
      slot.holds = j;
    } catch (e) {
      throw explainIoError(e, 'model');
    } finally {
      this.pending.delete(j);
    }
  }

  private setTokens(windows: Window[], head: HeadGraph) {
    const { tokens, targets } = batchTokens(windows, this.T, this.batch);
    this.embed.tokens.set(tokens);
    this.embed.graph.compute();
    this.bounds[0] = this.embed.out.get();
    setLossInputs(head.loss, this.hp.nVocab, head.m, targets);
    return targets.length;
  }

  /** forward through every block, streaming; leaves each block's input in `bounds` */
  private async forward() {
    for (let j = 0; j < this.hp.nLayer; j++) {
      await this.ensure(j);
      this.prefetch(j + 1);
      const g = this.blocks[j].fwd;
      g.x.set(this.bounds[j]);
      setAttentionInputs(g.inp, this.T, this.batch);
      g.graph.compute();
      this.bounds[j + 1] = g.out.get();
    }
  }

  /** forward + backward of one micro-batch; gradients add into the accumulators (zeroed when `first`) */
  async accumulate(windows: Window[], first: boolean): Promise<{ loss: number; targets: number }> {
    if (first) for (const t of this.adapter.trainables) t.acc.set(new Float32Array(t.acc.elements));
    const head = this.head.train;
    const targets = this.setTokens(windows, head);
    await this.forward();
    head.x.set(this.bounds[this.hp.nLayer]);
    head.graph.compute();
    const loss = head.out.get()[0];
    let d = head.dx!.get();
    for (let j = this.hp.nLayer - 1; j >= 0; j--) {
      await this.ensure(j);
      this.prefetch(j - 1);
      const g = this.blocks[j].bwd;
      g.x.set(this.bounds[j]);
      g.dOut.set(d);
      setAttentionInputs(g.inp, this.T, this.batch);
      g.graph.compute();
      d = g.dx.get();
    }
    return { loss, targets };
  }

  async evaluate(windows: Window[]): Promise<number> {
    let sum = 0, n = 0;
    for (let i = 0; i < windows.length; i += this.batch) {
      const head = this.head.eval;
      const targets = this.setTokens(windows.slice(i, i + this.batch), head);
      await this.forward();
      head.x.set(this.bounds[this.hp.nLayer]);
      head.graph.compute();
      sum += head.out.get()[0] * targets;
      n += targets;
    }
    return sum / n;
  }

  step(t: number, lr: number, micro: number): number {
    return this.optimizer.step(t, lr, micro);
  }

  free() {
    for (const g of this.blocks) { g.fwd.graph.free(); g.fwd.b.free(); g.bwd.graph.free(); g.bwd.b.free(); }
    for (const h of [this.head.train, this.head.eval]) { h.graph.free(); h.b.free(); }
    this.embed.graph.free(); this.embed.b.free();
    this.optimizer.free();
    for (const s of this.slots) { this.engine.native.freeBuffer(s.buffer); s.b.free(); }
    this.engine.native.freeBuffer(this.resident.buffer);
    this.resident.b.free();
  }
}

interface HeadGraph { b: GraphBuilder; graph: Graph; x: Tensor; loss: LossInputs; out: Tensor; dx?: Tensor; m: number }
