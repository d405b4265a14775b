// qwen3 (Qwen3 dense): the llama block without biases, an RMS norm on each query and key head
// before NeoX rope (llama.cpp's src/models/qwen3.cpp). Qwen3 keeps Qwen2's tokenizer.
import { LLAMA_HF_NAMES, llamaBlock, type Architecture, type BlockTensor } from '../architecture.js';

export const qwen3: Architecture = {
  name: 'qwen3',
  rope: 'neox',
  block: (dims) => {
    const headNorms: BlockTensor[] = [
      { name: 'attn_q_norm.weight', shape: [dims.hd], field: 'qNorm' },
      { name: 'attn_k_norm.weight', shape: [dims.hd], field: 'kNorm' },
    ];
    const blk = llamaBlock(dims);
    blk.splice(blk.findIndex((t) => t.name === 'attn_output.weight'), 0, ...headNorms);
    return blk;
  },
  tiny: { vocab: 'qwen2', addBos: false },
  hfNames: LLAMA_HF_NAMES,
};
