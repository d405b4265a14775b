// HUT, Hadamard Updated Transformation (Zhang, Zhou, Chen 2024): the trained weight is a
// transformation of the frozen one, W' = U(W0), built from a Hadamard product with two low-rank
// matrices, not an increment added to it. Its method section could not be read (docs/methods.md),
// so Hone offers the two readings, both identity at step 0 and both merged into W at export:
//   'scaling' (default; the equation a review of the paper reports):
//       W' = (M_A 1_{r×k}) ⊙ W0 ⊙ (1_{d×r} M_B) = diag(a)·W0·diag(b),
//       a = row sums of M_A [d×r], b = column sums of M_B [r×k]; y = a ⊙ W0 (b ⊙ x).
//       Costs d + k multiplies per token (LoRA: 2r(d+k)); all r columns get the same gradient,
//       so r scales the step, not the expressiveness. Init: every entry 1/r, so a = b = 1.
//   'hadamard': W' = W0 ⊙ (1 + s·B A), B [d×r] zero, A [r×k] uniform ±1/√k, s = α/r;
//       needs W0 dense in F32 and the full weight gradient every step.
// ggml order: W [in = k, out = d]; M_A is stored [r, out], M_B [r, in] (sum_rows gives a and b);
// A [in, r] and B [r, out] as LoRA's.
import type { Engine } from '../engine/backend.js';
import type { GraphBuilder, Tensor } from '../engine/graph.js';
import { T } from '../engine/types.js';
import type { Hparams, Module } from '../model/llama.js';
import { inputGrad, sumCols } from '../model/backward.js';
import { Rng } from '../data/pack.js';
import { GGUF_NAMES, PerGraph, TrainableStore, addGrad, checkTargets, lowRankProduct, moduleDims, type Adapter, type Layerwise, type TrainedLinear } from './adapter.js';
import type { Method } from './method.js';

export type HutForm = 'scaling' | 'hadamard';
export const HUT_FORMS: HutForm[] = ['scaling', 'hadamard'];

export interface HutConfig {
  rank: number;
  alpha: number;
  targets: Module[];
  form: HutForm;
}

interface HutPair { layer: number; module: Module; inDim: number; outDim: number; p: Tensor; q: Tensor }


export class Hut implements Adapter {
  readonly method = 'hut' as const;
  readonly dropout = 0;
  readonly scale: number;
  readonly pairs: HutPair[] = [];
  private readonly store = new TrainableStore();
  private readonly byKey = new Map<string, HutPair>();
  private readonly memo = new PerGraph<TrainedLinear>();

  constructor(readonly engine: Engine, readonly hp: Hparams, readonly cfg: HutConfig) {
    if (!(cfg.rank >= 1)) throw new Error(`HUT rank must be at least 1, got ${cfg.rank}`);
    if (!HUT_FORMS.includes(cfg.form)) throw new Error(`HUT form must be ${HUT_FORMS.join(' or ')}, got "${cfg.form}"`);
    checkTargets(cfg.targets);
    this.scale = cfg.alpha / cfg.rank;
    const r = cfg.rank;
    for (let il = 0; il < hp.nLayer; il++) {
      for (const module of cfg.targets) {
        const [inDim, outDim] = moduleDims(hp, module);
        const base = `blk.${il}.${GGUF_NAMES[module]}.weight`;
        const pair = cfg.form === 'scaling'
          ? { layer: il, module, inDim, outDim, p: this.store.add([r, outDim], `${base}.hut_ma`), q: this.store.add([r, inDim], `${base}.hut_mb`) }
          : { layer: il, module, inDim, outDim, p: this.store.add([inDim, r], `${base}.hut_a`), q: this.store.add([r, outDim], `${base}.hut_b`) };
        this.pairs.push(pair);
        this.byKey.set(`${il}.${module}`, pair);
      }
    }
    this.store.alloc(engine, 'HUT parameters and optimizer state');
  }

  get trainables() { return this.store.trainables; }

  init(seed: number) {
    const rng = new Rng(seed);
    const r = this.cfg.rank;
    for (const p of this.pairs) {
      if (this.cfg.form === 'scaling') {
        p.p.set(new Float32Array(p.p.elements).fill(1 / r));
        p.q.set(new Float32Array(p.q.elements).fill(1 / r));
      } else {
        const bound = 1 / Math.sqrt(p.inDim);
        p.p.set(Float32Array.from({ length: p.p.elements }, () => (2 * rng.next() - 1) * bound));
        p.q.set(new Float32Array(p.q.elements));
      }
    }
    this.store.resetState();
  }

  linear(b: GraphBuilder, layer: number, module: Module): TrainedLinear | undefined {
    const pair = this.byKey.get(`${layer}.${module}`);
    if (!pair) return undefined;
    return this.memo.get(b, `${layer}.${module}`, () => (this.cfg.form === 'scaling' ? scalingLinear(b, pair) : hadamardLinear(pair, this.scale)));
  }

  /** W' [in, out] from W [in, out]: diag(a)·W·diag(b) (scaling) or W ⊙ (1 + s·BA) (hadamard) */
  merged(b: GraphBuilder, layer: number, module: Module, W: Tensor): Tensor | undefined {
    const p = this.byKey.get(`${layer}.${module}`);
    if (!p) return undefined;
    if (this.cfg.form === 'hadamard') return hadamardWeight(b, W, p, this.scale);
    const { a, bv } = scalingVectors(b, p);
    return b.mul(b.mul(W, bv), b.reshape(a, 1, p.outDim));
  }

  readonly layerwise: Layerwise = {
    own: (layer, module) => { const p = this.byKey.get(`${layer}.${module}`); return p ? [p.p, p.q] : []; },
    linearOver: (b, module, [P, Q]) => {
      const [inDim, outDim] = moduleDims(this.hp, module);
      const pair = { layer: -1, module, inDim, outDim, p: P, q: Q };
      return this.cfg.form === 'scaling' ? scalingLinear(b, pair) : hadamardLinear(pair, this.scale);
    },
  };

  free() {
    this.store.free(this.engine);
  }
}

/** a = Σ_r M_A [out, 1] and b = Σ_r M_B [in, 1] (M_A [r, out] and M_B [r, in] summed over r) */
function scalingVectors(g: GraphBuilder, p: HutPair) {
  return { a: g.reshape(g.sumRows(p.p), p.outDim, 1), bv: g.reshape(g.sumRows(p.q), p.inDim, 1) };
}

/** W' = W0 ⊙ (1 + s·BA) [in, out], W0 in F32 */
function hadamardWeight(b: GraphBuilder, w0: Tensor, p: HutPair, s: number): Tensor {
  return b.add(w0, b.scale(b.mul(w0, lowRankProduct(b, p.p, p.q)), s));
}

/** y = a ⊙ W0 (b ⊙ x) with a = Σ_r M_A [out, 1], b = Σ_r M_B [in, 1] */
function scalingLinear(g: GraphBuilder, p: HutPair): TrainedLinear {
  const { a, bv } = scalingVectors(g, p);
  // the forward's u and z, reused by the backward of the same input (no second W·u)
  let fwd: { x: Tensor; u: Tensor; z: Tensor } | null = null;
  const uz = (b: GraphBuilder, W: Tensor, x: Tensor) => {
    if (fwd?.x !== x) { const u = b.mul(x, bv); fwd = { x, u, z: b.mulMat(W, u) }; }
    return fwd;
  };
  return {
    forward: (b, W, x) => b.mul(uz(b, W, x).z, a),
    backward: (b, W, x, dy, grads) => {
      const { z } = uz(b, W, x); // u = b ⊙ x [in, n], z = W0 u [out, n]
      const da = sumCols(b, b.mul(dy, z)); // [out, 1]
      const du = inputGrad(b, W, b.mul(dy, a)); // [in, n]
      const db = sumCols(b, b.mul(x, du)); // [in, 1]
      // every entry of M_A's row i sums into a_i, so each gets ∂L/∂a_i (M_B likewise)
      addGrad(b, grads, p.p, b.repeat(b.reshape(da, 1, p.outDim), p.p));
      addGrad(b, grads, p.q, b.repeat(b.reshape(db, 1, p.inDim), p.q));
      return b.mul(du, bv);
    },
  };
}

/** y = W' x with W' = W0 ⊙ (1 + s·BA) dense in F32 [in, out] */
function hadamardLinear(p: HutPair, s: number): TrainedLinear {
  let w0: Tensor | null = null, wp: Tensor | null = null;
  const weights = (b: GraphBuilder, W: Tensor) => {
    if (!w0) {
      w0 = W.type === T.F32 ? W : b.cast(W, T.F32);
      wp = hadamardWeight(b, w0, p, s);
    }
    return { w0, wp: wp! };
  };
  return {
    forward: (b, W, x) => b.mulMat(weights(b, W).wp, x),
    backward: (b, W, x, dy, grads) => {
      const { w0: W0, wp: Wp } = weights(b, W);
      const GM = b.scale(b.mul(b.outProd(x, dy), W0), s); // s·(∂L/∂W' ⊙ W0) [in, out]
      addGrad(b, grads, p.p, b.mulMat(b.cont(b.transpose(GM)), b.cont(b.transpose(p.q)))); // [in, r]
      addGrad(b, grads, p.q, b.mulMat(p.p, GM)); // [r, out]
      return b.mulMat(b.cont(b.transpose(Wp)), dy);
    },
  };
}

/** HUT as a method: checkpoints hold `blk.N.<weight>.hut_ma` / `.hut_mb` (scaling) or `.hut_a` /
 *  `.hut_b` (hadamard); its change multiplies W, so it exports merged only */
export const hut: Method = {
  name: 'hut', full: false, notLowRank: 'HUT transforms each trained weight instead of adding a low-rank term', notStreamed: null,
  build: (engine, model, c) => {
    if (c.dropout > 0) throw new Error('HUT transforms the weight itself and has no separate input path to drop out: set --dropout 0 (dropout applies to LoRA and MoS)');
    const form = c.hutForm ?? 'scaling';
    if (!HUT_FORMS.includes(form)) throw new Error(`--hut-form must be ${HUT_FORMS.join(' or ')}, got "${form}"`);
    return new Hut(engine, model.hp, { rank: c.rank, alpha: c.alpha, targets: c.targets, form });
  },
};
