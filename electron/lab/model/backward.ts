// Explicit backward of a llama block with LoRA adapters, llm.c-style: every gradient written out as
// ggml ops that all backends have (mul_mat against transposed copies instead of out_prod for the
// frozen weights). ggml's autodiff stays the test oracle (tests/integration/backward.test.ts).
// Shapes in ggml order ([ne0, ne1, ...]); n = T·B tokens, G = heads·B.
import { attnSumReady, int8Ready, type GraphBuilder, type Tensor } from '../engine/graph.js';
import { T as TYPES, rowBytes } from '../engine/types.js';
import { addGrad, type Grads, type TrainedLinear } from './linear.js';
import { blockForward, embed, headLoss, ropeOf, type BlockActs, type ForwardInputs, type Hparams, type Layer, type LossInputs, type Module, type Weights } from './llama.js';

export type { Grads } from './linear.js';
/** the trained linear on (layer, module) and the dropout mask on its adapter's input, if any */
export type LinearOf = (layer: number, module: Module) => { linear: TrainedLinear; mask?: Tensor } | undefined;

const tr = (b: GraphBuilder, t: Tensor) => b.cont(b.transpose(t));

/** Wᵀ as a contiguous matrix [out, in] that mul_mat can use: F32 and F16 as they are, quantized
 *  types dequantized to F32 (ggml's CPU copies quantized blocks only to F32). */
function weightT(b: GraphBuilder, W: Tensor): Tensor {
  return tr(b, W.type === TYPES.F32 || W.type === TYPES.F16 ? W : b.cast(W, TYPES.F32));
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const GELU_A = 0.044715;

/**
 * d gelu(x)/dx of the tanh form gelu(x) = x/2·(1 + tanh(u)), u = √(2/π)(x + a·x³):
 * (1 + t)/2 + x/2·(1 − t²)·√(2/π)(1 + 3a·x²), t = tanh(u); like x. (ggml's forward reads gelu from an
 * F16 table; this is the derivative of the function the table samples.)
 */
export function geluGrad(b: GraphBuilder, x: Tensor): Tensor {
  const x2 = b.sqr(x);
  const t = b.tanh(b.scale(b.mul(x, b.scaleBias(x2, GELU_A, 1)), SQRT_2_OVER_PI));
  const sech2 = b.scaleBias(b.sqr(t), -1, 1);
  return b.add(b.scaleBias(t, 0.5, 0.5), b.mul(b.mul(b.scale(x, 0.5 * SQRT_2_OVER_PI), sech2), b.scaleBias(x2, 3 * GELU_A, 1)));
}

/** Σ over dim 1 of t [c, n] → [c, 1] */
export function sumCols(b: GraphBuilder, t: Tensor): Tensor {
  return b.reshape(b.sumRows(b.cont(b.transpose(t))), t.shape[0], 1);
}

/** gradient of a norm weight g [c] in y = rms(x) ⊙ g, given dy [c, n] */
function normWeightGrad(b: GraphBuilder, dy: Tensor, x: Tensor, eps: number, g: Tensor): Tensor {
  return b.reshape(sumCols(b, b.mul(dy, b.rmsNorm(x, eps))), ...g.shape.slice(0, 1));
}

/**
 * dx = Wᵀ dy through a frozen weight W [in, out]; dy [out, n] → [in, n]. Through the int8 pack of Wᵀ
 * where there is one (Q8_0 weights on CPUs with VNNI), dy quantized per 32 values, and with
 * `residual` its rounding error quantized again (two int8 terms: the blocks' input gradients, whose
 * errors compound from layer to layer; one term moved config B's loss after 50 steps by 0.7%, two by
 * 0.15%). With BLAS, as the outer product of W and dyᵀ, which OpenBLAS takes transposed as it is (no
 * copy of W or dy); else a mul_mat against a transposed copy of W, ggml's fastest path on its own
 * CPU kernels.
 */
export function inputGrad(b: GraphBuilder, W: Tensor, dy: Tensor, residual = true): Tensor {
  const packT = b.int8?.get(W)?.wT;
  if (packT && int8Ready(dy)) return b.int8MatMul(packT, dy, W.shape[0], residual);
  if (b.blas && dy.shape[2] === 1 && dy.shape[3] === 1) return b.outProd(W.type === TYPES.F32 ? W : b.cast(W, TYPES.F32), b.transpose(dy));
  return b.mulMat(weightT(b, W), dy);
}

/** the most bytes of the head that its backward copies to F32 at once (a vocabulary chunk) */
export const HEAD_CHUNK_BYTES = 64 * 2 ** 20;

/** the vocabulary rows of one chunk of a head [d, V] in its backward: all of V when the copy fits */
export const headChunkRows = (d: number, nVocab: number) => Math.max(1, Math.min(nVocab, Math.floor(HEAD_CHUNK_BYTES / (4 * d))));

/**
 * dH = Wᵀ·dLogits through the head W [d, V], dLogits [V, m] → [d, m], a chunk of the vocabulary at
 * a time: the F32 copy of W the product reads (ggml's transposed copy, or BLAS's outer product of a
 * dequantized W) then holds `chunk` × d × 4 bytes, not d × V × 4 (2 GB at Llama-3-8B's vocabulary).
 * The chunks' copies are temporaries one after another, which ggml's allocator lays in the same
 * memory. An int8 pack of Wᵀ (VNNI CPUs) is read whole: it is the copy already.
 */
export function headInputGrad(b: GraphBuilder, W: Tensor, dLogits: Tensor, chunk = headChunkRows(W.shape[0], W.shape[1])): Tensor {
  const [d, V] = W.shape, m = dLogits.shape[1];
  if (chunk >= V || b.int8?.get(W)?.wT) return inputGrad(b, W, dLogits, false);
  const row = rowBytes(W.type, d);
  let sum: Tensor | null = null;
  for (let c0 = 0; c0 < V; c0 += chunk) {
    const n = Math.min(chunk, V - c0);
    const Wc = b.view(W, [d, n], [row], c0 * row); // vocabulary rows c0… of the head, in its own type
    const dy = b.cont(b.view(dLogits, [n, m], [V * 4], c0 * 4)); // [n, m]
    const part = inputGrad(b, Wc, dy, false);
    sum = sum ? b.add(sum, part) : part;
  }
  return sum!;
}

/** dx of the linear (frozen or trained) given dy [out, n]; method gradients go to `grads`. x: [in, n] */
function linearBack(b: GraphBuilder, W: Tensor, x: Tensor, dy: Tensor, t: ReturnType<LinearOf>, grads: Grads): Tensor {
  return t ? t.linear.backward(b, W, x, dy, grads, t.mask) : inputGrad(b, W, dy);
}

/** sums gradients of the `group` query heads that share each KV head: [a, c, heads·B] → [a, c, kvHeads·B] */
function sumGroups(b: GraphBuilder, t: Tensor, group: number): Tensor {
  if (group === 1) return t;
  const [a, c, g] = t.shape;
  const r = b.reshape(b.cont(b.permute(b.reshape(t, a * c, group, g / group), 1, 0, 2, 3)), group, a * c, g / group);
  return b.reshape(b.sumRows(r), a, c, g / group);
}

/**
 * d(block input) given d(block output); adds adapter gradients to `grads`, and with `norms` also the
 * gradients of the block's norm weights and biases (full-parameter training, PERP; the linear
 * weights' own gradients come from their TrainedLinear).
 */
export function blockBackward(b: GraphBuilder, hp: Hparams, L: Layer, il: number, s: BlockActs, dOut: Tensor, inp: ForwardInputs, ropeFreqs: Tensor | null, nTokens: number, nSeq: number, lora: LinearOf, grads: Grads, norms = false): Tensor {
  const { nHead, nHeadKv, headDim: hd } = hp;
  const n = nTokens * nSeq;
  const group = nHead / nHeadKv;
  const cb = (t: Tensor, name: string) => b.named(t, `blk.${il}.d_${name}`); // the gradient of the forward's node `name`

  // a post-norm y = rms(o) ⊙ g on an output o (gemma3): do = rms_back(dy ⊙ g, o), dg = Σ dy ⊙ rms(o)
  const postNormBack = (dy: Tensor, o: Tensor | undefined, g: Tensor | undefined) => {
    if (!g || !o) return dy;
    if (norms) addGrad(b, grads, g, normWeightGrad(b, dy, o, hp.rmsEps, g));
    return b.rmsNormBack(b.mul(dy, g), o, hp.rmsEps);
  };
  // feed-forward: out = x1 + post(Wd·(act(gate) ⊙ up)), gate = Wg·h2, up = Wu·h2, h2 = rms(x1) ⊙ g2
  const dFo = L.postFfnNorm ? cb(postNormBack(dOut, s.fo, L.postFfnNorm), 'ffn_out') : dOut; // (naming dOut would rename the block after's d_inp)
  const dAct = cb(linearBack(b, L.wDown, s.act, dFo, lora(il, 'down'), grads), 'ffn_act');
  const gelu = hp.math.act === 'gelu';
  const dGate = gelu ? b.mul(b.mul(dAct, s.up), geluGrad(b, s.gate)) : b.siluBack(b.mul(dAct, s.up), s.gate);
  const dUp = b.mul(dAct, gelu ? b.gelu(s.gate) : b.silu(s.gate));
  const dH2 = cb(b.add(linearBack(b, L.wGate, s.h2, dGate, lora(il, 'gate'), grads), linearBack(b, L.wUp, s.h2, dUp, lora(il, 'up'), grads)), 'ffn_norm');
  const dX1 = cb(b.add(dOut, b.rmsNormBack(b.mul(dH2, L.ffnNorm), s.x1, hp.rmsEps)), 'ffn_inp');

  // attention: x1 = x + post(Wo·attn)
  const dAo = L.postAttnNorm ? cb(postNormBack(dX1, s.ao, L.postAttnNorm), 'attn_out') : dX1;
  const dAttn = cb(linearBack(b, L.wo, s.attn, dAo, lora(il, 'o'), grads), 'kqv_out'); // [hd·heads, n]
  const dO = b.reshape(b.cont(b.permute(b.reshape(dAttn, hd, nHead, nTokens, nSeq), 0, 2, 1, 3)), hd, nTokens, nHead * nSeq); // [hd, T_q, G]
  const kernel = attnSumReady(b, hd);
  const dP = b.mulMat(s.v3, dO); // [T_k, T_q, G]
  const dS = cb(b.softMaxExtBack(dP, s.probs, hp.math.attnScale), 'kq'); // [T_k, T_q, G]
  const dQ3 = kernel ? b.attnSum(s.k3, dS, 'keys') : b.mulMat(tr(b, s.k3), dS); // [hd, T_q, G]
  // dV and dK contract over the queries, the inner dimension of neither the probabilities nor dS
  // [T_k, T_q, G]: on CPUs with AVX-512 by Hone's kernel, which reads both as they lie and skips
  // the causal mask's zeros (half the work); else with BLAS as outer products; elsewhere as matmuls
  // over transposed copies (ggml copies transposes element by element, slowly)
  const overQueries = (a: Tensor, p: Tensor) => // a [hd, T_q, G], p [T_k, T_q, G] → [hd, T_k, G]
    kernel ? b.attnSum(a, p, 'queries') : b.blas ? b.outProd(a, p) : b.mulMat(tr(b, a), tr(b, p));
  const dV3 = sumGroups(b, overQueries(dO, s.probs), group); // [hd, T_k, Gkv]
  const dK3 = sumGroups(b, overQueries(s.q3, dS), group); // [hd, T_k, Gkv]
  const unheads = (t: Tensor, nh: number) => b.reshape(b.cont(b.permute(b.reshape(t, hd, nTokens, nh, nSeq), 0, 2, 1, 3)), hd, nh, n);
  // qwen3's head norms: y = rms(x) ⊙ g per head, x [hd, heads, n] before rope
  const headNormBack = (dy: Tensor, x: Tensor | undefined, g: Tensor | undefined) => {
    if (!g || !x) return dy;
    const [, nh] = x.shape;
    if (norms) addGrad(b, grads, g, normWeightGrad(b, b.reshape(dy, hd, nh * n), b.reshape(x, hd, nh * n), hp.rmsEps, g));
    return b.rmsNormBack(b.mul(dy, g), x, hp.rmsEps);
  };
  const rope = ropeOf(hp, il);
  // the attention temperature scaled each position's queries after rope: so does their gradient
  const dQt = inp.attnTemp ? b.mul(unheads(dQ3, nHead), inp.attnTemp) : unheads(dQ3, nHead);
  const dQ = b.reshape(headNormBack(b.ropeBack(dQt, inp.positions, ropeFreqs, rope), s.qh, L.qNorm), hd * nHead, n);
  const dK = b.reshape(headNormBack(b.ropeBack(unheads(dK3, nHeadKv), inp.positions, ropeFreqs, rope), s.kh, L.kNorm), hd * nHeadKv, n);
  const dV = b.reshape(unheads(dV3, nHeadKv), hd * nHeadKv, n);
  const dH = cb(b.add(b.add(linearBack(b, L.wq, s.h, dQ, lora(il, 'q'), grads), linearBack(b, L.wk, s.h, dK, lora(il, 'k'), grads)), linearBack(b, L.wv, s.h, dV, lora(il, 'v'), grads)), 'attn_norm');
  if (norms) {
    addGrad(b, grads, L.ffnNorm, normWeightGrad(b, dH2, s.x1, hp.rmsEps, L.ffnNorm));
    addGrad(b, grads, L.attnNorm, normWeightGrad(b, dH, s.x, hp.rmsEps, L.attnNorm));
    for (const [bias, d] of [[L.bq, dQ], [L.bk, dK], [L.bv, dV], [L.bo, dAo]] as const) if (bias) addGrad(b, grads, bias, b.reshape(sumCols(b, d), bias.shape[0]));
  }
  return cb(b.add(dX1, b.rmsNormBack(b.mul(dH, L.attnNorm), s.x, hp.rmsEps)), 'inp');
}

/**
 * The training loss of buildLoss and its gradients, explicitly: forward through all blocks keeping
 * activations, the head at the trained positions, then backward from the loss through the head and
 * every block. Returns the loss and each trained tensor's gradient: the adapters', with `norms` the
 * norm weights' and biases', with `full` also the head's and the embeddings'.
 */
export function buildLossAndGrads(b: GraphBuilder, m: { hp: Hparams; weights: Weights }, inp: ForwardInputs, loss: LossInputs, nTokens: number, nSeq: number, lora: LinearOf, opts: { full?: boolean; norms?: boolean } = {}): { loss: Tensor; grads: Grads } {
  const full = opts.full ?? false;
  const norms = full || (opts.norms ?? false);
  const { hp, weights: w } = m;
  const hook = (g: GraphBuilder, il: number, mod: Module, W: Tensor, x: Tensor) => {
    const t = lora(il, mod);
    return t ? t.linear.forward(g, W, x, t.mask) : g.mulMat(W, x);
  };
  let x = embed(b, hp, w.tokEmbd, inp.tokens);
  const acts: BlockActs[] = [];
  for (let il = 0; il < hp.nLayer; il++) {
    acts.push(blockForward(b, hp, w.layers[il], il, x, inp, w.ropeFreqs ?? null, nTokens, nSeq, hook));
    x = acts[il].out;
  }
  const grads: Grads = new Map();
  const head = headBackward(b, hp, w, x, loss, grads, { full, norms });
  let d = head.dx;
  for (let il = hp.nLayer - 1; il >= 0; il--) d = blockBackward(b, hp, w.layers[il], il, acts[il], d, inp, w.ropeFreqs ?? null, nTokens, nSeq, lora, grads, norms);
  if (full) addGrad(b, grads, w.tokEmbd, b.getRowsBack(hp.math.embedScale === 1 ? d : b.scale(d, hp.math.embedScale), inp.tokens, w.tokEmbd)); // [d, V]
  return { loss: head.loss, grads };
}

/**
 * The loss of the head on x [d, T·B] (the last block's output) and d(loss)/dx; with `norms` the output
 * norm's and bias's gradients, with `full` also the head weight's, into `grads`.
 */
export function headBackward(b: GraphBuilder, hp: Hparams, w: Pick<Weights, 'outputNorm' | 'output' | 'outputBias'>, x: Tensor, loss: LossInputs, grads: Grads, opts: { full?: boolean; norms?: boolean } = {}): { loss: Tensor; dx: Tensor } {
  const { loss: out, picked, h, probs, pTarget } = headLoss(b, hp, w, x, loss);
  // d(loss)/d(logits) = weight·(softmax − one-hot): the softmax with p − 1 written at each row's
  // target, in place (the rows' weights are applied to [d, m] products below, not to [V, m])
  const [V, m] = probs.shape;
  const dLogits = b.reshape(b.setRows(b.reshape(probs, 1, V * m), b.scaleBias(pTarget, 1, -1), loss.labelIndex), V, m); // [V, m]
  // one int8 term for the head's dLogits (p − 1 at the target): a second one did not move the loss
  const dH = b.mul(headInputGrad(b, w.output, dLogits), loss.weight); // [d, m]
  if (opts.full) addGrad(b, grads, w.output, b.outProd(b.mul(h, loss.weight), dLogits)); // [d, V]
  if (opts.full || opts.norms) {
    if (w.outputBias) addGrad(b, grads, w.outputBias, b.reshape(sumCols(b, b.mul(dLogits, loss.weight)), w.outputBias.shape[0]));
    addGrad(b, grads, w.outputNorm, normWeightGrad(b, dH, picked, hp.rmsEps, w.outputNorm));
  }
  const dPicked = b.rmsNormBack(b.mul(dH, w.outputNorm), picked, hp.rmsEps);
  return { loss: out, dx: b.getRowsBack(dPicked, loss.positions, x) }; // [d, n]
}
