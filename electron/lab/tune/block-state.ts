// Full-parameter training out of core (Fuyou-style, ALGORITHMS.md §4): each block's trainable state —
// F32 master weights, their accumulated gradient, Adam's moments and GaLore's projectors — is one
// record per block, in RAM (host tensors) or in a file in the SSD folder (deleted when the run ends),
// never all on the device. The streaming trainer (stream.ts) copies a block's master weights into a
// device slot for its forward and backward and hands its gradient back here; the block's optimizer
// step then runs on the CPU. Where the device is a GPU it runs on a CPU engine of its own, its graph
// computed on a worker thread while the device goes on with the next block — Fuyou's synchronous
// out-of-core optimizer; where the device is the CPU itself the two would share the same cores, so
// it runs in turn on the main engine (`overlap` chooses; tests force both). The update is the
// in-memory one (tune/galore.ts: galoreUpdate / adamwUpdate), so losses match.
//
// Record layout, per block: for each tensor of the block in LAYER_FIELDS order, its pieces W, G
// (gradient), M, V and, for a GaLore-projected weight, P (projector); in the SSD file every piece
// starts on a 4 KiB boundary (O_DIRECT). Tensors move between records, slots and the file by
// ggml copies and native reads/writes, never through JavaScript arrays (except gradients summed
// over several micro-batches, and the gradient an SVD refresh reads).
import { closeSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { openHostEngine, type Engine } from '../engine/backend.js';
import { Graph, GraphBuilder, allocStatic, type Tensor } from '../engine/graph.js';
import { T as TYPES } from '../engine/types.js';
import { LAYER_FIELDS, dequantizeFromFile, type Hparams, type Layer, type LayerField, type ModelHeader } from '../model/llama.js';
import { TrainableStore, type Adapter, type Trainable, type TrainedLinear } from './adapter.js';
import type { GgufFile, GgufTensorInfo } from '../model/gguf.js';
import { isNupesTensor } from '../model/nupes-weights.js';
import { topSingularVectors } from './svd.js';
import { FULL_LINEAR, adamwUpdate, galoreUpdate, setUpdateInputs, updateInputs, type GaloreConfig, type UpdateInputs } from './galore.js';
import type { OptimizerConfig } from './trainer.js';
import { AsyncFiles, alignUp, explainIoError } from '../offload/io.js';

type Kind = 'w' | 'g' | 'm' | 'v' | 'p';

/** one tensor of a record: where it sits in the SSD file (bytes from the record's start) and its shape, ggml order */
interface Piece { field: LayerField; kind: Kind; key: string; name: string; shape: number[]; elements: number; offset: number }

/** how one of a block's tensors is optimized */
interface FieldRule { field: LayerField; info: GgufTensorInfo; projected?: { r: number; right: boolean; identity: boolean; m: number; n: number } }

/** the optimizer's working copy of one block (per block shape) */
interface OptSlot { b: GraphBuilder; buffer: number; t: Map<string, Tensor>; gb: GraphBuilder; s: UpdateInputs; graph: Graph }

const LINEARS = new Set<LayerField>(['wq', 'wk', 'wv', 'wo', 'wGate', 'wUp', 'wDown']);
const SUFFIX: Record<Kind, string> = { w: '', g: '.grad', m: '.m', v: '.v', p: '.galore_proj' };

export type StateHome = 'ram' | 'ssd';

export interface BlockStatesOptions {
  home: StateHome;
  files: AsyncFiles;
  ssdDir?: string;
  direct: boolean;
  /** run each block's update on a CPU engine of its own, on a worker thread, beside the device
   *  (default: when the device is not the CPU) */
  overlap?: boolean;
  /** that engine's threads */
  hostThreads?: number;
}

export class BlockStates {
  readonly nLayer: number;
  readonly home: StateHome;
  readonly overlap: boolean;
  private readonly rules: FieldRule[][];
  private readonly pieces: Piece[][];
  private readonly strides: number[];
  /** where the records live: host tensors in RAM, or one file on the SSD */
  private readonly records: Records;
  /** the engine the updates compute on (the main one, or a CPU engine of their own) */
  private readonly opt: Engine;
  private readonly slots = new Map<string, OptSlot>();
  /** per block: Σ g² of its accumulated gradient (after the last micro-batch) */
  private readonly sumsq: number[];
  /** per block: its update under way (the next read of its master weights waits for it) */
  private readonly updates = new Map<number, Promise<void>>();
  /** updates run one after another */
  private chain: Promise<void> = Promise.resolve();
  /** an update failed: the records may hold a half-finished step */
  failed = false;
  /** time the optimizer ran (ms) */
  optimizerMs = 0;

  readonly hp: Hparams;

  constructor(readonly engine: Engine, model: ModelHeader, readonly cfg: GaloreConfig, readonly optCfg: OptimizerConfig, o: BlockStatesOptions) {
    const { file, hp, plan } = model;
    this.hp = hp;
    if (cfg.method === 'natural-galore') throw new Error('Natural GaLore keeps a gradient history per weight that streaming training does not store yet: use --method galore or full with --offload, or give more --ram');
    if (file.tensors.some((t) => isNupesTensor(file, t.name))) throw new Error(`${file.path} holds NUPES power-grid weights, which streaming training cannot read; train the F16 model, then compress`);
    this.home = o.home;
    this.overlap = o.overlap ?? engine.kind !== 'cpu';
    this.nLayer = hp.nLayer;
    this.rules = plan.layers.map((L) => LAYER_FIELDS.filter((f) => L[f]).map((f) => {
      const info = L[f]!;
      if (!LINEARS.has(f) || cfg.method === 'full') return { field: f, info };
      const [n, m] = info.shape;
      const r = Math.min(cfg.rank, Math.min(m, n));
      return { field: f, info, projected: { r, right: m >= n, identity: cfg.rank >= Math.min(m, n), m, n } };
    }));
    this.pieces = this.rules.map((rules) => {
      const out: Piece[] = [];
      let offset = 0;
      const add = (field: LayerField, kind: Kind, name: string, shape: number[]) => {
        const elements = shape.reduce((a, c) => a * c, 1);
        out.push({ field, kind, key: `${field}.${kind}`, name: name + SUFFIX[kind], shape, elements, offset });
        offset += alignUp(4 * elements);
      };
      for (const { field, info, projected: p } of rules) {
        const shape = info.shape.slice(0, 2);
        add(field, 'w', info.name, shape);
        add(field, 'g', info.name, shape);
        const mShape = p ? (p.right ? [p.r, p.m] : [p.n, p.r]) : shape;
        add(field, 'm', info.name, mShape);
        add(field, 'v', info.name, mShape);
        if (p) add(field, 'p', info.name, p.right ? [p.n, p.r] : [p.m, p.r]);
      }
      return out;
    });
    this.strides = this.pieces.map((ps) => alignUp(ps.reduce((s, p) => Math.max(s, p.offset + 4 * p.elements), 0)));
    this.sumsq = new Array(hp.nLayer).fill(0);
    if (o.home === 'ssd') {
      if (!o.ssdDir) throw new Error('optimizer state on the SSD needs an SSD folder (--ssd)');
      this.records = new SsdRecords(join(o.ssdDir, `hone-state-${process.pid}-${Date.now().toString(36)}.bin`), this.strides, o.files, o.direct);
    } else {
      this.records = new RamRecords(engine, this.pieces, `${cfg.method} state of ${hp.nLayer} blocks (F32 master, gradients, optimizer)`);
    }
    // on a GPU the CPU is free: BLAS for the projections; on a CPU device the main engine has it
    this.opt = this.overlap ? openHostEngine(o.hostThreads ?? engine.threads, engine.kind !== 'cpu') : engine;
  }

  /** bytes of all records */
  get bytes(): number { return this.strides.reduce((a, c) => a + c, 0); }

  /** parameters trained, and bytes of optimizer state (moments and projectors) */
  get parameters(): number { return this.pieces.flat().filter((p) => p.kind === 'w').reduce((s, p) => s + p.elements, 0); }
  get optimizerBytes(): number { return 4 * this.pieces.flat().filter((p) => p.kind === 'm' || p.kind === 'v' || p.kind === 'p').reduce((s, p) => s + p.elements, 0); }

  private piece(j: number, field: LayerField, kind: Kind): Piece {
    return this.pieces[j].find((p) => p.field === field && p.kind === kind)!;
  }

  /** records from the model file: master weights dequantized, gradients and moments zero,
   *  projectors the identity where r ≥ min(m, n) (else set at the first step) */
  init(modelPath: string) {
    this.records.writeAll(this.pieces, (j) => {
      const rec = new ArrayBuffer(this.strides[j]);
      const arr = (p: Piece) => new Float32Array(rec, p.offset, p.elements);
      for (const { field, info, projected } of this.rules[j]) {
        arr(this.piece(j, field, 'w')).set(dequantizeFromFile(modelPath, info));
        if (projected?.identity) {
          const p = this.piece(j, field, 'p'), len = p.shape[0], eye = arr(p);
          for (let i = 0; i < projected.r; i++) eye[i * len + i] = 1;
        }
      }
      return rec;
    });
  }

  /** waits for block j's update under way, if any */
  async ready(j: number): Promise<void> {
    await this.updates.get(j);
  }

  /** block j's master weights into a device slot's tensors (after its pending update); bytes moved */
  async loadMaster(j: number, layer: Layer): Promise<number> {
    await this.ready(j);
    let bytes = 0;
    await Promise.all(this.rules[j].map(({ field }) => {
      const p = this.piece(j, field, 'w');
      bytes += 4 * p.elements;
      return this.records.readInto(j, p, layer[field]!);
    }));
    return bytes;
  }

  /**
   * Block j's gradients (a device slot's tensors, by field) into its record; with `first` they
   * replace it, else they add. Read at once: the slot may compute again when this returns. With
   * `last` the accumulated gradient's Σ g² is noted for the global norm (`sumsq`: the backward's
   * own, when `first` too).
   */
  addGrads(j: number, grads: Map<LayerField, Tensor>, first: boolean, last: boolean, sumsq: number): Promise<void> {
    if (first) {
      if (last) this.sumsq[j] = sumsq;
      return Promise.all(this.rules[j].map(({ field }) => this.records.writeFrom(j, this.piece(j, field, 'g'), grads.get(field)!))).then(() => {});
    }
    // a later micro-batch: the sum goes through JavaScript
    const adds = new Map(this.rules[j].map(({ field }) => [field, grads.get(field)!.get()]));
    let total = 0;
    return Promise.all(this.rules[j].map(async ({ field }) => {
      const p = this.piece(j, field, 'g'), add = adds.get(field)!;
      const acc = await this.records.read(j, p);
      for (let i = 0; i < add.length; i++) acc[i] += add[i];
      if (last) for (let i = 0; i < add.length; i++) total += acc[i] * acc[i];
      await this.records.write(j, p, acc);
    })).then(() => { if (last) this.sumsq[j] = total; });
  }

  /** Σ g² over every block's accumulated gradient */
  get gradSumSq(): number { return this.sumsq.reduce((a, c) => a + c, 0); }

  /**
   * Starts block j's optimizer step `t` (1-based) at `lr` on its gradient scaled by `gradScale`,
   * after the updates already started. The next loadMaster(j) waits for it.
   */
  update(j: number, t: number, lr: number, gradScale: number): Promise<void> {
    const run = this.chain.then(async () => {
      const t0 = performance.now();
      const slot = this.slot(j);
      const at = (p: Piece) => slot.t.get(p.key)!;
      await Promise.all(this.pieces[j].map((p) => this.records.readInto(j, p, at(p))));
      this.refresh(j, t, slot);
      setUpdateInputs(slot.s, t, lr, gradScale, this.optCfg, this.cfg.scale);
      if (this.overlap) await slot.graph.computeAsync(); else slot.graph.compute();
      await Promise.all(this.pieces[j].filter((p) => p.kind !== 'g').map((p) => this.records.writeFrom(j, p, at(p))));
      this.optimizerMs += performance.now() - t0;
    });
    this.track(j, run);
    this.chain = run.catch(() => {});
    return run;
  }

  /** `done` (a gradient write, then the update) as block j's update under way */
  track(j: number, done: Promise<void>) {
    const p = done.catch((e) => { this.failed = true; throw e; }).finally(() => { if (this.updates.get(j) === p) this.updates.delete(j); });
    p.catch(() => {}); // awaited by the next read of the block
    this.updates.set(j, p);
  }

  /** every update started so far, finished (throws the first failure) */
  async settle(): Promise<void> {
    await Promise.all([...this.updates.values()]);
  }

  /** GaLore: projectors from the accumulated gradient at steps 1, T+1, 2T+1, … (as FullModel.refresh) */
  private refresh(j: number, t: number, slot: OptSlot) {
    if (this.cfg.method !== 'galore' || (t - 1) % this.cfg.updateGap !== 0) return;
    for (const { field, projected: p } of this.rules[j]) {
      if (!p || p.identity) continue;
      const proj = topSingularVectors(slot.t.get(`${field}.g`)!.get(), p.m, p.n, p.r, p.right ? 'right' : 'left', t);
      slot.t.get(`${field}.p`)!.set(proj);
    }
  }

  /** the optimizer slot for block j's shapes (built on first use) */
  private slot(j: number): OptSlot {
    const sig = this.pieces[j].map((p) => `${p.key}:${p.shape}`).join('|');
    let s = this.slots.get(sig);
    if (s) return s;
    const b = new GraphBuilder(64 + 8 * this.pieces[j].length);
    const t = new Map(this.pieces[j].map((p) => [p.key, b.tensor(TYPES.F32, p.shape, `opt.${p.name}`, p.kind === 'w' ? 'param' : 'plain')])); // opt_step_adamw wants a param
    const buffer = allocStatic(this.opt, b, 'optimizer slot');
    const gb = new GraphBuilder(64 + 40 * this.rules[j].length);
    gb.blas = this.opt.blas;
    const inputs = updateInputs(gb);
    const outs: Tensor[] = [];
    for (const { field, projected } of this.rules[j]) {
      const w = { param: t.get(`${field}.w`)!, acc: t.get(`${field}.g`)!, m: t.get(`${field}.m`)!, v: t.get(`${field}.v`)! };
      if (projected) outs.push(...galoreUpdate(gb, { ...w, proj: t.get(`${field}.p`)!, right: projected.right }, inputs, this.optCfg));
      else outs.push(adamwUpdate(gb, w, inputs));
    }
    s = { b, buffer, t, gb, s: inputs, graph: new Graph(this.opt, gb, outs) };
    this.slots.set(sig, s);
    return s;
  }

  /** the records as checkpoint tensors, named as the in-memory FullModel names them (so a run may
   *  resume in memory from a streamed checkpoint and back); read one at a time while writing */
  checkpointTensors(): { name: string; shape: number[]; data: () => Float32Array }[] {
    return this.pieces.flatMap((ps, j) => ps.filter((p) => p.kind !== 'g').map((p) => ({ name: p.name, shape: p.shape, data: () => this.records.readSync(j, p) })));
  }

  /** sets the records from a checkpoint (`read` gives a tensor by name, or null); gradients zero */
  loadCheckpoint(read: (name: string) => Float32Array | null) {
    this.records.writeAll(this.pieces, (j) => {
      const rec = new ArrayBuffer(this.strides[j]);
      for (const p of this.pieces[j]) {
        if (p.kind === 'g') continue;
        const data = read(p.name);
        if (!data || data.length !== p.elements) throw new Error(`tensor ${p.name} is missing or has another shape (was the run's configuration changed?)`);
        new Float32Array(rec, p.offset, p.elements).set(data);
      }
      return rec;
    });
  }

  free() {
    for (const s of this.slots.values()) {
      s.graph.free();
      s.gb.free();
      this.opt.native.freeBuffer(s.buffer);
      s.b.free();
    }
    this.slots.clear();
    if (this.opt !== this.engine) this.opt.free();
    this.records.free();
  }
}

/**
 * Where the blocks' records live. A record is one block's pieces (Piece: its offset in the record
 * and its shape); a piece moves to and from tensors of any buffer or device, or as values.
 */
interface Records {
  /** every record, block by block (start, checkpoint loads): `fill(j)` gives block j's bytes */
  writeAll(pieces: Piece[][], fill: (j: number) => ArrayBuffer): void;
  readInto(j: number, p: Piece, dst: Tensor): Promise<void>;
  writeFrom(j: number, p: Piece, src: Tensor): Promise<void>;
  /** a piece's values (a copy, at least p.elements long), and new ones for it */
  read(j: number, p: Piece): Promise<Float32Array>;
  write(j: number, p: Piece, values: Float32Array): Promise<void>;
  /** a piece's values now (checkpoints, written between steps) */
  readSync(j: number, p: Piece): Float32Array;
  free(): void;
}

/** records as host tensors: one buffer in RAM */
class RamRecords implements Records {
  private readonly b: GraphBuilder;
  private readonly buffer: number;
  private readonly recs: Map<string, Tensor>[];

  constructor(private readonly engine: Engine, pieces: Piece[][], label: string) {
    this.b = new GraphBuilder(16 + pieces.flat().length);
    this.recs = pieces.map((ps) => new Map(ps.map((p) => [p.key, this.b.tensor(TYPES.F32, p.shape, `rec.${p.name}`)])));
    this.buffer = engine.native.allocContext(this.b.ctx, label, true);
  }

  private at(j: number, p: Piece) { return this.recs[j].get(p.key)!; }
  writeAll(pieces: Piece[][], fill: (j: number) => ArrayBuffer) {
    pieces.forEach((ps, j) => { const rec = fill(j); for (const p of ps) this.at(j, p).set(new Float32Array(rec, p.offset, p.elements)); });
  }
  async readInto(j: number, p: Piece, dst: Tensor) { this.at(j, p).copyTo(dst); }
  async writeFrom(j: number, p: Piece, src: Tensor) { src.copyTo(this.at(j, p)); }
  async read(j: number, p: Piece) { return this.at(j, p).get(); }
  async write(j: number, p: Piece, values: Float32Array) { this.at(j, p).set(values.subarray(0, p.elements)); }
  readSync(j: number, p: Piece) { return this.at(j, p).get(); }
  free() { this.engine.native.freeBuffer(this.buffer); this.b.free(); }
}

/** records in one file in the SSD folder, block j at the sum of the strides before it; its I/O
 *  failures explained (a full disk, a vanished folder) */
class SsdRecords implements Records {
  private readonly bases: number[];
  private created = false;
  private readonly ioError = (e: unknown) => { throw explainIoError(e, 'ssd'); };

  constructor(readonly path: string, strides: number[], private readonly files: AsyncFiles, private readonly direct: boolean) {
    this.bases = strides.map((_, j) => strides.slice(0, j).reduce((a, c) => a + c, 0));
  }

  private at(j: number, p: Piece) { return this.bases[j] + p.offset; }
  writeAll(pieces: Piece[][], fill: (j: number) => ArrayBuffer) {
    let fd: number;
    try { fd = openSync(this.path, this.created ? 'r+' : 'w'); } catch (e) { throw explainIoError(e, 'ssd'); }
    this.created = true;
    try {
      for (let j = 0; j < pieces.length; j++) {
        const rec = fill(j);
        try { writeSync(fd, new Uint8Array(rec), 0, rec.byteLength, this.bases[j]); } catch (e) { throw explainIoError(e, 'ssd'); }
      }
    } finally {
      closeSync(fd);
    }
  }
  readInto(j: number, p: Piece, dst: Tensor) { return this.files.readInto(this.path, this.at(j, p), dst.h, 4 * p.elements, this.direct).catch(this.ioError); }
  async writeFrom(j: number, p: Piece, src: Tensor) { await this.files.writeFrom(this.path, this.at(j, p), src.h, 4 * p.elements, this.direct, false).catch(this.ioError); }
  async read(j: number, p: Piece) {
    const b = await this.files.read(this.path, this.at(j, p), alignUp(4 * p.elements), this.direct).catch(this.ioError);
    return new Float32Array(new Uint8Array(b.buffer, b.byteOffset, b.byteLength).slice().buffer);
  }
  async write(j: number, p: Piece, values: Float32Array) {
    await this.files.write(this.path, this.at(j, p), new Uint8Array(values.buffer, 0, alignUp(4 * p.elements)), this.direct, false).catch(this.ioError);
  }
  readSync(j: number, p: Piece) {
    const out = new Float32Array(p.elements);
    const fd = openSync(this.path, 'r');
    try { readSync(fd, new Uint8Array(out.buffer), 0, 4 * p.elements, this.at(j, p)); } finally { closeSync(fd); }
    return out;
  }
  free() { rmSync(this.path, { force: true }); }
}

/**
 * Full-parameter training (full AdamW or GaLore) with the blocks out of core: the method's adapter
 * for the streaming trainer. The embeddings, output norm and head stay resident (F32 master weights
 * with AdamW on the main engine, as FullModel trains them); the blocks' state is in BlockStates.
 */
export class StreamedFullModel implements Adapter {
  readonly dropout = 0;
  readonly full = true;
  readonly trainables: Trainable[];
  readonly resident: { tokEmbd: Tensor; outputNorm: Tensor; output: Tensor; outputBias?: Tensor };
  private readonly store = new TrainableStore(64);
  private readonly infos = new Map<Tensor, GgufTensorInfo>();

  readonly file: GgufFile;

  constructor(readonly engine: Engine, model: ModelHeader, readonly blocks: BlockStates) {
    const { file, plan } = model;
    this.file = file;
    const made = new Map<GgufTensorInfo, Tensor>();
    const param = (info: GgufTensorInfo) => {
      if (!made.has(info)) { const t = this.store.add(info.shape, info.name); made.set(info, t); this.infos.set(t, info); }
      return made.get(info)!;
    };
    this.resident = { tokEmbd: param(plan.tokEmbd), outputNorm: param(plan.outputNorm), output: param(plan.output), outputBias: plan.outputBias && param(plan.outputBias) };
    this.trainables = this.store.trainables;
    this.store.alloc(engine, `${blocks.cfg.method}: embeddings and head (F32 master, gradients, moments)`);
  }

  get method() { return this.blocks.cfg.method; }

  /** the blocks' state in checkpoints, under FullModel's names */
  readonly hostState = {
    save: () => this.blocks.checkpointTensors(),
    load: (read: (name: string) => Float32Array | null) => this.blocks.loadCheckpoint(read),
  };

  get parameters(): number { return this.blocks.parameters + this.trainables.reduce((s, t) => s + t.param.elements, 0); }
  get optimizerBytes(): number { return this.blocks.optimizerBytes + 8 * this.trainables.reduce((s, t) => s + t.param.elements, 0); }

  /** master weights from the model file (blocks into their records), moments zero */
  init() {
    for (const t of this.trainables) t.param.set(dequantizeFromFile(this.file.path, this.infos.get(t.param)!));
    this.store.resetState();
    this.blocks.init(this.file.path);
  }

  /** every block linear trains its weight (as FullModel's) */
  linear(): TrainedLinear {
    return FULL_LINEAR;
  }

  free() {
    this.store.free(this.engine);
    this.blocks.free();
  }
}
