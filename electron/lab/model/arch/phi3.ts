// phi3 (Phi-3, Phi-3.5, Phi-4-mini): the llama block with fused weights, NeoX rope (llama.cpp's
// src/models/phi3.cpp). attn_qkv [d, nq + 2·nkv] holds q, k and v's rows in that order; ffn_up
// [d, 2·ff] holds gate's rows then up's (ggml_swiglu: silu of the first half times the second).
// Hone trains each part as its own weight (a row range of the file's tensor: the same products) and
// writes the fused tensor back on export. 128k models' long-rope: a training context within the
// original length uses the short factors, as llama.cpp and Hugging Face do there.
import type { Architecture } from '../architecture.js';

export const phi3: Architecture = {
  name: 'phi3',
  rope: 'neox',
  block: ({ d, nq, nkv, ff }) => [
    { name: 'attn_norm.weight', shape: [d], field: 'attnNorm' },
    { name: 'attn_qkv.weight', shape: [d, nq + 2 * nkv], field: [['wq', nq], ['wk', nkv], ['wv', nkv]] },
    { name: 'attn_output.weight', shape: [nq, d], field: 'wo' },
    { name: 'ffn_norm.weight', shape: [d], field: 'ffnNorm' },
    { name: 'ffn_up.weight', shape: [d, 2 * ff], field: [['wGate', ff], ['wUp', ff]] },
    { name: 'ffn_down.weight', shape: [ff, d], field: 'wDown' },
  ],
  ropeFactors: 'rope_factors_short.weight',
  tiny: { vocab: 'phi-3', addBos: true },
  hfNames: { 'attn_qkv.weight': 'self_attn.qkv_proj', 'attn_output.weight': 'self_attn.o_proj', 'ffn_up.weight': 'mlp.gate_up_proj', 'ffn_down.weight': 'mlp.down_proj' },
};
