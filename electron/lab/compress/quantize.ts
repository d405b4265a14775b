// The quantization stage: every linear weight of the blocks to the chosen type — ggml's quantizer
// (the reference), learned codes on ggml's blocks (standard GGUF), or NUPES (Hone's GGUF variant) —
// embeddings and head by ggml's quantizer, norms and biases kept F32.
import { T, ggmlTypeName } from '../engine/types.js';
import type { GgufFile, GgufTensorInfo } from '../model/gguf.js';
import { NUPES_BITS_KEY, nupesExponentName, nupesScaleName, packNibbles } from '../model/nupes-weights.js';
import { kv } from '../model/gguf-writer.js';
import { linearOf, type Calibration } from './calibrate.js';
import { LEARNABLE_TYPES, gridValues, hasOwnScale, packGrid, referenceQuantize, type LearnableType } from './grid.js';
import { LayerCurvature } from './learn-codes.js';
import type { Engine } from '../engine/backend.js';
import { f32Bytes, encode, modelName, readValues, rewriteModel } from '../model/rewrite.js';
import { powerGrid, searchExponentData, searchExponentDataFree } from './nupes.js';
import { applyMask } from './prune.js';
import type { Quant } from './compress-info.js';

export { QUANTS, QUANT_INFO, type Quant } from './compress-info.js';

/** ggml file_type of a quant (general.file_type), for llama.cpp's model description */
const FILE_TYPE: Record<string, number> = { F16: 1, Q8_0: 7, Q4_0: 2, Q4_K: 15, IQ4_NL: 25 };

export const quantNeedsCalibration = (q: Quant) => q.endsWith('-learned');

export interface LayerReport {
  tensor: string;
  type: string;
  /** output error tr(E H Eᵀ) of ggml's quantizer (or NUPES round-to-nearest) and of the result */
  reference?: number;
  error?: number;
  exponent?: number;
  note?: string;
}

export interface QuantizeOptions {
  calibration?: Calibration;
  /** where learned codes' products run (needed with a calibration) */
  engine?: Engine;
  /** learned codes' coordinate sweeps over each row (default LEARN_SWEEPS) */
  sweeps?: number;
  /** per weight: 1 where the weight is pruned-and-must-stay-zero is 0 in the mask (keep = 1) */
  masks?: Map<string, Uint8Array>;
  signal?: AbortSignal;
  onTensor?: (done: number, total: number, name: string) => void;
  overwrite?: boolean;
}

/** Writes `path`: `src` quantized as `quant`. Returns a report per linear weight. */
export function quantizeModel(src: GgufFile, path: string, quant: Quant, opts: QuantizeOptions = {}): LayerReport[] {
  const report: LayerReport[] = [];
  const learned = quant.endsWith('-learned');
  const nupesBits = quant.startsWith('nupes') ? Number(quant.slice(5)) : 0;
  const base = quant.replace('-learned', '') as LearnableType | 'f16';
  if (learned && !opts.calibration) throw new Error(`${quant} learns codes against calibration data; give --calib <text or dataset file>`);
  if (opts.calibration && !opts.engine) throw new Error('quantizeModel: learned codes need an engine for their products');
  if (opts.calibration && !opts.calibration.full) throw new Error('quantizeModel: learned codes need the full calibration matrices (calibrate with full)');
  /** H of a layer on the engine, for the call */
  const withCurvature = <X>(name: string, rows: number, cols: number, f: (c: LayerCurvature) => X): X => {
    const c = new LayerCurvature(opts.engine!, opts.calibration!.gram(name).h, rows, cols);
    try { return f(c); } finally { c.free(); }
  };
  const typeFor = (info: GgufTensorInfo): { type: number; note?: string } => {
    if (base === 'f16' || nupesBits) return { type: nupesBits && info.shape.length > 1 && info.shape[0] % 32 === 0 ? T.Q8_0 : T.F16 };
    const t = LEARNABLE_TYPES[base as LearnableType];
    if (info.shape[0] % (t === T.Q4_K ? 256 : 32) === 0) return { type: t };
    if (t === T.Q4_K && info.shape[0] % 32 === 0) return { type: T.Q4_0, note: `rows of ${info.shape[0]} are not a multiple of 256 (Q4_K's block): Q4_0 instead` };
    return { type: T.F16, note: `rows of ${info.shape[0]} are not a multiple of 32: F16 instead` };
  };

  rewriteModel(src, path, (info) => {
    if (info.shape.length < 2) return null;
    const [cols, rows] = info.shape;
    const lin = linearOf(info.name);
    const { type, note } = typeFor(info);
    if (!lin || (!nupesBits && !learned) || (!nupesBits && note)) {
      if (lin) report.push({ tensor: info.name, type: ggmlTypeName(type), note });
      return [{ name: info.name, shape: info.shape, type, data: () => encode(readValues(src, info), info.shape, type) }];
    }
    const calibrated = !!opts.calibration;
    const keep = opts.masks?.get(info.name);
    if (nupesBits) {
      if (cols % 2) return [{ name: info.name, shape: info.shape, type: T.F16, data: () => encode(readValues(src, info), info.shape, T.F16) }];
      let result: { codes: Uint8Array; alpha: Float32Array; exponent: number } | undefined;
      const run = () => {
        if (result) return result;
        const w = readValues(src, info);
        if (keep) applyMask(w, keep); // pruned weights exactly zero (the mask says which)
        const s = calibrated ? searchExponentData(w, rows, cols, nupesBits, opts.calibration!.normSq(info.name)) : searchExponentDataFree(w, rows, cols, nupesBits);
        let grid = powerGrid(w, rows, cols, s.exponent, nupesBits);
        const r: LayerReport = { tensor: info.name, type: `NUPES${nupesBits}`, exponent: s.exponent };
        if (calibrated) {
          grid = withCurvature(info.name, rows, cols, (c) => {
            r.reference = c.outputError(w, gridValues(powerGrid(w, rows, cols, 1, nupesBits)));
            const l = c.learn(w, grid, { scales: true, movable: keep, sweeps: opts.sweeps });
            r.error = l.after;
            return l.grid;
          });
        }
        report.push(r);
        result = { codes: packNibbles(grid.codes), alpha: grid.alpha, exponent: s.exponent };
        return result;
      };
      return [
        { name: info.name, shape: [cols / 2, rows], type: T.I8, data: () => run().codes },
        { name: nupesScaleName(info.name), shape: [rows], type: T.F32, data: () => f32Bytes(run().alpha) },
        { name: nupesExponentName(info.name), shape: [1], type: T.F32, data: () => f32Bytes(Float32Array.of(run().exponent)) },
      ];
    }
    return [{
      name: info.name, shape: info.shape, type,
      data: () => {
        const w = readValues(src, info);
        if (keep) applyMask(w, keep); // pruned weights exactly zero (the mask says which)
        const { blocks, grid } = referenceQuantize(type, w, rows, cols);
        const l = withCurvature(info.name, rows, cols, (c) => c.learn(w, grid, { scales: hasOwnScale(type), roundHalf: true, movable: keep, sweeps: opts.sweeps }));
        report.push({ tensor: info.name, type: `${ggmlTypeName(type)} learned`, reference: l.before, error: l.after });
        return packGrid(type, blocks, l.grid);
      },
    }];
  }, {
    'general.file_type': nupesBits ? undefined : kv.u32(FILE_TYPE[base === 'f16' ? 'F16' : ggmlTypeName(LEARNABLE_TYPES[base as LearnableType])]),
    'general.name': modelName(src, quant),
    [NUPES_BITS_KEY]: nupesBits ? kv.u32(nupesBits) : undefined,
  }, { overwrite: opts.overwrite, signal: opts.signal, onTensor: opts.onTensor });
  return report;
}
