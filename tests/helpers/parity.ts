// Hone's per-token log-probabilities, compared with llama.cpp's in the parity tests.
import { expect } from 'vitest';
import type { Engine } from '../../electron/lab/engine/backend.js';
import { tokenLogprobs } from '../../electron/lab/eval/perplexity.js';
import { ForwardPass, LlamaModel, type Hparams } from '../../electron/lab/model/llama.js';

/** `change` edits the hyperparameters before the graph is built (a sensitivity probe) */
export function honeLogprobs(engine: Engine, path: string, tokens: number[], change?: (hp: Hparams) => void): Float64Array {
  const model = LlamaModel.load(path, engine);
  change?.(model.hp);
  const pass = new ForwardPass(model, tokens.length);
  try {
    return tokenLogprobs(pass.run(Int32Array.from(tokens)), tokens, model.hp.nVocab);
  } finally {
    pass.free();
    model.free();
  }
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

