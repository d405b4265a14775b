// LoRA: y = W x + (α/r)·B (A x) on chosen linear layers of a frozen base of any weight type.
// A [in, r] (ggml order; rows of length `in`) starts uniform in ±1/√in as PEFT's Kaiming init,
// B [r, out] starts at zero, so training starts from the base model exactly.
import type { Engine } from '../engine/backend.js';
import type { GraphBuilder, Tensor } from '../engine/graph.js';
import type { Hparams, Module } from '../model/llama.js';
import { inputGrad } from '../model/backward.js';
import { Rng } from '../data/pack.js';
import { GGUF_NAMES, TrainableStore, addGrad, checkTargets, lowRankMerged, moduleDims, type Adapter, type Grads, type Layerwise, type TrainedLinear } from './adapter.js';
import type { Method } from './method.js';

export { DROPOUT_INPUT, GGUF_NAMES, MODULES, moduleDims, type Trainable } from './adapter.js';

export interface LoraConfig {
  rank: number;
  alpha: number;
  targets: Module[];
  /** dropout on the adapter's input during training (0 = none) */
  dropout?: number;
}

/**
 * M·x as mul_mat(M, x) computes it (M [k, m], x [k, n] → [m, n]) for a thin factor M (k or m = the
 * rank). With BLAS, as the outer product of Mᵀ and xᵀ: ggml's BLAS backend takes outer products of
 * any size and reads xᵀ in place, while it leaves a mul_mat with a dimension under 32 to ggml's CPU
 * kernels, which run rank-16 products at 7–40 GFLOP/s (measured) against OpenBLAS's 35–180.
 */
function mulMatThin(b: GraphBuilder, M: Tensor, x: Tensor): Tensor {
  return b.blas ? b.outProd(b.cont(b.transpose(M)), b.transpose(x)) : b.mulMat(M, x);
}

/** mul_mat(Mᵀ, y) for a thin factor M [m, k] and y [k, n] → [m, n], without a transposed copy of M under BLAS */
function mulMatThinT(b: GraphBuilder, M: Tensor, y: Tensor): Tensor {
  return b.blas ? b.outProd(M, b.transpose(y)) : b.mulMat(b.cont(b.transpose(M)), y);
}

/**
 * The low-rank path y = W x + s·B(A·x̃) (x̃ = x times the dropout mask) with A [in, r] and B [r, out]
 * graph tensors; `route` receives dA [in, r] and dB [r, out] (LoRA adds them to its parameters,
 * MoS sends them back through its shard gather). The backward reuses the forward's x̃ and A·x̃ when
 * it is built over the same input tensor (an explicit backward after its forward in one graph).
 */
export function lowRankLinear(A: Tensor, B: Tensor, s: number, route: (b: GraphBuilder, grads: Grads, dA: Tensor, dB: Tensor) => void): TrainedLinear {
  const saved = new WeakMap<Tensor, { mask?: Tensor; xin: Tensor; sax: Tensor }>();
  /** x̃ and s·A·x̃ [r, n] (scaled at rank r rather than at the output's width) */
  const down = (b: GraphBuilder, x: Tensor, mask?: Tensor) => {
    const hit = saved.get(x);
    if (hit && hit.mask === mask) return hit;
    const xin = mask ? b.mul(x, mask) : x;
    const r = { mask, xin, sax: b.scale(mulMatThin(b, A, xin), s) };
    saved.set(x, r);
    return r;
  };
  return {
    forward: (b, W, x, mask) => b.add(b.mulMat(W, x), mulMatThin(b, B, down(b, x, mask).sax)),
    backward: (b, W, x, dy, grads, mask) => {
      const { xin, sax } = down(b, x, mask);
      const dax = b.scale(mulMatThinT(b, B, dy), s); // [r, n] = s·Bᵀ dy
      route(b, grads, b.outProd(xin, dax), b.outProd(sax, dy));
      const dxl = mulMatThinT(b, A, dax); // [in, n]
      return b.add(inputGrad(b, W, dy), mask ? b.mul(dxl, mask) : dxl);
    },
  };
}

export interface LoraPair {
  layer: number;
  module: Module;
  a: Tensor;
  b: Tensor;
}

export class Lora implements Adapter {
  readonly method = 'lora' as const;
  readonly pairs: LoraPair[] = [];
  readonly scale: number;
  readonly dropout: number;
  private readonly store = new TrainableStore();
  private readonly byKey = new Map<string, { pair: LoraPair; linear: TrainedLinear }>();

  constructor(readonly engine: Engine, readonly hp: Hparams, readonly cfg: LoraConfig) {
    if (!(cfg.rank >= 1)) throw new Error(`LoRA rank must be at least 1, got ${cfg.rank}`);
    checkTargets(cfg.targets);
    this.scale = cfg.alpha / cfg.rank;
    this.dropout = cfg.dropout ?? 0;
    for (let il = 0; il < hp.nLayer; il++) {
      for (const module of cfg.targets) {
        const [inDim, outDim] = moduleDims(hp, module);
        const base = `blk.${il}.${GGUF_NAMES[module]}.weight`;
        const pair = { layer: il, module, a: this.store.add([inDim, cfg.rank], `${base}.lora_a`), b: this.store.add([cfg.rank, outDim], `${base}.lora_b`) };
        this.pairs.push(pair);
        const linear = lowRankLinear(pair.a, pair.b, this.scale, (b, grads, dA, dB) => { addGrad(b, grads, pair.a, dA); addGrad(b, grads, pair.b, dB); });
        this.byKey.set(`${il}.${module}`, { pair, linear });
      }
    }
    this.store.alloc(engine, 'LoRA parameters and optimizer state');
  }

  get trainables() { return this.store.trainables; }

  /** fresh adapter: A uniform in ±1/√in, B and optimizer state zero */
  init(seed: number) {
    const rng = new Rng(seed);
    for (const t of this.trainables) {
      const [n0, n1] = t.param.shape;
      const n = n0 * n1;
      const bound = 1 / Math.sqrt(n0);
      t.param.set(t.name.endsWith('lora_a') ? Float32Array.from({ length: n }, () => (2 * rng.next() - 1) * bound) : new Float32Array(n));
    }
    this.store.resetState();
  }

  pair(layer: number, module: Module): LoraPair | undefined {
    return this.byKey.get(`${layer}.${module}`)?.pair;
  }

  linear(_b: GraphBuilder, layer: number, module: Module): TrainedLinear | undefined {
    return this.byKey.get(`${layer}.${module}`)?.linear;
  }

  merged(b: GraphBuilder, layer: number, module: Module, W: Tensor): Tensor | undefined {
    const p = this.pair(layer, module);
    return p && lowRankMerged(b, W, p.a, p.b, this.scale);
  }

  lowRank(_b: GraphBuilder, layer: number, module: Module) {
    const p = this.pair(layer, module);
    return p && { A: p.a, B: p.b };
  }

  readonly layerwise: Layerwise = {
    own: (layer, module) => { const p = this.pair(layer, module); return p ? [p.a, p.b] : []; },
    linearOver: (_b, _module, [A, B]) => lowRankLinear(A, B, this.scale, (b, grads, dA, dB) => { addGrad(b, grads, A, dA); addGrad(b, grads, B, dB); }),
  };

  free() {
    this.store.free(this.engine);
  }
}

/** LoRA as a method: checkpoints hold `blk.N.<weight>.lora_a` / `.lora_b` with their moments */
export const lora: Method = {
  name: 'lora', full: false, notLowRank: null, notStreamed: null,
  build: (engine, model, c) => new Lora(engine, model.hp, { rank: c.rank, alpha: c.alpha, targets: c.targets, dropout: c.dropout }),
};
