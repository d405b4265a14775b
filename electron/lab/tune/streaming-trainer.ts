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
// Full-parameter training (full AdamW, GaLore; adapter StreamedFullModel): the slots hold F32 master
// weights read from the blocks' records (block-state.ts, RAM or SSD) instead of the model file, the
// backward leaves every tensor's gradient, which goes back to the block's record, and the block's
// optimizer step runs on a CPU engine of its own while the device computes: during the backward of
// the blocks below it when the gradient is not clipped (the step's scale is known), else, once the
// global norm is known, during the next forward — each block's forward waits for its own update.
// Adapters (LoRA, HUT, MoS) stream through their `layerwise` side: a slot holds stand-ins for one
// layer's own adapter tensors, filled by a copy before that layer computes; gradients go back to
// the layer's accumulators (or to tensors all layers share, MoS's pools, which stay resident).
// Limits: Natural GaLore and PERP need the model in memory; no dropout.
import type { Engine } from '../engine/backend.js';
import { Graph, GraphBuilder, allocStatic, type Tensor } from '../engine/graph.js';
import { T as TYPES, ggmlTypeName } from '../engine/types.js';
import type { Window } from '../data/pack.js';
import type { GgufFile, GgufTensorInfo } from '../model/gguf.js';
import { LAYER_FIELDS, blockForward, headLoss, lossInputs, planWeights, setAttentionInputs, setLossInputs, type ForwardInputs, type Hparams, type Layer, type LayerField, type LayerOf, type LossInputs, type Module } from '../model/llama.js';
import { blockBackward, headBackward } from '../model/backward.js';
import { MODULES, PerGraph, type Adapter, type Grads, type Layerwise, type TrainedLinear } from './adapter.js';
import { AdapterOptimizer, accumulateInto, batchTokens, clipScale, type OptimizerConfig } from './trainer.js';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { AsyncFiles, alignUp, explainIoError } from '../offload/io.js';
import type { ActivationChoice, WeightHome } from '../offload/plan.js';
import { StreamedFullModel } from './block-state.js';
import { isNupesTensor } from '../model/nupes-weights.js';


/** what the last micro-batch of a step tells the backward: the step and its learning rate (a
 *  full-parameter block's optimizer step may then start as soon as its gradient is complete) */
export interface StepInfo { last: boolean; step: number; lr: number; micro: number }

/** a slot's backward: d(block input), and each trained tensor's gradient (keyed by a stand-in or a
 *  shared tensor; full-parameter training copies its gradients into the slot's `grads` instead) */
interface Backward { b: GraphBuilder; graph: Graph; dx: Tensor; grads: [Tensor, Tensor][]; sumsq?: Tensor }

/** a slot: one block's weights, stand-ins for its layer's adapter tensors, and the graphs over them */
interface Slot {
  b: GraphBuilder;
  buffer: number;
  layer: Layer;
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

/** the activations a block's backward reads (model/llama.ts BlockActs), in a fixed order */
const ACTS = ['h', 'q3', 'k3', 'v3', 'probs', 'attn', 'x1', 'h2', 'gate', 'up', 'act'] as const;

/** the block graphs' inputs, static and shared by every slot */
interface BlockIo { b: GraphBuilder; buffer: number; x: Tensor; dOut: Tensor; positions: Tensor; mask: Tensor; acts?: Tensor[] }

interface HeadGraph { b: GraphBuilder; graph: Graph; x: Tensor; loss: LossInputs; out: Tensor; dx?: Tensor; m: number; keep?: Tensor }

export class StreamingTrainer {
  readonly T: number;
  private readonly plan;
  private readonly adapter: Adapter;
  private readonly layerwise?: Layerwise;
  private readonly targets: Module[];
  private readonly full?: StreamedFullModel;
  /** full-parameter training: the embeddings' gradient from d(block 0 input) */
  private embedBack?: { b: GraphBuilder; graph: Graph; tokens: Tensor; dx: Tensor; keep: Tensor };
  /** gradients on their way to the blocks' records, and whether this step's updates have started */
  private readonly gradWrites: Promise<void>[] = [];
  private updatesStarted = false;
  /** trainable tensor → its gradient accumulator */
  private readonly accOf = new Map<Tensor, Tensor>();
  private readonly resident: { b: GraphBuilder; buffer: number; tokEmbd: Tensor; outputNorm: Tensor; output: Tensor; outputBias?: Tensor; ropeFreqs?: Tensor };
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

  constructor(readonly engine: Engine, readonly file: GgufFile, readonly hp: Hparams, adapter: Adapter, readonly batch: number, seq: number, capacity: { train: number; eval: number }, readonly optCfg: OptimizerConfig, readonly files = new AsyncFiles(8), readonly direct = true, activations: ActivationChoice[] = [], ssdDir?: string, weights: WeightHome[] = []) {
    this.choice = Array.from({ length: hp.nLayer }, (_, j) => activations[j] ?? 'recompute');
    if (this.choice.includes('swap')) {
      if (!ssdDir) throw new Error('swapping activations needs an SSD folder (--ssd)');
      this.swapPath = join(ssdDir, `hone-swap-${process.pid}-${Date.now().toString(36)}.bin`);
    }
    if (!adapter.layerwise && !(adapter instanceof StreamedFullModel)) throw new Error(`streaming training runs LoRA, HUT, MoS, full and GaLore; ${adapter.method} needs the model in memory (drop --offload, or give more --ram)`);
    if (adapter.dropout > 0) throw new Error('streaming training draws no dropout masks yet: set --dropout 0 with --offload');
    if (file.tensors.some((t) => isNupesTensor(file, t.name))) throw new Error(`${file.path} holds NUPES power-grid weights, which streaming training cannot read; train without --offload`);
    this.adapter = adapter;
    if (adapter instanceof StreamedFullModel) this.full = adapter; else this.layerwise = adapter.layerwise;
    this.targets = this.layerwise ? MODULES.filter((m) => this.layerwise!.own(0, m).length) : [];
    for (const t of adapter.trainables) this.accOf.set(t.param, t.acc);
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
    // full-parameter training trains them: the adapter holds their F32 master weights
    const r = this.full ? { ...this.full.resident, ropeFreqs: res(this.plan.ropeFreqs) }
      : { tokEmbd: res(this.plan.tokEmbd)!, outputNorm: res(this.plan.outputNorm)!, output: res(this.plan.output)!, outputBias: res(this.plan.outputBias), ropeFreqs: res(this.plan.ropeFreqs) };
    this.resident = { b: rb, buffer: allocStatic(engine, rb, `resident weights of ${file.path}`), ...r };
    for (const [t, info] of load) t.loadFromFile(file.path, info.offset);
    // blocks the plan holds in memory (device or RAM): read once here; a slot gets them by a copy,
    // not from the disk. Full-parameter training reads its blocks from their records instead.
    for (const home of ['device', 'ram'] as const) {
      const js = this.plan.layers.map((_, j) => j).filter((j) => !this.full && weights[j] === home);
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
    const io = { x: iob.tensor(TYPES.F32, [hp.nEmbd, n], 'x_in'), dOut: iob.tensor(TYPES.F32, [hp.nEmbd, n], 'd_out'), positions: iob.tensor(TYPES.I32, [n], 'positions'), mask: iob.tensor(TYPES.F32, [seq, seq], 'kq_mask') };
    // kept activations come back into the backward through static inputs shaped like the forward's
    const shapes = this.choice.some((c) => c !== 'recompute') ? this.actShapes() : null;
    if (shapes) {
      this.actSizes = shapes.map((sh) => sh.reduce((a, b) => a * b, 1));
      this.swapStride = alignUp(4 * this.actSizes.reduce((a, b) => a + b, 0));
    }
    const acts = shapes?.map((sh, k) => iob.tensor(TYPES.F32, sh, `kept_${ACTS[k]}`));
    this.io = { b: iob, buffer: allocStatic(engine, iob, "streamed blocks' inputs"), ...io, acts };
    setAttentionInputs(this.io, seq, batch);
    // two slots per block signature (tensor types and shapes), used alternately
    const bySig = new Map<string, Slot[]>();
    const seen = new Map<string, number>();
    this.plan.layers.forEach((L, j) => {
      const sig = LAYER_FIELDS.map((f) => (L[f] ? `${f}:${ggmlTypeName(L[f]!.type)}:${L[f]!.shape}` : '')).join('|');
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
    const out = eb.getRows(this.resident.tokEmbd, tokens);
    this.embed = { b: eb, graph: new Graph(engine, eb, [out]), tokens, out };
    this.head = { train: this.headGraph(capacity.train, true), eval: this.headGraph(capacity.eval, false) };
    if (this.full) {
      const bb = new GraphBuilder(16);
      bb.on(engine);
      const tok = bb.input(TYPES.I32, [n], 'tokens'), dx = bb.input(TYPES.F32, [hp.nEmbd, n], 'd_x0'), keep = bb.input(TYPES.F32, [1], 'keep');
      const acc = this.accOf.get(this.full.resident.tokEmbd)!;
      const upd = accumulateInto(bb, acc, bb.getRowsBack(dx, tok, this.full.resident.tokEmbd), keep);
      this.embedBack = { b: bb, graph: new Graph(engine, bb, [upd]), tokens: tok, dx, keep };
    }
    // full-parameter: AdamW on the resident tensors; the blocks' steps are BlockStates'
    this.optimizer = new AdapterOptimizer(engine, adapter, optCfg);
  }

  private makeSlot(L: LayerOf<GgufTensorInfo>, j: number, label: string): Slot {
    const b = new GraphBuilder(128);
    // full-parameter training computes on F32 master weights
    const t = (info?: GgufTensorInfo) => (info ? b.tensor(this.full ? TYPES.F32 : info.type, info.shape, `${label}.${info.name.split('.').slice(2).join('.')}`) : undefined);
    const layer = Object.fromEntries(LAYER_FIELDS.map((f) => [f, t(L[f])])) as unknown as Layer;
    const grads = new Map<LayerField, Tensor>();
    if (this.full) for (const f of LAYER_FIELDS) if (L[f]) grads.set(f, b.tensor(TYPES.F32, L[f]!.shape, `${label}.${f}.grad`));
    const own = new Map<Module, Tensor[]>();
    const standIn = new Map<Tensor, [Module, number]>();
    for (const m of this.targets) {
      own.set(m, this.layerwise!.own(j, m).map((t, i) => {
        const x = b.tensor(t.type, t.shape, `${label}.${m}.${i}`);
        standIn.set(x, [m, i]);
        return x;
      }));
    }
    return { b, buffer: allocStatic(this.engine, b, `streamed block (${label})`), layer, own, standIn, grads, holds: -1 };
  }

  /** the shapes of a block's activations, from a forward built on block 0's weight shapes (not computed) */
  private actShapes(): number[][] {
    const g = new GraphBuilder();
    try {
      const L = this.plan.layers[0];
      const layer = Object.fromEntries(LAYER_FIELDS.map((f) => [f, L[f] && g.tensor(L[f]!.type, L[f]!.shape, f)])) as unknown as Layer;
      const n = this.T * this.batch;
      const inp = { positions: g.tensor(TYPES.I32, [n], 'p'), mask: g.tensor(TYPES.F32, [this.T, this.T], 'm') } as ForwardInputs;
      const x = g.tensor(TYPES.F32, [this.hp.nEmbd, n], 'x');
      const rope = this.plan.ropeFreqs ? g.tensor(TYPES.F32, this.plan.ropeFreqs.shape, 'r') : null;
      const a = blockForward(g, this.hp, layer, 0, x, inp, rope, this.T, this.batch);
      return ACTS.map((k) => a[k].shape);
    } finally {
      g.free();
    }
  }

  /** a slot's forward (x_j → x_{j+1}) and backward (recompute from x_j, then d(x_j) from d(x_{j+1})) */
  private slotGraphs(slot: Slot) {
    const { hp, T, batch, io } = this;
    const rope = this.resident.ropeFreqs ?? null;
    const inp = { positions: io.positions, mask: io.mask } as ForwardInputs;
    const full = this.full;
    const memo = new PerGraph<TrainedLinear | undefined>();
    const linearIn = (g: GraphBuilder, m: Module) => (full ? full.linear() : memo.get(g, m, () => (slot.own.has(m) ? this.layerwise!.linearOver(g, m, slot.own.get(m)!) : undefined)));
    const hook = (g: GraphBuilder, _il: number, m: Module, W: Tensor, x: Tensor) => linearIn(g, m)?.forward(g, W, x) ?? g.mulMat(W, x);
    // the backward's gradients: every tensor's copied into the slot (full-parameter), or the
    // adapter's as graph outputs
    const backward = (g: GraphBuilder, dx: Tensor, grads: Grads): Backward => {
      if (!full) return { b: g, graph: new Graph(this.engine, g, [dx, ...grads.values()]), dx, grads: [...grads] };
      // and Σ g² over the block's tensors, for the global norm
      const gs = [...slot.grads].map(([f]) => grads.get(slot.layer[f]!)!);
      const sumsq = gs.map((x) => g.sum(g.sqr(x))).reduce((a, c) => g.add(a, c));
      return { b: g, graph: new Graph(this.engine, g, [dx, sumsq, ...[...slot.grads].map(([, t], i) => g.cpy(gs[i], t))]), dx, grads: [], sumsq };
    };
    const fb = new GraphBuilder();
    fb.on(this.engine);
    const f = blockForward(fb, hp, slot.layer, 0, io.x, inp, rope, T, batch, hook);
    const keptActs = io.acts ? ACTS.map((k) => f[k]) : [];
    slot.fwd = { b: fb, graph: new Graph(this.engine, fb, [f.out, ...keptActs]), out: f.out, acts: keptActs };
    const bb = new GraphBuilder();
    bb.on(this.engine);
    const acts = blockForward(bb, hp, slot.layer, 0, io.x, inp, rope, T, batch, hook);
    const grads = new Map<Tensor, Tensor>();
    const dx = blockBackward(bb, hp, slot.layer, 0, acts, io.dOut, inp, rope, T, batch, (_il, m) => { const l = linearIn(bb, m); return l && { linear: l }; }, grads, !!full);
    slot.bwd = backward(bb, dx, grads);
    if (io.acts) {
      const kb = new GraphBuilder();
      kb.on(this.engine);
      const given = Object.fromEntries(ACTS.map((k, i) => [k, io.acts![i]])) as Record<(typeof ACTS)[number], Tensor>;
      const kgrads = new Map<Tensor, Tensor>();
      const kdx = blockBackward(kb, hp, slot.layer, 0, { ...given, x: io.x, out: io.x }, io.dOut, inp, rope, T, batch, (_il, m) => { const l = linearIn(kb, m); return l && { linear: l }; }, kgrads, !!full);
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
    const h = headBackward(b, this.hp, this.resident, x, loss, grads, { full: !!this.full });
    if (!this.full) return { b, graph: new Graph(this.engine, b, [h.loss, h.dx]), x, loss, out: h.loss, dx: h.dx, m };
    // full-parameter: the head's, output norm's (and bias's) gradients into their accumulators
    const keep = b.input(TYPES.F32, [1], 'keep');
    const upd = [...grads].map(([p, g]) => accumulateInto(b, this.accOf.get(p)!, g, keep));
    return { b, graph: new Graph(this.engine, b, [h.loss, h.dx, ...upd]), x, loss, out: h.loss, dx: h.dx, m, keep };
  }

  /** block j's weights into its slot (waits for a prefetch under way) */
  private async ensure(j: number): Promise<void> {
    if (this.slotOf[j].holds === j) return;
    if (this.full) {
      // the computation waiting for the block's optimizer step: what overlap did not hide
      const t1 = performance.now();
      await this.full.blocks.ready(j);
      this.optimizerWaitMs += performance.now() - t1;
    }
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
    const infos = this.plan.layers[j];
    const held = this.held[j];
    if (held) {
      for (const f of LAYER_FIELDS) held[f]?.copyTo(slot.layer[f]!);
      slot.holds = j;
      return;
    }
    const t0 = performance.now();
    try {
      // straight into the slot's tensors; the slot's previous block finished before this started.
      // Full-parameter training: the master weights from the block's record, once its update is done
      if (this.full) this.bytesRead += await this.full.blocks.loadMaster(j, slot.layer);
      else {
        await Promise.all(LAYER_FIELDS.map((f) => (infos[f] ? this.files.readInto(this.file.path, infos[f]!.offset, slot.layer[f]!.h, infos[f]!.bytes, this.direct) : null)));
        for (const f of LAYER_FIELDS) this.bytesRead += infos[f]?.bytes ?? 0;
      }
      slot.holds = j;
      this.ioBusyMs += performance.now() - t0;
    } catch (e) {
      throw this.full ? e : explainIoError(e, 'model');
    } finally {
      this.pending.delete(j);
    }
  }

  /** layer j's own adapter tensors into its slot's stand-ins */
  private setOwn(j: number) {
    const slot = this.slotOf[j];
    for (const [m, xs] of slot.own) this.layerwise!.own(j, m).forEach((t, i) => t.copyTo(xs[i]));
  }

  private setTokens(windows: Window[], head: HeadGraph) {
    const { tokens, targets } = batchTokens(windows, this.T, this.batch);
    this.embed.tokens.set(tokens);
    this.embedBack?.tokens.set(tokens);
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
      this.setOwn(j);
      this.io.x.set(this.bounds[j]);
      slot.fwd!.graph.compute();
      this.bounds[j + 1] = slot.fwd!.out.get();
      if (this.training && this.choice[j] === 'keep') this.kept[j] = slot.fwd!.acts.map((t) => t.get());
      if (this.training && this.choice[j] === 'swap') this.swapOut(j, slot.fwd!.acts.map((t) => t.get()));
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
        return this.actSizes.map((n) => { const a = new Float32Array(buf.buffer.slice(o, o + 4 * n)); o += 4 * n; return a; });
      })();
      r.catch(() => {});
      this.swapReads.set(j, r);
    }
    if (prefetch) return undefined;
    this.swapReads.delete(j);
    return r;
  }

  /** whether the forward under way feeds a backward (evaluation keeps nothing) */
  private training = false;

  /**
   * forward + backward of one micro-batch; gradients add into the accumulators (zeroed when `first`).
   * `info` says whether this is the step's last micro-batch (full-parameter: when the gradient is
   * not clipped, each block's optimizer step then starts right after its backward).
   */
  async accumulate(windows: Window[], first: boolean, _dropoutSeed = 0, info?: StepInfo): Promise<{ loss: number; targets: number }> {
    if (first && !this.full) for (const t of this.adapter.trainables) t.acc.set(new Float32Array(t.acc.elements));
    const head = this.head.train;
    const targets = this.setTokens(windows, head);
    this.training = true;
    await this.forward();
    this.training = false;
    head.x.set(this.bounds[this.hp.nLayer]);
    head.keep?.set(new Float32Array([first ? 0 : 1]));
    head.graph.compute();
    const last = info?.last ?? true;
    // unclipped full-parameter training knows the step's gradient scale now: Fuyou's overlap of a
    // block's optimizer step with the backward of the blocks below it
    const early = this.full && last && info && !(this.optCfg.maxGradNorm > 0);
    if (this.full) this.updatesStarted = false;
    const loss = head.out.get()[0];
    let d = head.dx!.get();
    for (let j = this.hp.nLayer - 1; j >= 0; j--) {
      await this.ensure(j);
      this.prefetch(j - 1);
      const slot = this.slotOf[j];
      this.setOwn(j);
      this.io.x.set(this.bounds[j]);
      this.io.dOut.set(d);
      const kept = this.choice[j] === 'keep' ? this.kept[j] : this.choice[j] === 'swap' ? await this.swapIn(j) : undefined;
      if (this.choice[j - 1] === 'swap') this.swapIn(j - 1, true);
      const g = kept ? slot.bwdKept! : slot.bwd!;
      if (kept) this.io.acts!.forEach((t, i) => t.set(kept[i]));
      g.graph.compute();
      d = g.dx.get();
      if (this.full) {
        // the block's gradient to its record; its update may start once it is there
        const blocks = this.full.blocks;
        const w = blocks.addGrads(j, slot.grads, first, last, g.sumsq!.get()[0]);
        w.catch(() => {});
        this.gradWrites.push(w);
        if (early) this.startUpdate(j, w, info!.step, info!.lr, 1 / info!.micro);
        continue;
      }
      // the accumulators += the slot's gradients: a stand-in's go to layer j's own tensor
      for (const [key, grad] of g.grads) {
        const at = slot.standIn.get(key);
        const param = at ? this.layerwise!.own(j, at[0])[at[1]] : key;
        const acc = this.accOf.get(param)!, sum = acc.get(), add = grad.get();
        for (let i = 0; i < sum.length; i++) sum[i] += add[i];
        acc.set(sum);
      }
    }
    if (this.embedBack) {
      // the embeddings' gradient (a tied head's was added by the head graph: keep it)
      this.embedBack.dx.set(d);
      this.embedBack.keep.set(new Float32Array([first && this.full!.resident.output !== this.full!.resident.tokEmbd ? 0 : 1]));
      this.embedBack.graph.compute();
    }
    if (early) this.updatesStarted = true;
    return { loss, targets };
  }

  /** block j's optimizer step, after its gradient write `after`; its slot's copy is stale from now */
  private startUpdate(j: number, after: Promise<void>, t: number, lr: number, scale: number) {
    const blocks = this.full!.blocks;
    if (this.slotOf[j].holds === j) this.slotOf[j].holds = -1;
    blocks.track(j, after.then(() => blocks.update(j, t, lr, scale)));
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
  async step(t: number, lr: number, micro: number): Promise<number> {
    if (!this.full) return this.optimizer.step(t, lr, micro);
    await Promise.all(this.gradWrites.splice(0));
    const norm = Math.sqrt(this.full.blocks.gradSumSq + this.optimizer.sumsq()) / micro;
    const clip = clipScale(norm, this.optCfg);
    this.optimizer.apply(t, lr, clip / micro);
    if (!this.updatesStarted) for (let j = 0; j < this.hp.nLayer; j++) this.startUpdate(j, Promise.resolve(), t, lr, clip / micro);
    this.updatesStarted = false;
    return norm;
  }

  /** every block update under way, finished (full-parameter; before a checkpoint or freeing) */
  async settle(): Promise<void> {
    await Promise.all(this.gradWrites.splice(0));
    await this.full?.blocks.settle();
  }

  /** whether the trainable state is whole (a failed update may have left a step half done) */
  get consistent(): boolean {
    return !this.full?.blocks.failed;
  }

  free() {
    for (const s of this.slots) {
      for (const g of [s.fwd, s.bwd, s.bwdKept]) { g?.graph.free(); g?.b.free(); }
      this.engine.native.freeBuffer(s.buffer);
      s.b.free();
    }
    for (const h of [this.head.train, this.head.eval]) { h.graph.free(); h.b.free(); }
    this.embed.graph.free(); this.embed.b.free();
    this.embedBack?.graph.free(); this.embedBack?.b.free();
    this.optimizer.free();
    this.engine.native.freeBuffer(this.resident.buffer);
    this.resident.b.free();
    this.engine.native.freeBuffer(this.io.buffer);
    this.io.b.free();
    if (this.swapPath) rmSync(this.swapPath, { force: true });
    for (const h of this.heldBuffers) { this.engine.native.freeBuffer(h.buffer); h.b.free(); }
  }
}
