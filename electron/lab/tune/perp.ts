// PERP: parameter-efficient retraining after pruning (Zimmer et al.; docs/methods.md). The pruned
// model stays frozen; what trains is
//   - MaskLoRA on every chosen linear: W' = W + s·((B A) ⊙ M), M the pruning mask (1 = kept), so a
//     pruned weight is exactly zero in W' during training and after the merge W ← W + s·(BA ⊙ M);
//   - the RMSNorm gains and the biases (the paper's SelectivePEFT; the head is left out here: with a
//     32k vocabulary it alone is far more than 1% of a small model).
// A rank of 0 trains the norms and biases only. The masks come from the pruning stage's file
// (model/masks.ts), never from W ≠ 0. ggml order: W, M [in, out]; A [in, r]; B [r, out].
import type { Engine } from '../engine/backend.js';
import { GraphBuilder, allocStatic, type Tensor } from '../engine/graph.js';
import { T } from '../engine/types.js';
import { fusedParts, type Hparams, type Layer, type Module, type Weights, type WeightsOf } from '../model/llama.js';
import { Rng } from '../data/pack.js';
import { GGUF_NAMES, TrainableStore, addGrad, checkTargets, lowRankMerged, lowRankProduct, moduleDims, type Adapter, type TrainedLinear } from './adapter.js';
import type { Method } from './method.js';
import { readMasks } from '../model/masks.js';
import { lowRankLinear } from './lora.js';

export interface PerpConfig {
  rank: number;
  alpha: number;
  targets: Module[];
  /** masks.gguf of the pruning stage; none after structured pruning (nothing inside a kept weight is
   *  pruned): plain LoRA then */
  masks?: string;
  /** train the norms' gains and the biases too (default true) */
  norms?: boolean;
  /** the fused file tensor a weight is rows of, for masks written per file tensor (phi3) */
  partOf?: (weight: string) => { of: string; row: number } | undefined;
}

interface MaskPair { layer: number; module: Module; a: Tensor; b: Tensor; mask?: Tensor }

/** the norm and bias weights of a layer that PERP trains, by slot */
const NORM_SLOTS = ['attnNorm', 'ffnNorm', 'bq', 'bk', 'bv', 'bo', 'qNorm', 'kNorm', 'postAttnNorm', 'postFfnNorm'] as const;

/** a model tensor by name and shape: a loaded one has its values (training starts from them);
 *  export builds PERP from the header's plan, and its values come from the checkpoint */
export type NamedTensor = { name: string; shape: number[]; get?: () => Float32Array };

export class Perp implements Adapter {
  readonly method = 'perp' as const;
  readonly dropout = 0;
  readonly norms: boolean;
  readonly scale: number;
  readonly pairs: MaskPair[] = [];
  private readonly store = new TrainableStore();
  private readonly maskBuilder = new GraphBuilder(1 << 12);
  private maskBuffer = -1;
  private readonly byKey = new Map<string, MaskPair>();
  /** trainable copies of the model's norms and biases, by the model tensor's name */
  private readonly copies = new Map<string, Tensor>();
  private readonly sources: [NamedTensor, Tensor][] = [];

  constructor(readonly engine: Engine, readonly hp: Hparams, weights: WeightsOf<NamedTensor>, readonly cfg: PerpConfig) {
    if (!(cfg.rank >= 0)) throw new Error(`PERP's LoRA rank must be 0 (norms and biases only) or more, got ${cfg.rank}`);
    checkTargets(cfg.targets);
    this.norms = cfg.norms ?? true;
    if (cfg.rank === 0 && !this.norms) throw new Error('PERP with rank 0 and no norms trains nothing; give a rank or keep the norms');
    this.scale = cfg.rank ? cfg.alpha / cfg.rank : 0;
    const masks = cfg.masks ? readMasks(cfg.masks) : undefined;
    const toLoad: [Tensor, Float32Array][] = [];
    for (let il = 0; il < hp.nLayer && cfg.rank > 0; il++) {
      for (const module of cfg.targets) {
        const [inDim, outDim] = moduleDims(hp, module);
        const name = `blk.${il}.${GGUF_NAMES[module]}.weight`;
        let mask: Tensor | undefined;
        if (masks) {
          // a fused file tensor's mask (phi3's attn_qkv, ffn_up) holds this weight's rows from its first row on
          const part = cfg.partOf?.(name);
          const keep = part ? masks.get(part.of)?.subarray(part.row * inDim, (part.row + outDim) * inDim) : masks.get(name);
          if (!keep) throw new Error(`${cfg.masks} has no mask for ${name}; prune that layer or leave it out of the targets`);
          if (keep.length !== inDim * outDim) throw new Error(`${cfg.masks}: the mask of ${name} has ${keep.length} entries, the weight ${inDim * outDim}`);
          mask = this.maskBuilder.tensor(T.F32, [inDim, outDim], `${name}.mask`);
          toLoad.push([mask, Float32Array.from(keep)]);
        }
        const pair = { layer: il, module, a: this.store.add([inDim, cfg.rank], `${name}.lora_a`), b: this.store.add([cfg.rank, outDim], `${name}.lora_b`), mask };
        this.pairs.push(pair);
        this.byKey.set(`${il}.${module}`, pair);
      }
    }
    if (this.norms) {
      const add = (t: NamedTensor | undefined) => {
        if (!t || this.copies.has(t.name)) return;
        const copy = this.store.add([t.shape[0]], `${t.name}.perp`);
        this.copies.set(t.name, copy);
        this.sources.push([t, copy]);
      };
      for (const L of weights.layers) for (const s of NORM_SLOTS) add(L[s]);
      add(weights.outputNorm);
      add(weights.outputBias);
    }
    this.store.alloc(engine, 'PERP parameters and optimizer state');
    if (toLoad.length) {
      this.maskBuffer = allocStatic(engine, this.maskBuilder, 'PERP pruning masks');
      for (const [t, m] of toLoad) t.set(m);
    }
  }

  get trainables() { return this.store.trainables; }

  /** the model's weights with the trained norms and biases in place of the frozen ones */
  weightsFor(w: Weights): Weights {
    if (!this.norms) return w;
    const c = <X extends Tensor | undefined>(t: X): X => (t && this.copies.has(t.name) ? (this.copies.get(t.name) as X) : t);
    return {
      ...w, outputNorm: c(w.outputNorm), outputBias: c(w.outputBias),
      layers: w.layers.map((L) => ({ ...L, ...Object.fromEntries(NORM_SLOTS.map((s) => [s, c(L[s])])) }) as Layer),
    };
  }

  /** the trained norm or bias that replaces model tensor `name`, if any */
  replaces(name: string): Tensor | undefined {
    return this.copies.get(name);
  }

  init(seed: number) {
    const rng = new Rng(seed);
    for (const p of this.pairs) {
      const [inDim] = p.a.shape;
      const bound = 1 / Math.sqrt(inDim);
      p.a.set(Float32Array.from({ length: p.a.elements }, () => (2 * rng.next() - 1) * bound));
      p.b.set(new Float32Array(p.b.elements));
    }
    for (const [src, copy] of this.sources) {
      if (!src.get) throw new Error(`PERP was built without the model's weights, so it cannot start from ${src.name}: load the model to train`);
      copy.set(src.get());
    }
    this.store.resetState();
  }

  linear(b: GraphBuilder, layer: number, module: Module): TrainedLinear | undefined {
    const p = this.byKey.get(`${layer}.${module}`);
    if (!p) return undefined;
    return p.mask ? maskLoraLinear(b, p as MaskPair & { mask: Tensor }, this.scale) : lowRankLinear(p.a, p.b, this.scale, (g, grads, dA, dB) => { addGrad(g, grads, p.a, dA); addGrad(g, grads, p.b, dB); });
  }

  /** W' = (W + s·BA) ⊙ M [in, out]: the training's W + s·(BA ⊙ M) wherever the pruned W is zero,
   *  with every pruned weight exactly zero */
  merged(b: GraphBuilder, layer: number, module: Module, W: Tensor): Tensor | undefined {
    const p = this.byKey.get(`${layer}.${module}`);
    if (!p) return undefined;
    const w = lowRankMerged(b, W, p.a, p.b, this.scale);
    return p.mask ? b.mul(w, p.mask) : w;
  }

  free() {
    this.store.free(this.engine);
    if (this.maskBuffer >= 0) this.engine.native.freeBuffer(this.maskBuffer);
    this.maskBuilder.free();
  }
}

/** y = W' x with W' = W + s·(BA ⊙ M), dense F32 [in, out] */
function maskLoraLinear(_g: GraphBuilder, p: MaskPair & { mask: Tensor }, s: number): TrainedLinear {
  let wp: Tensor | null = null;
  const dense = (b: GraphBuilder, W: Tensor) => {
    if (!wp) {
      const w0 = W.type === T.F32 ? W : b.cast(W, T.F32);
      wp = b.add(w0, b.scale(b.mul(lowRankProduct(b, p.a, p.b), p.mask), s));
    }
    return wp;
  };
  return {
    forward: (b, W, x) => b.mulMat(dense(b, W), x),
    backward: (b, W, x, dy, grads) => {
      const Wp = dense(b, W);
      const GD = b.scale(b.mul(b.outProd(x, dy), p.mask), s); // s·(∂L/∂W' ⊙ M) [in, out]
      addGrad(b, grads, p.a, b.mulMat(b.cont(b.transpose(GD)), b.cont(b.transpose(p.b)))); // [in, r]
      addGrad(b, grads, p.b, b.mulMat(p.a, GD)); // [r, out]
      return b.mulMat(b.cont(b.transpose(Wp)), dy);
    },
  };
}

/** PERP as a method: checkpoints hold MaskLoRA's `blk.N.<weight>.lora_a` / `.lora_b` and each trained
 *  norm or bias as `<name>.perp`; its change is masked, so it exports merged only */
export const perp: Method = {
  name: 'perp', full: false, notLowRank: "PERP's low-rank term is masked by the pruning mask",
  notStreamed: 'PERP trains the norms inside the blocks, which streaming training does not yet',
  build: (engine, model, c) => {
    if (c.dropout > 0) throw new Error('PERP trains without dropout (as the reference does): set --dropout 0');
    const parts = new Map([...fusedParts(model.plan).values()].flat().map((t) => [t.name, t.part!]));
    return new Perp(engine, model.hp, model.loaded?.weights ?? model.plan, { rank: c.rank, alpha: c.alpha, targets: c.targets, masks: c.perpMasks, norms: c.perpNorms, partOf: (n) => parts.get(n) });
  },
};
