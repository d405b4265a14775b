// Streaming training (Fuyou-style, ALGORITHMS.md §4): the blocks' frozen weights are never all in
// memory. Forward and backward run one transformer block at a time; each block's weights are read
// straight from the GGUF file into one of two slots (asynchronous reads on worker threads, O_DIRECT
// where allowed, no copy through JavaScript), the next block's read running while the current block
// computes. Every block's input (the boundary activation, [d, T·B] F32) is kept in RAM. Embeddings,
// the head and the adapters' parameters stay resident. The graphs belong to the slots, not to the
// blocks: before a block computes, its layer's adapter tensors are copied into the slot's, and after
// its backward the slot's gradients are added to the layer's accumulators — so the slot graphs
// serve any number of layers, and memory does not grow with depth. The arithmetic is the in-memory
// trainer's, op for op (model/backward.ts and the method's own linears), so the losses are the same.
//
// Activations, per the plan: kept (the forward's copied to RAM, read back by the backward), swapped
// (written to one file in the SSD folder in the background, read back a block ahead; the file is
// deleted when the trainer is freed), or recomputed from the block's input.
//
// What trains in the blocks, an adapter's per-layer tensors or every weight, is a BlockTraining
// strategy (block-training.ts). Limits: Natural GaLore and PERP need the model in memory; no dropout.
import type { Engine } from '../engine/backend.js';
import { Graph, GraphBuilder, allocStatic, type Tensor } from '../engine/graph.js';
import { T as TYPES, ggmlTypeName } from '../engine/types.js';
import type { Window } from '../data/pack.js';
import type { GgufFile, GgufTensorInfo } from '../model/gguf.js';
import { LAYER_FIELDS, attnTempInput, blockForward, embed, headLoss, isSwaLayer, lossInputs, setAttentionInputs, setLossInputs, type ForwardInputs, type Hparams, type Layer, type LayerOf, type LossInputs, type ModelHeader, type Module, type WeightsOf } from '../model/llama.js';
import { blockBackward, headBackward } from '../model/backward.js';
import type { Adapter, Grads } from './adapter.js';
import { AdapterOptimizer, batchTokens, type OptimizerConfig, type StepInfo, type Trainer } from './trainer.js';
import { blockTrainingOf, type Backward, type BlockTraining, type Resident, type Slot } from './block-training.js';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { AsyncFiles, alignUp, explainIoError } from '../offload/io.js';
import { SWAP_WRITES, type ActivationChoice, type WeightHome } from '../offload/plan.js';
import { isNupesTensor } from '../model/nupes-weights.js';


/** the activations a block's backward reads (model/llama.ts BlockActs), in a fixed order */
const ACTS = ['h', 'q3', 'k3', 'v3', 'probs', 'attn', 'x1', 'h2', 'gate', 'up', 'act'] as const;
/** and with head norms (qwen3, gemma3) the heads before them, with post-norms (gemma3) the outputs before them */
const OPTIONAL_ACTS = [['qh', 'qNorm'], ['kh', 'kNorm'], ['ao', 'postAttnNorm'], ['fo', 'postFfnNorm']] as const;
type ActName = (typeof ACTS)[number] | (typeof OPTIONAL_ACTS)[number][0];

/** the block graphs' inputs, static and shared by every slot */
interface BlockIo { b: GraphBuilder; buffer: number; x: Tensor; dOut: Tensor; positions: Tensor; mask: Tensor; swaMask?: Tensor; window?: number; attnTemp?: Tensor; temp?: { scale: number; from: number }; acts?: Tensor[] }

interface HeadGraph { b: GraphBuilder; graph: Graph; x: Tensor; loss: LossInputs; out: Tensor; dx?: Tensor; m: number; keep?: Tensor }

export interface StreamingOptions {
  batch: number;
  seq: number;
  /** target positions the train and eval graphs are built for */
  capacity: { train: number; eval: number };
  opt: OptimizerConfig;
  /** the reads' queue (shared with BlockStates), and whether they bypass the page cache (default true) */
  files?: AsyncFiles;
  direct?: boolean;
  /** per block, the plan's choices: activations (default recompute) and where frozen weights stay
   *  (default streamed) */
  activations?: ActivationChoice[];
  weights?: WeightHome[];
  /** folder for swapped activations */
  ssdDir?: string;
}

export class StreamingTrainer implements Trainer {
  readonly T: number;
  private readonly plan: WeightsOf<GgufTensorInfo>;
  /** the activations a block's backward reads, kept or swapped by name */
  private readonly actNames: ActName[];
  /** what trains in the blocks: an adapter's per-layer tensors, or every weight */
  private readonly training: BlockTraining;
  private readonly resident: Resident & { b: GraphBuilder; buffer: number; ropeFreqs?: Tensor };
  private readonly slotOf: Slot[] = [];
  private readonly slots: Slot[] = [];
  private readonly io: BlockIo;
  private readonly embed: { b: GraphBuilder; graph: Graph; tokens: Tensor; out: Tensor };
  private readonly head: { train: HeadGraph; eval: HeadGraph };
  private readonly optimizer: AdapterOptimizer;
  private readonly pending = new Map<number, Promise<void>>();
  /** blocks whose frozen weights stay in memory (the plan's 'device' / 'ram'), and their buffers */
  private readonly held: (Partial<Layer> | undefined)[] = [];
  private readonly heldBuffers: { b: GraphBuilder; buffer: number }[] = [];
  /** each block's input of the current micro-batch: [d, T·B] */
  private readonly bounds: Float32Array[] = [];
  /** per block, the plan's choice for its activations, and those kept in RAM */
  private readonly choice: ActivationChoice[];
  private readonly kept: Float32Array[][] = [];
  /** swapped activations: one file in the SSD folder, block j at j·swapStride; writes and reads in flight */
  private readonly swapPath?: string;
  private swapStride = 0;
  private actSizes: number[] = [];
  private readonly swapWrites = new Map<number, Promise<unknown>>();
  private readonly swapReads = new Map<number, Promise<Float32Array[]>>();
  /** bytes of frozen weights read from the model file; time reads were under way, and time the
   *  computation waited for one (what overlap did not hide) */
  bytesRead = 0;
  ioBusyMs = 0;
  ioWaitMs = 0;
  /** full-parameter: time the computation waited for a block's optimizer step */
  optimizerWaitMs = 0;

  readonly batch: number;
  readonly optCfg: OptimizerConfig;
  readonly files: AsyncFiles;
  readonly direct: boolean;

  readonly file: GgufFile;
  readonly hp: Hparams;

  /** `model`: the run's header (tensors planned once); the blocks' weights are read from its file */
  constructor(readonly engine: Engine, model: ModelHeader, adapter: Adapter, o: StreamingOptions) {
    const { file, hp } = model;
    this.file = file;
    this.hp = hp;
    this.plan = model.plan;
    const L0 = model.plan.layers[0];
    this.actNames = [...ACTS, ...OPTIONAL_ACTS.filter(([, field]) => L0?.[field]).map(([act]) => act)];
    const { batch, seq, capacity, activations = [], ssdDir, weights = [] } = o;
    this.batch = o.batch;
    this.optCfg = o.opt;
    this.files = o.files ?? new AsyncFiles(8);
    this.direct = o.direct ?? true;
    this.choice = Array.from({ length: hp.nLayer }, (_, j) => activations[j] ?? 'recompute');
    if (this.choice.includes('swap')) {
      if (!ssdDir) throw new Error('swapping activations needs an SSD folder (--ssd)');
      this.swapPath = join(ssdDir, `hone-swap-${process.pid}-${Date.now().toString(36)}.bin`);
    }
    if (adapter.dropout > 0) throw new Error('streaming training draws no dropout masks yet: set --dropout 0 with --offload');
    if (file.tensors.some((t) => isNupesTensor(file, t.name))) throw new Error(`${file.path} holds NUPES power-grid weights, which streaming training cannot read; train without --offload`);
    this.training = blockTrainingOf(engine, seq * batch, adapter, (j, slot) => this.readFrozen(j, slot), this.optCfg, this.slotOf);
    this.T = seq;
    // resident: embeddings, output norm and head (a tied head is the embedding)
    const rb = new GraphBuilder(16);
    const load: [Tensor, GgufTensorInfo][] = [];
    const made = new Map<GgufTensorInfo, Tensor>();
    const res = (info: GgufTensorInfo | undefined) => {
      if (!info) return undefined;
      if (!made.has(info)) { const t = rb.tensor(info.type, info.shape, info.name); made.set(info, t); load.push([t, info]); }
      return made.get(info)!;
    };
    // full-parameter training trains them: the adapter holds their F32 master weights
    const r = { ...this.training.resident(res, this.plan), ropeFreqs: res(this.plan.ropeFreqs) };
    this.resident = { b: rb, buffer: allocStatic(engine, rb, `resident weights of ${file.path}`), ...r };
    for (const [t, info] of load) t.loadFromFile(file.path, info.offset);
    // blocks the plan holds in memory (device or RAM): read once here; a slot gets them by a copy,
    // not from the disk. Full-parameter training reads its blocks from their records instead.
    for (const home of ['device', 'ram'] as const) {
      const js = this.plan.layers.map((_, j) => j).filter((j) => this.training.frozen && weights[j] === home);
      if (!js.length) continue;
      const hb = new GraphBuilder(16 * js.length);
      const loads: [Tensor, GgufTensorInfo][] = [];
      for (const j of js) {
        const L = this.plan.layers[j];
        this.held[j] = Object.fromEntries(LAYER_FIELDS.filter((f) => L[f]).map((f) => { const t = hb.tensor(L[f]!.type, L[f]!.shape, L[f]!.name); loads.push([t, L[f]!]); return [f, t]; })) as Partial<Layer>;
      }
      // held in RAM on a GPU run: host memory (on a CPU device, RAM is the device)
      this.heldBuffers.push({ b: hb, buffer: engine.native.allocContext(hb.ctx, `${js.length} blocks held in ${home === 'ram' ? 'RAM' : 'device memory'}`, home === 'ram' && engine.kind !== 'cpu') });
      for (const [t, info] of loads) t.loadFromFile(file.path, info.offset);
    }
    // the block graphs' inputs
    const iob = new GraphBuilder(32);
    const n = seq * batch;
    const window = hp.math.swa?.window ?? Infinity;
    const io = {
      x: iob.tensor(TYPES.F32, [hp.nEmbd, n], 'x_in'), dOut: iob.tensor(TYPES.F32, [hp.nEmbd, n], 'd_out'), positions: iob.tensor(TYPES.I32, [n], 'positions'), mask: iob.tensor(TYPES.F32, [seq, seq], 'kq_mask'),
      ...(seq > window && { swaMask: iob.tensor(TYPES.F32, [seq, seq], 'kq_mask_swa'), window }),
      ...attnTempInput(iob, hp, seq, batch),
    };
    // kept activations come back into the backward through static inputs shaped like the forward's
    const shapes = this.choice.some((c) => c !== 'recompute') ? this.actShapes() : null;
    if (shapes) {
      this.actSizes = shapes.map((sh) => sh.reduce((a, b) => a * b, 1));
      this.swapStride = alignUp(4 * this.actSizes.reduce((a, b) => a + b, 0));
    }
    const acts = shapes?.map((sh, k) => iob.tensor(TYPES.F32, sh, `kept_${this.actNames[k]}`));
    this.io = { b: iob, buffer: allocStatic(engine, iob, "streamed blocks' inputs"), ...io, acts };
    setAttentionInputs(this.io, seq, batch);
    // two slots per block signature (tensor types and shapes), used alternately
    const bySig = new Map<string, Slot[]>();
    const seen = new Map<string, number>();
    this.plan.layers.forEach((L, j) => {
      const sig = LAYER_FIELDS.map((f) => (L[f] ? `${f}:${ggmlTypeName(L[f]!.type)}:${L[f]!.shape}` : '')).join('|') + (isSwaLayer(hp, j) ? '|swa' : '');
      if (!bySig.has(sig)) bySig.set(sig, [0, 1].map((k) => this.makeSlot(L, j, `slot ${bySig.size}.${k}`)));
      const k = seen.get(sig) ?? 0;
      seen.set(sig, k + 1);
      this.slotOf[j] = bySig.get(sig)![k % 2];
    });
    for (const ss of bySig.values()) this.slots.push(...ss);
    for (const slot of this.slots) this.slotGraphs(slot);
    const eb = new GraphBuilder(16);
    eb.on(engine);
    const tokens = eb.input(TYPES.I32, [n], 'tokens');
    const out = embed(eb, hp, this.resident.tokEmbd, tokens);
    this.embed = { b: eb, graph: new Graph(engine, eb, [out]), tokens, out };
    this.head = { train: this.headGraph(capacity.train, true), eval: this.headGraph(capacity.eval, false) };
    // full-parameter: AdamW on the resident tensors; the blocks' steps are BlockStates'
    this.optimizer = new AdapterOptimizer(engine, adapter, this.optCfg);
  }

  private makeSlot(L: LayerOf<GgufTensorInfo>, j: number, label: string): Slot {
    const b = new GraphBuilder(128);
    const t = (info?: GgufTensorInfo) => (info ? b.tensor(this.training.slotType(info), info.shape, `${label}.${info.name.split('.').slice(2).join('.')}`) : undefined);
    const layer = Object.fromEntries(LAYER_FIELDS.map((f) => [f, t(L[f])])) as unknown as Layer;
    const parts = this.training.slotParts(b, L, j, label);
    return { b, buffer: allocStatic(this.engine, b, `streamed block (${label})`), layer, il: j, ...parts, holds: -1 };
  }

  /** the shapes of a block's activations, from a forward built on block 0's weight shapes (not computed) */
  private actShapes(): number[][] {
    const g = new GraphBuilder();
    try {
      const L = this.plan.layers[0];
      const layer = Object.fromEntries(LAYER_FIELDS.map((f) => [f, L[f] && g.tensor(L[f]!.type, L[f]!.shape, f)])) as unknown as Layer;
      const n = this.T * this.batch;
      const inp: ForwardInputs = { tokens: g.tensor(TYPES.I32, [n], 't'), positions: g.tensor(TYPES.I32, [n], 'p'), mask: g.tensor(TYPES.F32, [this.T, this.T], 'm') };
      const x = g.tensor(TYPES.F32, [this.hp.nEmbd, n], 'x');
      const rope = this.plan.ropeFreqs ? g.tensor(TYPES.F32, this.plan.ropeFreqs.shape, 'r') : null;
      const a = blockForward(g, this.hp, layer, 0, x, inp, rope, this.T, this.batch);
      return this.actNames.map((k) => a[k]!.shape);
    } finally {
      g.free();
    }
  }

  /** a slot's forward (x_j → x_{j+1}) and backward (recompute from x_j, then d(x_j) from d(x_{j+1})) */
  private slotGraphs(slot: Slot) {
    const { hp, T, batch, io } = this;
    const rope = this.resident.ropeFreqs ?? null;
    const inp = { positions: io.positions, mask: io.mask, swaMask: io.swaMask, window: io.window, attnTemp: io.attnTemp, temp: io.temp } as ForwardInputs;
    const { training } = this;
    const linearIn = (g: GraphBuilder, m: Module) => training.linear(g, slot, m);
    const hook = (g: GraphBuilder, _il: number, m: Module, W: Tensor, x: Tensor) => linearIn(g, m)?.forward(g, W, x) ?? g.mulMat(W, x);
    const backward = (g: GraphBuilder, dx: Tensor, grads: Grads): Backward => training.backward(this.engine, g, slot, dx, grads);
    const fb = new GraphBuilder();
    fb.on(this.engine);
    const f = blockForward(fb, hp, slot.layer, slot.il, io.x, inp, rope, T, batch, hook);
    const keptActs = io.acts ? this.actNames.map((k) => f[k]!) : [];
    slot.fwd = { b: fb, graph: new Graph(this.engine, fb, [f.out, ...keptActs]), out: f.out, acts: keptActs };
    const bb = new GraphBuilder();
    bb.on(this.engine);
    const acts = blockForward(bb, hp, slot.layer, slot.il, io.x, inp, rope, T, batch, hook);
    const grads = new Map<Tensor, Tensor>();
    const dx = blockBackward(bb, hp, slot.layer, slot.il, acts, io.dOut, inp, rope, T, batch, (_il, m) => { const l = linearIn(bb, m); return l && { linear: l }; }, grads, training.trainsAll);
    slot.bwd = backward(bb, dx, grads);
    if (io.acts) {
      const kb = new GraphBuilder();
      kb.on(this.engine);
      const given = Object.fromEntries(this.actNames.map((k, i) => [k, io.acts![i]])) as Record<(typeof ACTS)[number], Tensor>;
      const kgrads = new Map<Tensor, Tensor>();
      const kdx = blockBackward(kb, hp, slot.layer, slot.il, { ...given, x: io.x, out: io.x }, io.dOut, inp, rope, T, batch, (_il, m) => { const l = linearIn(kb, m); return l && { linear: l }; }, kgrads, training.trainsAll);
      slot.bwdKept = backward(kb, kdx, kgrads);
    }
  }

  private headGraph(m: number, backward: boolean): HeadGraph {
    const b = new GraphBuilder();
    b.on(this.engine);
    const x = b.input(TYPES.F32, [this.hp.nEmbd, this.T * this.batch], 'x_last');
    const loss = lossInputs(b, m);
    if (!backward) {
      const out = headLoss(b, this.hp, this.resident, x, loss).loss;
      return { b, graph: new Graph(this.engine, b, [out]), x, loss, out, m };
    }
    const grads: Grads = new Map();
    const h = headBackward(b, this.hp, this.resident, x, loss, grads, { full: this.training.trainsAll });
    const { outputs, keep } = this.training.headUpdates(b, grads);
    return { b, graph: new Graph(this.engine, b, [h.loss, h.dx, ...outputs]), x, loss, out: h.loss, dx: h.dx, m, keep };
  }

  /** block j's weights into its slot (waits for a prefetch under way) */
  private async ensure(j: number): Promise<void> {
    if (this.slotOf[j].holds === j) return;
    // the computation waiting for the block's optimizer step (full-parameter): what overlap did not hide
    const t1 = performance.now();
    await this.training.ready(j);
    this.optimizerWaitMs += performance.now() - t1;
    const t0 = performance.now();
    await (this.pending.get(j) ?? this.read(j));
    this.ioWaitMs += performance.now() - t0;
  }

  /** starts reading block j into its slot while something else computes */
  private prefetch(j: number) {
    // a block held in memory is copied when needed: nothing to overlap
    if (this.held[j] || j < 0 || j >= this.hp.nLayer || this.slotOf[j].holds === j || this.pending.has(j)) return;
    this.pending.set(j, this.read(j));
  }

  private async read(j: number): Promise<void> {
    const slot = this.slotOf[j];
    const held = this.held[j];
    if (held) {
      for (const f of LAYER_FIELDS) held[f]?.copyTo(slot.layer[f]!);
      slot.holds = j;
      return;
    }
    const t0 = performance.now();
    try {
      // straight into the slot's tensors; the slot's previous block finished before this started
      this.bytesRead += await this.training.load(j, slot);
      slot.holds = j;
      this.ioBusyMs += performance.now() - t0;
    } finally {
      this.pending.delete(j);
    }
  }

  /** block j's frozen weights from the model file into the slot; bytes read */
  private async readFrozen(j: number, slot: Slot): Promise<number> {
    const infos = this.plan.layers[j];
    try {
      await Promise.all(LAYER_FIELDS.map((f) => (infos[f] ? this.files.readInto(this.file.path, infos[f]!.offset, slot.layer[f]!.h, infos[f]!.bytes, this.direct) : null)));
    } catch (e) {
      throw explainIoError(e, 'model');
    }
    return LAYER_FIELDS.reduce((s, f) => s + (infos[f]?.bytes ?? 0), 0);
  }

  private setTokens(windows: Window[], head: HeadGraph) {
    const { tokens, targets } = batchTokens(windows, this.T, this.batch);
    this.embed.tokens.set(tokens);
    this.training.setTokens(tokens);
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
      const slot = this.slotOf[j];
      this.training.prepare(j, slot);
      this.io.x.set(this.bounds[j]);
      slot.fwd!.graph.compute();
      this.bounds[j + 1] = slot.fwd!.out.get();
      if (this.backwardFollows && this.choice[j] === 'keep') this.kept[j] = slot.fwd!.acts.map((t) => t.get());
      if (this.backwardFollows && this.choice[j] === 'swap') {
        // at most SWAP_WRITES records on their way to the disk: the forward waits for the oldest
        const older = [...this.swapWrites.entries()].filter(([k]) => k < j).slice(-SWAP_WRITES);
        if (older.length === SWAP_WRITES) await older[0][1].catch(() => {});
        this.swapOut(j, slot.fwd!.acts.map((t) => t.get()));
      }
    }
  }

  /** writes block j's activations to the swap file (in the background; swapIn waits for it) */
  private swapOut(j: number, acts: Float32Array[]) {
    const bytes = new Uint8Array(this.swapStride);
    let o = 0;
    for (const a of acts) { bytes.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), o); o += a.byteLength; }
    const w = this.files.write(this.swapPath!, j * this.swapStride, bytes, this.direct, false).catch((e) => { throw explainIoError(e, 'ssd'); });
    w.catch(() => {}); // awaited in swapIn; no unhandled rejection meanwhile
    this.swapWrites.set(j, w);
  }

  /** block j's activations back from the swap file; `prefetch` only starts the read (the block after
   *  j starts j's while it computes) */
  private swapIn(j: number, prefetch = false): Promise<Float32Array[]> | undefined {
    let r = this.swapReads.get(j);
    if (!r) {
      r = (async () => {
        await this.swapWrites.get(j);
        const buf = await this.files.read(this.swapPath!, j * this.swapStride, this.swapStride, this.direct).catch((e) => { throw explainIoError(e, 'ssd'); });
        let o = buf.byteOffset;
        const view = o % 4 === 0; // views of the one read where it is aligned for floats
        return this.actSizes.map((n) => { const a = view ? new Float32Array(buf.buffer, o, n) : new Float32Array(buf.buffer.slice(o, o + 4 * n)); o += 4 * n; return a; });
      })();
      r.catch(() => {});
      this.swapReads.set(j, r);
    }
    if (prefetch) return undefined;
    this.swapReads.delete(j);
    return r;
  }

  /** whether the forward under way feeds a backward (evaluation keeps nothing) */
  private backwardFollows = false;

  /**
   * forward + backward of one micro-batch; gradients add into the accumulators (zeroed when `first`).
   * `info` says whether this is the step's last micro-batch (full-parameter: when the gradient is
   * not clipped, each block's optimizer step then starts right after its backward).
   */
  async accumulate(windows: Window[], first: boolean, _dropoutSeed = 0, info?: StepInfo): Promise<{ loss: number; targets: number }> {
    this.training.begin(first, info);
    const head = this.head.train;
    const targets = this.setTokens(windows, head);
    this.backwardFollows = true;
    await this.forward();
    this.backwardFollows = false;
    head.x.set(this.bounds[this.hp.nLayer]);
    head.keep?.set(new Float32Array([first ? 0 : 1]));
    head.graph.compute();
    const last = info?.last ?? true;
    const loss = head.out.get()[0];
    let d = head.dx!.get();
    for (let j = this.hp.nLayer - 1; j >= 0; j--) {
      await this.ensure(j);
      this.prefetch(j - 1);
      const slot = this.slotOf[j];
      this.training.prepare(j, slot);
      this.io.x.set(this.bounds[j]);
      this.io.dOut.set(d);
      const kept = this.choice[j] === 'keep' ? this.kept[j] : this.choice[j] === 'swap' ? await this.swapIn(j) : undefined;
      if (this.choice[j - 1] === 'swap') this.swapIn(j - 1, true);
      const g = kept ? slot.bwdKept! : slot.bwd!;
      if (kept) this.io.acts!.forEach((t, i) => t.set(kept[i]));
      g.graph.compute();
      d = g.dx.get();
      this.training.blockDone(j, slot, g, first, last);
    }
    this.training.end(d, first);
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

  /** step `t` on the accumulated gradients of `micro` micro-batches; returns the gradient norm.
   *  Full-parameter: the resident tensors update now, the blocks' updates start (if they have not)
   *  and finish while the next forward runs. */
  step(t: number, lr: number, micro: number): Promise<number> {
    return this.training.step(t, lr, micro, this.optimizer);
  }

  /** every block update under way, finished (full-parameter; before a checkpoint or freeing) */
  settle(): Promise<void> {
    return this.training.settle();
  }

  /** whether the trainable state is whole (a failed update may have left a step half done) */
  get consistent(): boolean {
    return this.training.consistent;
  }

  free() {
    for (const s of this.slots) {
      for (const g of [s.fwd, s.bwd, s.bwdKept]) { g?.graph.free(); g?.b.free(); }
      this.engine.native.freeBuffer(s.buffer);
      s.b.free();
    }
    for (const h of [this.head.train, this.head.eval]) { h.graph.free(); h.b.free(); }
    this.embed.graph.free(); this.embed.b.free();
    this.training.free();
    this.optimizer.free();
    this.engine.native.freeBuffer(this.resident.buffer);
    this.resident.b.free();
    this.engine.native.freeBuffer(this.io.buffer);
    this.io.b.free();
    if (this.swapPath) rmSync(this.swapPath, { force: true });
    for (const h of this.heldBuffers) { this.engine.native.freeBuffer(h.buffer); h.b.free(); }
  }
}
