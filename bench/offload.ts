// `npm run bench -- offload`: the same LoRA training in memory and streamed from the model file
// (buffered reads, which the OS page cache serves after the first pass, and O_DIRECT, which always
// reads the disk): tokens/s, peak RSS, bytes read per step, and the share of read time hidden under
// compute. Each configuration runs in its own process so that its peak RSS is its own.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openEngine } from '../electron/lab/engine/backend.js';
import { loadDataset } from '../electron/lab/data/dataset.js';
import { writeSampleChat } from '../electron/lab/data/samples.js';
import { readGguf } from '../electron/lab/model/gguf.js';
import { LlamaModel, hparamsOf } from '../electron/lab/model/llama.js';
import { makeTiny } from '../electron/lab/model/tiny.js';
import { Lora, MODULES } from '../electron/lab/tune/lora.js';
import { OPTIMIZER_DEFAULTS, Trainer, targetCapacity } from '../electron/lab/tune/trainer.js';
import { StreamingTrainer } from '../electron/lab/offload/stream.js';
import { AsyncFiles } from '../electron/lab/offload/io.js';
import { peakRss } from '../electron/lab/offload/measure.js';

const dir = join(tmpdir(), 'hone-bench-offload');
const SPEC = { nEmbd: 1024, nLayer: 24, nHead: 8, nHeadKv: 8, nFf: 2816, type: 'q8_0', tied: true, nCtx: 256 };
const STEPS = 6, SEQ = 128, BATCH = 2;
const CONFIGS = ['in memory', 'streamed, buffered (page cache), activations kept', 'streamed, O_DIRECT, activations kept', 'streamed, O_DIRECT, activations recomputed'] as const;

async function one(config: (typeof CONFIGS)[number], model: string, data: string) {
  const engine = openEngine();
  const ds = await loadDataset(data, model, { seq: SEQ, valFraction: 0 });
  const file = readGguf(model), hp = hparamsOf(file);
  const lora = new Lora(engine, hp, { rank: 8, alpha: 16, targets: MODULES });
  lora.init(1);
  const cap = { train: targetCapacity(ds.train, BATCH), eval: 1 };
  const mem = config === 'in memory' ? LlamaModel.load(model, engine) : null;
  const t = mem ? new Trainer(engine, mem, lora, BATCH, SEQ, cap, OPTIMIZER_DEFAULTS) : new StreamingTrainer(engine, file, hp, lora, BATCH, SEQ, cap, OPTIMIZER_DEFAULTS, new AsyncFiles(8), config.includes('O_DIRECT'), Array(hp.nLayer).fill(config.includes('kept')));
  const batch = (i: number) => Array.from({ length: BATCH }, (_, k) => ds.train[(i * BATCH + k) % ds.train.length]);
  await t.accumulate(batch(0), true); t.step(1, 1e-4, 1); // warm-up (and the first pass into the page cache)
  const s = t instanceof StreamingTrainer ? { read: t.bytesRead, busy: t.ioBusyMs, wait: t.ioWaitMs } : null;
  const t0 = performance.now();
  for (let i = 1; i <= STEPS; i++) { await t.accumulate(batch(i), true); t.step(i + 1, 1e-4, 1); }
  const secs = (performance.now() - t0) / 1000;
  const out = {
    config, tokensPerSecond: (STEPS * BATCH * SEQ) / secs, msPerStep: (1000 * secs) / STEPS, peakRss: peakRss(),
    readPerStep: t instanceof StreamingTrainer ? (t.bytesRead - s!.read) / STEPS : 0,
    hidden: t instanceof StreamingTrainer ? 1 - (t.ioWaitMs - s!.wait) / Math.max(1e-9, t.ioBusyMs - s!.busy) : null,
  };
  console.log(JSON.stringify(out));
}

export function offloadBench(self: string) {
  mkdirSync(dir, { recursive: true });
  const model = join(dir, 'model.gguf');
  if (!existsSync(model)) makeTiny(model, SPEC, { overwrite: true });
  const data = writeSampleChat(join(dir, 'facts.jsonl'));
  const size = readGguf(model).tensors.reduce((a, t) => a + t.bytes, 0);
  console.log(`Hone offload bench — model ${JSON.stringify(SPEC)} (${(size / 2 ** 20).toFixed(0)} MiB), LoRA r 8 on all linears, batch ${BATCH} × ${SEQ} tokens, ${STEPS} steps after one warm-up, ${new Date().toISOString().slice(0, 10)}`);
  console.log('| configuration | tokens/s | ms/step | peak RSS | read per step | read time hidden under compute |\n|---|---:|---:|---:|---:|---:|');
  for (const c of CONFIGS) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', self, c, model, data], { encoding: 'utf8' });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    if (r.status !== 0 || !line.startsWith('{')) { console.log(`| ${c} | failed: ${r.stderr.trim().split('\n').slice(-3).join(' ')} |`); continue; }
    const o = JSON.parse(line);
    console.log(`| ${c} | ${o.tokensPerSecond.toFixed(0)} | ${o.msPerStep.toFixed(0)} | ${(o.peakRss / 2 ** 20).toFixed(0)} MiB | ${(o.readPerStep / 2 ** 20).toFixed(0)} MiB | ${o.hidden === null ? '' : `${(100 * o.hidden).toFixed(0)}%`} |`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url) && CONFIGS.includes(process.argv[2] as never)) await one(process.argv[2] as (typeof CONFIGS)[number], process.argv[3], process.argv[4]);
