// `npm run bench -- scale`: random-weight models of real shapes, Q4_K, made once and cached
// (make-tiny's native generator): a 1.1B shape (TinyLlama: d 2048, 22 layers, 32 heads, 4 KV, ff 5632,
// Llama 3's 128,256 tokens) and an 8B shape (Llama 3 8B: d 4096, 32 layers, 32 heads, 8 KV, ff 14336).
// For each: the time to make it, to load it, and LoRA at seq 512, batch 1 in memory and streamed
// (tokens/s and peak RSS, each configuration in its own process so its peak is its own); then every
// compression stage (Wanda, iCBS, PERP's retraining, learned Q4_K codes, NUPES; each job in its own
// process, calibrated on SCALE_CALIB sequences of 128 tokens of the synthetic corpus) and every export
// of a LoRA run (merged F16 and Q8_0, adapter GGUF, PEFT). `SCALE_SHAPES` picks shapes (1b, 8b),
// `SCALE_STEPS` the steps timed after a first untimed one, `SCALE_SWEEPS` learned codes' sweeps (--learn-sweeps), `SCALE_PARTS` the parts (train, compress,
// export).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openEngine } from '../electron/lab/engine/backend.js';
import { LlamaModel, modelHeader } from '../electron/lab/model/llama.js';
import { makeTiny, type TinySpec } from '../electron/lab/model/tiny.js';
import { Lora, MODULES } from '../electron/lab/tune/lora.js';
import { OPTIMIZER_DEFAULTS, InMemoryTrainer } from '../electron/lab/tune/trainer.js';
import { StreamingTrainer } from '../electron/lab/tune/streaming-trainer.js';
import { AsyncFiles } from '../electron/lab/offload/io.js';
import { peakRss } from '../electron/lab/offload/measure.js';
import { COMPRESS_DEFAULTS, runCompression, type CompressConfig } from '../electron/lab/compress/job.js';
import { syntheticCorpus } from '../electron/lab/data/samples.js';
import { exportAdapterGguf, exportMergedGguf, exportPeft, withTrainedRun } from '../electron/lab/export/run-export.js';
import { TRAIN_DEFAULTS, runTraining } from '../electron/lab/tune/run.js';

const SHAPES: Record<string, Partial<TinySpec>> = {
  tiny: { nEmbd: 256, nLayer: 2, nHead: 4, nHeadKv: 2, nFf: 768 }, // checks the bench itself in a minute
  '1b': { nEmbd: 2048, nLayer: 22, nHead: 32, nHeadKv: 4, nFf: 5632 },
  '8b': { nEmbd: 4096, nLayer: 32, nHead: 32, nHeadKv: 8, nFf: 14336 },
};
const SEQ = 512, RANK = 16;
const dir = join(tmpdir(), 'hone-bench-scale');
const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;

/** the shape's Q4_K file, made on first use (seconds to make it, or 0 when cached) */
function modelOf(shape: string): { path: string; seconds: number } {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `scale-${shape}-q4_k.gguf`);
  if (existsSync(path)) return { path, seconds: 0 };
  const t0 = performance.now();
  makeTiny(`${path}.partial`, { ...SHAPES[shape], arch: 'llama', vocab: 'llama-bpe', type: 'q4_k', nCtx: 8192, tied: false }, { overwrite: true });
  renameSync(`${path}.partial`, path);
  return { path, seconds: (performance.now() - t0) / 1000 };
}

/** one configuration in this process: load, then LoRA steps on random tokens; prints one JSON line */
async function one(config: 'load' | 'memory' | 'streamed', path: string, steps: number) {
  const engine = openEngine();
  const header = modelHeader(path);
  const t0 = performance.now();
  const out: Record<string, number> = {};
  const lora = new Lora(engine, header.hp, { rank: RANK, alpha: 2 * RANK, targets: MODULES });
  lora.init(1);
  const n = SEQ;
  const tokens = Int32Array.from({ length: n + 1 }, (_, i) => (i * 7919) % header.hp.nVocab);
  const window = { input: tokens.subarray(0, n), target: tokens.subarray(1), trained: new Uint8Array(n).fill(1) };
  const cap = { train: n, eval: 1 };
  let trainer: InMemoryTrainer | StreamingTrainer;
  if (config === 'streamed') {
    trainer = new StreamingTrainer(engine, header, lora, { batch: 1, seq: SEQ, capacity: cap, opt: OPTIMIZER_DEFAULTS, files: new AsyncFiles(8), direct: true, activations: Array(header.hp.nLayer).fill('keep') });
  } else {
    const model = LlamaModel.load(header, engine);
    out.loadSeconds = (performance.now() - t0) / 1000;
    if (config === 'load') { console.log(JSON.stringify({ ...out, peakRss: peakRss() })); return; }
    trainer = new InMemoryTrainer(engine, model, lora, 1, SEQ, cap, OPTIMIZER_DEFAULTS);
  }
  const step = async () => { await trainer.accumulate([window], true); await trainer.step(1, 1e-4, 1); };
  await step(); // graphs built, caches warm
  const t1 = performance.now();
  for (let i = 0; i < steps; i++) await step();
  out.tokensPerSecond = (steps * n) / ((performance.now() - t1) / 1000);
  console.log(JSON.stringify({ ...out, peakRss: peakRss() }));
}

/** the compression jobs timed: each stage's seconds come from the job's own record */
const JOBS: Record<string, Partial<CompressConfig>> = {
  'Wanda 50%': { prune: 'wanda', quant: 'f16' },
  'iCBS 50% (1 epoch, 100k blocks)': { prune: 'icbs', quant: 'f16', icbs: { ...COMPRESS_DEFAULTS.icbs, epochs: 1 } },
  'Wanda 50% + PERP (4 steps)': { prune: 'perp', quant: 'f16', retrain: { ...COMPRESS_DEFAULTS.retrain, steps: 4, batch: 1 } },
  'Q4_K learned': { quant: 'q4_k-learned' },
  'NUPES 4-bit (data-driven)': { quant: 'nupes4' },
};

/** calibration text: the synthetic corpus, long enough for `samples` windows of 128 tokens and a held-out tail */
function calibText(samples: number): string {
  const path = join(dir, `calib-${samples}.txt`);
  if (!existsSync(path)) writeFileSync(path, syntheticCorpus(7, samples * 24));
  return path;
}

/** one compression job in this process: each stage's seconds, and the process's peak RSS */
async function compressOne(name: string, path: string, samples: number) {
  const out = join(dir, `job-${name.replace(/\W+/g, '-')}`);
  rmSync(out, { recursive: true, force: true });
  const t0 = performance.now();
  const { report } = await runCompression({ ...COMPRESS_DEFAULTS, ...JOBS[name], model: path, out, calib: calibText(samples), calibSeq: 128, calibSamples: samples, evalTokens: 128, learnSweeps: Number(process.env.SCALE_SWEEPS ?? COMPRESS_DEFAULTS.learnSweeps) });
  const stages = Object.fromEntries(report.filter((r) => r.stage !== 'input').map((r) => [r.stage, r.seconds]));
  rmSync(out, { recursive: true, force: true });
  console.log(JSON.stringify({ stages, seconds: (performance.now() - t0) / 1000, peakRss: peakRss() }));
}

/** a LoRA run of two steps, then every export of it, timed one by one */
async function exportOne(path: string) {
  const run = join(dir, 'export-run'), out = join(dir, 'export-out');
  rmSync(run, { recursive: true, force: true });
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  await runTraining({ ...TRAIN_DEFAULTS, model: path, data: calibText(16), method: 'lora', steps: 2, batch: 1, seq: 128, valFraction: 0, evalEvery: 0, saveEvery: 2 }, { runDir: run });
  const times: Record<string, number> = {};
  const time = (k: string, f: () => void) => { const t0 = performance.now(); f(); times[k] = (performance.now() - t0) / 1000; };
  withTrainedRun(run, (l) => {
    time('merged F16', () => exportMergedGguf(l, join(out, 'merged-f16.gguf'), 'f16', true));
    time('merged Q8_0', () => exportMergedGguf(l, join(out, 'merged-q8_0.gguf'), 'q8_0', true));
    time('adapter GGUF', () => exportAdapterGguf(l, join(out, 'adapter.gguf'), true));
    time('PEFT', () => exportPeft(l, join(out, 'peft'), true));
  });
  rmSync(out, { recursive: true, force: true });
  rmSync(run, { recursive: true, force: true });
  console.log(JSON.stringify({ times, peakRss: peakRss() }));
}

/** runs `args` of this file in a child process; its last line, parsed */
function child(self: string, args: string[]): { ok: true; x: Record<string, any> } | { ok: false; why: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', self, ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  if (r.status !== 0 || !line.startsWith('{')) return { ok: false, why: `failed (${r.status ?? r.signal}): ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}` };
  return { ok: true, x: JSON.parse(line) };
}

export async function scaleBench(self: string) {
  const shapes = (process.env.SCALE_SHAPES ?? '1b,8b').split(',');
  const steps = Number(process.env.SCALE_STEPS ?? 2);
  const parts = (process.env.SCALE_PARTS ?? 'train,compress,export').split(',');
  const samples = Number(process.env.SCALE_CALIB ?? 32);
  console.log(`Hone scale bench — ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${new Date().toISOString().slice(0, 10)}; LoRA r=${RANK} on all seven modules, seq ${SEQ}, batch 1`);
  for (const shape of shapes) {
    const made = modelOf(shape);
    const h = modelHeader(made.path).hp;
    console.log(`${shape}: d ${h.nEmbd}, ${h.nLayer} layers, ${h.nHead}/${h.nHeadKv} heads, ff ${h.nFf}, vocabulary ${h.nVocab}, Q4_K ${gib(statSync(made.path).size)}${made.seconds ? `, made in ${made.seconds.toFixed(0)} s` : ' (cached)'}`);
    for (const config of parts.includes('train') ? ['load', 'memory', 'streamed'] as const : []) {
      const r = child(self, ['one', config, made.path, String(steps)]);
      if (!r.ok) { console.log(`  ${config}: ${r.why}`); continue; }
      const x = r.x;
      const what = config === 'load' ? `load ${x.loadSeconds.toFixed(1)} s` : `LoRA ${config}: ${x.tokensPerSecond.toFixed(1)} tok/s${x.loadSeconds ? ` (load ${x.loadSeconds.toFixed(1)} s)` : ''}`;
      console.log(`  ${what.padEnd(44)} peak RSS ${gib(x.peakRss)}`);
    }
    for (const name of parts.includes('compress') ? Object.keys(JOBS) : []) {
      const r = child(self, ['compress', name, made.path, String(samples)]);
      if (!r.ok) { console.log(`  ${name}: ${r.why}`); continue; }
      const st = Object.entries(r.x.stages as Record<string, number>).map(([k, v]) => `${k} ${v.toFixed(0)} s`).join(', ');
      console.log(`  ${name.padEnd(28)} ${st} (job ${r.x.seconds.toFixed(0)} s)  peak RSS ${gib(r.x.peakRss)}`);
    }
    if (parts.includes('export')) {
      const r = child(self, ['export', made.path]);
      if (!r.ok) console.log(`  exports: ${r.why}`);
      else console.log(`  exports: ${Object.entries(r.x.times as Record<string, number>).map(([k, v]) => `${k} ${v.toFixed(1)} s`).join(', ')}  peak RSS ${gib(r.x.peakRss)}`);
    }
  }
}

if (process.argv[2] === 'one') await one(process.argv[3] as 'load' | 'memory' | 'streamed', process.argv[4], Number(process.argv[5]));
if (process.argv[2] === 'compress') await compressOne(process.argv[3], process.argv[4], Number(process.argv[5]));
if (process.argv[2] === 'export') await exportOne(process.argv[3]);
export const scaleSelf = fileURLToPath(import.meta.url);
