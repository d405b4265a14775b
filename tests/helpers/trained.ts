// A tiny model that has learned something: made by make-tiny, then fully fine-tuned on the synthetic
// corpus (data/samples.ts), merged to F32. Compression tests need a model with structure to lose.
// Cached in the tests' temp folder, keyed like the other tiny models plus this recipe.
import { existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { syntheticCorpus } from '../../electron/lab/data/samples.js';
import { exportMergedGguf, withTrainedRun } from '../../electron/lab/export/run-export.js';
import { TRAIN_DEFAULTS, runTraining } from '../../electron/lab/tune/run.js';
import { testDir, tinyModel } from './models.js';

export const CORPUS_SPEC = { nEmbd: 256, nLayer: 2, nHead: 4, nHeadKv: 2, nFf: 512 };
const RECIPE = 'full-80x4x64-lr1e-3-v1';

/** corpus files: `train` (seed 1) and `heldOut` (seed 2, never trained on) */
export function corpusFiles(): { train: string; heldOut: string } {
  mkdirSync(testDir, { recursive: true });
  const train = join(testDir, 'corpus-train.txt'), heldOut = join(testDir, 'corpus-heldout.txt');
  writeFileSync(train, syntheticCorpus(1, 1200));
  writeFileSync(heldOut, syntheticCorpus(2, 150));
  return { train, heldOut };
}

export async function trainedTiny(): Promise<string> {
  const base = tinyModel(CORPUS_SPEC);
  const path = base.replace(/\.gguf$/, `_${RECIPE}.gguf`);
  if (existsSync(path)) return path;
  const runDir = join(testDir, `train-${process.pid}`);
  rmSync(runDir, { recursive: true, force: true });
  await runTraining({ ...TRAIN_DEFAULTS, model: base, data: corpusFiles().train, method: 'full', lr: 1e-3, steps: 80, batch: 4, seq: 64, valFraction: 0, evalEvery: 0, saveEvery: 80, schedule: 'cosine', weightDecay: 0 }, { runDir });
  const tmp = `${path}.${process.pid}.gguf`;
  withTrainedRun(runDir, (l) => exportMergedGguf(l, tmp, 'f32', true));
  renameSync(tmp, path);
  rmSync(runDir, { recursive: true, force: true });
  return path;
}
