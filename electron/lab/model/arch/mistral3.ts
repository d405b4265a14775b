// mistral3 (Ministral 3 3B/8B/14B, Mistral Small 3.x text): the llama block, with YaRN rope scaling
// and an optional attention temperature, 1 + β·ln(⌊p / n_ctx_orig⌋ + 1) on the queries at position p
// after rope (llama.cpp's src/models/mistral3.cpp; model/llama.ts attnTempAt). The temperature is 1
// below the rope's original context (16k for Ministral 3).
import { LLAMA_HF_NAMES, llamaBlock, type Architecture } from '../architecture.js';
import { kv } from '../gguf-writer.js';

export const mistral3: Architecture = {
  name: 'mistral3',
  rope: 'normal',
  block: (dims) => llamaBlock(dims),
  ropeFactors: 'rope_freqs.weight',
  math: (num) => {
    const scale = num('attention.temperature_scale', 'positive');
    if (!scale) return {};
    const from = num('rope.scaling.original_context_length', 'count') ?? num('context_length', 'count');
    if (!from) return 'an attention temperature without the rope\'s original context (mistral3.rope.scaling.original_context_length)';
    return { attnTemp: { scale, from } };
  },
  // Mistral's Tekken vocabulary is not in llama.cpp's test set; Llama 3's BPE stands in
  tiny: { vocab: 'llama-bpe', addBos: true },
  // YaRN ×4 over an original context of 16: test texts run past it, so the temperature grows along them
  tinyMeta: () => ({
    'rope.scaling.type': kv.str('yarn'), 'rope.scaling.factor': kv.f32(4), 'rope.scaling.original_context_length': kv.u32(16),
    'rope.scaling.yarn_beta_fast': kv.f32(32), 'rope.scaling.yarn_beta_slow': kv.f32(1), 'attention.temperature_scale': kv.f32(0.1),
  }),
  hfNames: LLAMA_HF_NAMES,
};
