// Forward parity: Hone's per-token log-probabilities equal llama.cpp's (through node-llama-cpp) on
// the same GGUF and tokens, for each supported architecture and weight type.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEngine, type Engine } from '../../electron/lab/engine/backend.js';
import { llamaCppLogprobs, tokenize } from '../../electron/lab/eval/llamacpp.js';
import { perplexity, perplexityFromLogprobs, perplexityWindows } from '../../electron/lab/eval/perplexity.js';
import { LlamaModel } from '../../electron/lab/model/llama.js';
import type { TinySpec } from '../../electron/lab/model/tiny.js';
import { SAMPLE_TEXT, tinyModel } from '../helpers/models.js';
import { honeLogprobs, maxAbsDiff } from '../helpers/parity.js';

const PARITY_CASES: [string, Partial<TinySpec>, number][] = [
  ['llama F32', { type: 'f32' }, 1e-3],
  ['llama F16', { type: 'f16' }, 2e-2],
  ['llama BF16', { type: 'bf16' }, 2e-2],
  ['llama Q8_0', { type: 'q8_0' }, 2e-2],
  ['llama Q4_0', { type: 'q4_0' }, 2e-2],
  ['llama Q4_K (d=256)', { type: 'q4_k', nEmbd: 256, nFf: 512, nLayer: 1 }, 2e-2],
  ['llama Q6_K (d=256)', { type: 'q6_k', nEmbd: 256, nFf: 512, nLayer: 1 }, 2e-2],
  ['llama GQA 8:2, F32', { nHead: 8, nHeadKv: 2 }, 1e-3],
  ['mistral shape (GQA 4:1, rope base 1e6), Q8_0', { nHead: 8, nHeadKv: 2, ropeBase: 1e6, type: 'q8_0' }, 2e-2],
  ['llama-3 shape (BPE vocab, rope factors, GQA, tied), F32', { vocab: 'llama-bpe', nHead: 4, nHeadKv: 2, ropeBase: 500000, ropeFreqs: true, tied: true }, 1e-3],
  ['qwen2 F32 (q/k/v bias, NeoX rope)', { arch: 'qwen2', nLayer: 1 }, 1e-3],
  ['qwen2 GQA, Q8_0, tied', { arch: 'qwen2', nLayer: 1, nHead: 4, nHeadKv: 2, type: 'q8_0', tied: true }, 2e-2],
];

describe('forward parity with llama.cpp (CPU)', () => {
  let engine: Engine;
  beforeAll(() => { engine = openEngine({ backend: 'cpu' }); });
  afterAll(() => engine.free());

  for (const [name, spec, tol] of PARITY_CASES) {
    it(name, async () => {
      const path = tinyModel(spec);
      const tokens = await tokenize(path, SAMPLE_TEXT);
      expect(tokens.length).toBeGreaterThan(16);
      const ref = await llamaCppLogprobs(path, tokens);
      const ours = honeLogprobs(engine, path, tokens);
      // the model is random but not uniform: log-probs spread well away from -log(vocab)
      expect(Math.max(...ref) - Math.min(...ref)).toBeGreaterThan(1);
      expect(maxAbsDiff(ours, ref)).toBeLessThanOrEqual(tol);
    });
  }

  it('hone perplexity equals llama.cpp perplexity on the same windows to 0.5%', async () => {
    const path = tinyModel({ type: 'q8_0' });
    const text = Array.from({ length: 12 }, (_, i) => `${SAMPLE_TEXT} Line ${i}.`).join('\n');
    const tokens = await tokenize(path, text);
    const ctx = 64;
    const model = LlamaModel.load(path, engine);
    const ours = perplexity(model, tokens, ctx);
    model.free();
    const refLps: Float64Array[] = [];
    for (const [s, e] of perplexityWindows(tokens.length, ctx)) refLps.push(await llamaCppLogprobs(path, tokens.slice(s, e)));
    const ref = perplexityFromLogprobs(refLps);
    expect(ours.scored).toBe(ref.scored);
    expect(ours.windows).toBeGreaterThan(2);
    expect(Math.abs(ours.perplexity / ref.perplexity - 1)).toBeLessThan(0.005);
  });
});
