// The same parity and gradient checks on a GPU-style backend: Vulkan, here on Mesa's CPU Vulkan
// device (lavapipe, from Debian's mesa-vulkan-drivers), which exercises device buffers, host↔device
// copies and the scheduler's CPU fallbacks. Skipped, with the reason, where no Vulkan device exists.
process.env.GGML_VK_VISIBLE_DEVICES ??= '0'; // ggml ignores CPU-type Vulkan devices unless listed
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listDevices, openEngine, type Engine } from '../../electron/lab/engine/backend.js';
import { llamaCppLogprobs, tokenize } from '../../electron/lab/eval/llamacpp.js';
import { adapterGradients } from '../helpers/adapter-grad.js';
import { checkAgainstFiniteDifferences, testAdapters } from '../helpers/gradcheck.js';
import { llamaCppLogprobsApart } from '../helpers/llamacpp-process.js';
import { SAMPLE_TEXT, refModelOf, tinyModel } from '../helpers/models.js';
import { honeLogprobs, maxAbsDiff } from '../helpers/parity.js';
import { inputGradError } from '../helpers/frozen.js';

function vulkanUnavailable(): string | null {
  try {
    return listDevices().some((d) => d.kind === 'vulkan') ? null : 'no Vulkan device (install mesa-vulkan-drivers for a CPU one)';
  } catch (e) {
    return (e as Error).message;
  }
}
const why = vulkanUnavailable();
if (why) console.warn(`vulkan tests skipped: ${why}`);

describe.skipIf(why !== null)('Vulkan backend', () => {
  let engine: Engine;
  beforeAll(() => { engine = openEngine({ backend: 'vulkan' }); });
  afterAll(() => engine?.free());

  // Vulkan's shaders compute in part in fp16, so llama.cpp's own Vulkan build differs from its CPU
  // build; Hone on Vulkan must match llama.cpp's CPU numbers as closely as llama.cpp's Vulkan build
  // does (within twice its gap), and never worse than 1e-3 / 2e-2 when that gap is smaller.
  const cases: [string, Record<string, unknown>, number][] = [
    ['llama F32', { type: 'f32' }, 1e-3],
    ['llama GQA Q8_0', { nHead: 8, nHeadKv: 2, type: 'q8_0' }, 2e-2],
    ['qwen2 F16', { arch: 'qwen2', nLayer: 1, type: 'f16' }, 2e-2],
  ];
  for (const [name, spec, tol] of cases) {
    it(`forward parity: ${name}`, async () => {
      const path = tinyModel(spec);
      const tokens = await tokenize(path, SAMPLE_TEXT);
      const cpuRef = await llamaCppLogprobs(path, tokens);
      const llamaVulkan = llamaCppLogprobsApart(path, tokens, 'vulkan');
      const gap = maxAbsDiff(llamaVulkan, cpuRef);
      const ours = honeLogprobs(engine, path, tokens);
      expect(maxAbsDiff(ours, cpuRef)).toBeLessThanOrEqual(Math.max(tol, 2 * gap));
    });
  }

  for (const type of ['f32', 'f16'] as const) {
    it(`adapter gradients equal finite differences: ${type}`, async () => {
      const path = tinyModel({ type, nLayer: 1, nEmbd: 32, nHead: 4, nHeadKv: 2, nFf: 64 });
      const tokens = (await tokenize(path, SAMPLE_TEXT)).slice(0, 7);
      const ref = refModelOf(path);
      const { loss, grads } = adapterGradients(engine, path, tokens, testAdapters(ref.d, ref.nHead * ref.hd, ref.nHeadKv * ref.hd));
      checkAgainstFiniteDifferences(path, tokens, grads, loss, 16, 'exact');
    });
  }

  for (const t of ['f16', 'q8_0', 'q4_k']) {
    it(`input gradient through a frozen ${t} weight`, () => {
      // fp16 arithmetic inside Vulkan's matmul shaders bounds this at about 1e-3
      expect(inputGradError(engine, t)).toBeLessThan(2e-3);
    });
  }
});
