// Calibration: a few hundred token sequences (compress/job.ts calibrationData) through the model,
// and for every linear layer's input the Gram matrix H = XᵀX / N over the N calibration tokens (X [N, cols]). Its diagonal is Wanda's
// ‖X_j‖²/N; the whole matrix is the curvature of a layer's output error, which learned codes and iCBS
// minimise. Layers that read the same input share one H: q, k and v (the attention norm's output),
// gate and up (the FFN norm's output); o reads the attention output and down the FFN activation.
import { Graph, GraphBuilder, type Tensor } from '../engine/graph.js';
import { buildForward, forwardInputs, setForwardInputs, type LlamaModel, type Module } from '../model/llama.js';
import { GGUF_NAMES, MODULES } from '../tune/adapter.js';

export type InputGroup = 'attn_in' | 'attn_out' | 'ffn_in' | 'ffn_mid';
export const INPUT_OF: Record<Module, InputGroup> = { q: 'attn_in', k: 'attn_in', v: 'attn_in', o: 'attn_out', gate: 'ffn_in', up: 'ffn_in', down: 'ffn_mid' };

export interface Gram {
  /** input features */
  n: number;
  /** H [n, n], row-major, divided by the token count */
  h: Float64Array;
}

export interface Calibration {
  tokens: number;
  sequences: number;
  /** key `${layer}.${group}` */
  grams: Map<string, Gram>;
}

/** the (layer, module) of a linear weight's GGUF name, or null for other tensors; a fused weight is
 *  known by its first part (phi3's attn_qkv by q: all its rows read the same input, as do ffn_up's
 *  gate and up rows) */
export function linearOf(name: string): { layer: number; module: Module } | null {
  const m = /^blk\.(\d+)\.(\w+)\.weight$/.exec(name);
  if (!m) return null;
  const module = m[2] === 'attn_qkv' ? 'q' : MODULES.find((x) => GGUF_NAMES[x] === m[2]);
  return module ? { layer: Number(m[1]), module } : null;
}

/** H of the input of a linear weight (GGUF name) */
export function gramOf(c: Calibration, weight: string): Gram {
  const l = linearOf(weight);
  const g = l && c.grams.get(`${l.layer}.${INPUT_OF[l.module]}`);
  if (!g) throw new Error(`no calibration statistics for ${weight}`);
  return g;
}

/** diag(H) of a linear weight's input: Wanda's ‖X_j‖² (per token) */
export function inputNormSq(c: Calibration, weight: string): Float64Array {
  const { n, h } = gramOf(c, weight);
  return Float64Array.from({ length: n }, (_, j) => h[j * n + j]);
}

/** Runs the sequences through the model and accumulates every input's Gram matrix. */
export function calibrate(model: LlamaModel, seqs: Int32Array[], opts: { onProgress?: (done: number, total: number) => void; signal?: AbortSignal } = {}): Calibration {
  if (!seqs.length) throw new Error('calibration needs at least one sequence');
  const T = seqs[0].length;
  const b = new GraphBuilder();
  b.on(model.engine);
  const inp = forwardInputs(b, T, 1);
  const stats = new Map<string, Tensor>();
  const logits = buildForward(b, model, inp, T, 1, (g, layer, module, W, x) => {
    const key = `${layer}.${INPUT_OF[module]}`;
    if (!stats.has(key)) {
      const xT = g.cont(g.transpose(x)); // [T, n]
      stats.set(key, g.mulMat(xT, xT)); // [n, n] = XᵀX
    }
    return g.mulMat(W, x);
  });
  const graph = new Graph(model.engine, b, [logits, ...stats.values()]);
  const grams = new Map<string, Gram>();
  for (const [key, t] of stats) grams.set(key, { n: t.shape[0], h: new Float64Array(t.shape[0] * t.shape[0]) });
  let tokens = 0;
  try {
    for (const [i, s] of seqs.entries()) {
      opts.signal?.throwIfAborted();
      if (s.length !== T) throw new Error(`calibration sequences must all have ${T} tokens; sequence ${i} has ${s.length}`);
      setForwardInputs(inp, s, T, 1);
      graph.compute();
      for (const [key, t] of stats) {
        const v = t.get(), h = grams.get(key)!.h;
        for (let j = 0; j < v.length; j++) h[j] += v[j];
      }
      tokens += T;
      opts.onProgress?.(i + 1, seqs.length);
    }
  } finally {
    graph.free();
    b.free();
  }
  for (const g of grams.values()) for (let j = 0; j < g.h.length; j++) g.h[j] /= tokens;
  return { tokens, sequences: seqs.length, grams };
}
