// The training methods' names and one-line descriptions: plain data, shared by the CLI and the app's
// renderer (which must not import the engine).
import type { Module } from '../model/llama.js';

export type MethodName = 'lora' | 'hut' | 'mos' | 'galore' | 'natural-galore' | 'full' | 'perp';
/** the linear layers of a block that adapters can target */
export const MODULES: Module[] = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'];
/** the methods a user picks on the Train page and in `hone train` (PERP runs inside compression jobs) */
export const METHODS: MethodName[] = ['lora', 'hut', 'mos', 'galore', 'natural-galore', 'full'];

/** what each method is, for `hone train --help` and the Train page's tooltips */
export const METHOD_INFO: Record<MethodName, string> = {
  lora: 'LoRA: adds a rank-r update B·A to each chosen weight; exports as a llama.cpp adapter, merged GGUF or PEFT',
  hut: 'HUT: transforms each chosen weight W into a Hadamard product with low-rank factors (scaling: rows and columns of W rescaled; hadamard: W ⊙ (1 + s·BA)); exports merged',
  mos: 'MoS: LoRA whose A and B rows are shards drawn from pools shared across layers: rank r per layer for the parameters of a rank-(budget) LoRA',
  galore: 'GaLore: trains every weight (F32 master copy) with Adam in a rank-r projection of each gradient, refreshed every T steps: a fraction of AdamW\'s optimizer memory; exports merged',
  'natural-galore': 'Natural GaLore: GaLore with each projected gradient preconditioned by the inverse empirical Fisher of the last s gradients; exports merged',
  perp: 'PERP: retraining after pruning: MaskLoRA (B·A masked by the pruning mask, so pruned weights stay zero) plus the norms and biases; runs as a stage of `hone compress`',
  full: 'Full fine-tuning: every weight (F32 master copy) with AdamW; the most memory; exports merged',
};


/** HUT's two readings of the paper's transformation (tune/hut.ts) */
export const HUT_FORM_INFO = {
  scaling: "W' = diag(a)·W·diag(b) from the row sums of M_A and column sums of M_B: the cheapest (d + k multiplies per token)",
  hadamard: "W' = W ⊙ (1 + s·B·A): more expressive, but forms W' and the full weight gradient every step",
} as const;
