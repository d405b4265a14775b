// Perplexity of a model over a token stream, in windows of `ctx` tokens: each window is evaluated
// from its own start and every token after the first is scored. ppl = exp(mean NLL).
import { ForwardPass, type LlamaModel } from '../model/llama.js';

/** log p(tokens[i+1] | ..tokens[i]) from logits [V × n] (row i = logits after token i). */
export function tokenLogprobs(logits: Float32Array, tokens: ArrayLike<number>, nVocab: number, count = tokens.length - 1): Float64Array {
  const out = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const row = logits.subarray(i * nVocab, (i + 1) * nVocab);
    let max = -Infinity;
    for (let j = 0; j < nVocab; j++) if (row[j] > max) max = row[j];
    let sum = 0;
    for (let j = 0; j < nVocab; j++) sum += Math.exp(row[j] - max);
    out[i] = row[tokens[i + 1]] - max - Math.log(sum);
  }
  return out;
}

/** The windows a token stream is scored in: consecutive, non-overlapping, each ≥ 2 tokens. */
export function perplexityWindows(nTokens: number, ctx: number): [number, number][] {
  const w: [number, number][] = [];
  for (let s = 0; s + 1 < nTokens; s += ctx) w.push([s, Math.min(nTokens, s + ctx)]);
  return w;
}

export interface PerplexityResult {
  perplexity: number;
  nll: number;
  scored: number;
  windows: number;
}

export function perplexityFromLogprobs(lps: Float64Array[]): PerplexityResult {
  let sum = 0, n = 0;
  for (const lp of lps) for (const x of lp) { sum -= x; n++; }
  return { perplexity: Math.exp(sum / n), nll: sum / n, scored: n, windows: lps.length };
}

export function perplexity(
  model: LlamaModel,
  tokens: number[],
  ctx: number,
  onProgress?: (done: number, total: number) => void,
  signal?: AbortSignal,
): PerplexityResult {
  if (tokens.length < 2) throw new Error('the text has fewer than 2 tokens; perplexity needs at least 2');
  const windows = perplexityWindows(tokens.length, ctx);
  const passes = new Map<number, ForwardPass>();
  const lps: Float64Array[] = [];
  try {
    for (const [i, [s, e]] of windows.entries()) {
      signal?.throwIfAborted();
      const len = e - s;
      let pass = passes.get(len);
      if (!pass) passes.set(len, (pass = new ForwardPass(model, len)));
      const win = tokens.slice(s, e);
      lps.push(tokenLogprobs(pass.run(Int32Array.from(win)), win, model.hp.nVocab));
      onProgress?.(i + 1, windows.length);
    }
  } finally {
    for (const p of passes.values()) p.free();
  }
  return perplexityFromLogprobs(lps);
}
