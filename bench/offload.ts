// `npm run bench -- offload`: the same training in memory and streamed block by block, Fuyou-style.
// LoRA: blocks read from the model file (buffered reads, which the OS page cache serves after the
// first pass, and O_DIRECT, which always reads the disk). GaLore (full-parameter): the blocks' F32
// master weights and optimizer state in RAM or in a file in the SSD folder, each block's optimizer
// step on a CPU engine of its own while the next block computes. Reported: tokens/s, peak RSS,
// bytes read and written per step, the share of read time hidden under compute, and (GaLore) the
// share of optimizer time hidden. Each configuration runs in its own process so that its peak RSS
// is its own.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openEngine } from '../electron/lab/engine/backend.js';
import { loadDataset } from '../electron/lab/data/dataset.js';
import { writeSampleChat } from '../electron/lab/data/samples.js';
import { readGguf } from '../electron/lab/model/gguf.js';
import { LlamaModel, modelHeader } from '../electron/lab/model/llama.js';
import { makeTiny } from '../electron/lab/model/tiny.js';
import { Lora, MODULES } from '../electron/lab/tune/lora.js';
import { FullModel } from '../electron/lab/tune/galore.js';
import { trainDefaults } from '../electron/lab/tune/settings.js';
import { OPTIMIZER_DEFAULTS, InMemoryTrainer, targetCapacity } from '../electron/lab/tune/trainer.js';
import { StreamingTrainer } from '../electron/lab/tune/streaming-trainer.js';
import { BlockStates, StreamedFullModel } from '../electron/lab/tune/block-state.js';
import { AsyncFiles } from '../electron/lab/offload/io.js';
import { peakRss } from '../electron/lab/offload/measure.js';

const dir = join(tmpdir(), 'hone-bench-offload');
const MODELS = {
  lora: { nEmbd: 1024, nLayer: 24, nHead: 8, nHeadKv: 8, nFf: 2816, type: 'q8_0', tied: true, nCtx: 256 },
  galore: { nEmbd: 1024, nLayer: 8, nHead: 8, nHeadKv: 8, nFf: 2816, type: 'f16', tied: true, nCtx: 256 },
};
const STEPS = 6, SEQ = 128, BATCH = 2;
const GALORE = { method: 'galore' as const, rank: 128, updateGap: trainDefaults('galore').galoreGap!, scale: trainDefaults('galore').galoreScale!, history: 0, damping: 0 };
const CONFIGS = [
  'LoRA in memory', 'LoRA streamed, buffered (page cache), activations kept', 'LoRA streamed, O_DIRECT, activations kept', 'LoRA streamed, O_DIRECT, activations recomputed',
  'GaLore in memory', 'GaLore streamed, state in RAM', 'GaLore streamed, state in RAM, optimizer on a second CPU engine beside the compute', 'GaLore streamed, state on the SSD (O_DIRECT)',
] as const;
type Config = (typeof CONFIGS)[number];

async function one(config: Config, model: string, data: string) {
  const engine = openEngine();
  const ds = await loadDataset(data, model, { seq: SEQ, valFraction: 0 });
  const header = modelHeader(model), { hp } = header;
  const cap = { train: targetCapacity(ds.train, BATCH), eval: 1 };
  const files = new AsyncFiles(8);
  const direct = !config.includes('buffered');
  const inMemory = config.endsWith('in memory');
  const opt = { ...OPTIMIZER_DEFAULTS, maxGradNorm: 1 };
  let t: InMemoryTrainer | StreamingTrainer;
  let blocks: BlockStates | null = null;
  if (config.startsWith('LoRA')) {
    const lora = new Lora(engine, hp, { rank: 8, alpha: 16, targets: MODULES });
    lora.init(1);
    const acts = Array(hp.nLayer).fill(config.includes('kept') ? 'keep' : 'recompute');
    t = inMemory ? new InMemoryTrainer(engine, LlamaModel.load(model, engine), lora, BATCH, SEQ, cap, opt) : new StreamingTrainer(engine, header, lora, { batch: BATCH, seq: SEQ, capacity: cap, opt, files, direct, activations: acts });
  } else if (inMemory) {
    const m = LlamaModel.load(model, engine, { master: true });
    const full = new FullModel(engine, m, GALORE, opt);
    full.init();
    t = new InMemoryTrainer(engine, m, full, BATCH, SEQ, cap, opt);
  } else {
    blocks = new BlockStates(engine, header, GALORE, opt, { home: config.includes('SSD') ? 'ssd' : 'ram', files, ssdDir: dir, direct: true, overlap: config.includes('beside'), hostThreads: Math.max(1, engine.threads >> 1) });
    const full = new StreamedFullModel(engine, header, blocks);
    full.init();
    t = new StreamingTrainer(engine, header, full, { batch: BATCH, seq: SEQ, capacity: cap, opt, files, activations: Array(hp.nLayer).fill('keep'), ssdDir: dir });
  }
  const batch = (i: number) => Array.from({ length: BATCH }, (_, k) => ds.train[(i * BATCH + k) % ds.train.length]);
  // the first step also refreshes GaLore's projectors (an SVD per weight, every 200 steps): warm-up
  await t.accumulate(batch(0), true); await t.step(1, 1e-4, 1);
  if (t instanceof StreamingTrainer) await t.settle();
  const s = t instanceof StreamingTrainer ? { busy: t.ioBusyMs, wait: t.ioWaitMs, opt: blocks?.optimizerMs ?? 0, optWait: t.optimizerWaitMs } : null;
  const io = { read: files.bytesRead, written: files.bytesWritten };
  const t0 = performance.now();
  for (let i = 1; i <= STEPS; i++) { await t.accumulate(batch(i), true, 0, { last: true, step: i + 1, lr: 1e-4, micro: 1 }); await t.step(i + 1, 1e-4, 1); }
  if (t instanceof StreamingTrainer) await t.settle();
  const secs = (performance.now() - t0) / 1000;
  const out = {
    config, tokensPerSecond: (STEPS * BATCH * SEQ) / secs, msPerStep: (1000 * secs) / STEPS, peakRss: peakRss(),
    readPerStep: (files.bytesRead - io.read) / STEPS, writtenPerStep: (files.bytesWritten - io.written) / STEPS,
    hidden: t instanceof StreamingTrainer ? 1 - (t.ioWaitMs - s!.wait) / Math.max(1e-9, t.ioBusyMs - s!.busy) : null,
    optimizerMs: blocks ? (blocks.optimizerMs - s!.opt) / STEPS : null,
    optimizerHidden: blocks ? 1 - ((t as StreamingTrainer).optimizerWaitMs - s!.optWait) / Math.max(1e-9, blocks.optimizerMs - s!.opt) : null,
  };
  console.log(JSON.stringify(out));
  t.free();
  blocks?.free(); // deletes the SSD state file
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
const pct = (x: number | null) => (x === null ? '' : `${(100 * Math.max(0, x)).toFixed(0)}%`);

export function offloadBench(self: string) {
  mkdirSync(dir, { recursive: true });
  const data = writeSampleChat(join(dir, 'facts.jsonl'));
  const models = Object.fromEntries(Object.entries(MODELS).map(([k, spec]) => {
    const path = join(dir, `${k}-${spec.type}-${spec.nLayer}.gguf`);
    if (!existsSync(path)) makeTiny(path, spec, { overwrite: true });
    return [k, path];
  })) as Record<keyof typeof MODELS, string>;
  console.log(`Hone offload bench — batch ${BATCH} × ${SEQ} tokens, ${STEPS} steps after one warm-up, ${new Date().toISOString().slice(0, 10)}`);
  for (const [k, spec] of Object.entries(MODELS)) console.log(`${k} model: ${JSON.stringify(spec)} (${mib(readGguf(models[k as keyof typeof MODELS]).tensors.reduce((a, t) => a + t.bytes, 0))})`);
  console.log('LoRA r 8 on all linears; GaLore rank 128 on every block linear, AdamW on the rest, gradient clipped at 1');
  console.log('| configuration | tokens/s | ms/step | peak RSS | read per step | written per step | read time hidden | optimizer ms/step (hidden) |\n|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const c of CONFIGS) {
    const r = spawnSync(process.execPath, ['--import', 'tsx', self, c, c.startsWith('LoRA') ? models.lora : models.galore, data], { encoding: 'utf8' });
    const line = r.stdout.trim().split('\n').pop() ?? '';
    if (r.status !== 0 || !line.startsWith('{')) { console.log(`| ${c} | failed: ${r.stderr.trim().split('\n').slice(-3).join(' ')} |`); continue; }
    const o = JSON.parse(line);
    console.log(`| ${c} | ${o.tokensPerSecond.toFixed(0)} | ${o.msPerStep.toFixed(0)} | ${mib(o.peakRss)} | ${mib(o.readPerStep)} | ${mib(o.writtenPerStep)} | ${pct(o.hidden)} | ${o.optimizerMs === null ? '' : `${o.optimizerMs.toFixed(0)} (${pct(o.optimizerHidden)})`} |`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url) && CONFIGS.includes(process.argv[2] as never)) await one(process.argv[2] as Config, process.argv[3], process.argv[4]);
