// Compression's names, descriptions and presets: plain data shared by the CLI and the app's renderer
// (which must not import the engine).
export const QUANTS = ['f16', 'q8_0', 'q4_0', 'q4_k', 'iq4_nl', 'q8_0-learned', 'q4_0-learned', 'q4_k-learned', 'iq4_nl-learned', 'nupes4', 'nupes3'] as const;
export type Quant = (typeof QUANTS)[number];

/** a ggml type quantized by ggml itself, or with codes (and scales) learned on calibration data:
 *  standard GGUF either way, which llama.cpp, Ollama and LM Studio load */
const byGgml = (type: string) => `${type} by ggml's own quantizer (runs everywhere)`;
const learned = (type: string, scales = true) => `${type} with codes${scales ? ' and scales' : ''} learned on calibration data${scales ? '' : ", ggml's scales"} (standard GGUF: runs everywhere)`;

export const QUANT_INFO: Record<Quant, string> = {
  f16: 'F16, no quantization (runs everywhere)',
  q8_0: byGgml('Q8_0'), q4_0: byGgml('Q4_0'), q4_k: byGgml('Q4_K'), iq4_nl: byGgml('IQ4_NL'),
  'q8_0-learned': learned('Q8_0'), 'q4_0-learned': learned('Q4_0'), 'q4_k-learned': learned('Q4_K', false), 'iq4_nl-learned': learned('IQ4_NL'),
  nupes4: "NUPES 4-bit power grid: Hone's own GGUF variant; runs in Hone only (perplexity, and chat through a dequantized copy); llama.cpp, Ollama and LM Studio cannot load it",
  nupes3: "NUPES 3-bit power grid (stored 4 bits per weight): Hone's own GGUF variant; runs in Hone only; llama.cpp, Ollama and LM Studio cannot load it",
};

export const PRUNE_METHODS = ['magnitude', 'wanda', 'perp', 'icbs', 'structured'] as const;
export type PruneMethod = (typeof PRUNE_METHODS)[number];

export const PRUNE_INFO: Record<PruneMethod, string> = {
  magnitude: 'Magnitude: the smallest weights go (no data needed)',
  wanda: 'Wanda: |weight| × the norm of its input on calibration data',
  perp: 'PERP: Wanda (or magnitude) pruning, then retraining under 1% of the parameters (masked LoRA + norms) with the pruned weights held at zero',
  icbs: 'iCBS: Wanda\'s mask improved block by block by a combinatorial solver against each layer\'s output error (slower; more epochs, better)',
  structured: 'Structured: whole FFN channels (and, with heads, attention head groups) removed: a smaller, faster GGUF',
};

export const PATTERNS = ['unstructured', '2:4', '4:8'] as const;
export type PatternName = (typeof PATTERNS)[number];

/** one-click presets: a name and the settings it stands for */
export const COMPRESS_PRESETS: { name: string; settings: { prune?: PruneMethod; sparsity?: number; pattern?: PatternName; recover?: boolean; quant: Quant } }[] = [
  { name: 'Q4_K learned (smallest that runs everywhere)', settings: { quant: 'q4_k-learned' } },
  { name: 'Q8_0 learned (near lossless)', settings: { quant: 'q8_0-learned' } },
  { name: '50% pruned + PERP, Q4_K learned', settings: { prune: 'perp', sparsity: 0.5, quant: 'q4_k-learned' } },
  { name: '2:4 pruned + PERP, Q8_0', settings: { prune: 'perp', pattern: '2:4', quant: 'q8_0' } },
  { name: '50% iCBS, F16', settings: { prune: 'icbs', sparsity: 0.5, quant: 'f16' } },
  { name: 'Narrower FFN (structured 25%) + recovery, Q4_K learned', settings: { prune: 'structured', sparsity: 0.25, recover: true, quant: 'q4_k-learned' } },
  { name: 'NUPES 4-bit (Hone only)', settings: { quant: 'nupes4' } },
];
