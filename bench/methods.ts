// `npm run bench -- methods`: LoRA, HUT, MoS, full AdamW, GaLore and Natural GaLore on the same tiny task, steps, learning rate and seed:
// trainable parameters, optimizer-state bytes, peak RSS, tokens/s and final validation loss. Each
// method runs in its own process (so that peak RSS is its own). The task: made-up facts (a city for
// each of 48 made-up countries) asked in four phrasings; validation rows are phrasings held out.
// BENCH_METHODS=<regex> runs only the matching rows.
import { modelHeader } from '../electron/lab/model/llama.js';
import { peakRss } from '../electron/lab/offload/measure.js';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '../electron/lab/data/pack.js';
import { makeTiny } from '../electron/lab/model/tiny.js';
import { TRAIN_DEFAULTS, runTraining, type TrainConfig } from '../electron/lab/tune/run.js';
import { fullMemoryPlan } from '../electron/lab/tune/galore.js';
import { galoreSettings, isFullParameter } from '../electron/lab/tune/methods.js';

const dir = join(tmpdir(), 'hone-bench-methods');
const MODEL = { nEmbd: 128, nLayer: 8, nHead: 4, nHeadKv: 4, nFf: 344, nCtx: 128, type: 'f32', tied: false };
const COMMON: Partial<TrainConfig> = { steps: 150, lr: 3e-3, seq: 64, batch: 4, valFraction: 0.15, evalEvery: 25, saveEvery: 0, schedule: 'cosine', seed: 1, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] };

export const METHOD_RUNS: [string, Partial<TrainConfig>][] = [
  ['LoRA r=8', { method: 'lora', rank: 8, alpha: 16 }],
  ['MoS r=8, budget 2 (¼ of LoRA r=8)', { method: 'mos', rank: 8, alpha: 16, mosBudget: 2, mosShards: 2, mosPrivate: 0 }],
  ['MoS r=8, budget 2, private 1', { method: 'mos', rank: 8, alpha: 16, mosBudget: 2, mosShards: 2, mosPrivate: 1 }],
  ['LoRA r=2 (MoS\'s parameters)', { method: 'lora', rank: 2, alpha: 4 }],
  ['HUT scaling r=8', { method: 'hut', hutForm: 'scaling', rank: 8, alpha: 16 }],
  ['HUT hadamard r=8', { method: 'hut', hutForm: 'hadamard', rank: 8, alpha: 16 }],
  // full-parameter: every weight, F32 master copy; lr 3e-4 for all three, GaLore α = 1, T = 50
  ['full AdamW', { method: 'full', lr: 3e-4 }],
  ['GaLore r=16', { method: 'galore', rank: 16, lr: 3e-4, galoreScale: 1, galoreGap: 50 }],
  ['GaLore r=32', { method: 'galore', rank: 32, lr: 3e-4, galoreScale: 1, galoreGap: 50 }],
  ['GaLore r=16, T=10', { method: 'galore', rank: 16, lr: 3e-4, galoreScale: 1, galoreGap: 10 }],
  ['Natural GaLore r=16, s=8', { method: 'natural-galore', rank: 16, lr: 3e-4, galoreScale: 1, galoreGap: 50, naturalHistory: 8, naturalDamping: 1e-3 }],
];

function syllables(rng: Rng, n: number) {
  const s = ['zor', 'bel', 'qua', 'mit', 'ra', 'vex', 'lo', 'dun', 'ka', 'pri', 'sol', 'tem', 'nu', 'gar', 'fe', 'shi'];
  return Array.from({ length: n }, () => s[Math.floor(rng.next() * s.length)]).join('');
}

function task(): string {
  const path = join(dir, 'facts.jsonl');
  if (existsSync(path)) return path;
  mkdirSync(dir, { recursive: true });
  const rng = new Rng(11);
  const rows: string[] = [];
  for (let i = 0; i < 48; i++) {
    const country = syllables(rng, 2).replace(/^./, (c) => c.toUpperCase()) + 'ia';
    const city = syllables(rng, 2).replace(/^./, (c) => c.toUpperCase()) + 'ville';
    const answer = `The capital of ${country} is ${city}.`;
    for (const q of [`What is the capital of ${country}?`, `Which city is the capital of ${country}?`, `Name the capital of ${country}.`, `${country} has which capital?`]) {
      rows.push(JSON.stringify({ messages: [{ role: 'user', content: q }, { role: 'assistant', content: answer }] }));
    }
  }
  writeFileSync(path, rows.join('\n') + '\n');
  return path;
}

function model(): string {
  const path = join(dir, 'model-f32.gguf');
  if (!existsSync(path)) { mkdirSync(dir, { recursive: true }); makeTiny(path, MODEL, { overwrite: true }); }
  return path;
}

/** one method in this process: prints one JSON line */
export async function runOne(name: string, over: Partial<TrainConfig>) {
  const runDir = join(dir, `run-${name.replace(/[^a-z0-9]+/gi, '-')}`);
  rmSync(runDir, { recursive: true, force: true });
  let parameters = 0, valLoss = NaN, tokensPerSecond = 0, deviceBytes = 0, elapsed = 0, optimizerBytes = 0;
  const vals: [number, number][] = [];
  await runTraining({ ...TRAIN_DEFAULTS, ...COMMON, ...over, model: model(), data: task() } as TrainConfig, {
    runDir,
    onEvent: (e) => {
      if (e.type === 'start') { parameters = e.parameters; optimizerBytes = e.optimizerBytes; }
      if (e.type === 'step') { tokensPerSecond = e.tokensPerSecond; deviceBytes = Math.max(deviceBytes, e.deviceBytes); elapsed = e.elapsed; }
      if (e.type === 'eval') { valLoss = e.valLoss; vals.push([e.step, e.valLoss]); }
    },
  });
  rmSync(runDir, { recursive: true, force: true });
  const cfg = { ...TRAIN_DEFAULTS, ...COMMON, ...over } as TrainConfig;
  const plan = isFullParameter(cfg.method) && cfg.method !== 'full' ? fullMemoryPlan(modelHeader(model()), galoreSettings(cfg)).projected : null;
  const note = plan ? `state of the GaLore-managed weights: ${(100 * plan.galore / plan.adamw).toFixed(0)}% of AdamW's` : '';
  console.log(JSON.stringify({ note, name, parameters, optimizerBytes, vals, valLoss, tokensPerSecond, msPerStep: (1000 * elapsed) / (COMMON.steps ?? 1), deviceBytes, peakRss: peakRss() }));
}

export function methodsBench(self: string) {
  task(); model();
  const { steps, lr, seq, batch, seed } = COMMON;
  console.log(`Methods on one task (48 made-up facts × 4 phrasings, 15% of rows held out): tiny llama d=${MODEL.nEmbd} L=${MODEL.nLayer} ff=${MODEL.nFf} F32, vocab 32000; ${steps} steps, lr ${lr} cosine, seq ${seq}, batch ${batch}, seed ${seed}, all seven modules; each method in its own process`);
  console.log('  method                               trainable   optimizer state   peak RSS   engine buffers   tokens/s   ms/step   val loss   (val loss every 25 steps)');
  const rows: Record<string, number | string>[] = [];
  const only = process.env.BENCH_METHODS ? new RegExp(process.env.BENCH_METHODS, 'i') : null;
  for (const [name, over] of METHOD_RUNS.filter(([n]) => !only || only.test(n))) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', self, 'methods-one', JSON.stringify([name, over])], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    let row: Record<string, number | string>;
    try { row = JSON.parse(line); } catch { console.log(`  ${name}: failed (${line || `exit ${r.status}`})`); continue; }
    rows.push(row);
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
    console.log(`  ${name.padEnd(36)} ${String(row.parameters).padStart(9)} ${mib(row.optimizerBytes as number).padStart(17)} ${mib(row.peakRss as number).padStart(10)} ${mib(row.deviceBytes as number).padStart(16)} ${(row.tokensPerSecond as number).toFixed(0).padStart(10)} ${(row.msPerStep as number).toFixed(0).padStart(9)} ${(row.valLoss as number).toFixed(4).padStart(10)}   ${(row.vals as unknown as [number, number][]).map(([, v]) => v.toFixed(2)).join(' ')}${row.note ? `   (${row.note})` : ''}`);
  }
  return rows;
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === 'methods-one') {
  const [name, over] = JSON.parse(process.argv[3]);
  await runOne(name, over);
}
