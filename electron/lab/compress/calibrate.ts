// Calibration: a few hundred token sequences (compress/job.ts calibrationData) through the model,
// and for every linear layer's input the Gram matrix H = XᵀX / N over the N calibration tokens (X [N, cols]). Its diagonal is Wanda's
// ‖X_j‖²/N; the whole matrix is the curvature of a layer's output error, which learned codes and iCBS
// minimise. Layers that read the same input share one H: q, k and v (the attention norm's output),
// gate and up (the FFN norm's output); o reads the attention output and down the FFN activation.
//
// The model is walked block by block, as GPTQ does: the hidden states of every calibration token
// enter block l (host memory, N × d floats), the block runs on the engine over chunks of sequences,
// its four inputs' statistics accumulate on the engine, and its output becomes block l + 1's input.
// Diagonals are small and kept for every block; full matrices (an 8B model's FFN input is 14336²)
// are kept for one block at a time, computed when a layer asks for them: a stage that visits the
// layers in order walks the model once. Statistics come from the dense model (every block's input
// is the unpruned model's).
import { Graph, GraphBuilder, allocStatic, type Tensor } from '../engine/graph.js';
import { T } from '../engine/types.js';
import { attnTempInput, blockForward, embed, setAttentionInputs, type ForwardInputs, type LlamaModel, type Module } from '../model/llama.js';
import { GGUF_NAMES, MODULES } from '../tune/adapter.js';

export type InputGroup = 'attn_in' | 'attn_out' | 'ffn_in' | 'ffn_mid';
export const INPUT_OF: Record<Module, InputGroup> = { q: 'attn_in', k: 'attn_in', v: 'attn_in', o: 'attn_out', gate: 'ffn_in', up: 'ffn_in', down: 'ffn_mid' };
const GROUPS: InputGroup[] = ['attn_in', 'attn_out', 'ffn_in', 'ffn_mid'];

export interface Gram {
  /** input features */
  n: number;
  /** H [n, n], row-major, divided by the token count */
  h: Float32Array;
}

export interface Calibration {
  readonly tokens: number;
  readonly sequences: number;
  /** whether full matrices are available (`gram`), or only their diagonals */
  readonly full: boolean;
  /** H of the input of a linear weight (GGUF name) */
  gram(weight: string): Gram;
  /** diag(H) of a linear weight's input: Wanda's ‖X_j‖² (per token) */
  normSq(weight: string): Float64Array;
  /** frees the engine's buffers (and the model, when the calibration owns it) */
  free(): void;
}

/** tokens per chunk of sequences that a block runs on at once */
const CHUNK_TOKENS = 2048;

/** the (layer, module) of a linear weight's GGUF name, or null for other tensors; a fused weight is
 *  known by its first part (phi3's attn_qkv by q: all its rows read the same input, as do ffn_up's
 *  gate and up rows) */
export function linearOf(name: string): { layer: number; module: Module } | null {
  const m = /^blk\.(\d+)\.(\w+)\.weight$/.exec(name);
  if (!m) return null;
  const module = m[2] === 'attn_qkv' ? 'q' : MODULES.find((x) => GGUF_NAMES[x] === m[2]);
  return module ? { layer: Number(m[1]), module } : null;
}

export interface CalibrateOptions {
  /** full matrices (learned codes, iCBS) rather than diagonals only (Wanda, structured pruning) */
  full?: boolean;
  /** free the model with the calibration */
  ownsModel?: boolean;
  /** called as each block's statistics are done */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

/**
 * Statistics of every linear input over the sequences (all of one length). Diagonals only: walks
 * the whole model now. Full: walks block by block as layers are asked for.
 */
export function calibrate(model: LlamaModel, seqs: Int32Array[], opts: CalibrateOptions = {}): Calibration {
  const walk = new BlockWalk(model, seqs, opts);
  if (!opts.full) {
    try { walk.through(model.hp.nLayer - 1); } catch (e) { walk.free(); throw e; }
  }
  return walk;
}

class BlockWalk implements Calibration {
  readonly tokens: number;
  readonly sequences: number;
  readonly full: boolean;
  private readonly T: number;
  /** sequences per chunk, and the chunks' hidden states entering block `next` [d, T·S] */
  private readonly perChunk: number;
  private hidden: Float32Array[] = [];
  private next = 0;
  private readonly diags = new Map<string, Float64Array>();
  private grams = new Map<string, Gram>();
  private readonly io = new Map<number, { b: GraphBuilder; buffer: number; x: Tensor; inp: ForwardInputs }>();

  constructor(private readonly model: LlamaModel, private readonly seqs: Int32Array[], private readonly opts: CalibrateOptions) {
    if (!seqs.length) throw new Error('calibration needs at least one sequence');
    this.T = seqs[0].length;
    seqs.forEach((s, i) => { if (s.length !== this.T) throw new Error(`calibration sequences must all have ${this.T} tokens; sequence ${i} has ${s.length}`); });
    this.tokens = this.T * seqs.length;
    this.sequences = seqs.length;
    this.full = !!opts.full;
    this.perChunk = Math.max(1, Math.min(seqs.length, Math.floor(CHUNK_TOKENS / this.T)));
  }

  gram(weight: string): Gram {
    if (!this.full) throw new Error(`${weight}: this calibration kept only the diagonals of its statistics; calibrate with full matrices`);
    const key = this.keyOf(weight);
    const layer = Number(key.split('.')[0]);
    if (!this.grams.has(key)) {
      if (layer < this.next) this.restart();
      this.through(layer);
    }
    return this.grams.get(key)!;
  }

  normSq(weight: string): Float64Array {
    const key = this.keyOf(weight);
    if (!this.diags.has(key)) this.through(Number(key.split('.')[0]));
    return this.diags.get(key)!;
  }

  private keyOf(weight: string): string {
    const l = linearOf(weight);
    if (!l || l.layer >= this.model.hp.nLayer) throw new Error(`no calibration statistics for ${weight}`);
    return `${l.layer}.${INPUT_OF[l.module]}`;
  }

  /** the chunks of sequences: [first, count] */
  private chunks(): [number, number][] {
    const out: [number, number][] = [];
    for (let s = 0; s < this.seqs.length; s += this.perChunk) out.push([s, Math.min(this.perChunk, this.seqs.length - s)]);
    return out;
  }

  /** static inputs for chunks of `count` sequences: the block input x, positions and masks */
  private ioFor(count: number) {
    let io = this.io.get(count);
    if (io) return io;
    const { hp } = this.model, len = this.T, n = len * count;
    const b = new GraphBuilder(16);
    b.on(this.model.engine);
    const window = hp.math.swa?.window ?? Infinity;
    const inp = {
      positions: b.tensor(T.I32, [n], 'positions'), mask: b.tensor(T.F32, [len, len], 'kq_mask'),
      ...(len > window && hp.math.swa?.layers.some(Boolean) && { swaMask: b.tensor(T.F32, [len, len], 'kq_mask_swa'), window }),
      ...attnTempInput(b, hp, len, count),
    } as ForwardInputs;
    const x = b.tensor(T.F32, [hp.nEmbd, n], 'x_in');
    const buffer = allocStatic(this.model.engine, b, 'calibration inputs');
    setAttentionInputs(inp, len, count);
    io = { b, buffer, x, inp };
    this.io.set(count, io);
    return io;
  }

  private restart() {
    this.hidden = [];
    this.next = 0;
  }

  /** the token embeddings of every chunk: block 0's input */
  private embedAll() {
    const { model } = this;
    this.hidden = this.chunks().map(([s, count]) => {
      const b = new GraphBuilder(16);
      b.on(model.engine);
      const tokens = b.input(T.I32, [this.T * count], 'tokens');
      const out = embed(b, model.hp, model.weights.tokEmbd, tokens);
      const g = new Graph(model.engine, b, [out]);
      try {
        const ids = new Int32Array(this.T * count);
        for (let k = 0; k < count; k++) ids.set(this.seqs[s + k], k * this.T);
        tokens.set(ids);
        g.compute();
        return out.get();
      } finally { g.free(); b.free(); }
    });
  }

  /** walks blocks until block `last`'s statistics are in */
  through(last: number) {
    if (this.next === 0 && !this.hidden.length) this.embedAll();
    while (this.next <= last) {
      this.opts.signal?.throwIfAborted();
      this.block(this.next);
      this.next++;
      this.opts.onProgress?.(this.next, this.model.hp.nLayer);
    }
  }

  /** block il over every chunk: its inputs' statistics, and the next block's hidden states */
  private block(il: number) {
    const { model } = this;
    const { engine, hp } = model;
    const sb = new GraphBuilder(16); // the accumulators, zeroed
    const acc = new Map<InputGroup, Tensor>();
    const shapes = new Map<InputGroup, number>();
    // input widths from the block's weights: q's columns (d), o's (heads·hd), gate's (d), down's (ff)
    const L = model.weights.layers[il];
    shapes.set('attn_in', L.wq.shape[0]).set('attn_out', L.wo.shape[0]).set('ffn_in', L.wGate.shape[0]).set('ffn_mid', L.wDown.shape[0]);
    for (const g of GROUPS) acc.set(g, sb.tensor(T.F32, this.full ? [shapes.get(g)!, shapes.get(g)!] : [1, shapes.get(g)!], `calibration.${il}.${g}`));
    const accBuffer = allocStatic(engine, sb, `calibration statistics of block ${il}`, { zero: true });
    const graphs = new Map<number, { b: GraphBuilder; graph: Graph; out: Tensor }>();
    try {
      const next: Float32Array[] = [];
      for (const [ci, [, count]] of this.chunks().entries()) {
        this.opts.signal?.throwIfAborted();
        const io = this.ioFor(count);
        let gr = graphs.get(count);
        if (!gr) {
          const b = new GraphBuilder();
          b.on(engine);
          const updates: Tensor[] = [];
          const seen = new Set<InputGroup>();
          const hook = (g: GraphBuilder, _l: number, module: Module, W: Tensor, x: Tensor) => {
            const group = INPUT_OF[module];
            if (!seen.has(group)) {
              seen.add(group);
              const a = acc.get(group)!;
              // x [n_in, N]: full XᵀX [n_in, n_in], or Σ_tokens x² per feature [1, n_in]
              const xT = g.cont(g.transpose(x)); // [N, n_in]
              const stat = this.full ? g.mulMat(xT, xT) : g.sumRows(g.cont(g.transpose(g.sqr(x))));
              updates.push(g.cpy(g.add(a, stat), a));
            }
            return g.mulMat(W, x);
          };
          const acts = blockForward(b, hp, L, il, io.x, io.inp, model.weights.ropeFreqs ?? null, this.T, count, hook);
          gr = { b, graph: new Graph(engine, b, [acts.out, ...updates]), out: acts.out };
          graphs.set(count, gr);
        }
        io.x.set(this.hidden[ci]);
        gr.graph.compute();
        next.push(gr.out.get());
      }
      this.hidden = next;
      // statistics out, per token
      if (this.full) this.grams = new Map();
      for (const g of GROUPS) {
        const v = acc.get(g)!.get(), n = shapes.get(g)!;
        for (let i = 0; i < v.length; i++) v[i] /= this.tokens;
        this.diags.set(`${il}.${g}`, this.full ? Float64Array.from({ length: n }, (_, j) => v[j * n + j]) : Float64Array.from(v));
        if (this.full) this.grams.set(`${il}.${g}`, { n, h: v });
      }
    } finally {
      for (const gr of graphs.values()) { gr.graph.free(); gr.b.free(); }
      engine.native.freeBuffer(accBuffer);
      sb.free();
    }
  }

  free() {
    for (const io of this.io.values()) { this.model.engine.native.freeBuffer(io.buffer); io.b.free(); }
    this.io.clear();
    this.hidden = [];
    this.grams.clear();
    if (this.opts.ownsModel) this.model.free();
  }
}
