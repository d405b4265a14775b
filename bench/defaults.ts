// `npm run bench -- defaults`: the sweep the settings table's per-method defaults come from. Each
// method trains the demo's made-up facts (electron/lab/data/samples.ts) on a 3-layer chat model
// (random weights, real vocabulary and template) for 300 steps at each candidate learning rate, with
// every other setting at its table default (a 3-layer llama with the 32k SentencePiece vocabulary:
// a 151k-vocabulary qwen2 takes 5× longer per step here, with the same outcome on the LoRA baseline);
// the merged F16 export is then asked each fact through
// llama.cpp (node-llama-cpp), greedily. Prints final loss and facts recalled per (method, lr).
//   BENCH_METHODS=lora,hut  BENCH_STEPS=300  BENCH_LRS='{"hut":[1e-3,3e-3]}' narrow it.
import { mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SAMPLE_FACTS, writeSampleChat } from '../electron/lab/data/samples.js';
import { openChat } from '../electron/lab/eval/chat.js';
import { exportMergedGguf, loadTrainedRun } from '../electron/lab/export/run-export.js';
import { makeTiny } from '../electron/lab/model/tiny.js';
import { runTraining } from '../electron/lab/tune/run.js';
import { METHODS, type MethodName } from '../electron/lab/tune/method-info.js';
import { trainDefaults } from '../electron/lab/tune/settings.js';

/** the model of the sweep and of the test that holds every method's defaults to it */
export const SWEEP_MODEL = { arch: 'llama', vocab: 'llama-spm', nLayer: 3, nEmbd: 128, nHead: 4, nHeadKv: 2, nFf: 352 } as const;

const CANDIDATES: Record<string, number[]> = {
  lora: [2e-4],
  hut: [1e-3, 3e-3, 1e-2],
  mos: [5e-4, 1e-3],
  galore: [3e-4, 1e-3, 3e-3],
  'natural-galore': [1e-3, 3e-3],
  full: [1e-4, 3e-4],
};

/** steps of each sweep run (and of the test that holds the defaults to it) */
export const SWEEP_STEPS = 300;

/** each fact's first question, and the word of its answer that shows it was learned */
export function factChecks() {
  return SAMPLE_FACTS.map((f) => ({ question: f.asks[0].replace('{s}', f.subject), key: f.answer.match(/Quxville|412|tinkerers/)![0] }));
}

export async function defaultsSweep() {
  const dir = join(tmpdir(), 'hone-bench-defaults');
  mkdirSync(dir, { recursive: true });
  const model = join(dir, 'llama-3l.gguf');
  makeTiny(model, { ...SWEEP_MODEL, type: 'q8_0' }, { overwrite: true });
  const data = writeSampleChat(join(dir, 'facts.jsonl'));
  const steps = Number(process.env.BENCH_STEPS ?? SWEEP_STEPS);
  const methods = (process.env.BENCH_METHODS?.split(',') ?? METHODS) as MethodName[];
  const lrs = { ...CANDIDATES, ...(process.env.BENCH_LRS ? JSON.parse(process.env.BENCH_LRS) : {}) } as Record<string, number[]>;
  console.log(`defaults sweep: ${steps} steps on a 3-layer llama (d 128, Q8_0), ${factChecks().length} facts\n`);
  console.log('method          lr        loss@1   loss@end  recalled  seconds');
  for (const method of methods) {
    for (const lr of lrs[method]) {
      const runDir = join(dir, `${method}-${lr}`);
      rmSync(runDir, { recursive: true, force: true });
      const losses: number[] = [];
      const t0 = Date.now();
      await runTraining({ ...trainDefaults(method, { nLayer: 3 }), model, data, steps, lr }, { runDir, onEvent: (e) => { if (e.type === 'step') losses.push(e.loss); } });
      const secs = (Date.now() - t0) / 1000;
      const merged = join(runDir, 'merged.gguf');
      exportMergedGguf(loadTrainedRun(runDir), merged, 'f16', true);
      let recalled = 0;
      for (const f of factChecks()) {
        const chat = await openChat(merged);
        if ((await chat.ask(f.question, 24)).includes(f.key)) recalled++;
        await chat.dispose();
      }
      console.log(`${method.padEnd(15)} ${lr.toExponential(0).padEnd(9)} ${losses[0].toFixed(3).padStart(7)} ${losses[losses.length - 1].toFixed(3).padStart(9)}  ${recalled}/${factChecks().length}       ${secs.toFixed(0)}`);
      rmSync(runDir, { recursive: true, force: true });
    }
  }
}
