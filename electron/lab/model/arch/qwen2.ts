// qwen2 (Qwen2, Qwen2.5): the llama block with q/k/v biases and NeoX rope.
import { LLAMA_HF_NAMES, llamaBlock, type Architecture } from '../architecture.js';

export const qwen2: Architecture = {
  name: 'qwen2',
  rope: 'neox',
  block: (dims) => llamaBlock(dims, 'written'),
  tiny: { vocab: 'qwen2', addBos: false },
  hfNames: LLAMA_HF_NAMES,
};
