// The gradient check shared by the CPU and GPU-backend tests.
import { expect } from 'vitest';
import { randn } from '../../electron/lab/model/tiny.js';
import { refModelOf } from './models.js';
import { refForward, refLoss, type RefAdapters } from './reference.js';

export const RANK = 2;
export const SCALE = 0.5;

/** deterministic non-zero LoRA-shaped parameters for layer 0's q and v */
export function testAdapters(d: number, outQ: number, outV: number): RefAdapters {
  const mk = (seed: number, out: number) => ({
    a: Float64Array.from(randn(seed, RANK * d, 0.5)),
    b: Float64Array.from(randn(seed + 1, out * RANK, 0.5)),
    r: RANK,
    scale: SCALE,
  });
  return { '0.q': mk(11, outQ), '0.v': mk(21, outV) };
}

/** ∂f/∂θ_i by central differences (θ is left as it was) */
export function centralDifference(theta: Float64Array, i: number, f: () => number, h: number): number {
  const keep = theta[i];
  theta[i] = keep + h; const up = f();
  theta[i] = keep - h; const down = f();
  theta[i] = keep;
  return (up - down) / (2 * h);
}

/**
 * Checks sampled entries of each parameter against central differences of the float64 reference.
 * `exact`: every entry to 1e-2 relative, and the whole gradient to 1e-2 in norm.
 * `activations8bit`: with Q8_0/Q4_K weights ggml's forward (like llama.cpp's) rounds each matmul's
 * input to 8 bits, so ggml's function differs from the float64 one by about 1%; there the whole
 * gradient must agree to 10% in norm and point the same way (cosine > 0.99). The input-gradient
 * through those weights is checked exactly in frozen-weights.test.ts.
 */
export function checkAgainstFiniteDifferences(
  path: string,
  tokens: number[],
  grads: Record<string, Float32Array>,
  loss: number,
  samplesPerTensor: number,
  mode: 'exact' | 'activations8bit' = 'exact',
) {
  const ref = refModelOf(path);
  const adapters = testAdapters(ref.d, ref.nHead * ref.hd, ref.nHeadKv * ref.hd);
  const inputs = tokens.slice(0, -1), labels = tokens.slice(1);
  const f = () => refLoss(refForward(ref, inputs, adapters), labels, ref.vocab);
  const refLossValue = f();
  // the two forwards agree before comparing gradients
  expect(Math.abs(loss - refLossValue) / refLossValue).toBeLessThan(mode === 'exact' ? 2e-4 : 2e-3);
  const h = 1e-4;
  let num2 = 0, den2 = 0, dot = 0, g2 = 0;
  for (const [key, lora] of Object.entries(adapters)) {
    for (const part of ['a', 'b'] as const) {
      const theta = lora[part];
      const g = grads[`${key}.${part}`];
      expect(g.length).toBe(theta.length);
      const step = Math.max(1, Math.floor(theta.length / samplesPerTensor));
      for (let i = 0; i < theta.length; i += step) {
        const fd = centralDifference(theta, i, f, h);
        num2 += (g[i] - fd) ** 2;
        den2 += fd ** 2;
        dot += g[i] * fd;
        g2 += g[i] ** 2;
        // every sampled entry agrees to 1e-2 relative (or absolutely, where the gradient is tiny)
        if (mode === 'exact') expect(Math.abs(g[i] - fd)).toBeLessThanOrEqual(1e-2 * Math.max(Math.abs(fd), 1e-2));
      }
    }
  }
  const rel = Math.sqrt(num2 / den2);
  expect(den2).toBeGreaterThan(0);
  expect(rel).toBeLessThan(mode === 'exact' ? 1e-2 : 1e-1);
  expect(dot / Math.sqrt(den2 * g2)).toBeGreaterThan(mode === 'exact' ? 0.9999 : 0.99);
  return rel;
}

