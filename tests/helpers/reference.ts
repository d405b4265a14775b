// An independent float64 llama forward in plain TypeScript (llm.c style), used as the oracle for
// Hone's gradients (central finite differences) and as a second check of its forward. Weights are
// dequantized from the GGUF with ggml's own dequantizer; everything else is written out here.
// Shapes: x [n, d] row-major (token-major), W as stored by ggml: [out rows][in] (ne0 = in).

export interface RefLayer {
  attnNorm: Float64Array; ffnNorm: Float64Array;
  wq: Float64Array; wk: Float64Array; wv: Float64Array; wo: Float64Array;
  bq?: Float64Array; bk?: Float64Array; bv?: Float64Array;
  /** per-head norms of q and k (qwen3, gemma3), post-norms of the attention and FFN outputs (gemma3) */
  qNorm?: Float64Array; kNorm?: Float64Array; postAttnNorm?: Float64Array; postFfnNorm?: Float64Array;
  wGate: Float64Array; wUp: Float64Array; wDown: Float64Array;
  /** gemma3: attends to the last `window` positions only, with rope base `ropeBase` */
  swa?: { window: number; ropeBase: number };
}

export interface RefModel {
  d: number; nHead: number; nHeadKv: number; hd: number; ff: number; vocab: number; eps: number;
  ropeBase: number; neox: boolean; ropeFreqs?: Float64Array;
  /** gemma3: embeddings × embedScale, attention logits × attnScale (else 1/√hd), GeGLU (tanh form) */
  embedScale?: number; attnScale?: number; gelu?: boolean;
  tokEmbd: Float64Array; outputNorm: Float64Array; output: Float64Array;
  layers: RefLayer[];
}

/** LoRA-shaped test parameters: y += scale · B (A x); A [r][in], B [out][r] (ggml: A ne=[in, r], B ne=[r, out]) */
export interface RefLora { a: Float64Array; b: Float64Array; r: number; scale: number }
export type RefAdapters = Record<string, RefLora>; // key: `${layer}.${module}`

/** y[n][out] = x[n][in] · W^T (+ bias) */
function linear(x: Float64Array, n: number, inDim: number, w: Float64Array, outDim: number, bias?: Float64Array, lora?: RefLora): Float64Array {
  const y = new Float64Array(n * outDim);
  for (let t = 0; t < n; t++) {
    for (let o = 0; o < outDim; o++) {
      let s = bias ? bias[o] : 0;
      const wo = o * inDim, xo = t * inDim;
      for (let i = 0; i < inDim; i++) s += w[wo + i] * x[xo + i];
      y[t * outDim + o] = s;
    }
    if (lora) {
      const ax = new Float64Array(lora.r);
      for (let j = 0; j < lora.r; j++) {
        let s = 0;
        for (let i = 0; i < inDim; i++) s += lora.a[j * inDim + i] * x[t * inDim + i];
        ax[j] = s;
      }
      for (let o = 0; o < outDim; o++) {
        let s = 0;
        for (let j = 0; j < lora.r; j++) s += lora.b[o * lora.r + j] * ax[j];
        y[t * outDim + o] += lora.scale * s;
      }
    }
  }
  return y;
}

function rmsNorm(x: Float64Array, n: number, d: number, g: Float64Array, eps: number): Float64Array {
  const y = new Float64Array(n * d);
  for (let t = 0; t < n; t++) {
    let ss = 0;
    for (let i = 0; i < d; i++) ss += x[t * d + i] ** 2;
    const s = 1 / Math.sqrt(ss / d + eps);
    for (let i = 0; i < d; i++) y[t * d + i] = x[t * d + i] * s * g[i];
  }
  return y;
}

/** RMS norm of each head in place on [n][heads][hd] */
function headNorm(x: Float64Array, n: number, heads: number, hd: number, g: Float64Array, eps: number) {
  x.set(rmsNorm(x, n * heads, hd, g, eps));
}

/** gelu, tanh form, in float64 */
const gelu = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

/** rotary embedding in place on [n][heads][hd] */
function rope(x: Float64Array, n: number, heads: number, m: RefModel, base = m.ropeBase) {
  const { hd } = m;
  for (let t = 0; t < n; t++) {
    for (let h = 0; h < heads; h++) {
      const o = (t * heads + h) * hd;
      for (let i = 0; i < hd / 2; i++) {
        const theta = (t * Math.pow(base, (-2 * i) / hd)) / (m.ropeFreqs ? m.ropeFreqs[i] : 1);
        const c = Math.cos(theta), s = Math.sin(theta);
        const [i0, i1] = m.neox ? [o + i, o + i + hd / 2] : [o + 2 * i, o + 2 * i + 1];
        const x0 = x[i0], x1 = x[i1];
        x[i0] = x0 * c - x1 * s;
        x[i1] = x0 * s + x1 * c;
      }
    }
  }
}

/** logits [n][vocab] */
export function refForward(m: RefModel, tokens: number[], adapters: RefAdapters = {}): Float64Array {
  const { d, nHead, nHeadKv, hd, ff } = m;
  const n = tokens.length;
  let x = new Float64Array(n * d);
  tokens.forEach((tok, t) => x.set(m.tokEmbd.subarray(tok * d, (tok + 1) * d).map((e) => e * (m.embedScale ?? 1)), t * d));
  m.layers.forEach((L, il) => {
    const h = rmsNorm(x, n, d, L.attnNorm, m.eps);
    const q = linear(h, n, d, L.wq, nHead * hd, L.bq, adapters[`${il}.q`]);
    const k = linear(h, n, d, L.wk, nHeadKv * hd, L.bk, adapters[`${il}.k`]);
    const v = linear(h, n, d, L.wv, nHeadKv * hd, L.bv, adapters[`${il}.v`]);
    if (L.qNorm) headNorm(q, n, nHead, hd, L.qNorm, m.eps);
    if (L.kNorm) headNorm(k, n, nHeadKv, hd, L.kNorm, m.eps);
    rope(q, n, nHead, m, L.swa?.ropeBase);
    rope(k, n, nHeadKv, m, L.swa?.ropeBase);
    const att = new Float64Array(n * nHead * hd);
    const group = nHead / nHeadKv;
    for (let hh = 0; hh < nHead; hh++) {
      const kh = Math.floor(hh / group);
      for (let tq = 0; tq < n; tq++) {
        const scores = new Float64Array(tq + 1);
        const first = L.swa ? Math.max(0, tq - L.swa.window + 1) : 0; // keys within the window
        let max = -Infinity;
        for (let tk = first; tk <= tq; tk++) {
          let s = 0;
          for (let i = 0; i < hd; i++) s += q[(tq * nHead + hh) * hd + i] * k[(tk * nHeadKv + kh) * hd + i];
          scores[tk] = s * (m.attnScale ?? 1 / Math.sqrt(hd));
          max = Math.max(max, scores[tk]);
        }
        let sum = 0;
        for (let tk = first; tk <= tq; tk++) sum += (scores[tk] = Math.exp(scores[tk] - max));
        for (let tk = first; tk <= tq; tk++) {
          const p = scores[tk] / sum;
          for (let i = 0; i < hd; i++) att[(tq * nHead + hh) * hd + i] += p * v[(tk * nHeadKv + kh) * hd + i];
        }
      }
    }
    let o = linear(att, n, nHead * hd, L.wo, d, undefined, adapters[`${il}.o`]);
    if (L.postAttnNorm) o = rmsNorm(o, n, d, L.postAttnNorm, m.eps);
    x = x.map((xi, i) => xi + o[i]);
    const h2 = rmsNorm(x, n, d, L.ffnNorm, m.eps);
    const g = linear(h2, n, d, L.wGate, ff, undefined, adapters[`${il}.gate`]);
    const u = linear(h2, n, d, L.wUp, ff, undefined, adapters[`${il}.up`]);
    const act = g.map((gi, i) => (m.gelu ? gelu(gi) : gi / (1 + Math.exp(-gi))) * u[i]);
    let dn = linear(act, n, ff, L.wDown, d, undefined, adapters[`${il}.down`]);
    if (L.postFfnNorm) dn = rmsNorm(dn, n, d, L.postFfnNorm, m.eps);
    x = x.map((xi, i) => xi + dn[i]);
  });
  const hf = rmsNorm(x, n, d, m.outputNorm, m.eps);
  return linear(hf, n, d, m.output, m.vocab);
}

/** mean over positions of −log softmax(logits)[label] */
export function refLoss(logits: Float64Array, labels: number[], vocab: number): number {
  let total = 0;
  labels.forEach((lab, t) => {
    let max = -Infinity;
    for (let j = 0; j < vocab; j++) max = Math.max(max, logits[t * vocab + j]);
    let s = 0;
    for (let j = 0; j < vocab; j++) s += Math.exp(logits[t * vocab + j] - max);
    total += -(logits[t * vocab + lab] - max - Math.log(s));
  });
  return total / labels.length;
}
