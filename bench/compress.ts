// `npm run bench -- compress`: pruning and quantization on a tiny model the bench trains itself (full
// AdamW on the synthetic corpus, so it has structure to lose): size and held-out perplexity (Hone's
// engine; llama.cpp agrees on these files, tests/integration/compress.test.ts) for dense, magnitude,
// Wanda, Wanda+PERP, iCBS at 50% unstructured and 2:4, structured width pruning, and F16, Q8_0, Q4_0,
// Q4_K, IQ4_NL (ggml's quantizer vs learned codes) and NUPES. BENCH_COMPRESS=<regex> picks rows.
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticCorpus } from '../electron/lab/data/samples.js';
import { exportMergedGguf, loadTrainedRun } from '../electron/lab/export/run-export.js';
import { makeTiny } from '../electron/lab/model/tiny.js';
import { readGguf } from '../electron/lab/model/gguf.js';
import { TRAIN_DEFAULTS, runTraining } from '../electron/lab/tune/run.js';
import { COMPRESS_DEFAULTS, runCompression, type CompressConfig } from '../electron/lab/compress/job.js';

const dir = join(tmpdir(), 'hone-bench-compress');
const SPEC = { nEmbd: 256, nLayer: 4, nHead: 4, nHeadKv: 2, nFf: 768, nCtx: 256, type: 'f32' };
const RETRAIN = { ...COMPRESS_DEFAULTS.retrain, steps: 100, rank: 8, alpha: 16, lr: 2e-3 };

const ROWS: [string, Partial<CompressConfig>][] = [
  ['dense (F16 export)', { quant: 'f16' }],
  ['magnitude 50%', { prune: 'magnitude' }],
  ['Wanda 50%', { prune: 'wanda' }],
  ['Wanda 50% + PERP', { prune: 'perp' }],
  ['iCBS 50%', { prune: 'icbs' }],
  ['magnitude 2:4', { prune: 'magnitude', pattern: '2:4' }],
  ['Wanda 2:4', { prune: 'wanda', pattern: '2:4' }],
  ['Wanda 2:4 + PERP', { prune: 'perp', pattern: '2:4' }],
  ['iCBS 2:4', { prune: 'icbs', pattern: '2:4' }],
  ['structured 50% FFN channels', { prune: 'structured' }],
  ['structured 50% FFN channels + recovery', { prune: 'structured', recover: true }],
  ['Q8_0 (ggml)', { quant: 'q8_0' }],
  ['Q8_0 learned', { quant: 'q8_0-learned' }],
  ['Q4_0 (ggml)', { quant: 'q4_0' }],
  ['Q4_0 learned', { quant: 'q4_0-learned' }],
  ['Q4_K (ggml)', { quant: 'q4_k' }],
  ['Q4_K learned', { quant: 'q4_k-learned' }],
  ['IQ4_NL (ggml)', { quant: 'iq4_nl' }],
  ['IQ4_NL learned', { quant: 'iq4_nl-learned' }],
  ['NUPES 4-bit, data-free', { quant: 'nupes4', calib: undefined }],
  ['NUPES 4-bit, data-driven', { quant: 'nupes4' }],
  ['Wanda 50% + PERP, Q4_K learned', { prune: 'perp', quant: 'q4_k-learned' }],
];

async function trainedModel(train: string): Promise<string> {
  const path = join(dir, 'trained.gguf');
  if (existsSync(path)) return path;
  const base = join(dir, 'base.gguf');
  makeTiny(base, SPEC, { overwrite: true });
  const run = join(dir, 'train-run');
  rmSync(run, { recursive: true, force: true });
  const t0 = performance.now();
  await runTraining({ ...TRAIN_DEFAULTS, model: base, data: train, method: 'full', lr: 1e-3, steps: 200, batch: 4, seq: 128, valFraction: 0, evalEvery: 0, saveEvery: 200, schedule: 'cosine' }, { runDir: run });
  exportMergedGguf(loadTrainedRun(run), path, 'f32', true);
  console.log(`trained the bench model (${JSON.stringify(SPEC)}) for 200 full-AdamW steps in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  return path;
}

export async function compressBench() {
  mkdirSync(dir, { recursive: true });
  const train = join(dir, 'corpus-train.txt'), heldOut = join(dir, 'corpus-heldout.txt');
  writeFileSync(train, syntheticCorpus(1, 3000));
  writeFileSync(heldOut, syntheticCorpus(2, 300));
  const model = await trainedModel(train);
  const total = readGguf(model).tensors.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0);
  console.log(`Hone compression bench — model ${JSON.stringify(SPEC)}, ${(total / 1e6).toFixed(2)}M parameters; calibration 128 × 128 tokens of the training corpus; held-out perplexity on another draw of it; ${new Date().toISOString().slice(0, 10)}`);
  console.log('| configuration | file MiB | held-out perplexity | after pruning | seconds | notes |\n|---|---:|---:|---:|---:|---|');
  const only = process.env.BENCH_COMPRESS ? new RegExp(process.env.BENCH_COMPRESS, 'i') : null;
  for (const [name, over] of ROWS) {
    if (only && !only.test(name)) continue;
    const out = join(dir, name.replace(/[^a-z0-9]+/gi, '-'));
    rmSync(out, { recursive: true, force: true });
    const cfg: CompressConfig = { ...COMPRESS_DEFAULTS, model, out, calib: train, eval: heldOut, calibSeq: 128, calibSamples: 128, evalTokens: 8192, retrain: RETRAIN, ...over };
    const t0 = performance.now();
    const { report } = await runCompression(cfg);
    const secs = (performance.now() - t0) / 1000;
    const last = report.at(-1)!, pruned = report.find((r) => r.stage === 'prune'), retrained = report.find((r) => r.stage === 'retrain');
    const q = last.layers?.filter((l) => l.reference !== undefined && l.error !== undefined) ?? [];
    const notes = [
      retrained?.trainable && `PERP trained ${(100 * retrained.trainable.fraction).toFixed(2)}% of parameters, perplexity ${pruned!.perplexity!.toFixed(3)} → ${retrained.perplexity!.toFixed(3)}`,
      pruned?.icbsErrors && `layer error ${pruned.icbsErrors[0].toPrecision(3)} → ${pruned.icbsErrors.at(-1)!.toPrecision(3)}`,
      pruned?.structure && `FFN ${SPEC.nFf} → ${pruned.structure.nFf}`,
      q.length && `output error ${(q.reduce((a, l) => a + l.error! / l.reference!, 0) / q.length).toFixed(3)}× the ${name.startsWith('NUPES') ? 'uniform 4-bit' : "ggml quantizer's"}`,
      last.layers?.some((l) => l.exponent !== undefined) && `exponents ${Math.min(...last.layers!.map((l) => l.exponent!)).toFixed(2)}–${Math.max(...last.layers!.map((l) => l.exponent!)).toFixed(2)}`,
    ].filter(Boolean).join('; ');
    console.log(`| ${name} | ${(last.bytes / 2 ** 20).toFixed(2)} | ${last.perplexity!.toFixed(4)} | ${pruned?.perplexity?.toFixed(4) ?? ''} | ${secs.toFixed(0)} | ${notes} |`);
  }
}
