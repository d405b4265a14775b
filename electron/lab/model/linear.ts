// The contract between the explicit backward (backward.ts) and whatever trains a linear layer (an
// adapter in tune/, a full weight): its forward W'x and its backward, which returns dx and adds its
// own parameters' gradients. Shapes in ggml order: W [in, out], x [in, n], dy [out, n].
import type { GraphBuilder, Tensor } from '../engine/graph.js';

/** gradients of trainable tensors, in graph order */
export type Grads = Map<Tensor, Tensor>;

export function addGrad(b: GraphBuilder, grads: Grads, p: Tensor, g: Tensor) {
  const prev = grads.get(p);
  grads.set(p, prev ? b.add(prev, g) : g);
}

/** One adapted linear layer inside one graph. `mask` is the dropout mask on the adapter's input. */
export interface TrainedLinear {
  /** W'x, before any bias */
  forward(b: GraphBuilder, W: Tensor, x: Tensor, mask?: Tensor): Tensor;
  /** dx given dy; adds the method's parameter gradients to `grads` */
  backward(b: GraphBuilder, W: Tensor, x: Tensor, dy: Tensor, grads: Grads, mask?: Tensor): Tensor;
}

