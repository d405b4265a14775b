// Backward: on a one-block model with LoRA-shaped test parameters on q and v, the gradients the
// trainer computes (tune/trainer.ts over model/backward.ts's explicit backward) equal central finite
// differences of an independent float64 forward written in TypeScript (tests/helpers/reference.ts),
// and ggml's autodiff of the same loss, through every weight type the trainer takes. The autodiff
// oracle is itself checked against finite differences. (Quantized types: see the `activations8bit`
// note in tests/helpers/gradcheck.ts.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEngine, type Engine } from '../../electron/lab/engine/backend.js';
import { tokenize } from '../../electron/lab/engine/llamacpp.js';
import { adapterGradients } from '../helpers/adapter-grad.js';
import { trainerGradients } from '../helpers/trainer-grad.js';
import { checkAgainstFiniteDifferences, testAdapters } from '../helpers/gradcheck.js';
import { SAMPLE_TEXT, refModelOf, tinyModel } from '../helpers/models.js';

export const GRAD_CASES: [string, Record<string, unknown>, 'exact' | 'activations8bit'][] = [
  ['F32', { type: 'f32', nLayer: 1, nEmbd: 32, nHead: 4, nHeadKv: 2, nFf: 64 }, 'exact'],
  ['F16', { type: 'f16', nLayer: 1, nEmbd: 32, nHead: 4, nHeadKv: 2, nFf: 64 }, 'exact'],
  ['Q8_0', { type: 'q8_0', nLayer: 1, nEmbd: 32, nHead: 4, nHeadKv: 2, nFf: 64 }, 'activations8bit'],
  ['Q4_K', { type: 'q4_k', nLayer: 1, nEmbd: 256, nHead: 4, nHeadKv: 2, nFf: 256 }, 'activations8bit'],
];
/** the rest of the types users download, for the trainer's own backward */
const MORE_TYPES: [string, Record<string, unknown>, 'exact' | 'activations8bit'][] = [
  // BF16: ggml rounds each product's input to bf16 (8 significant bits), as for the 8-bit types
  ['BF16', { type: 'bf16', nLayer: 1, nEmbd: 32, nHead: 4, nHeadKv: 2, nFf: 64 }, 'activations8bit'],
  ['Q4_0', { type: 'q4_0', nLayer: 1, nEmbd: 32, nHead: 4, nHeadKv: 2, nFf: 64 }, 'activations8bit'],
  ['IQ4_NL', { type: 'iq4_nl', nLayer: 1, nEmbd: 32, nHead: 4, nHeadKv: 2, nFf: 64 }, 'activations8bit'],
  ['Q5_K', { type: 'q5_k', nLayer: 1, nEmbd: 256, nHead: 4, nHeadKv: 2, nFf: 256 }, 'activations8bit'],
  ['Q6_K', { type: 'q6_k', nLayer: 1, nEmbd: 256, nHead: 4, nHeadKv: 2, nFf: 256 }, 'activations8bit'],
];

/** largest |a − b| over all entries of all tensors, relative to the largest |b| of each tensor */
function worstRelative(a: Record<string, Float32Array>, b: Record<string, Float32Array>): number {
  let worst = 0;
  for (const k of Object.keys(b)) {
    const scale = Math.max(...b[k].map(Math.abs));
    expect(scale, k).toBeGreaterThan(0);
    worst = Math.max(worst, Math.max(...a[k].map((v, j) => Math.abs(v - b[k][j]))) / scale);
  }
  return worst;
}

describe('the trainer\'s gradients through frozen weights equal finite differences and autodiff (CPU)', () => {
  let engine: Engine;
  beforeAll(() => { engine = openEngine({ backend: 'cpu' }); });
  afterAll(() => engine.free());

  for (const [name, spec, mode] of [...GRAD_CASES, ...MORE_TYPES]) {
    it(name, async () => {
      const path = tinyModel(spec);
      const tokens = (await tokenize(path, SAMPLE_TEXT)).slice(0, 7);
      const ref = refModelOf(path);
      const adapters = testAdapters(ref.d, ref.nHead * ref.hd, ref.nHeadKv * ref.hd);
      const trained = trainerGradients(engine, path, tokens, adapters);
      checkAgainstFiniteDifferences(path, tokens, trained.grads, trained.loss, spec.nEmbd === 256 ? 6 : 16, mode);
      // the same function differentiated by ggml: equal up to float32 sums for F32 weights; through
      // F16 and 8-bit weights the backward's products round their input (dy) to the weight's dot type
      // where autodiff's out_prod does not (measured 5e-4 for F16 without OpenBLAS, which otherwise
      // takes those products in F32). BF16 cannot go through autodiff at all.
      if (name !== 'BF16') {
        const auto = adapterGradients(engine, path, tokens, adapters);
        expect(Math.abs(trained.loss - auto.loss) / auto.loss).toBeLessThan(1e-5);
        expect(worstRelative(trained.grads, auto.grads)).toBeLessThan(name === 'F32' ? 1e-4 : 2e-3);
      }
    });
  }

  // ggml's autodiff has no GELU: finite differences are gemma3's oracle. 20 tokens pass the block's
  // sliding window of 16; the gradient reaches q and v through both post-norms and the GeGLU
  // (ggml's forward reads gelu from an F16 table, 3e-4 off the float64 function at most)
  for (const [name, type] of [['F32', 'f32'], ['Q8_0', 'q8_0']] as const) {
    it(`gemma3 ${name} (√d embeddings, head norms, post-norms, GeGLU, sliding window, wide heads)`, async () => {
      const path = tinyModel({ arch: 'gemma3', vocab: 'llama-spm', type, nLayer: 1, nEmbd: 64, nHead: 4, nHeadKv: 2, headDim: 32, nFf: 128, ropeBase: 1e6 });
      const tokens = (await tokenize(path, `${SAMPLE_TEXT} ${SAMPLE_TEXT}`)).slice(0, 21);
      const ref = refModelOf(path);
      expect(ref.layers.map((L) => L.swa?.window)).toEqual([16]);
      const adapters = testAdapters(ref.d, ref.nHead * ref.hd, ref.nHeadKv * ref.hd);
      const trained = trainerGradients(engine, path, tokens, adapters);
      checkAgainstFiniteDifferences(path, tokens, trained.grads, trained.loss, 16, type === 'f32' ? 'exact' : 'activations8bit');
    });
  }
});

describe('the autodiff oracle equals finite differences (CPU)', () => {
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
