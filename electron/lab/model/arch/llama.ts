// llama (Llama 2/3.x, Mistral, Ministral: llama.cpp stores all as "llama"): pre-RMS-norm blocks,
// adjacent-pair rope (the converter permutes q/k rows), SwiGLU; Llama 3.1's rope scaling is the
// rope_freqs tensor of frequency factors.
import { LLAMA_HF_NAMES, llamaBlock, type Architecture } from '../architecture.js';

export const llama: Architecture = {
  name: 'llama',
  rope: 'normal',
  block: (dims) => llamaBlock(dims),
  ropeFactors: 'rope_freqs.weight',
  tiny: { vocab: 'llama-spm', addBos: true },
  hfNames: LLAMA_HF_NAMES,
};
