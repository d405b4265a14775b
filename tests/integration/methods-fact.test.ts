// HUT, MoS, GaLore and Natural GaLore end to end: the made-up fact of the LoRA test, taught by each method, is generated
// greedily by llama.cpp (node-llama-cpp) from the exported merged GGUF, and for MoS also from
// base + its adapter GGUF; MoS's saved index draw reloads to the same adapter.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openEngine } from '../../electron/lab/engine/backend.js';
import { openChat } from '../../electron/lab/eval/chat.js';
import { exportAdapterGguf, exportMergedGguf, exportPeft, loadTrainedRun } from '../../electron/lab/export/run-export.js';
import { LlamaModel } from '../../electron/lab/model/llama.js';
import { loadLatestCheckpoint } from '../../electron/lab/tune/checkpoint.js';
import { mosSettings } from '../../electron/lab/tune/methods.js';
import { Mos } from '../../electron/lab/tune/mos.js';
import { TRAIN_DEFAULTS, runTraining, type TrainConfig } from '../../electron/lab/tune/run.js';
import { testDir, tinyModel } from '../helpers/models.js';
import { QUESTIONS, factDataset as writeFact } from '../helpers/fact.js';

const dir = join(testDir, `methods-${process.pid}`);
const factDataset = () => writeFact(dir);

async function train(cfg: TrainConfig, runDir: string) {
  rmSync(runDir, { recursive: true, force: true });
  const losses: number[] = [];
  await runTraining(cfg, { runDir, onEvent: (e) => { if (e.type === 'step') losses.push(e.loss); } });
  return losses;
}

const base = tinyModel({ type: 'q8_0', nHeadKv: 2 });
const config = (over: Partial<TrainConfig>): TrainConfig => ({
  ...TRAIN_DEFAULTS, model: base, data: factDataset(), steps: 40, lr: 3e-3, seq: 64, batch: 2, valFraction: 0, saveEvery: 20, evalEvery: 0, schedule: 'constant', ...over,
});

async function generatesFact(model: string, adapter?: string) {
  const chat = await openChat(model, adapter);
  const answer = await chat.ask(QUESTIONS[1], 16);
  await chat.dispose();
  return answer;
}

describe('HUT and MoS teach a fact that llama.cpp then generates from the export', () => {
  for (const form of ['scaling', 'hadamard'] as const) {
    it(`HUT (${form}): merged F16 GGUF; no adapter form`, async () => {
      const runDir = join(dir, `hut-${form}`);
      // scaling has d + k degrees of freedom per weight (rows and columns rescaled): it needs more steps
      const over = form === 'scaling' ? { lr: 1e-2, steps: 80 } : { lr: 3e-2 };
      const losses = await train(config({ method: 'hut', hutForm: form, rank: 4, alpha: 8, ...over }), runDir);
      expect(losses[losses.length - 1]).toBeLessThan(losses[0] / 5);
      const l = loadTrainedRun(runDir);
      const merged = join(dir, `hut-${form}.gguf`);
      exportMergedGguf(l, merged, 'f16', true);
      expect(await generatesFact(merged)).toContain('Quxville');
      expect(() => exportAdapterGguf(l, join(dir, 'x.gguf'), true)).toThrow(/HUT .* --format merged/);
    });
  }

  for (const method of ['galore', 'natural-galore'] as const) {
    it(`${method}: every weight trained; the merged F16 GGUF generates the fact; no adapter form`, async () => {
      const runDir = join(dir, method);
      const losses = await train(config({ method, rank: 16, galoreScale: 1, galoreGap: 20, naturalHistory: 4, naturalDamping: 1e-3 }), runDir);
      expect(losses[losses.length - 1]).toBeLessThan(losses[0] / 5);
      const l = loadTrainedRun(runDir);
      expect(l.trains('token_embd.weight') && l.trains('blk.1.ffn_norm.weight') && l.trains('output.weight')).toBe(true);
      const merged = join(dir, `${method}.gguf`);
      exportMergedGguf(l, merged, 'f16', true);
      expect(await generatesFact(merged)).toContain('Quxville');
      expect(() => exportPeft(l, join(dir, 'x-peft'), true)).toThrow(/every weight.*--format merged/);
    });
  }

  for (const method of ['galore', 'natural-galore'] as const) {
    it(`${method}: a run stopped at step 5 and resumed (projectors, projected moments${method === 'natural-galore' ? ', gradient history' : ''} from the checkpoint) matches an uninterrupted run`, async () => {
      // T = 4: the resumed part starts inside a subspace (steps 5..8) and crosses a refresh (step 9)
      const cfg = config({ method, rank: 8, galoreScale: 1, galoreGap: 4, naturalHistory: 3, steps: 10, saveEvery: 5 });
      const ref = await train(cfg, join(dir, `${method}-ref`));
      const run = join(dir, `${method}-resume`);
      rmSync(run, { recursive: true, force: true });
      const stop = new AbortController();
      await runTraining(cfg, { runDir: run, signal: stop.signal, onEvent: (e) => { if (e.type === 'step' && e.step === 5) stop.abort(); } });
      const resumed: number[] = [];
      await runTraining(cfg, { runDir: run, resume: true, onEvent: (e) => { if (e.type === 'step') resumed.push(e.loss); } });
      expect(resumed.length).toBe(5);
      resumed.forEach((loss, i) => expect(loss).toBeCloseTo(ref[5 + i], 4));
    });
  }

  it('MoS: merged F16 GGUF and base + adapter GGUF; the saved index draw reloads to the same adapter', async () => {
    const runDir = join(dir, 'mos');
    const cfg = config({ method: 'mos', rank: 8, alpha: 16, mosBudget: 4, mosShards: 2, mosPrivate: 0 });
    const losses = await train(cfg, runDir);
    expect(losses[losses.length - 1]).toBeLessThan(losses[0] / 5);
    const l = loadTrainedRun(runDir);
    const merged = join(dir, 'mos.gguf'), adapter = join(dir, 'mos-adapter.gguf');
    exportMergedGguf(l, merged, 'f16', true);
    exportAdapterGguf(l, adapter, true);
    exportPeft(l, join(dir, 'mos-peft'), true);
    expect(await generatesFact(merged)).toContain('Quxville');
    expect(await generatesFact(base, adapter)).toContain('Quxville');

    // a MoS built from another seed draws other shards; the checkpoint's draw replaces them
    const engine = openEngine({ backend: 'cpu' });
    const model = LlamaModel.load(base, engine);
    const mos = new Mos(engine, model.hp, mosSettings(cfg));
    mos.init(999);
    const before = mos.draws.get('1.q')!.idxA.get();
    loadLatestCheckpoint(runDir, mos);
    expect(Array.from(mos.draws.get('1.q')!.idxA.get())).not.toEqual(Array.from(before));
    for (const p of l.pairs) {
      const pool = mos.pools.get(p.module)!;
      const a = assembleRows(pool.a.get(), pool.a.shape[0], Int32Array.from(mos.draws.get(`${p.layer}.${p.module}`)!.idxA.get()), cfg.rank, 2);
      expect(Array.from(a)).toEqual(Array.from(p.a));
    }
    mos.free(); model.free(); engine.free();
  });
});

/**
 * MoS's A_i [in, r] (ggml order) from a pool [in/l, rows] and r·l shard indices, in plain numbers
 * (the reference for the graph's gather): row j is shards idx[j], idx[j+r], …, idx[j+(l−1)r] end to end.
 */
function assembleRows(pool: Float32Array, width: number, idx: Int32Array, r: number, l: number): Float32Array {
  const out = new Float32Array(width * l * r);
  for (let j = 0; j < r; j++) {
    for (let k = 0; k < l; k++) {
      const src = idx[j + k * r] * width;
      out.set(pool.subarray(src, src + width), j * width * l + k * width);
    }
  }
  return out;
}
