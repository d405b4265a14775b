// `npm run bench -- methods`: LoRA, HUT and MoS on the same tiny task, steps, learning rate and seed:
// trainable parameters, optimizer-state bytes, peak RSS, tokens/s and final validation loss. Each
// method runs in its own process (so that peak RSS is its own). The task: made-up facts (a city for
// each of 48 made-up countries) asked in four phrasings; validation rows are phrasings held out.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '../electron/lab/data/pack.js';
import { makeTiny } from '../electron/lab/model/tiny.js';
import { TRAIN_DEFAULTS, runTraining, type TrainConfig } from '../electron/lab/tune/run.js';

const dir = join(tmpdir(), 'hone-bench-methods');
const MODEL = { nEmbd: 128, nLayer: 8, nHead: 4, nHeadKv: 4, nFf: 344, nCtx: 128, type: 'f32', tied: false };
const COMMON: Partial<TrainConfig> = { steps: 150, lr: 3e-3, seq: 64, batch: 4, valFraction: 0.15, evalEvery: 50, saveEvery: 0, schedule: 'cosine', seed: 1, targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] };

export const METHOD_RUNS: [string, Partial<TrainConfig>][] = [
  ['LoRA r=8', { method: 'lora', rank: 8, alpha: 16 }],
  ['MoS r=8, budget 2 (¼ of LoRA r=8)', { method: 'mos', rank: 8, alpha: 16, mosBudget: 2, mosShards: 2, mosPrivate: 0 }],
  ['MoS r=8, budget 2, private 1', { method: 'mos', rank: 8, alpha: 16, mosBudget: 2, mosShards: 2, mosPrivate: 1 }],
  ['LoRA r=2 (MoS\'s parameters)', { method: 'lora', rank: 2, alpha: 4 }],
  ['HUT scaling r=8', { method: 'hut', hutForm: 'scaling', rank: 8, alpha: 16 }],
  ['HUT hadamard r=8', { method: 'hut', hutForm: 'hadamard', rank: 8, alpha: 16 }],
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
  let parameters = 0, valLoss = NaN, tokensPerSecond = 0, deviceBytes = 0, elapsed = 0;
  await runTraining({ ...TRAIN_DEFAULTS, ...COMMON, ...over, model: model(), data: task() } as TrainConfig, {
    runDir,
    onEvent: (e) => {
      if (e.type === 'start') parameters = e.parameters;
      if (e.type === 'step') { tokensPerSecond = e.tokensPerSecond; deviceBytes = Math.max(deviceBytes, e.deviceBytes); elapsed = e.elapsed; }
      if (e.type === 'eval') valLoss = e.valLoss;
    },
  });
  rmSync(runDir, { recursive: true, force: true });
  console.log(JSON.stringify({ name, parameters, optimizerBytes: parameters * 8, valLoss, tokensPerSecond, msPerStep: (1000 * elapsed) / (COMMON.steps ?? 1), deviceBytes, peakRss: process.resourceUsage().maxRSS * 1024 }));
}

export function methodsBench(self: string) {
  task(); model();
  const { steps, lr, seq, batch, seed } = COMMON;
  console.log(`Methods on one task (48 made-up facts × 4 phrasings, 15% of rows held out): tiny llama d=${MODEL.nEmbd} L=${MODEL.nLayer} ff=${MODEL.nFf} F32, vocab 32000; ${steps} steps, lr ${lr} cosine, seq ${seq}, batch ${batch}, seed ${seed}, all seven modules; each method in its own process`);
  console.log('  method                               trainable   optimizer state   peak RSS   engine buffers   tokens/s   ms/step   val loss');
  const rows: Record<string, number | string>[] = [];
  for (const [name, over] of METHOD_RUNS) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', self, 'methods-one', JSON.stringify([name, over])], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    let row: Record<string, number | string>;
    try { row = JSON.parse(line); } catch { console.log(`  ${name}: failed (${line || `exit ${r.status}`})`); continue; }
    rows.push(row);
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
    console.log(`  ${name.padEnd(36)} ${String(row.parameters).padStart(9)} ${mib(row.optimizerBytes as number).padStart(17)} ${mib(row.peakRss as number).padStart(10)} ${mib(row.deviceBytes as number).padStart(16)} ${(row.tokensPerSecond as number).toFixed(0).padStart(10)} ${(row.msPerStep as number).toFixed(0).padStart(9)} ${(row.valLoss as number).toFixed(4).padStart(10)}`);
  }
  return rows;
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === 'methods-one') {
  const [name, over] = JSON.parse(process.argv[3]);
  await runOne(name, over);
}
