// gemma3 (Gemma 3 text, 270M–27B): the embeddings scaled by √d, an RMS norm on each query and key head,
// norms before and after both attention and feed-forward, GeGLU, and sliding-window attention on five
// layers of every six, which turn rope with their own base (llama.cpp's src/models/gemma3.cpp). The
// converter stores the norms' gains with Gemma's +1 folded in, so every norm is a plain RMS norm.
import type { Architecture } from '../architecture.js';
import { kv } from '../gguf-writer.js';

export const gemma3: Architecture = {
  name: 'gemma3',
  rope: 'neox',
  block: ({ d, nq, nkv, hd, ff }) => [
    { name: 'attn_norm.weight', shape: [d], field: 'attnNorm' },
    { name: 'attn_q.weight', shape: [d, nq], field: 'wq' },
    { name: 'attn_k.weight', shape: [d, nkv], field: 'wk' },
    { name: 'attn_v.weight', shape: [d, nkv], field: 'wv' },
    { name: 'attn_q_norm.weight', shape: [hd], field: 'qNorm' },
    { name: 'attn_k_norm.weight', shape: [hd], field: 'kNorm' },
    { name: 'attn_output.weight', shape: [nq, d], field: 'wo' },
    { name: 'post_attention_norm.weight', shape: [d], field: 'postAttnNorm' },
    { name: 'ffn_norm.weight', shape: [d], field: 'ffnNorm' },
    { name: 'ffn_gate.weight', shape: [d, ff], field: 'wGate' },
    { name: 'ffn_up.weight', shape: [d, ff], field: 'wUp' },
    { name: 'ffn_down.weight', shape: [ff, d], field: 'wDown' },
    { name: 'post_ffw_norm.weight', shape: [d], field: 'postFfnNorm' },
  ],
  math: (num, { nLayer, d, nHead, hd }, meta) => {
    if ((num('final_logit_softcapping', 'positive') ?? 0) > 0) return 'final logit soft-capping (gemma3.final_logit_softcapping) is not computed by Hone yet';
    const window = num('attention.sliding_window', 'count') ?? 0;
    // every `period`-th layer attends globally (llama.cpp's set_swa_pattern), or a per-layer list
    const pattern = meta('attention.sliding_window_pattern');
    const period = typeof pattern === 'number' || typeof pattern === 'bigint' ? Number(pattern) : 6;
    const layers = Array.isArray(pattern) ? pattern.map(Boolean) : Array.from({ length: nLayer }, (_, il) => period === 0 || il % period < period - 1);
    return {
      embedScale: Math.sqrt(d),
      // Gemma 3 27B (62 layers) scales by its query_pre_attn_scalar d/heads, the others by 1/√hd
      attnScale: nLayer === 62 ? 1 / Math.sqrt(d / nHead) : 1 / Math.sqrt(hd),
      act: 'gelu',
      swa: window > 0 ? { window, layers, freqBase: num('rope.freq_base_swa', 'positive') ?? 10000 } : undefined,
    };
  },
  // Gemma 4's vocabulary (262,144 tokens) stands in for Gemma 3's, with a Gemma-style template over its turn tokens
  tiny: {
    vocab: 'gemma-4', addBos: true,
    // embeddings scaled by √d into the blocks are unit-sized (and so are the tied head's logits)
    embedStd: (d) => 1 / Math.sqrt(d),
    template: "{{ bos_token }}{% for m in messages %}{{ '<|turn>' + ('model' if m['role'] == 'assistant' else m['role']) + '\\n' + m['content'] | trim + '<turn|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|turn>model\\n' }}{% endif %}",
  },
  // a window shorter than test texts; even layers attend through it, odd ones globally
  tinyMeta: () => ({ 'attention.sliding_window': kv.u32(16), 'attention.sliding_window_pattern': kv.u32(2), 'rope.freq_base_swa': kv.f32(10000) }),
  hfNames: {
    'attn_q.weight': 'self_attn.q_proj', 'attn_k.weight': 'self_attn.k_proj', 'attn_v.weight': 'self_attn.v_proj',
    'attn_output.weight': 'self_attn.o_proj', 'ffn_gate.weight': 'mlp.gate_proj', 'ffn_up.weight': 'mlp.up_proj', 'ffn_down.weight': 'mlp.down_proj',
  },
};
