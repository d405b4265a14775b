// The training loss computed another way, for autodiff oracles: ggml's fused cross-entropy against a
// one-hot label matrix built in the graph, where Hone's loss (model/llama.ts headLoss) takes the
// target's softmax probability. Same value, independent code; ggml's autodiff differentiates it.
import type { GraphBuilder } from '../../electron/lab/engine/graph.js';
import { T } from '../../electron/lab/engine/types.js';
import { buildBlock, type AdapterHook, type ForwardInputs, type Hparams, type LossInputs, type Weights } from '../../electron/lab/model/llama.js';

/** the mean loss over real targets; call `setTargets` with their number */
export function referenceLoss(b: GraphBuilder, m: { hp: Hparams; weights: Weights }, inp: ForwardInputs, loss: LossInputs, nTokens: number, nSeq: number, adapt?: AdapterHook) {
  const { hp, weights: w } = m;
  let x = b.getRows(w.tokEmbd, inp.tokens);
  for (let il = 0; il < hp.nLayer; il++) x = buildBlock(b, hp, w.layers[il], il, x, inp, w.ropeFreqs ?? null, nTokens, nSeq, adapt);
  const h = b.mul(b.rmsNorm(b.getRows(x, loss.positions), hp.rmsEps), w.outputNorm);
  let logits = b.mulMat(w.output, h); // [V, m]
  if (w.outputBias) logits = b.add(logits, w.outputBias);
  const [V, rows] = logits.shape;
  // ggml's cross-entropy gradient is (softmax − labels)/rows, not zero, for an all-zero label row:
  // padding rows' logits are zeroed through the mask (weight × targets: 1 or 0) so that no
  // gradient flows from them
  const count = b.input(T.F32, [1], 'reference_targets');
  const mask = b.mul(loss.weight, count); // [1, m]
  const labels = b.reshape(b.getRowsBack(b.reshape(mask, 1, rows), loss.labelIndex, b.tensor(T.F32, [1, V * rows], 'labels_shape')), V, rows);
  const out = b.scale(b.div(b.crossEntropy(b.mul(logits, mask), labels), count), rows); // ggml's is the mean over all rows
  return { loss: out, setTargets: (n: number) => count.set(new Float32Array([n])) };
}
