// Hone's side of the gradient check: LoRA-shaped parameters added to chosen linear layers of the
// llama graph, loss = mean cross-entropy of next tokens, gradients by the engine's backward.
import type { Engine } from '../../electron/lab/engine/backend.js';
import { Graph, GraphBuilder, allocStatic, type Tensor } from '../../electron/lab/engine/graph.js';
import { T } from '../../electron/lab/engine/types.js';
import { LlamaModel, buildForward, forwardInputs, setForwardInputs, type AdapterHook } from '../../electron/lab/model/llama.js';
import type { RefAdapters } from './reference.js';

export function adapterGradients(engine: Engine, path: string, tokens: number[], adapters: RefAdapters) {
  const model = LlamaModel.load(path, engine);
  const n = tokens.length - 1;
  const V = model.hp.nVocab;
  const store = new GraphBuilder(64);
  const params = new Map<string, { a: Tensor; b: Tensor; scale: number }>();
  for (const [key, l] of Object.entries(adapters)) {
    const inDim = l.a.length / l.r, outDim = l.b.length / l.r;
    params.set(key, { a: store.param([inDim, l.r], `${key}.a`), b: store.param([l.r, outDim], `${key}.b`), scale: l.scale });
  }
  const buf = allocStatic(engine, store, 'test adapters');
  for (const [key, l] of Object.entries(adapters)) {
    params.get(key)!.a.set(Float32Array.from(l.a));
    params.get(key)!.b.set(Float32Array.from(l.b));
  }
  const adapt: AdapterHook = (b, layer, mod, W, x) => {
    const p = params.get(`${layer}.${mod}`);
    const y = b.mulMat(W, x);
    return p ? b.add(y, b.scale(b.mulMat(p.b, b.mulMat(p.a, x)), p.scale)) : y;
  };
  const b = new GraphBuilder();
  const inp = forwardInputs(b, n, 1);
  const logits = buildForward(b, model, inp, n, 1, adapt);
  const labels = b.input(T.F32, [V, n], 'labels');
  const loss = b.crossEntropy(logits, labels);
  const graph = new Graph(engine, b, [loss], { backward: true });
  setForwardInputs(inp, Int32Array.from(tokens.slice(0, -1)), n, 1);
  const oneHot = new Float32Array(V * n);
  tokens.slice(1).forEach((t, i) => (oneHot[i * V + t] = 1));
  labels.set(oneHot);
  graph.compute();
  const grads: Record<string, Float32Array> = {};
  for (const [key, p] of params) {
    grads[`${key}.a`] = graph.grad(p.a).get();
    grads[`${key}.b`] = graph.grad(p.b).get();
  }
  const lossValue = loss.get()[0];
  graph.free();
  b.free();
  engine.native.freeBuffer(buf);
  store.free();
  model.free();
  return { loss: lossValue, grads };
}
