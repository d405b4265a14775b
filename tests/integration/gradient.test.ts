// Backward: on a one-block model with LoRA-shaped test parameters on q and v, Hone's gradients
// (ggml, float32) equal central finite differences of an independent float64 forward written in
// TypeScript (tests/helpers/reference.ts), through frozen F32, F16, Q8_0 and Q4_K weights.
// (Q8_0 and Q4_K: see the `activations8bit` note in tests/helpers/gradcheck.ts.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEngine, type Engine } from '../../electron/lab/engine/backend.js';
import { tokenize } from '../../electron/lab/eval/llamacpp.js';
import { adapterGradients } from '../helpers/adapter-grad.js';
import { checkAgainstFiniteDifferences, testAdapters } from '../helpers/gradcheck.js';
import { SAMPLE_TEXT, refModelOf, tinyModel } from '../helpers/models.js';

export const GRAD_CASES: [string, Record<string, unknown>, 'exact' | 'activations8bit'][] = [
  ['F32', { type: 'f32', nLayer: 1, nEmbd: 32, nHead: 4, nHeadKv: 2, nFf: 64 }, 'exact'],
  ['F16', { type: 'f16', nLayer: 1, nEmbd: 32, nHead: 4, nHeadKv: 2, nFf: 64 }, 'exact'],
  ['Q8_0', { type: 'q8_0', nLayer: 1, nEmbd: 32, nHead: 4, nHeadKv: 2, nFf: 64 }, 'activations8bit'],
  ['Q4_K', { type: 'q4_k', nLayer: 1, nEmbd: 256, nHead: 4, nHeadKv: 2, nFf: 256 }, 'activations8bit'],
];

describe('adapter gradients through frozen weights equal finite differences (CPU)', () => {
  let engine: Engine;
  beforeAll(() => { engine = openEngine({ backend: 'cpu' }); });
  afterAll(() => engine.free());

  for (const [name, spec, mode] of GRAD_CASES) {
    it(name, async () => {
      const path = tinyModel(spec);
      const tokens = (await tokenize(path, SAMPLE_TEXT)).slice(0, 7);
      const ref = refModelOf(path);
      const adapters = testAdapters(ref.d, ref.nHead * ref.hd, ref.nHeadKv * ref.hd);
      const { loss, grads } = adapterGradients(engine, path, tokens, adapters);
      checkAgainstFiniteDifferences(path, tokens, grads, loss, spec.nEmbd === 256 ? 6 : 16, mode);
    });
  }
});
