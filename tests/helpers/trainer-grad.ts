// The trainer's side of the gradient check: the same LoRA-shaped parameters as adapter-grad.ts, but
// the gradients come from what training runs (tune/trainer.ts's InMemoryTrainer: the head's softmax form of
// the loss and model/backward.ts's explicit block backward), not from ggml's autodiff.
import type { Engine } from '../../electron/lab/engine/backend.js';
import { LlamaModel, type Module } from '../../electron/lab/model/llama.js';
import { Lora } from '../../electron/lab/tune/lora.js';
import { OPTIMIZER_DEFAULTS, InMemoryTrainer, targetCapacity } from '../../electron/lab/tune/trainer.js';
import type { RefAdapters } from './reference.js';

/** loss and d loss / d (A, B) of every adapter in `adapters` (keys `layer.module`, one rank and
 *  scale for all), for next-token cross-entropy over `tokens`, by one trainer step's backward */
export function trainerGradients(engine: Engine, path: string, tokens: number[], adapters: RefAdapters) {
  const model = LlamaModel.load(path, engine);
  const entries = Object.entries(adapters);
  const { r, scale } = entries[0][1];
  const layers = new Set(entries.map(([k]) => Number(k.split('.')[0])));
  if (layers.size !== 1 || !layers.has(0) || model.hp.nLayer !== 1) throw new Error('trainerGradients: one-block models with adapters on layer 0 only');
  const targets = entries.map(([k]) => k.split('.')[1] as Module);
  const lora = new Lora(engine, model.hp, { rank: r, alpha: scale * r, targets });
  for (const [key, l] of entries) {
    const pair = lora.pair(0, key.split('.')[1] as Module)!;
    pair.a.set(Float32Array.from(l.a));
    pair.b.set(Float32Array.from(l.b));
  }
  const n = tokens.length - 1;
  const window = { input: Int32Array.from(tokens.slice(0, -1)), target: Int32Array.from(tokens.slice(1)), trained: new Uint8Array(n).fill(1) };
  const cap = targetCapacity([window], 1);
  const trainer = new InMemoryTrainer(engine, model, lora, 1, n, { train: cap, eval: cap }, OPTIMIZER_DEFAULTS);
  try {
    const loss = trainer.accumulate([window], true).loss;
    const grads: Record<string, Float32Array> = {};
    const accOf = (param: unknown) => lora.trainables.find((t) => t.param === param)!.acc.get();
    for (const [key] of entries) {
      const pair = lora.pair(0, key.split('.')[1] as Module)!;
      grads[`${key}.a`] = accOf(pair.a);
      grads[`${key}.b`] = accOf(pair.b);
    }
    return { loss, grads };
  } finally {
    trainer.free(); lora.free(); model.free();
  }
}
