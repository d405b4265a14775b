// What trains inside the streamed blocks (tune/streaming-trainer.ts), as one of two strategies
// behind BlockTraining:
//   AdapterBlocks: an adapter's per-layer tensors (LoRA, HUT, MoS through their `layerwise` side).
//     The blocks' weights stay frozen and come from the model file; a slot holds stand-ins for one
//     layer's own adapter tensors, filled by a copy before that layer computes; gradients go back to
//     the layer's accumulators (or to tensors all layers share, MoS's pools, which stay resident).
//   FullBlocks: every weight (full AdamW, GaLore; adapter StreamedFullModel). A slot holds a block's
//     F32 master weights from its record (block-state.ts, RAM or SSD); the backward leaves every
//     tensor's gradient in the slot, which goes back to the record, and the block's optimizer step
//     runs beside the device: during the backward of the blocks below it when the gradient is not
//     clipped (the step's scale is known), else, once the global norm is known, during the next
//     forward; each block's forward waits for its own update. The embeddings and head are trained
//     too, resident.
import type { Engine } from '../engine/backend.js';
import { Graph, GraphBuilder, type Tensor } from '../engine/graph.js';
import { T as TYPES } from '../engine/types.js';
import type { GgufTensorInfo } from '../model/gguf.js';
import { LAYER_FIELDS, type Layer, type LayerField, type LayerOf, type Module, type WeightsOf } from '../model/llama.js';
import { MODULES, PerGraph, type Adapter, type Grads, type Layerwise, type TrainedLinear } from './adapter.js';
import { StreamedFullModel } from './block-state.js';
import { accumulateInto, clipScale, type AdapterOptimizer, type OptimizerConfig, type StepInfo } from './trainer.js';

/** a slot's backward: d(block input), and each trained tensor's gradient (keyed by a stand-in or a
 *  shared tensor; full-parameter training copies its gradients into the slot's `grads` instead) */
export interface Backward { b: GraphBuilder; graph: Graph; dx: Tensor; grads: [Tensor, Tensor][]; sumsq?: Tensor }

/** a slot: one block's weights, stand-ins for its layer's adapter tensors, and the graphs over them */
export interface Slot {
  b: GraphBuilder;
  buffer: number;
  layer: Layer;
  /** the first block it computes: its graphs are built with that layer's rope and mask (gemma3's
   *  sliding-window and global layers get slots of their own) */
  il: number;
  /** per module, stand-ins for the computing layer's own adapter tensors (LoRA's A and B, HUT's
   *  M_A and M_B, MoS's index draws), and which module and position each stands in for */
  own: Map<Module, Tensor[]>;
  standIn: Map<Tensor, [Module, number]>;
  /** full-parameter training: each tensor's gradient, left by the backward */
  grads: Map<LayerField, Tensor>;
  holds: number;
  fwd?: { b: GraphBuilder; graph: Graph; out: Tensor; acts: Tensor[] };
  bwd?: Backward;
  /** the backward from kept activations (no recompute) */
  bwdKept?: Backward;
}

/** the embeddings, output norm and head the trainer keeps resident */
export interface Resident { tokEmbd: Tensor; outputNorm: Tensor; output: Tensor; outputBias?: Tensor }

export interface BlockTraining {
  /** the blocks' weights are frozen: the plan may hold blocks in memory, read once from the file */
  readonly frozen: boolean;
  /** the backward also gives the norms', biases' and head's gradients */
  readonly trainsAll: boolean;
  /** the resident tensors: the file's (`res` reads one), or trained F32 masters */
  resident(res: (info: GgufTensorInfo | undefined) => Tensor | undefined, plan: WeightsOf<GgufTensorInfo>): Resident;
  /** the type a slot holds a block's weight in */
  slotType(info: GgufTensorInfo): number;
  /** a slot's tensors besides the weights, in its builder */
  slotParts(b: GraphBuilder, L: LayerOf<GgufTensorInfo>, j: number, label: string): Pick<Slot, 'own' | 'standIn' | 'grads'>;
  /** the trained linear of module m in a graph over `slot` */
  linear(g: GraphBuilder, slot: Slot, m: Module): TrainedLinear | undefined;
  /** the slot's backward graph from d(input) and the gradients the block backward gave */
  backward(engine: Engine, g: GraphBuilder, slot: Slot, dx: Tensor, grads: Grads): Backward;
  /** the head graph's extra outputs (the head's gradients into their accumulators), and the input
   *  saying whether they add to what is there */
  headUpdates(b: GraphBuilder, grads: Grads): { outputs: Tensor[]; keep?: Tensor };
  /** block j's weights into the slot; bytes read */
  load(j: number, slot: Slot): Promise<number>;
  /** block j is about to compute on `slot` (its layer's own adapter tensors into the stand-ins) */
  prepare(j: number, slot: Slot): void;
  /** waits until block j may be read (its optimizer step done) */
  ready(j: number): Promise<void>;
  /** a micro-batch's tokens */
  setTokens(tokens: Int32Array): void;
  /** a micro-batch starts (`first`: of its step) */
  begin(first: boolean, info?: StepInfo): void;
  /** block j's backward `g` has computed on `slot` */
  blockDone(j: number, slot: Slot, g: Backward, first: boolean, last: boolean): void;
  /** the backward reached the embeddings with d(block 0 input) */
  end(dx: Float32Array, first: boolean): void;
  /** the optimizer step on `micro` accumulated micro-batches; the gradient norm */
  step(t: number, lr: number, micro: number, optimizer: AdapterOptimizer): Promise<number>;
  settle(): Promise<void>;
  readonly consistent: boolean;
  free(): void;
}

/** the strategy for an adapter: per-layer tensors for a LoRA, HUT or MoS, the blocks for full training */
export function blockTrainingOf(engine: Engine, nTokens: number, adapter: Adapter, readFrozen: (j: number, slot: Slot) => Promise<number>, opt: OptimizerConfig, slotOf: Slot[]): BlockTraining {
  if (adapter instanceof StreamedFullModel) return new FullBlocks(engine, nTokens, adapter, opt, slotOf);
  if (adapter.layerwise) return new AdapterBlocks(adapter, adapter.layerwise, readFrozen);
  throw new Error(`streaming training runs LoRA, HUT, MoS, full and GaLore; ${adapter.method} needs the model in memory (drop --offload, or give more --ram)`);
}

/** trainable tensor → its gradient accumulator */
const accumulators = (a: Adapter) => new Map(a.trainables.map((t) => [t.param, t.acc]));

class AdapterBlocks implements BlockTraining {
  readonly frozen = true;
  readonly trainsAll = false;
  readonly consistent = true;
  /** the modules the adapter trains */
  private readonly targets: Module[];
  private readonly accOf: Map<Tensor, Tensor>;
  private readonly memo = new PerGraph<TrainedLinear | undefined>();

  constructor(private readonly adapter: Adapter, private readonly layerwise: Layerwise, private readonly readFrozen: (j: number, slot: Slot) => Promise<number>) {
    this.targets = MODULES.filter((m) => layerwise.own(0, m).length);
    this.accOf = accumulators(adapter);
  }

  resident(res: (info: GgufTensorInfo | undefined) => Tensor | undefined, plan: WeightsOf<GgufTensorInfo>): Resident {
    return { tokEmbd: res(plan.tokEmbd)!, outputNorm: res(plan.outputNorm)!, output: res(plan.output)!, outputBias: res(plan.outputBias) };
  }

  slotType(info: GgufTensorInfo) { return info.type; }

  slotParts(b: GraphBuilder, _L: LayerOf<GgufTensorInfo>, j: number, label: string) {
    const own = new Map<Module, Tensor[]>();
    const standIn = new Map<Tensor, [Module, number]>();
    for (const m of this.targets) {
      own.set(m, this.layerwise.own(j, m).map((t, i) => {
        const x = b.tensor(t.type, t.shape, `${label}.${m}.${i}`);
        standIn.set(x, [m, i]);
        return x;
      }));
    }
    return { own, standIn, grads: new Map<LayerField, Tensor>() };
  }

  linear(g: GraphBuilder, slot: Slot, m: Module) {
    return this.memo.get(g, m, () => (slot.own.has(m) ? this.layerwise.linearOver(g, m, slot.own.get(m)!) : undefined));
  }

  /** the adapter's gradients as graph outputs */
  backward(engine: Engine, g: GraphBuilder, _slot: Slot, dx: Tensor, grads: Grads): Backward {
    return { b: g, graph: new Graph(engine, g, [dx, ...grads.values()]), dx, grads: [...grads] };
  }

  headUpdates() { return { outputs: [] }; }

  load(j: number, slot: Slot) { return this.readFrozen(j, slot); }
  prepare(j: number, slot: Slot) {
    for (const [m, xs] of slot.own) this.layerwise.own(j, m).forEach((t, i) => t.copyTo(xs[i]));
  }
  async ready() {}
  setTokens() {}

  begin(first: boolean) {
    if (first) for (const t of this.adapter.trainables) t.acc.set(new Float32Array(t.acc.elements));
  }

  /** the accumulators += the slot's gradients: a stand-in's go to layer j's own tensor */
  blockDone(j: number, slot: Slot, g: Backward) {
    for (const [key, grad] of g.grads) {
      const at = slot.standIn.get(key);
      const param = at ? this.layerwise.own(j, at[0])[at[1]] : key;
      const acc = this.accOf.get(param)!, sum = acc.get(), add = grad.get();
      for (let i = 0; i < sum.length; i++) sum[i] += add[i];
      acc.set(sum);
    }
  }

  end() {}
  async step(t: number, lr: number, micro: number, optimizer: AdapterOptimizer) { return optimizer.step(t, lr, micro); }
  async settle() {}
  free() {}
}

class FullBlocks implements BlockTraining {
  readonly frozen = false;
  readonly trainsAll = true;
  private readonly accOf: Map<Tensor, Tensor>;
  /** the embeddings' gradient from d(block 0 input) */
  private readonly embedBack: { b: GraphBuilder; graph: Graph; tokens: Tensor; dx: Tensor; keep: Tensor };
  /** gradients on their way to the blocks' records, and whether this step's updates have started */
  private readonly gradWrites: Promise<void>[] = [];
  private updatesStarted = false;
  /** this micro-batch starts each block's update right after its backward (see begin) */
  private early = false;
  private info?: StepInfo;

  constructor(engine: Engine, n: number, private readonly full: StreamedFullModel, private readonly opt: OptimizerConfig, private readonly slotOf: Slot[]) {
    this.accOf = accumulators(full);
    const bb = new GraphBuilder(16);
    bb.on(engine);
    const tokens = bb.input(TYPES.I32, [n], 'tokens'), dx = bb.input(TYPES.F32, [full.blocks.hp.nEmbd, n], 'd_x0'), keep = bb.input(TYPES.F32, [1], 'keep');
    const scale = full.blocks.hp.math.embedScale; // x0 = s·E[tokens]: dE = s·dx0 at the tokens' rows
    const upd = accumulateInto(bb, this.accOf.get(full.resident.tokEmbd)!, bb.getRowsBack(scale === 1 ? dx : bb.scale(dx, scale), tokens, full.resident.tokEmbd), keep);
    this.embedBack = { b: bb, graph: new Graph(engine, bb, [upd]), tokens, dx, keep };
  }

  resident(): Resident { return this.full.resident; }
  slotType() { return TYPES.F32; }

  slotParts(b: GraphBuilder, L: LayerOf<GgufTensorInfo>, _j: number, label: string) {
    const grads = new Map<LayerField, Tensor>();
    for (const f of LAYER_FIELDS) if (L[f]) grads.set(f, b.tensor(TYPES.F32, L[f]!.shape, `${label}.${f}.grad`));
    return { own: new Map(), standIn: new Map(), grads };
  }

  linear() { return this.full.linear(); }

  /** every tensor's gradient copied into the slot, and Σ g² over them for the global norm */
  backward(engine: Engine, g: GraphBuilder, slot: Slot, dx: Tensor, grads: Grads): Backward {
    const gs = [...slot.grads].map(([f]) => grads.get(slot.layer[f]!)!);
    const sumsq = gs.map((x) => g.sum(g.sqr(x))).reduce((a, c) => g.add(a, c));
    return { b: g, graph: new Graph(engine, g, [dx, sumsq, ...[...slot.grads].map(([, t], i) => g.cpy(gs[i], t))]), dx, grads: [], sumsq };
  }

  /** the head's, output norm's (and bias's) gradients into their accumulators */
  headUpdates(b: GraphBuilder, grads: Grads) {
    const keep = b.input(TYPES.F32, [1], 'keep');
    return { outputs: [...grads].map(([p, g]) => accumulateInto(b, this.accOf.get(p)!, g, keep)), keep };
  }

  /** the master weights from the block's record, once its update is done */
  load(j: number, slot: Slot) { return this.full.blocks.loadMaster(j, slot.layer); }
  prepare() {}
  ready(j: number) { return this.full.blocks.ready(j); }
  setTokens(tokens: Int32Array) { this.embedBack.tokens.set(tokens); }

  /** unclipped training knows the step's gradient scale at its last micro-batch: Fuyou's overlap
   *  of a block's optimizer step with the backward of the blocks below it */
  begin(_first: boolean, info?: StepInfo) {
    this.info = info;
    this.early = !!info && info.last && !(this.opt.maxGradNorm > 0);
    this.updatesStarted = false;
  }

  /** the block's gradient to its record; its update may start once it is there */
  blockDone(j: number, slot: Slot, g: Backward, first: boolean, last: boolean) {
    const w = this.full.blocks.addGrads(j, slot.grads, first, last, g.sumsq!.get()[0]);
    w.catch(() => {});
    this.gradWrites.push(w);
    if (this.early) this.startUpdate(j, w, this.info!.step, this.info!.lr, 1 / this.info!.micro);
  }

  /** the embeddings' gradient (a tied head's was added by the head graph: keep it) */
  end(dx: Float32Array, first: boolean) {
    this.embedBack.dx.set(dx);
    this.embedBack.keep.set(new Float32Array([first && this.full.resident.output !== this.full.resident.tokEmbd ? 0 : 1]));
    this.embedBack.graph.compute();
    if (this.early) this.updatesStarted = true;
  }

  /** block j's optimizer step, after its gradient write `after`; its slot's copy is stale from now */
  private startUpdate(j: number, after: Promise<void>, t: number, lr: number, scale: number) {
    const blocks = this.full.blocks;
    if (this.slotOf[j].holds === j) this.slotOf[j].holds = -1;
    blocks.track(j, after.then(() => blocks.update(j, t, lr, scale)));
  }

  /** the resident tensors update now; the blocks' updates start (if they have not) and finish
   *  while the next forward runs */
  async step(t: number, lr: number, micro: number, optimizer: AdapterOptimizer) {
    await Promise.all(this.gradWrites.splice(0));
    const norm = Math.sqrt(this.full.blocks.gradSumSq + optimizer.sumsq()) / micro;
    const clip = clipScale(norm, this.opt);
    optimizer.apply(t, lr, clip / micro);
    if (!this.updatesStarted) for (let j = 0; j < this.slotOf.length; j++) this.startUpdate(j, Promise.resolve(), t, lr, clip / micro);
    this.updatesStarted = false;
    return norm;
  }

  async settle() {
    await Promise.all(this.gradWrites.splice(0));
    await this.full.blocks.settle();
  }

  /** false when a failed update may have left a step half done */
  get consistent() { return !this.full.blocks.failed; }

  free() { this.embedBack.graph.free(); this.embedBack.b.free(); }
}
