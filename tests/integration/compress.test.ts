// Compression jobs on a tiny model that has learned the synthetic corpus: PERP keeps pruned weights
// exactly zero in the exported file; learned codes on ggml's own types load in llama.cpp and score
// no worse there than ggml's quantizer; NUPES files run in Hone; jobs resume, refuse bad input and
// never touch the input model.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEngine, type Engine } from '../../electron/lab/engine/backend.js';
import { llamaCppLogprobs, tokenize } from '../../electron/lab/engine/llamacpp.js';
import { perplexity, perplexityFromLogprobs, perplexityWindows } from '../../electron/lab/eval/perplexity.js';
import { readGguf } from '../../electron/lab/model/gguf.js';
import { LlamaModel, hparamsOf } from '../../electron/lab/model/llama.js';
import { calibrate } from '../../electron/lab/compress/calibrate.js';
import { planStructured, writeStructured } from '../../electron/lab/compress/structured.js';
import { COMPRESS_DEFAULTS, calibrationData, runCompression, type CompressConfig, type CompressEvent } from '../../electron/lab/compress/job.js';
import { readMasks } from '../../electron/lab/model/masks.js';
import { readValues, rewriteModel } from '../../electron/lab/model/rewrite.js';
import { testDir, tinyModel } from '../helpers/models.js';
import { honeLogprobs, maxAbsDiff } from '../helpers/parity.js';
import { corpusFiles, trainedTiny } from '../helpers/trained.js';

let model: string, files: { train: string; heldOut: string }, heldOut: number[], engine: Engine;
const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
const job = (over: Partial<CompressConfig>): CompressConfig => ({
  ...COMPRESS_DEFAULTS, model, out: mkdtempSync(join(testDir, 'compress-')), calib: files.train, eval: files.heldOut, calibSeq: 64, calibSamples: 48, evalTokens: 2048, ...over,
});

/** llama.cpp's perplexity of a GGUF on the held-out tokens, in windows of 128 */
async function llamaCppPerplexity(path: string): Promise<number> {
  const lps: Float64Array[] = [];
  for (const [s, e] of perplexityWindows(Math.min(heldOut.length, 1024), 128)) lps.push(await llamaCppLogprobs(path, heldOut.slice(s, e)));
  return perplexityFromLogprobs(lps).perplexity;
}

beforeAll(async () => {
  model = await trainedTiny();
  files = corpusFiles();
  heldOut = await tokenize(model, readFileSync(files.heldOut, 'utf8'));
  engine = openEngine({ backend: 'cpu' });
}, 300_000);
afterAll(() => engine?.free());

describe('PERP: prune, retrain, merge', () => {
  it('pruned weights are exactly zero in the exported GGUF, retraining recovers perplexity under 1% of the parameters, the input is untouched', async () => {
    const before = sha(model);
    const events: CompressEvent[] = [];
    const cfg = job({ prune: 'perp', sparsity: 0.5, per: 'row', quant: 'f16', retrain: { ...COMPRESS_DEFAULTS.retrain, steps: 30, rank: 4, alpha: 8, lr: 2e-3 } });
    const { files: out, report } = await runCompression(cfg, { onEvent: (e) => events.push(e) });
    expect(sha(model)).toBe(before);
    const final = readGguf(out[0]);
    const masks = readMasks(join(cfg.out, 'masks.gguf'));
    expect(masks.size).toBe(14); // 7 linears × 2 layers
    const pruned = readGguf(join(cfg.out, 'stage-pruned.gguf'));
    let moved = 0;
    for (const [name, keep] of masks) {
      const info = final.tensors.find((t) => t.name === name)!;
      expect(info.type).toBe(1); // F16
      const w = readValues(final, info), p = readValues(pruned, pruned.tensors.find((t) => t.name === name)!);
      const [cols, rows] = info.shape;
      for (let r = 0; r < rows; r++) {
        let zeros = 0;
        for (let j = 0; j < cols; j++) {
          const i = r * cols + j;
          if (!keep[i]) { expect(Object.is(w[i], 0) || Object.is(w[i], -0)).toBe(true); zeros++; }
          else if (Math.abs(w[i] - p[i]) > 1e-3 * Math.abs(p[i]) + 1e-6) moved++;
        }
        expect(zeros).toBe(cols / 2); // per output row, as Wanda compares
      }
    }
    expect(moved).toBeGreaterThan(1000); // retraining changed the kept weights…
    const input = readGguf(model); // …and the norms
    const norm = (f: typeof input) => readValues(f, f.tensors.find((t) => t.name === 'blk.1.ffn_norm.weight')!);
    expect(maxAbsDiff(norm(final), norm(input))).toBeGreaterThan(1e-4);
    const byStage = Object.fromEntries(report.map((r) => [r.stage, r]));
    const retrain = byStage.retrain;
    expect(retrain.trainable!.fraction).toBeLessThan(0.01);
    expect(byStage.prune.perplexity!).toBeGreaterThan(byStage.input.perplexity!);
    expect(retrain.perplexity!).toBeLessThan(byStage.prune.perplexity!);
    expect(events.some((e) => e.type === 'train' && e.event.type === 'step')).toBe(true);

    // the same job again: every stage reused, nothing recomputed
    const again: CompressEvent[] = [];
    await runCompression(cfg, { onEvent: (e) => again.push(e) });
    expect(again.filter((e) => e.type === 'stage' && e.status === 'start')).toEqual([]);
    expect(again.filter((e) => e.type === 'stage' && e.status === 'reused').length).toBe(3);
    // other settings in the same folder are refused unless restarted
    await expect(runCompression({ ...cfg, sparsity: 0.3 })).rejects.toThrow(/other settings.*--restart/);
  });

  it('a global target prunes the fraction over all layers together, unevenly per layer', async () => {
    const cfg = job({ prune: 'magnitude', per: 'global', sparsity: 0.5, quant: 'f16', calib: undefined });
    await runCompression(cfg);
    const masks = [...readMasks(join(cfg.out, 'masks.gguf')).values()];
    const zeros = masks.map((k) => k.reduce((a, b) => a + (b ? 0 : 1), 0)), sizes = masks.map((k) => k.length);
    const total = zeros.reduce((a, b) => a + b, 0) / sizes.reduce((a, b) => a + b, 0);
    expect(Math.abs(total - 0.5)).toBeLessThan(1e-4);
    const per = zeros.map((z, i) => z / sizes[i]);
    expect(Math.max(...per) - Math.min(...per)).toBeGreaterThan(0.02);
  });

  it('2:4 pruning keeps two of every four inputs; a cancelled job resumes at its last finished stage', async () => {
    const cfg = job({ prune: 'wanda', pattern: '2:4', quant: 'q8_0' });
    const stop = new AbortController();
    await expect(runCompression(cfg, { signal: stop.signal, onEvent: (e) => { if (e.type === 'progress' && e.stage === 'quantize') stop.abort(); } })).rejects.toThrow();
    const events: CompressEvent[] = [];
    const { files: out } = await runCompression(cfg, { onEvent: (e) => events.push(e) });
    expect(events.find((e) => e.type === 'stage' && e.stage === 'prune')).toMatchObject({ status: 'reused' });
    for (const keep of readMasks(join(cfg.out, 'masks.gguf')).values()) for (let g = 0; g < keep.length; g += 4) expect(keep[g] + keep[g + 1] + keep[g + 2] + keep[g + 3]).toBe(2);
    expect(readGguf(out[0]).tensors.find((t) => t.name === 'blk.0.ffn_up.weight')!.type).toBe(8); // Q8_0
  });
});

describe('quantization', () => {
  for (const type of ['q8_0', 'q4_0', 'q4_k', 'iq4_nl'] as const) {
    it(`${type}-learned loads in llama.cpp, matches Hone's logits there, and its perplexity is no worse than ggml's quantizer's`, async () => {
      const ref = await runCompression(job({ quant: type }));
      const learned = await runCompression(job({ quant: `${type}-learned` }));
      const layers = learned.report.find((r) => r.stage === 'quantize')!.layers!;
      expect(layers.length).toBe(14);
      for (const l of layers) expect(l.error!).toBeLessThanOrEqual(l.reference!);
      const window = heldOut.slice(0, 96);
      const dRef = maxAbsDiff(honeLogprobs(engine, ref.files[0], window), await llamaCppLogprobs(ref.files[0], window));
      const dLearned = maxAbsDiff(honeLogprobs(engine, learned.files[0], window), await llamaCppLogprobs(learned.files[0], window));
      // this model predicts sharply (perplexity ≈ 2), so even ggml's own files differ by a few 1e-2 at the tails
      expect(dRef).toBeLessThan(0.1);
      expect(dLearned).toBeLessThan(0.1);
      const pRef = await llamaCppPerplexity(ref.files[0]), pLearned = await llamaCppPerplexity(learned.files[0]);
      console.log(`${type}: llama.cpp perplexity reference ${pRef.toFixed(4)}, learned ${pLearned.toFixed(4)}`);
      expect(pLearned).toBeLessThanOrEqual(pRef * 1.001);
    }, 300_000); // two compression jobs
  }

  it('NUPES 4-bit: runs in Hone, every layer beats uniform 4-bit round-to-nearest, exponents below 1', async () => {
    const { files: out, report } = await runCompression(job({ quant: 'nupes4' }));
    const layers = report.find((r) => r.stage === 'quantize')!.layers!;
    expect(layers.length).toBe(14);
    for (const l of layers) {
      expect(l.error!).toBeLessThan(l.reference!);
      expect(l.exponent!).toBeLessThan(1);
    }
    const f = readGguf(out[0]);
    expect(f.tensors.find((t) => t.name === 'blk.0.attn_q.weight')).toMatchObject({ type: 24, shape: [128, 256] }); // two codes per byte
    const dense = LlamaModel.load(model, engine), q = LlamaModel.load(out[0], engine);
    try {
      const pd = perplexity(dense, heldOut.slice(0, 1024), 128).perplexity, pq = perplexity(q, heldOut.slice(0, 1024), 128).perplexity;
      expect(pq).toBeLessThan(pd * 1.1);
      expect(pq).toBeGreaterThan(pd * 0.99);
    } finally { dense.free(); q.free(); }
  });
});

describe('iCBS', () => {
  it('starts from Wanda\'s mask, lowers the summed layer error every epoch at the same sparsity, and the pruned model stays close', async () => {
    const cfg = job({ prune: 'icbs', sparsity: 0.5, quant: 'f16', icbs: { epochs: 2, blockSize: 64, maxBlocks: 1000 } });
    const { report } = await runCompression(cfg);
    const prune = report.find((r) => r.stage === 'prune')!;
    const errors = prune.icbsErrors!;
    expect(errors.length).toBe(3);
    for (let e = 1; e < errors.length; e++) expect(errors[e]).toBeLessThanOrEqual(errors[e - 1]);
    expect(errors[2]).toBeLessThan(0.95 * errors[0]);
    expect(prune.sparsity).toBe(0.5);
    const input = report.find((r) => r.stage === 'input')!;
    expect(prune.perplexity!).toBeLessThan(input.perplexity! * 1.5);
    // 1000 blocks of 64 an epoch (each of the 14 linears rounds its share up), of 2 × 589824 block weights
    expect(prune.icbsCoverage! * 2 * 589824).toBeGreaterThanOrEqual(1000 * 64);
    expect(prune.icbsCoverage! * 2 * 589824).toBeLessThanOrEqual(1014 * 64);
  }, 300_000);
});

describe('layers wider than 4096', () => {
  it('Wanda then Q4_K learned on a 4352-wide down projection: every layer beats ggml\'s quantizer, llama.cpp reads the file as Hone does', async () => {
    const wide = tinyModel({ nEmbd: 256, nLayer: 1, nHead: 4, nHeadKv: 2, nFf: 4352, type: 'q8_0' });
    const cfg = job({ model: wide, prune: 'wanda', sparsity: 0.5, quant: 'q4_k-learned', calibSamples: 16, evalTokens: 512 });
    const { files: out, report } = await runCompression(cfg);
    const layers = report.find((r) => r.stage === 'quantize')!.layers!;
    expect(layers.length).toBe(7);
    const down = layers.find((l) => l.tensor === 'blk.0.ffn_down.weight')!;
    expect(down.type).toBe('Q4_K learned');
    for (const l of layers) expect(l.error!).toBeLessThan(l.reference!);
    const f = readGguf(out[0]);
    expect(f.tensors.find((t) => t.name === 'blk.0.ffn_down.weight')).toMatchObject({ type: 12, shape: [4352, 256] });
    const window = heldOut.slice(0, 96);
    expect(maxAbsDiff(honeLogprobs(engine, out[0], window), await llamaCppLogprobs(out[0], window))).toBeLessThan(0.05);
  }, 600_000);
});

describe('structured width pruning', () => {
  it('the narrow GGUF has the reduced shapes, loads in llama.cpp with the same logits as Hone, which equal the original model\'s with the removed slices zeroed', async () => {
    const dir = mkdtempSync(join(testDir, 'structured-'));
    const f = readGguf(model), hp = hparamsOf(f);
    const m = LlamaModel.load(model, engine);
    const { sequences } = await calibrationData(files.train, model, 64, 32);
    const calib = calibrate(m, sequences, { ownsModel: true });
    const plan = planStructured(f, hp, calib, { ffn: 0.5, heads: 0.5 });
    calib.free();
    expect(plan).toMatchObject({ nFf: 256, nHead: 2, nHeadKv: 1 });
    const narrow = join(dir, 'narrow.gguf'), zeroed = join(dir, 'zeroed.gguf');
    writeStructured(model, narrow, plan);
    const g = readGguf(narrow);
    expect(g.tensors.find((t) => t.name === 'blk.0.ffn_down.weight')!.shape).toEqual([256, 256]);
    expect(g.tensors.find((t) => t.name === 'blk.1.attn_q.weight')!.shape).toEqual([256, 128]);
    expect(g.tensors.find((t) => t.name === 'blk.1.attn_k.weight')!.shape).toEqual([256, 64]);
    expect(g.tensors.find((t) => t.name === 'blk.1.attn_output.weight')!.shape).toEqual([128, 256]);
    expect(hparamsOf(g)).toMatchObject({ nFf: 256, nHead: 2, nHeadKv: 1, headDim: 64 });
    // the same model with the removed slices zeroed in place: FFN channels' down columns, removed heads' output columns
    const hd = hp.headDim, group = hp.nHead / hp.nHeadKv;
    rewriteModel(f, zeroed, (info) => {
      const mm = /^blk\.(\d+)\.(ffn_down|attn_output)\.weight$/.exec(info.name);
      if (!mm) return null;
      const il = Number(mm[1]), [cols, rows] = info.shape;
      const keepCol = new Uint8Array(cols);
      if (mm[2] === 'ffn_down') for (const c of plan.channels[il]) keepCol[c] = 1;
      else for (const k of plan.kvHeads[il]) for (let h = k * group; h < (k + 1) * group; h++) keepCol.fill(1, h * hd, (h + 1) * hd);
      return [{ name: info.name, shape: info.shape, type: 0, data: () => { const w = readValues(f, info); for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) if (!keepCol[c]) w[r * cols + c] = 0; return new Uint8Array(w.buffer); } }];
    }, {});
    const window = heldOut.slice(0, 96);
    const ours = honeLogprobs(engine, narrow, window);
    expect(maxAbsDiff(ours, honeLogprobs(engine, zeroed, window))).toBeLessThan(1e-4);
    expect(maxAbsDiff(ours, await llamaCppLogprobs(narrow, window))).toBeLessThan(2e-2);
  });
});

describe('bad input', () => {
  it('a broken model, a missing calibration file and the input folder as --out are refused by name', async () => {
    const broken = join(mkdtempSync(join(testDir, 'broken-')), 'broken.gguf');
    writeFileSync(broken, 'GGUF not really');
    await expect(runCompression(job({ model: broken }))).rejects.toThrow(/broken\.gguf/);
    await expect(runCompression(job({ prune: 'wanda', calib: undefined, eval: undefined }))).rejects.toThrow(/need calibration data: give --calib/);
    await expect(runCompression(job({ prune: 'magnitude', out: testDir }))).rejects.toThrow(/folder of its own/);
    await expect(runCompression(job({ quant: 'q3_x' as never }))).rejects.toThrow(/--quant must be one of/);
  });
});
