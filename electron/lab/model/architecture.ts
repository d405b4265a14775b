// What an architecture is to Hone: how its GGUF names and shapes a block's tensors, how its rope
// turns, which vocabulary make-tiny gives it and what Hugging Face calls its layers. One unit per
// architecture (model/arch/), registered in model/architectures.ts; the graph (llama.ts) reads the
// plan these describe and never the architecture's name.
import type { GgufValue } from './gguf.js';
import type { VocabName } from './vocab.js';

/** a block's sizes, from the header: d embedding, nq = heads·hd, nkv = kv heads·hd, hd head, ff */
export interface BlockDims { d: number; nq: number; nkv: number; hd: number; ff: number }

/** the fields of a block the graph reads (model/llama.ts LayerOf) */
export type BlockField =
  | 'attnNorm' | 'wq' | 'wk' | 'wv' | 'wo' | 'bq' | 'bk' | 'bv' | 'bo' | 'qNorm' | 'kNorm' | 'postAttnNorm'
  | 'ffnNorm' | 'wGate' | 'wUp' | 'wDown' | 'postFfnNorm';

/** reads `<arch>.<key>` from the file's metadata: a checked number, or undefined when absent */
export type MetaNumber = (key: string, kind: 'count' | 'positive') => number | undefined;

/** What a block computes beyond the llama block, as an architecture reads it from its metadata. */
export interface BlockMath {
  /** the token embeddings are multiplied by this (Gemma: √d) */
  embedScale: number;
  /** the attention logits' scale (1/√hd; Gemma 3 27B: 1/√(d/heads)) */
  attnScale: number;
  /** the feed-forward's gate activation: SwiGLU's silu or GeGLU's gelu (tanh form) */
  act: 'silu' | 'gelu';
  /** sliding-window attention: which layers attend to the last `window` positions only, and the
   *  rope base those layers turn with (their frequency scale is 1) */
  swa?: { window: number; layers: boolean[]; freqBase: number };
  /** attention temperature (mistral3, llama4): queries at position p scale by
   *  1 + scale·ln(⌊p / from⌋ + 1), which is 1 below `from` (the rope's original context) */
  attnTemp?: { scale: number; from: number };
}

/** One tensor of a block as the file stores it (name after `blk.N.`). A fused weight (phi3's
 *  attn_qkv) names the fields its rows split into, first rows first: [field, rows][]. */
export interface BlockTensor {
  name: string;
  /** ggml order: [in, out] for a weight, [n] for a norm or bias */
  shape: number[];
  field: BlockField | [BlockField, number][];
  /** absent from some files of this architecture (make-tiny leaves it out unless `tiny`) */
  optional?: boolean;
  /** make-tiny writes it even though it is optional */
  tiny?: boolean;
}

export interface Architecture {
  /** general.architecture */
  name: string;
  /** how rope pairs a head's dimensions: adjacent (llama.cpp's converter permutes q/k to match) or
   *  halves (NeoX) */
  rope: 'normal' | 'neox';
  /** the block's tensors, in the order make-tiny writes them */
  block(dims: BlockDims): BlockTensor[];
  /** the rope frequency factors a training context uses (llama's rope_freqs, phi3's short factors) */
  ropeFactors?: string;
  /** the vocabulary make-tiny gives it, whether its tokenizer adds BOS, and a chat template to use
   *  instead of the vocabulary file's */
  tiny: { vocab: VocabName; addBos: boolean; template?: string; embedStd?: (d: number) => number };
  /** PEFT's module name of each linear file tensor (attn_q.weight → self_attn.q_proj) */
  hfNames: Record<string, string>;
  /** the block's math where it is not the llama block's; `nLayer`, `d`, `nHead`, `hd` from the header.
   *  A refusal (a string) names what Hone does not compute yet. */
  math?(num: MetaNumber, dims: { nLayer: number; d: number; nHead: number; hd: number }, meta: (key: string) => unknown): Partial<BlockMath> | string;
  /** make-tiny's extra metadata (keys after `<arch>.`), given its layer count */
  tinyMeta?(nLayer: number): Record<string, GgufValue>;
}

/** the llama block: separate q/k/v and gate/up weights; q/k/v biases where the file has them */
export function llamaBlock({ d, nq, nkv, ff }: BlockDims, biases: 'optional' | 'written' = 'optional'): BlockTensor[] {
  const bias = biases === 'written' ? { optional: true, tiny: true } : { optional: true };
  return [
    { name: 'attn_norm.weight', shape: [d], field: 'attnNorm' },
    { name: 'attn_q.weight', shape: [d, nq], field: 'wq' },
    { name: 'attn_k.weight', shape: [d, nkv], field: 'wk' },
    { name: 'attn_v.weight', shape: [d, nkv], field: 'wv' },
    { name: 'attn_q.bias', shape: [nq], field: 'bq', ...bias },
    { name: 'attn_k.bias', shape: [nkv], field: 'bk', ...bias },
    { name: 'attn_v.bias', shape: [nkv], field: 'bv', ...bias },
    { name: 'attn_output.weight', shape: [nq, d], field: 'wo' },
    { name: 'attn_output.bias', shape: [d], field: 'bo', optional: true },
    { name: 'ffn_norm.weight', shape: [d], field: 'ffnNorm' },
    { name: 'ffn_gate.weight', shape: [d, ff], field: 'wGate' },
    { name: 'ffn_up.weight', shape: [d, ff], field: 'wUp' },
    { name: 'ffn_down.weight', shape: [ff, d], field: 'wDown' },
  ];
}

/** Hugging Face's names of the llama block's linear layers */
export const LLAMA_HF_NAMES: Record<string, string> = {
  'attn_q.weight': 'self_attn.q_proj', 'attn_k.weight': 'self_attn.k_proj', 'attn_v.weight': 'self_attn.v_proj',
  'attn_output.weight': 'self_attn.o_proj', 'ffn_gate.weight': 'mlp.gate_proj', 'ffn_up.weight': 'mlp.up_proj', 'ffn_down.weight': 'mlp.down_proj',
};
