// Every adapter method's merge is the method's own math: the merged F32 export, run by llama.cpp
// (node-llama-cpp), gives the log-probs that Hone's forward through the trained adapter gives, loaded
// from the same checkpoint. The base is F32, so the only difference left is the order of sums.
// Full-parameter methods merge by replacing weights with the checkpoint's (methods-fact.test.ts); the
// phi3 case here checks that its fused tensors are rebuilt from the trained parts.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openEngine } from '../../electron/lab/engine/backend.js';
import { Graph, GraphBuilder } from '../../electron/lab/engine/graph.js';
import { T } from '../../electron/lab/engine/types.js';
import { llamaCppLogprobs, tokenize } from '../../electron/lab/engine/llamacpp.js';
import { tokenLogprobs } from '../../electron/lab/eval/perplexity.js';
import { exportMergedGguf, withTrainedRun } from '../../electron/lab/export/run-export.js';
import { readGguf } from '../../electron/lab/model/gguf.js';
import { LlamaModel, buildForward, forwardInputs, setForwardInputs } from '../../electron/lab/model/llama.js';
import { readMasks, writeMasks } from '../../electron/lab/model/masks.js';
import { encode, readValues, rewriteModel } from '../../electron/lab/model/rewrite.js';
import { Rng } from '../../electron/lab/data/pack.js';
import { adapterHook } from '../../electron/lab/tune/adapter.js';
import { loadLatestCheckpoint } from '../../electron/lab/tune/checkpoint.js';
import { methodOf, modelView } from '../../electron/lab/tune/methods.js';
import { TRAIN_DEFAULTS, runTraining, type TrainConfig } from '../../electron/lab/tune/run.js';
import { OPTIMIZER_DEFAULTS } from '../../electron/lab/tune/trainer.js';
import { ANSWER, QUESTIONS, factDataset } from '../helpers/fact.js';
import { maxAbsDiff } from '../helpers/parity.js';
import { testDir, tinyModel } from '../helpers/models.js';

const dir = join(testDir, `merge-${process.pid}`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** log-probs of `tokens` from Hone's evaluation forward with the run's adapter (its newest checkpoint) */
function honeWithAdapter(base: string, runDir: string, cfg: TrainConfig, tokens: number[]): Float64Array {
  const engine = openEngine({ backend: 'cpu' });
  const full = methodOf(cfg.method).full; // the trained weights are the model's F32 masters
  const model = LlamaModel.load(base, engine, { master: full });
  const adapter = methodOf(cfg.method).build(engine, modelView(model, model), { ...cfg, dropout: 0 }, OPTIMIZER_DEFAULTS);
  const b = new GraphBuilder();
  try {
    expect(loadLatestCheckpoint(runDir, adapter)).not.toBeNull();
    const n = tokens.length;
    const inp = forwardInputs(b, n, 1);
    const logits = buildForward(b, { hp: model.hp, weights: adapter.weightsFor?.(model.weights) ?? model.weights }, inp, n, 1, full ? undefined : adapterHook(adapter));
    const g = new Graph(engine, b, [logits], { exact: true });
    setForwardInputs(inp, Int32Array.from(tokens), n, 1);
    g.compute();
    const out = tokenLogprobs(logits.get(), tokens, model.hp.nVocab);
    g.free();
    return out;
  } finally {
    b.free();
    adapter.free();
    model.free();
    engine.free();
  }
}

/** a copy of `base` with half of each targeted weight pruned to zero, and its masks file */
function prunedBase(base: string): { model: string; masks: string } {
  const model = join(dir, 'pruned.gguf'), masks = join(dir, 'masks.gguf');
  const f = readGguf(base);
  const rng = new Rng(5);
  const kept: { name: string; shape: number[]; keep: Uint8Array }[] = [];
  rewriteModel(f, model, (info) => {
    if (!/^blk\.\d+\.(attn_(q|k|v|qkv|output)|ffn_(gate|up|down))\.weight$/.test(info.name)) return null;
    const w = readValues(f, info);
    const keep = Uint8Array.from(w, () => (rng.next() < 0.5 ? 1 : 0));
    w.forEach((_, i) => { if (!keep[i]) w[i] = 0; });
    kept.push({ name: info.name, shape: info.shape, keep });
    return [{ name: info.name, shape: info.shape, type: T.F32, data: encode(w, info.shape, T.F32) }];
  }, {}, { overwrite: true });
  writeMasks(masks, kept, true);
  return { model, masks };
}

describe('the merged export computes what the trained adapter computes', () => {
  const llama = tinyModel({ nLayer: 2 });
  // phi3: fused attn_qkv and gate-up, merged part by part (PERP's masks are the fused tensors')
  const phi3 = tinyModel({ arch: 'phi3', nLayer: 2, nHead: 4, nHeadKv: 2 });
  const cases: [string, Partial<TrainConfig>, boolean?, string?][] = [
    ['LoRA', { method: 'lora' }],
    ['HUT (scaling)', { method: 'hut', hutForm: 'scaling', dropout: 0 }],
    ['HUT (hadamard)', { method: 'hut', hutForm: 'hadamard', dropout: 0 }],
    ['MoS', { method: 'mos', rank: 8, alpha: 16, mosBudget: 6, mosShards: 2, mosPrivate: 1 }],
    ['PERP (MaskLoRA on a pruned model, norms and biases)', { method: 'perp', dropout: 0 }, true],
    ['phi3 HUT (hadamard)', { method: 'hut', hutForm: 'hadamard', dropout: 0 }, false, phi3],
    ['phi3 MoS', { method: 'mos', rank: 8, alpha: 16, mosBudget: 6, mosShards: 2, mosPrivate: 1 }, false, phi3],
    ['phi3 PERP', { method: 'perp', dropout: 0 }, true, phi3],
    ['phi3 full-parameter (fused tensors written back from the trained parts)', { method: 'full', dropout: 0, lr: 1e-3 }, false, phi3],
  ];
  for (const [name, over, pruned, base = llama] of cases) {
    it(name, async () => {
      const p = pruned ? prunedBase(base) : { model: base, masks: undefined };
      const runDir = join(dir, name.replace(/\W+/g, '-'));
      rmSync(runDir, { recursive: true, force: true });
      const cfg: TrainConfig = {
        ...TRAIN_DEFAULTS, model: p.model, data: factDataset(dir), steps: 6, lr: 1e-2, seq: 64, batch: 2, valFraction: 0, evalEvery: 0,
        saveEvery: 6, schedule: 'constant', ...over, ...(p.masks ? { perpMasks: p.masks } : {}),
      };
      await runTraining(cfg, { runDir });
      const merged = join(runDir, 'merged-f32.gguf');
      withTrainedRun(runDir, (l) => exportMergedGguf(l, merged, 'f32', true));

      const tokens = await tokenize(p.model, `${QUESTIONS[0]} ${ANSWER}`);
      const ours = honeWithAdapter(p.model, runDir, cfg, tokens);
      const untrained = await llamaCppLogprobs(p.model, tokens);
      const theirs = await llamaCppLogprobs(merged, tokens);
      expect(maxAbsDiff(ours, untrained)).toBeGreaterThan(1e-2); // training changed the model
      expect(maxAbsDiff(theirs, ours)).toBeLessThan(1e-4);
      if (p.masks) {
        // every pruned weight is still exactly zero after the merge
        const m = readGguf(merged);
        let pruned = 0;
        for (const [weight, keep] of readMasks(p.masks)) {
          const w = readValues(m, m.tensors.find((x) => x.name === weight)!);
          for (let i = 0; i < w.length; i++) if (!keep[i]) { pruned++; if (w[i] !== 0) expect.fail(`${weight}[${i}] is pruned but holds ${w[i]}`); }
        }
        expect(pruned).toBeGreaterThan(0);
      }
    }, 120_000);
  }
});
