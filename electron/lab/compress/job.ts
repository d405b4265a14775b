// A compression job: prune → retrain (PERP) → quantize → export, as stages that each write one file
// into the job's folder and record themselves in compress.json. A job run again with the same
// settings skips the stages already done (resumable at stage boundaries; PERP's retraining also
// resumes from its own checkpoints); the input model is only ever read.
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { makeFolder } from '../store/folders.js';
import { basename, dirname, join, resolve } from 'node:path';
import { openEngine, type Engine } from '../engine/backend.js';
import { loadDataset } from '../data/dataset.js';
import { fileKind } from '../data/read.js';
import { readGguf, type GgufTensorInfo } from '../model/gguf.js';
import { LlamaModel, hparamsOf } from '../model/llama.js';
import { checkStructured, planStructured, writeStructured } from './structured.js';
import { perplexity } from '../eval/perplexity.js';
import { tokenize } from '../engine/llamacpp.js';
import { exportMergedGguf, stopStrings, withTrainedRun } from '../export/run-export.js';
import { writeFileAtomic } from '../store/atomic-file.js';
import { TRAIN_DEFAULTS, runTraining, type TrainConfig, type TrainEvent } from '../tune/run.js';
import { MODULES } from '../tune/adapter.js';
import { calibrate, linearOf, type Calibration } from './calibrate.js';
import { ICBS_DEFAULTS, icbsLayer, type IcbsOptions } from './icbs.js';
import { readMasks, writeMasks } from '../model/masks.js';
import { encode, modelName, readValues, rewriteModel } from '../model/rewrite.js';
import { applyMask, globalThreshold, maskBelow, pruneMask, pruneScores, sparsityOf, type Pattern, type PruneScore } from './prune.js';
import { QUANTS, quantNeedsCalibration, quantizeModel, type LayerReport, type Quant } from './quantize.js';
import { LEARN_SWEEPS } from './learn-codes.js';
import { T } from '../engine/types.js';

import { PATTERNS, PRUNE_METHODS, type PatternName, type PruneMethod } from './compress-info.js';
export { PATTERNS, PRUNE_METHODS, type PatternName, type PruneMethod } from './compress-info.js';

export interface RetrainConfig {
  steps: number;
  lr: number;
  /** MaskLoRA rank (0: norms and biases only) and alpha */
  rank: number;
  alpha: number;
  batch: number;
  norms: boolean;
}

export interface CompressConfig {
  /** a GGUF, or a run folder (its merged weights are compressed) */
  model: string;
  out: string;
  prune?: PruneMethod;
  /** the score PERP prunes by (default Wanda when there is calibration data) */
  score?: PruneScore;
  sparsity: number;
  pattern: PatternName;
  /** unstructured targets: per matrix, per output row (Wanda's own comparison group), or one
   *  threshold over all block linears (layers lose different fractions) */
  per: 'matrix' | 'row' | 'global';
  /** structured: the fraction of KV head groups removed (--sparsity is the FFN channels') */
  heads: number;
  /** retrain after any pruning (PERP's recovery; implied by --prune perp) */
  recover: boolean;
  quant: Quant;
  /** calibration text or dataset (default: a run's own dataset) */
  calib?: string;
  calibSamples: number;
  calibSeq: number;
  /** held-out text for perplexity (default: the part of the calibration file calibration does not use) */
  eval?: string;
  evalTokens: number;
  retrain: RetrainConfig;
  /** iCBS's quality/time knobs: epochs over every layer and weights per block */
  icbs: { epochs: number; blockSize: number; maxBlocks: number };
  /** learned codes' and NUPES's coordinate sweeps over each row: each lowers the layer's output error
   *  a little further for about one more pass of products (an 8B model on two CPU cores needs 1 to
   *  stay under an hour: docs/benchmarks.md) */
  learnSweeps: number;
  seed: number;
}

export const COMPRESS_DEFAULTS: Omit<CompressConfig, 'model' | 'out'> = {
  sparsity: 0.5, pattern: 'unstructured', per: 'row', heads: 0, recover: false, quant: 'f16', calibSamples: 128, calibSeq: 128, evalTokens: 16384, seed: 1,
  retrain: { steps: 100, lr: 5e-4, rank: 16, alpha: 32, batch: 4, norms: true },
  icbs: { epochs: ICBS_DEFAULTS.epochs, blockSize: ICBS_DEFAULTS.blockSize, maxBlocks: ICBS_DEFAULTS.maxBlocks },
  learnSweeps: LEARN_SWEEPS,
};

export type StageName = 'merge' | 'prune' | 'retrain' | 'quantize';

/** the weights of the stages between input and output (merged, pruned, retrained): F16 keeps a
 *  pruned weight exactly zero at half F32's size (an 8B model's stage files are 16 GB, not 32, and so
 *  is the memory that evaluating one takes) */
const STAGE_TYPE = T.F16;

export interface StageRecord {
  stage: StageName | 'input';
  file: string;
  bytes: number;
  seconds: number;
  perplexity?: number;
  /** measured sparsity of the block linears, where the stage pruned */
  sparsity?: number;
  /** structured pruning: the narrower shapes */
  structure?: { nFf: number; nHead: number; nHeadKv: number };
  /** iCBS: the block linears' summed output error on the calibration data, initially and after each epoch */
  icbsErrors?: number[];
  /** iCBS: the share of the block linears' weights its blocks visit per epoch */
  icbsCoverage?: number;
  /** PERP: trainable parameters and their share of the model */
  trainable?: { parameters: number; fraction: number };
  layers?: LayerReport[];
}

export type CompressEvent =
  | { type: 'stage'; stage: StageRecord['stage']; status: 'start' | 'done' | 'reused'; record?: StageRecord }
  | { type: 'progress'; stage: string; done: number; total: number; what?: string }
  | { type: 'train'; event: TrainEvent }
  | { type: 'done'; out: string; files: string[]; report: StageRecord[] };

export interface CompressOptions {
  signal?: AbortSignal;
  onEvent?: (e: CompressEvent) => void;
  /** forget an earlier job with other settings in `out` (its own files only) */
  restart?: boolean;
}

interface JobState { config: CompressConfig; stages: StageRecord[] }

/** what a config asks for, checked before any work */
export function checkCompressConfig(c: CompressConfig, hasCalib: boolean) {
  if (c.prune && !PRUNE_METHODS.includes(c.prune)) throw new Error(`--prune must be one of ${PRUNE_METHODS.join(', ')}; got "${c.prune}"`);
  if (!QUANTS.includes(c.quant)) throw new Error(`--quant must be one of ${QUANTS.join(', ')}; got "${c.quant}"`);
  if (!PATTERNS.includes(c.pattern)) throw new Error(`--pattern must be one of ${PATTERNS.join(', ')}; got "${c.pattern}"`);
  if (c.prune && !(c.sparsity > 0 && c.sparsity < 1) && c.pattern === 'unstructured') throw new Error(`--sparsity must be between 0 and 1 (exclusive), got ${c.sparsity}`);
  if (!(Number.isInteger(c.learnSweeps) && c.learnSweeps >= 1 && c.learnSweeps <= 16)) throw new Error(`--learn-sweeps must be a whole number from 1 to 16, got ${c.learnSweeps}`);
  if (c.prune === 'structured' && c.pattern !== 'unstructured') throw new Error('structured pruning removes whole channels and heads; --pattern applies to weight pruning only');
  const needs = [c.prune === 'wanda' && 'Wanda pruning', c.prune === 'icbs' && 'iCBS', c.prune === 'structured' && 'Structured pruning', (c.prune === 'perp' || (c.prune && c.recover)) && 'PERP retraining', quantNeedsCalibration(c.quant) && `${c.quant}`].filter(Boolean);
  if (needs.length && !hasCalib) throw new Error(`${needs.join(' and ')} need calibration data: give --calib <text or dataset file> (a run folder as --model brings its own dataset)`);
}

const patternOf = (c: CompressConfig): Pattern => (c.pattern === 'unstructured' ? { kind: 'unstructured', sparsity: c.sparsity, per: c.per } : { kind: 'nm', n: Number(c.pattern.split(':')[0]), m: Number(c.pattern.split(':')[1]) });

export function compressTag(c: CompressConfig): string {
  const p = !c.prune ? '' : `${c.prune}${c.pattern === 'unstructured' ? Math.round(c.sparsity * 100) : c.pattern.replace(':', 'of')}-`;
  return `${p}${c.quant}`;
}

/** calibration sequences and held-out tokens from one file (or the held-out from `evalFile`) */
export async function calibrationData(file: string, modelPath: string, seq: number, count: number, evalFile?: string): Promise<{ sequences: Int32Array[]; heldOut: number[] }> {
  const textTokens = async (f: string) => tokenize(modelPath, readFileSync(f, 'utf8'));
  let sequences: Int32Array[] = [], heldOut: number[] = [];
  if (fileKind(file) === 'txt') {
    const tokens = await textTokens(file);
    const cut = evalFile ? tokens.length : Math.floor(tokens.length * 0.9);
    for (let s = 0; s + seq <= cut && sequences.length < count; s += seq) sequences.push(Int32Array.from(tokens.slice(s, s + seq)));
    if (!evalFile) heldOut = tokens.slice(cut);
  } else {
    const ds = await loadDataset(file, modelPath, { seq, valFraction: evalFile ? 0 : 0.1 });
    sequences = ds.train.slice(0, count).map((w) => Int32Array.from(w.input));
    if (!evalFile) heldOut = ds.val.flatMap((w) => Array.from(w.input));
  }
  if (evalFile) heldOut = await evalTokens(evalFile, modelPath, seq);
  if (!sequences.length) throw new Error(`${file}: too short for one calibration window of ${seq} tokens; give a longer file or a smaller --calib-seq`);
  return { sequences, heldOut };
}

/** held-out tokens of a text file, or of every window of a dataset */
async function evalTokens(file: string, modelPath: string, seq: number): Promise<number[]> {
  if (fileKind(file) === 'txt') return tokenize(modelPath, readFileSync(file, 'utf8'));
  return (await loadDataset(file, modelPath, { seq, valFraction: 0 })).train.flatMap((w) => Array.from(w.input));
}

export async function runCompression(cfgIn: CompressConfig, opts: CompressOptions = {}): Promise<{ files: string[]; report: StageRecord[] }> {
  const out = resolve(cfgIn.out);
  const emit = (e: CompressEvent) => opts.onEvent?.(e);
  const isRun = existsSync(cfgIn.model) && statSync(cfgIn.model).isDirectory();
  const runCfg = isRun ? (JSON.parse(readFileSync(join(cfgIn.model, 'config.json'), 'utf8')) as TrainConfig) : undefined;
  // a job recorded before a setting existed resumes with that setting's default
  const cfg: CompressConfig = { ...cfgIn, model: resolve(cfgIn.model), out, calib: cfgIn.calib ?? runCfg?.data, learnSweeps: cfgIn.learnSweeps ?? LEARN_SWEEPS };
  checkCompressConfig(cfg, !!cfg.calib);
  if (!isRun) readGguf(cfg.model); // a broken input fails here, naming the file
  if (out === resolve(dirname(cfg.model)) && !isRun) throw new Error(`--out must be a folder of its own, not the input model's folder (${out})`);

  // the job's record: reuse its finished stages if the settings are the same
  const statePath = join(out, 'compress.json');
  let state: JobState = { config: cfg, stages: [] };
  if (existsSync(statePath)) {
    const prev = JSON.parse(readFileSync(statePath, 'utf8')) as JobState;
    if (JSON.stringify({ ...prev.config, learnSweeps: prev.config.learnSweeps ?? LEARN_SWEEPS }) === JSON.stringify(cfg)) state = prev;
    else if (opts.restart) {
      for (const s of prev.stages) if (s.stage !== 'input') rmSync(s.file, { force: true });
      for (const f of ['retrain', 'masks.gguf']) rmSync(join(out, f), { recursive: true, force: true });
    } else throw new Error(`${out} holds a compression job with other settings; choose another --out, or restart it (--restart deletes that job's files)`);
  }
  makeFolder(out, 'the output folder');
  const save = () => writeFileAtomic(statePath, Buffer.from(JSON.stringify(state, null, 2)));
  const done = (name: StageName) => state.stages.find((s) => s.stage === name && existsSync(s.file));

  const engine = openEngine();
  let calibData: { sequences: Int32Array[]; heldOut: number[] } | undefined;
  const data = async (modelPath: string) => (calibData ??= cfg.calib ? await calibrationData(cfg.calib, modelPath, cfg.calibSeq, cfg.calibSamples, cfg.eval)
    : { sequences: [], heldOut: cfg.eval ? await evalTokens(cfg.eval, modelPath, cfg.calibSeq) : [] });
  const evaluate = async (path: string): Promise<number | undefined> => {
    const { heldOut } = await data(path);
    if (heldOut.length < 2) return undefined;
    const model = LlamaModel.load(path, engine);
    try {
      return perplexity(model, heldOut.slice(0, cfg.evalTokens), cfg.calibSeq, (d, t) => emit({ type: 'progress', stage: 'evaluate', done: d, total: t }), opts.signal).perplexity;
    } finally { model.free(); }
  };
  /** statistics of `path`'s layer inputs (full: whole matrices, walked block by block as asked for);
   *  free them when the stage is done */
  const calibrateOn = async (path: string, full: boolean): Promise<Calibration> => {
    const { sequences } = await data(path);
    const model = LlamaModel.load(path, engine);
    try {
      return calibrate(model, sequences, { full, ownsModel: true, signal: opts.signal, onProgress: (d, t) => emit({ type: 'progress', stage: 'calibrate', done: d, total: t }) });
    } catch (e) { model.free(); throw e; }
  };
  const withCalibration = async <X>(path: string | undefined, full: boolean, f: (c: Calibration | undefined) => X | Promise<X>): Promise<X> => {
    const c = path ? await calibrateOn(path, full) : undefined;
    try { return await f(c); } finally { c?.free(); }
  };
  const stage = async (name: StageName, file: string, work: (rec: StageRecord) => Promise<void>): Promise<string> => {
    const prev = done(name);
    if (prev) { emit({ type: 'stage', stage: name, status: 'reused', record: prev }); return prev.file; }
    emit({ type: 'stage', stage: name, status: 'start' });
    const t0 = performance.now();
    const rec: StageRecord = { stage: name, file, bytes: 0, seconds: 0 };
    rmSync(file, { force: true }); // a partial file of this job's own
    await work(rec);
    rec.seconds = (performance.now() - t0) / 1000;
    rec.perplexity = await evaluate(file);
    rec.bytes = statSync(file).size;
    state.stages = state.stages.filter((s) => s.stage !== name).concat(rec);
    save();
    emit({ type: 'stage', stage: name, status: 'done', record: rec });
    return file;
  };

  try {
    save();
    // the input, measured once
    let current = cfg.model;
    if (isRun) {
      current = await stage('merge', join(out, 'stage-merged.gguf'), async () => withTrainedRun(cfg.model, (l) => exportMergedGguf(l, join(out, 'stage-merged.gguf'), 'f16')));
    } else if (!state.stages.some((s) => s.stage === 'input')) {
      const t0 = performance.now();
      const rec: StageRecord = { stage: 'input', file: cfg.model, bytes: statSync(cfg.model).size, seconds: 0, perplexity: await evaluate(cfg.model) };
      rec.seconds = (performance.now() - t0) / 1000;
      state.stages.unshift(rec);
      save();
      emit({ type: 'stage', stage: 'input', status: 'done', record: rec });
    }

    let masksPath: string | undefined;
    if (cfg.prune === 'structured') {
      const src = current;
      current = await stage('prune', join(out, 'stage-pruned.gguf'), async (rec) => {
        const f = readGguf(src), hp = hparamsOf(f);
        checkStructured(f, hp);
        const plan = await withCalibration(src, false, (c) => planStructured(f, hp, c!, { ffn: cfg.sparsity, heads: cfg.heads }));
        writeStructured(src, rec.file, plan, { signal: opts.signal, onTensor: (d, t, what) => emit({ type: 'progress', stage: 'prune', done: d, total: t, what }) });
        rec.structure = { nFf: plan.nFf, nHead: plan.nHead, nHeadKv: plan.nHeadKv };
      });
    } else if (cfg.prune) {
      const score: PruneScore = cfg.prune === 'magnitude' ? 'magnitude' : cfg.prune === 'perp' ? (cfg.score ?? 'wanda') : 'wanda';
      masksPath = join(out, 'masks.gguf');
      const src = current;
      current = await stage('prune', join(out, 'stage-pruned.gguf'), async (rec) => {
        rmSync(masksPath!, { force: true });
        const icbs = cfg.prune === 'icbs' ? { ...ICBS_DEFAULTS, ...cfg.icbs, seed: cfg.seed, groupSize: cfg.pattern === 'unstructured' ? undefined : Number(cfg.pattern.split(':')[1]), engine } : undefined;
        const r = await withCalibration(score === 'wanda' ? src : undefined, !!icbs, (calib) => pruneModel(src, rec.file, masksPath!, score, patternOf(cfg), calib, opts, icbs));
        rec.sparsity = r.sparsity;
        if (icbs) { rec.icbsErrors = r.icbsErrors; rec.icbsCoverage = r.icbsCoverage; }
      });
    }
    if (cfg.prune === 'perp' || (cfg.prune && cfg.recover)) {
      const pruned = current;
      current = await stage('retrain', join(out, 'stage-retrained.gguf'), async (rec) => {
        rec.trainable = await retrain(cfg, pruned, masksPath, join(out, 'retrain'), emit, opts.signal);
        withTrainedRun(join(out, 'retrain'), (l) => exportMergedGguf(l, rec.file, 'f16'));
        if (masksPath) rec.sparsity = measuredSparsity(rec.file, masksPath);
      });
    }

    const final = join(out, `${basename(cfgIn.model).replace(/\.gguf$/, '')}-${compressTag(cfg)}.gguf`);
    const src = current;
    await stage('quantize', final, async (rec) => {
      const calibrated = quantNeedsCalibration(cfg.quant) || (cfg.quant.startsWith('nupes') && !!cfg.calib);
      rec.layers = await withCalibration(calibrated ? src : undefined, true, (calibration) => quantizeModel(readGguf(src), final, cfg.quant, {
        calibration, engine, sweeps: cfg.learnSweeps, masks: masksPath ? readMasks(masksPath) : undefined, signal: opts.signal,
        onTensor: (d, t, what) => emit({ type: 'progress', stage: 'quantize', done: d, total: t, what }),
      }));
    });
    const files = [final];
    if (!cfg.quant.startsWith('nupes')) files.push(writeModelfile(out, final));
    files.push(writeReport(out, cfg, state.stages));
    emit({ type: 'done', out, files, report: state.stages });
    return { files, report: state.stages };
  } finally {
    engine.free();
  }
}

/**
 * Prunes every block linear of `src` into `dst` (F16) and writes the masks; with `icbs`, the masks
 * are then improved by iCBS against each layer's calibration Gram. Returns the sparsity reached.
 */
export function pruneModel(srcPath: string, dst: string, masksPath: string, score: PruneScore, pattern: Pattern, calib: Calibration | undefined, opts: CompressOptions = {}, icbs?: IcbsOptions & { engine: Engine }): { sparsity: number; icbsErrors?: number[]; icbsCoverage?: number } {
  if (icbs && !calib) throw new Error('iCBS needs calibration statistics');
  const icbsErrors: number[] = [];
  const src = readGguf(srcPath);
  const modelWeights = src.tensors.filter((t) => linearOf(t.name)).reduce((a, t) => a + t.shape[0] * t.shape[1], 0);
  let visited = 0;
  const masks: { name: string; shape: number[]; keep: Uint8Array }[] = [];
  let pruned = 0, total = 0;
  const scoresOf = (info: GgufTensorInfo, w: Float32Array) => pruneScores(w, info.shape[1], info.shape[0], score, calib?.normSq(info.name));
  // a global target: one threshold over every block linear's scores (all in memory for this pass)
  const global = pattern.kind === 'unstructured' && pattern.per === 'global'
    ? globalThreshold(src.tensors.filter((t) => linearOf(t.name)).map((t) => scoresOf(t, readValues(src, t))), pattern.sparsity) : undefined;
  rewriteModel(src, dst, (info) => {
    if (!linearOf(info.name)) return null;
    const [cols, rows] = info.shape;
    return [{
      name: info.name, shape: info.shape, type: STAGE_TYPE,
      data: () => {
        const w = readValues(src, info);
        const scores = scoresOf(info, w);
        let keep = global !== undefined ? maskBelow(scores, global) : pruneMask(scores, rows, cols, pattern);
        if (icbs) {
          const r = icbsLayer(icbs.engine, w, rows, cols, calib!.gram(info.name).h, scores, keep, { ...icbs, modelWeights }, { signal: opts.signal });
          visited += r.blocks * icbs.blockSize;
          keep = r.keep;
          r.errors.forEach((e, i) => (icbsErrors[i] = (icbsErrors[i] ?? 0) + e));
        }
        masks.push({ name: info.name, shape: info.shape, keep });
        pruned += sparsityOf(keep) * keep.length;
        total += keep.length;
        return encode(applyMask(w, keep), info.shape, STAGE_TYPE);
      },
    }];
  }, { 'general.name': modelName(src, 'pruned') }, { signal: opts.signal, onTensor: (d, t, what) => opts.onEvent?.({ type: 'progress', stage: 'prune', done: d, total: t, what }) });
  writeMasks(masksPath, masks);
  return { sparsity: pruned / total, icbsErrors: icbs ? icbsErrors : undefined, icbsCoverage: icbs ? visited / modelWeights : undefined };
}

/** fraction of masked-out weights that are exactly zero in `file` must be 1; returns the sparsity */
export function measuredSparsity(file: string, masksPath: string): number {
  const f = readGguf(file);
  let zeros = 0, total = 0;
  for (const [name, keep] of readMasks(masksPath)) {
    const w = readValues(f, f.tensors.find((t) => t.name === name)!);
    for (let i = 0; i < keep.length; i++) {
      if (!keep[i] && w[i] !== 0) throw new Error(`${file}: ${name}[${i}] is pruned but holds ${w[i]}; the merge broke the mask`);
      zeros += keep[i] ? 0 : 1;
    }
    total += keep.length;
  }
  return zeros / total;
}

async function retrain(cfg: CompressConfig, model: string, masks: string | undefined, runDir: string, emit: (e: CompressEvent) => void, signal?: AbortSignal) {
  const r = cfg.retrain;
  const train: TrainConfig = {
    ...TRAIN_DEFAULTS, model, data: cfg.calib!, method: 'perp', perpMasks: masks, perpNorms: r.norms, rank: r.rank, alpha: r.alpha,
    targets: [...MODULES], steps: r.steps, lr: r.lr, batch: r.batch, seq: cfg.calibSeq, schedule: 'cosine', warmup: 0,
    evalEvery: Math.max(10, Math.floor(r.steps / 5)), saveEvery: Math.max(10, Math.floor(r.steps / 4)), seed: cfg.seed,
  };
  let parameters = 0;
  const resume = existsSync(join(runDir, 'config.json'));
  const res = await runTraining(resume ? { ...train } : train, {
    runDir, resume, signal,
    onEvent: (e) => { if (e.type === 'start') parameters = e.parameters; emit({ type: 'train', event: e }); },
  });
  if (res.stopped) throw new Error('cancelled during PERP retraining; run the same command again to resume');
  const total = readGguf(model).tensors.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
  return { parameters, fraction: parameters / total };
}

function writeModelfile(out: string, gguf: string): string {
  const path = join(out, 'Modelfile');
  const lines = [`FROM ./${basename(gguf)}`, ...stopStrings(readGguf(gguf)).map((s) => `PARAMETER stop ${JSON.stringify(s)}`)];
  writeFileAtomic(path, Buffer.from(`# Made by Hone (compressed)\n${lines.join('\n')}\n`));
  return path;
}

function writeReport(out: string, cfg: CompressConfig, stages: StageRecord[]): string {
  const mb = (b: number) => (b / 2 ** 20).toFixed(2);
  const rows = stages.map((s) => `| ${s.stage} | ${basename(s.file)} | ${mb(s.bytes)} | ${s.perplexity?.toFixed(3) ?? '—'} | ${s.seconds.toFixed(1)} | ${s.structure ? `FFN ${s.structure.nFf}, heads ${s.structure.nHead}/${s.structure.nHeadKv} KV ` : ''}${s.sparsity !== undefined ? (100 * s.sparsity).toFixed(1) + '%' : ''}${s.trainable ? ` trained ${s.trainable.parameters} params (${(100 * s.trainable.fraction).toFixed(2)}%)` : ''} |`);
  const q = stages.find((s) => s.stage === 'quantize')?.layers?.filter((l) => l.reference !== undefined && l.error !== undefined) ?? [];
  const ratio = q.length ? q.reduce((a, l) => a + l.error! / l.reference!, 0) / q.length : undefined;
  const md = [
    `# Compression report: ${basename(cfg.model)} → ${compressTag(cfg)}`, '',
    `| stage | file | MiB | perplexity | seconds | notes |`, `|---|---|---:|---:|---:|---|`, ...rows, '',
    ...stages.filter((s) => s.icbsErrors).map((s) => `iCBS: summed layer output error ${s.icbsErrors!.map((e) => e.toPrecision(4)).join(' → ')} (Wanda's mask, then each epoch)${s.icbsCoverage !== undefined ? `; its blocks visit ${(100 * Math.min(1, s.icbsCoverage)).toFixed(s.icbsCoverage < 0.01 ? 2 : 1)}% of the weights an epoch (--icbs-blocks caps the blocks per epoch)` : ''}.`),
    ratio !== undefined ? `Quantization: layer output error relative to ${cfg.quant.startsWith('nupes') ? 'uniform round-to-nearest' : "ggml's own quantizer"}: ${ratio.toFixed(3)} on average over ${q.length} layers.` : '',
  ].join('\n');
  writeFileSync(join(out, 'report.json'), JSON.stringify({ config: cfg, stages }, null, 2));
  const path = join(out, 'report.md');
  writeFileSync(path, `${md}\n`);
  return path;
}

