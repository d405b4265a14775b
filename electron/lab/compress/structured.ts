// Structured width pruning: whole FFN channels and whole attention head groups leave the model, so
// the GGUF is smaller and llama.cpp runs it faster. A slice's importance is Wanda's score summed over
// every weight that reads or writes it:
//   FFN channel c:  Σ_j |Wgate[c,j]|·‖x_j‖ + Σ_j |Wup[c,j]|·‖x_j‖ + Σ_o |Wdown[o,c]|·‖h_c‖
//   KV group g (a KV head and the query heads that share it, so GQA stays whole):
//                   Σ over its q, k, v rows of |W|·‖x‖ + Σ over its query heads' columns of Wo of |W|·‖a‖
// (x the block's normed input, h the FFN activation, a the attention output; norms from calibration).
// Every layer keeps the same number of channels and groups (GGUF's scalar feed_forward_length and
// head_count), channels rounded to a multiple of 32 so that ggml's block types still fit.
import { T } from '../engine/types.js';
import { readGguf, type GgufFile, type GgufTensorInfo } from '../model/gguf.js';
import { fusedParts, hparamsOf, planWeights, type Hparams } from '../model/llama.js';
import { kv, type GgufTensorOut } from '../model/gguf-writer.js';
import type { Calibration } from './calibrate.js';
import { encode, modelName, readValues, rewriteModel } from '../model/rewrite.js';

export interface StructuredTargets {
  /** fraction of FFN channels removed */
  ffn: number;
  /** fraction of KV head groups removed (0: attention untouched) */
  heads: number;
}

export interface StructuredPlan {
  /** per layer: kept FFN channels, ascending */
  channels: number[][];
  /** per layer: kept KV heads, ascending */
  kvHeads: number[][];
  nFf: number;
  nHead: number;
  nHeadKv: number;
}

const sqrtOf = (x: Float64Array) => Float64Array.from(x, Math.sqrt);

/** Σ_j |W[r, j]|·n[j] for each row r of W [rows, cols] */
function rowScores(w: Float32Array, rows: number, cols: number, n: Float64Array): Float64Array {
  const s = new Float64Array(rows);
  for (let r = 0; r < rows; r++) { let t = 0; for (let j = 0; j < cols; j++) t += Math.abs(w[r * cols + j]) * n[j]; s[r] = t; }
  return s;
}

/** Σ_r |W[r, c]|·n[c] for each column c */
function colScores(w: Float32Array, rows: number, cols: number, n: Float64Array): Float64Array {
  const s = new Float64Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) s[c] += Math.abs(w[r * cols + c]) * n[c];
  return s;
}

/** indices of the `count` largest scores, ascending */
export function topIndices(scores: Float64Array, count: number): number[] {
  return [...scores.keys()].sort((a, b) => scores[b] - scores[a] || a - b).slice(0, count).sort((a, b) => a - b);
}

/** refuses a model whose blocks structured pruning cannot cut (fused weights), before calibration */
export function checkStructured(f: GgufFile, hp: Hparams) {
  const fused = [...fusedParts(planWeights(f, hp)).keys()];
  if (fused.length) throw new Error(`structured pruning does not cut ${hp.arch}'s fused weights (${fused[0].replace(/^blk\.\d+\./, '')}) yet; prune weights instead (--prune wanda, icbs or perp)`);
}

export function planStructured(f: GgufFile, hp: Hparams, calib: Calibration, t: StructuredTargets): StructuredPlan {
  checkStructured(f, hp);
  const get = (name: string) => readValues(f, f.tensors.find((x) => x.name === name)!);
  const { nEmbd: d, nFf, nHead, nHeadKv, headDim: hd } = hp;
  const group = nHead / nHeadKv;
  const keepFf = Math.max(32, Math.floor((nFf * (1 - t.ffn)) / 32) * 32);
  const keepKv = Math.max(1, Math.round(nHeadKv * (1 - t.heads)));
  if (keepFf >= nFf && keepKv >= nHeadKv) throw new Error(`structured pruning of ${t.ffn} of ${nFf} FFN channels and ${t.heads} of ${nHeadKv} KV heads removes nothing (channels are removed in multiples of 32); raise --sparsity or --heads`);
  const channels: number[][] = [], kvHeads: number[][] = [];
  for (let il = 0; il < hp.nLayer; il++) {
    const p = `blk.${il}.`;
    const nIn = sqrtOf(calib.normSq(`${p}ffn_gate.weight`)), nMid = sqrtOf(calib.normSq(`${p}ffn_down.weight`));
    const sf = rowScores(get(`${p}ffn_gate.weight`), nFf, d, nIn);
    const su = rowScores(get(`${p}ffn_up.weight`), nFf, d, nIn);
    const sd = colScores(get(`${p}ffn_down.weight`), d, nFf, nMid);
    channels.push(topIndices(sf.map((v, c) => v + su[c] + sd[c]), keepFf));
    if (keepKv < nHeadKv) {
      const nAttn = sqrtOf(calib.normSq(`${p}attn_q.weight`)), nOut = sqrtOf(calib.normSq(`${p}attn_output.weight`));
      const sq = rowScores(get(`${p}attn_q.weight`), nHead * hd, d, nAttn);
      const sk = rowScores(get(`${p}attn_k.weight`), nHeadKv * hd, d, nAttn);
      const sv = rowScores(get(`${p}attn_v.weight`), nHeadKv * hd, d, nAttn);
      const so = colScores(get(`${p}attn_output.weight`), d, nHead * hd, nOut);
      const g = new Float64Array(nHeadKv);
      for (let k = 0; k < nHeadKv; k++) {
        for (let r = k * hd; r < (k + 1) * hd; r++) g[k] += sk[r] + sv[r];
        for (let h = k * group; h < (k + 1) * group; h++) for (let r = h * hd; r < (h + 1) * hd; r++) g[k] += sq[r] + so[r];
      }
      kvHeads.push(topIndices(g, keepKv));
    } else {
      kvHeads.push([...Array(nHeadKv).keys()]);
    }
  }
  return { channels, kvHeads, nFf: keepFf, nHead: keepKv * group, nHeadKv: keepKv };
}

/** rows of W [rows, cols] (row-major) in `keep` order */
export function takeRows(w: Float32Array, cols: number, keep: number[]): Float32Array {
  const out = new Float32Array(keep.length * cols);
  keep.forEach((r, i) => out.set(w.subarray(r * cols, (r + 1) * cols), i * cols));
  return out;
}

/** columns of W [rows, cols] in `keep` order */
export function takeCols(w: Float32Array, rows: number, cols: number, keep: number[]): Float32Array {
  const out = new Float32Array(rows * keep.length);
  for (let r = 0; r < rows; r++) keep.forEach((c, i) => (out[r * keep.length + i] = w[r * cols + c]));
  return out;
}

/** the rows of the heads `heads` (each `hd` rows) */
const headRows = (heads: number[], hd: number) => heads.flatMap((h) => Array.from({ length: hd }, (_, i) => h * hd + i));

/** Writes the narrower model (F32 block weights) to `dst`. */
export function writeStructured(srcPath: string, dst: string, plan: StructuredPlan, opts: { signal?: AbortSignal; onTensor?: (done: number, total: number, name: string) => void } = {}) {
  const src = readGguf(srcPath);
  const hp = hparamsOf(src);
  const { nEmbd: d, headDim: hd, nHead, nHeadKv } = hp;
  const group = nHead / nHeadKv;
  const out = (info: GgufTensorInfo, shape: number[], make: (w: Float32Array) => Float32Array): GgufTensorOut[] => [{
    name: info.name, shape, type: info.shape.length > 1 ? T.F32 : info.type, data: () => encode(make(readValues(src, info)), shape, T.F32),
  }];
  rewriteModel(src, dst, (info) => {
    const m = /^blk\.(\d+)\.(\w+)\.(weight|bias)$/.exec(info.name);
    if (!m) return null;
    const il = Number(m[1]), kind = `${m[2]}.${m[3]}`;
    const ch = plan.channels[il], kvk = plan.kvHeads[il];
    const qHeads = kvk.flatMap((k) => Array.from({ length: group }, (_, i) => k * group + i));
    const qRows = headRows(qHeads, hd), kvRows = headRows(kvk, hd);
    switch (kind) {
      case 'ffn_gate.weight': case 'ffn_up.weight': return out(info, [d, ch.length], (w) => takeRows(w, d, ch));
      case 'ffn_down.weight': return out(info, [ch.length, d], (w) => takeCols(w, d, hp.nFf, ch));
      case 'attn_q.weight': return out(info, [d, qRows.length], (w) => takeRows(w, d, qRows));
      case 'attn_k.weight': case 'attn_v.weight': return out(info, [d, kvRows.length], (w) => takeRows(w, d, kvRows));
      case 'attn_output.weight': return out(info, [qRows.length, d], (w) => takeCols(w, d, nHead * hd, qRows));
      case 'attn_q.bias': return out(info, [qRows.length], (w) => Float32Array.from(qRows, (r) => w[r]));
      case 'attn_k.bias': case 'attn_v.bias': return out(info, [kvRows.length], (w) => Float32Array.from(kvRows, (r) => w[r]));
      default: return null;
    }
  }, {
    [`${hp.arch}.feed_forward_length`]: kv.u32(plan.nFf),
    [`${hp.arch}.attention.head_count`]: kv.u32(plan.nHead),
    [`${hp.arch}.attention.head_count_kv`]: kv.u32(plan.nHeadKv),
    [`${hp.arch}.attention.key_length`]: kv.u32(hd),
    [`${hp.arch}.attention.value_length`]: kv.u32(hd),
    'general.name': modelName(src, 'narrow'),
  }, opts);
}
