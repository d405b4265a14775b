// The gradient w.r.t. a matmul's input through a frozen weight of each type: for y = W x and
// L = Σ y ⊙ R, dL/dx = Wᵀ R exactly, with W dequantized by ggml's own dequantizer. Unlike a
// model-level check this does not depend on how the forward rounds activations.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEngine, type Engine } from '../../electron/lab/engine/backend.js';
import { headGradError, inputGradError } from '../helpers/frozen.js';

const FROZEN_TYPES = ['f32', 'f16', 'q8_0', 'q4_0', 'q4_k', 'q5_k', 'q6_k'];

describe('input gradient through a frozen weight (CPU)', () => {
  let engine: Engine;
  beforeAll(() => { engine = openEngine({ backend: 'cpu' }); });
  afterAll(() => engine.free());

  for (const t of FROZEN_TYPES) {
    it(t, () => expect(inputGradError(engine, t)).toBeLessThan(1e-5));
  }

  // the head's F32 copy a vocabulary chunk at a time (2 GB whole at Llama-3-8B's vocabulary): chunks
  // that divide V and one that does not, each equal to the float64 Wᵀ·R as the whole product is
  // (with OpenBLAS an outer product of a dequantized chunk, without it a product with a transposed copy)
  for (const t of ['f32', 'q8_0', 'q4_k']) {
    it(`the head's backward in vocabulary chunks (${t})`, () => {
      const noBlas = openEngine({ backend: 'cpu', blas: false });
      try {
        for (const e of [engine, noBlas]) for (const chunk of [1000, 250, 333]) expect(headGradError(e, t, chunk), `chunks of ${chunk}${e === noBlas ? ', OpenBLAS off' : ''}`).toBeLessThan(1e-5);
      } finally {
        noBlas.free();
      }
    });
  }

  it('a weight type ggml cannot backpropagate through is refused with its name, not a crash', () => {
    expect(() => inputGradError(engine, 'bf16')).toThrow(/cannot run OUT_PROD on \(bf16 W.*convert the model/);
  });
});
