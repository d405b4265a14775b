// A training run from start (or its last checkpoint) to the end: data, adapter, steps, validation,
// checkpoints, metrics. Emits typed events; the CLI, the app's job runner and tests listen.
import { appendFileSync, existsSync, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { openEngine, type Engine } from '../engine/backend.js';
import { loadDataset, type Dataset } from '../data/dataset.js';
import { Rng, type LongPolicy, type Window } from '../data/pack.js';
import type { Shape } from '../data/shape.js';
import { LlamaModel, hparamsOf, modelHeader } from '../model/llama.js';
import { StreamingTrainer } from './streaming-trainer.js';
import { AsyncFiles } from '../offload/io.js';
import { describePlan, gib, planMemory, type ActivationChoice, type WeightHome } from '../offload/plan.js';
import { defaultBudgets, machineRates } from '../offload/measure.js';
import { BlockStates, StreamedFullModel, type StateHome } from './block-state.js';
import { listCheckpoints, loadLatestCheckpoint, saveCheckpoint } from './checkpoint.js';
import { moduleDims, parameterCount, type Adapter } from './adapter.js';
import { galoreSettings, methodOf, modelView, type MethodConfig } from './methods.js';
import { fullMemoryPlan, type MemoryPlan } from './galore.js';
import { readGguf, type GgufFile } from '../model/gguf.js';
import { lrAt, type ScheduleName } from './schedule.js';
import { InMemoryTrainer, OPTIMIZER_DEFAULTS, targetCapacity, type Trainer } from './trainer.js';
import { resolveTrainConfig, trainDefaults } from './settings.js';
import { makeFolder } from '../store/folders.js';
import { writeFileAtomic } from '../store/atomic-file.js';

export interface TrainConfig extends MethodConfig {
  model: string;
  data: string;
  steps?: number;
  epochs?: number;
  lr: number;
  seq: number;
  batch: number;
  accum: number;
  schedule: ScheduleName;
  warmup: number;
  evalEvery: number;
  saveEvery: number;
  seed: number;
  valFraction: number;
  format?: Shape;
  long: LongPolicy;
  pack: boolean;
  maxGradNorm: number;
  weightDecay: number;
  /** out-of-core training (offload/): budgets for the memory plan; `force` streams even when it fits */
  offload?: OffloadConfig;
}

export interface OffloadConfig {
  force?: boolean;
  /** device memory and RAM budgets in bytes (default: what the machine has) */
  gpuMem?: number;
  ram?: number;
  /** folder for swapped state (its free space is the SSD budget) */
  ssd?: string;
  /** O_DIRECT reads of the model file (default true) */
  direct?: boolean;
  /** override the plan's choice for every block's activations (tests, bench) */
  activations?: ActivationChoice;
  /** full-parameter training: override where the blocks' trainable state lives (tests, bench) */
  state?: StateHome;
  /** full-parameter training: run each block's optimizer step on a CPU engine of its own beside the
   *  device (default: when the device is a GPU; on a CPU device both would share the same cores) */
  overlap?: boolean;
}

/** LoRA's defaults from the settings table (tune/settings.ts), for callers that build a config in code */
export const TRAIN_DEFAULTS: Omit<TrainConfig, 'model' | 'data'> = trainDefaults('lora');

export type TrainEvent =
  | { type: 'dataset'; file: string; shape: Shape; template: string; rows: number; examples: number; rejected: { row: number; reason: string }[]; trainWindows: number; valWindows: number; trainedTokens: number }
  | ({ type: 'memory' } & MemoryPlan)
  | { type: 'offload'; streaming: boolean; plan: string; fits: boolean; device: number; ram: number; ssd: number; expectedStep: number; batch: number; accum: number }
  | { type: 'start'; totalSteps: number; startStep: number; method: string; parameters: number; optimizerBytes: number; backend: string; int8: boolean; resumedFrom?: string }
  | { type: 'step'; step: number; totalSteps: number; loss: number; lr: number; gradNorm: number; tokensPerSecond: number; elapsed: number; eta: number; rss: number; deviceBytes: number; streamedBytes?: number }
  | { type: 'eval'; step: number; valLoss: number }
  | { type: 'checkpoint'; step: number; path: string }
  | { type: 'done'; step: number; stopped: boolean; runDir: string };

export interface RunOptions {
  runDir: string;
  resume?: boolean;
  signal?: AbortSignal;
  onEvent?: (e: TrainEvent) => void;
}

/** The window stream: epoch e visits all windows in an order drawn from (seed, e). */
export function windowAt(windows: Window[], seed: number, p: number, cache: Map<number, number[]>): Window {
  const n = windows.length;
  const epoch = Math.floor(p / n);
  let order = cache.get(epoch);
  if (!order) {
    order = new Rng((seed * 7919 + epoch) >>> 0).shuffle(windows.map((_, i) => i));
    cache.clear();
    cache.set(epoch, order);
  }
  return windows[order[p % n]];
}

/** the memory plan of a run on this machine: the budgets given (else what the machine has) and its
 *  measured rates (`hone plan`, and every run with offload settings) */
/**
 * metrics.jsonl as it was at step `step`: the steps a stopped or killed run logged after its last
 * checkpoint are trained again on resume, and a line cut short by a kill is dropped, so the curve
 * reads as one run's.
 */
function keepMetricsUpTo(path: string, step: number) {
  if (!existsSync(path)) return;
  const kept = readFileSync(path, 'utf8').split('\n').filter((line) => {
    try {
      return (JSON.parse(line) as { step: number }).step <= step;
    } catch {
      return false;
    }
  });
  writeFileAtomic(path, Buffer.from(kept.map((l) => `${l}\n`).join('')));
}

/** the folder a user names for swapped state, made when missing (as an output folder is) */
function ssdFolder(path: string) {
  try {
    makeFolder(path, 'the SSD folder');
  } catch (e) {
    throw new Error(`${(e as Error).message}; choose a folder on a local disk (--ssd)`);
  }
}

/** RAM a run maps beyond its plan's buffers: thread stacks, OpenBLAS's and the allocator's working
 *  memory, ggml's graph metadata. 24 MiB at 2 threads puts the plan 1–6% above the measured peak
 *  (2026-12-07, offload.test's memory bound); the share per thread (stacks, OpenBLAS's per-thread
 *  buffers) is an estimate no many-core machine has checked yet */
const runReserve = (threads: number) => (16 + 4 * threads) * 2 ** 20;

let baseline: number | undefined;
/** the process's resident memory when it first plans a run (before the rate probes' buffers): what
 *  --ram cannot give to the run. Once per process, so that every plan of it agrees (the CLI and the
 *  app's job workers run one training per process) */
const processBaseline = () => (baseline ??= process.memoryUsage().rss);

export async function planRun(engine: Engine, cfg: Pick<TrainConfig, 'model' | 'method' | 'rank' | 'targets' | 'batch' | 'seq' | 'offload'>, file: GgufFile = readGguf(cfg.model)) {
  const hp = hparamsOf(file);
  const o = cfg.offload ?? {};
  if (o.ssd) ssdFolder(o.ssd);
  const budgets = defaultBudgets(engine, o.ssd);
  if (o.gpuMem) budgets.device = o.gpuMem;
  // --ram bounds the whole process: what it holds already is spent; free memory (the default) is
  // what is left beside it
  if (o.ram) budgets.ram = o.ram;
  budgets.reserved = runReserve(engine.threads) + (o.ram ? processBaseline() : 0);
  const rates = await machineRates(engine, o.ssd);
  const adapterParams = hp.nLayer * cfg.targets.reduce((a, m) => { const [i, out] = moduleDims(hp, m); return a + cfg.rank * (i + out); }, 0);
  const plan = planMemory({ file, hp, training: methodOf(cfg.method).full ? 'full' : 'adapter', adapterParams, batch: cfg.batch, seq: cfg.seq, budgets, rates, forceStream: o.force });
  return { plan, budgets, rates };
}

export async function runTraining(cfgIn: TrainConfig, opts: RunOptions): Promise<{ step: number; stopped: boolean; dataset: Dataset }> {
  const runDir = resolve(opts.runDir);
  const configFile = join(runDir, 'config.json');
  if (existsSync(runDir) && !statSync(runDir).isDirectory()) throw new Error(`${runDir} is a file, not a folder: choose a new folder for the run (--out)`);
  let cfg = cfgIn;
  if (opts.resume) {
    if (!existsSync(configFile)) throw new Error(`${runDir} has no run to resume (config.json is missing)`);
    const saved = JSON.parse(readFileSync(configFile, 'utf8')) as TrainConfig;
    // budgets and the SSD folder belong to the machine, not to the run: a resume may change them
    cfg = { ...saved, steps: cfgIn.steps ?? saved.steps, epochs: cfgIn.epochs ?? saved.epochs, offload: cfgIn.offload ?? saved.offload };
  } else if (listCheckpoints(runDir).length || existsSync(configFile)) {
    throw new Error(`${runDir} already holds a run; resume it with --resume or choose another --out`);
  }
  // before anything is written or opened natively: the model through Hone's own reader (a broken or
  // untrainable file is named here, not by an abort inside llama.cpp), then every setting in range
  const header = modelHeader(cfg.model); // read and checked once for the whole run
  const { file, hp } = header;
  if (!opts.resume) cfg = resolveTrainConfig(cfg as unknown as Record<string, unknown>, { nLayer: hp.nLayer });
  if (cfg.offload?.ssd) ssdFolder(cfg.offload.ssd); // a folder named for swapped state: made, or refused, before anything else
  const emit = (e: TrainEvent) => {
    opts.onEvent?.(e);
    if (e.type === 'step' || e.type === 'eval') appendFileSync(join(runDir, 'metrics.jsonl'), `${JSON.stringify({ ...e, time: Date.now() })}\n`);
  };
  makeFolder(runDir, 'the run folder');

  const ds = await loadDataset(cfg.data, cfg.model, { seq: cfg.seq, format: cfg.format, valFraction: cfg.valFraction, seed: cfg.seed, long: cfg.long, pack: cfg.pack ?? true });
  emit({
    type: 'dataset', file: ds.file, shape: ds.shape, template: ds.template, rows: ds.rows, examples: ds.examples,
    rejected: ds.issues.map(({ row, reason }) => ({ row, reason })), trainWindows: ds.train.length, valWindows: ds.val.length, trainedTokens: ds.trainedTokens,
  });
  const perStep = cfg.batch * cfg.accum;
  const totalSteps = cfg.steps ?? Math.max(1, Math.ceil(((cfg.epochs ?? 1) * ds.train.length) / perStep));

  const method = methodOf(cfg.method ?? 'lora');
  const optCfg = { ...OPTIMIZER_DEFAULTS, weightDecay: cfg.weightDecay, maxGradNorm: cfg.maxGradNorm };
  const methodCfg = { ...cfg, method: method.name, dropout: cfg.dropout ?? 0 };
  if (method.full) emit({ type: 'memory', ...fullMemoryPlan(header, galoreSettings(methodCfg)) });
  const engine = openEngine();
  // out of core: the plan decides whether the blocks stream from the model file
  let streaming = false;
  let activations: ActivationChoice[] = [];
  let weightHomes: WeightHome[] = [];
  let stateHome: StateHome = 'ram';
  const files = new AsyncFiles(8);
  if (cfg.offload) {
    let { plan: p } = await planRun(engine, methodCfg, file);
    // over budget: halve the micro-batch, the step's tokens kept by accumulating twice as many, until
    // the plan fits; a plan that cannot fit is refused with what it is short of (never run over)
    while (!p.fits && cfg.batch > 1 && cfg.batch % 2 === 0) {
      cfg = { ...cfg, batch: cfg.batch / 2, accum: cfg.accum * 2 };
      Object.assign(methodCfg, { batch: cfg.batch, accum: cfg.accum });
      p = (await planRun(engine, methodCfg, file)).plan;
    }
    if (!p.fits) {
      engine.free();
      const ram = cfg.offload?.ram;
      throw new Error(`the memory plan for ${basename(cfg.model)} at --batch ${cfg.batch}, --seq ${cfg.seq} ${p.shortfall}${ram ? ` (--ram ${gib(ram)} bounds the whole process: ${gib(p.ram)} planned)` : ''}`);
    }
    streaming = p.blocks.some((b) => b.weights === 'stream');
    activations = p.blocks.map((b) => cfg.offload!.activations ?? b.activations);
    weightHomes = p.blocks.map((b) => b.weights);
    stateHome = cfg.offload!.state ?? (p.trainable.home === 'ssd' ? 'ssd' : 'ram');
    emit({ type: 'offload', streaming, plan: describePlan(p), fits: p.fits, device: p.device, ram: p.ram, ssd: p.ssd, expectedStep: p.step, batch: cfg.batch, accum: cfg.accum });
    if (streaming && method.notStreamed) { engine.free(); throw new Error(`${method.notStreamed}; this model needs streaming under these budgets: use --method lora, hut, mos, galore or full, or give more --ram`); }
  }
  // the one model handle of the run: the header read above, with the weights when they fit
  const model = streaming ? null : LlamaModel.load(header, engine, { master: method.full, int8: true });
  const view = modelView(header, model ?? undefined);
  let adapter: Adapter;
  try {
    if (streaming && method.full) {
      // full-parameter out of core: the blocks' master weights and optimizer state in RAM or on the SSD
      const blocks = new BlockStates(engine, header, galoreSettings(methodCfg), optCfg, { home: stateHome, files, ssdDir: cfg.offload?.ssd, direct: cfg.offload?.direct ?? true, overlap: cfg.offload?.overlap });
      adapter = new StreamedFullModel(engine, header, blocks);
    } else adapter = method.build(engine, view, methodCfg, optCfg);
  } catch (e) {
    model?.free();
    engine.free();
    throw e;
  }
  // the run exists from here on: a run refused above leaves no config.json that would block a rerun
  if (!opts.resume) writeFileAtomic(configFile, Buffer.from(JSON.stringify({ ...cfg, steps: totalSteps }, null, 2)));
  adapter.init(cfg.seed);
  let trainer: Trainer | null = null;
  try {
    let step = 0, consumed = 0;
    let resumedFrom: string | undefined;
    if (opts.resume) {
      const ck = loadLatestCheckpoint(runDir, adapter);
      if (ck) { step = ck.position.step; consumed = ck.position.consumed; resumedFrom = ck.path; }
      keepMetricsUpTo(join(runDir, 'metrics.jsonl'), step);
    }
    const capacity = { train: targetCapacity(ds.train, cfg.batch), eval: targetCapacity(ds.val.length ? ds.val : ds.train, cfg.batch) };
    trainer = model ? new InMemoryTrainer(engine, model, adapter, cfg.batch, cfg.seq, capacity, optCfg)
      : new StreamingTrainer(engine, header, adapter, { batch: cfg.batch, seq: cfg.seq, capacity, opt: optCfg, files, direct: cfg.offload?.direct, activations, ssdDir: cfg.offload?.ssd, weights: weightHomes });
    const t = trainer;
    emit({ type: 'start', totalSteps, startStep: step, method: adapter.method, parameters: parameterCount(adapter), optimizerBytes: adapter.optimizerBytes ?? 8 * parameterCount(adapter), backend: engine.kind, int8: !!model?.int8, resumedFrom });
    const orders = new Map<number, number[]>();
    const schedule = { name: cfg.schedule, lr: cfg.lr, warmup: cfg.warmup, total: totalSteps };
    const t0 = Date.now();
    const startStep = step;
    let streamedBefore = 0;
    let stopped = false;
    const save = async () => {
      await t.settle(); // streamed blocks' updates finish first
      emit({ type: 'checkpoint', step, path: saveCheckpoint(runDir, { step, consumed }, adapter, { seed: cfg.seed }) });
    };
    const hasCheckpoint = () => listCheckpoints(runDir).some((p) => p.endsWith(`step-${String(step).padStart(7, '0')}.gguf`));
    while (step < totalSteps) {
      // let signals and messages (Ctrl-C, a job's cancel) in between steps
      await new Promise((r) => setImmediate(r));
      if (opts.signal?.aborted) { stopped = true; break; }
      let lossSum = 0, targets = 0;
      const stepStart = consumed;
      const lr = lrAt(schedule, step + 1);
      try {
        for (let micro = 0; micro < cfg.accum; micro++) {
          const batch = Array.from({ length: cfg.batch }, (_, i) => windowAt(ds.train, cfg.seed, consumed + i, orders));
          consumed += cfg.batch;
          const r = await t.accumulate(batch, micro === 0, (cfg.seed * 1000003 + step * 101 + micro) >>> 0, { last: micro === cfg.accum - 1, step: step + 1, lr, micro: cfg.accum });
          lossSum += r.loss * r.targets;
          targets += r.targets;
        }
      } catch (e) {
        // a failure inside a step (a disk error while streaming): the last finished step is kept as
        // a checkpoint, so the run resumes where it stopped once the cause is fixed
        consumed = stepStart;
        if (step > startStep && !hasCheckpoint() && t.consistent) { try { await save(); } catch { /* the disk may be the problem; earlier checkpoints remain */ } }
        throw e;
      }
      if (!Number.isFinite(lossSum)) {
        // no update from it and no checkpoint of it: the weights would be NaN from here on
        throw new Error(`step ${step + 1}: the loss is ${lossSum / targets}, so the run stopped before updating anything. ${step === 0
          ? `The model's weights or the data give a non-finite loss from the start: check ${cfg.model} (a broken or NaN-filled file) and try a lower --lr.`
          : `The last checkpoint is kept: lower the learning rate (--lr ${cfg.lr} now) or raise --max-grad-norm's clipping, then resume.`}`);
      }
      step++;
      const gradNorm = await t.step(step, lr, cfg.accum);
      const elapsed = (Date.now() - t0) / 1000;
      const done = step - startStep;
      emit({
        type: 'step', step, totalSteps, loss: lossSum / targets, lr, gradNorm,
        tokensPerSecond: (done * perStep * cfg.seq) / Math.max(elapsed, 1e-9), elapsed, eta: (elapsed / done) * (totalSteps - step),
        rss: process.memoryUsage().rss, deviceBytes: engine.native.memory().current,
        // streaming: bytes of blocks read this step (from the model file, or full-parameter records)
        streamedBytes: streaming ? t.bytesRead - streamedBefore : undefined,
      });
      streamedBefore = t.bytesRead;
      if (ds.val.length && cfg.evalEvery > 0 && (step % cfg.evalEvery === 0 || step === totalSteps)) emit({ type: 'eval', step, valLoss: await t.evaluate(ds.val) });
      if ((cfg.saveEvery > 0 && step % cfg.saveEvery === 0) || step === totalSteps) await save();
    }
    if (stopped && step > startStep && !hasCheckpoint()) await save();
    emit({ type: 'done', step, stopped, runDir });
    return { step, stopped, dataset: ds };
  } finally {
    await trainer?.settle().catch(() => {});
    trainer?.free();
    adapter.free();
    model?.free();
    engine.free();
  }
}
