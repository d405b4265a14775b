// Full-parameter training: every weight of the model (dequantized once to F32 master weights) is
// trainable, with one of three optimizers:
//   'full': AdamW on every tensor (the trainer's own AdamW graph, ggml's opt_step_adamw).
//   'galore' (Zhao et al. 2024): each 2-D weight W (PyTorch [m × n]) has its gradient G projected to
//     rank r on its smaller side — R = G·Qᵀ [m×r] with Q [r×n] the top right singular vectors of G
//     when m ≥ n, else R = Pᵀ·G [r×n] with P [m×r] the top left ones — recomputed every T steps
//     (steps 1, T+1, …; the moments are kept across a refresh, as the reference does). Adam runs on R,
//     the update is projected back and scaled by α: W ← W·(1 − lr·wd) − lr·α·back(M̂/(√V̂ + ε)).
//     GaLore manages the blocks' linear weights, as the reference applies it to attention and MLP
//     modules; token embeddings, the head, norms and biases use AdamW. At r ≥ min(m, n) the projector is the identity (an SVD
//     basis would rotate Adam's coordinates, which is not AdamW): GaLore at full rank is AdamW.
//   'natural-galore' (Das 2024): R is preconditioned by the inverse empirical Fisher of the last s
//     projected gradients before Adam, through Woodbury: R̃ = λ·F⁻¹R = R − H·z with
//     (λI + HᵀH)·z = Hᵀ·R, H = [h_1 … h_s] (D × s, D = r·max(m, n)); the s×s system by Cholesky on
//     the CPU. Hone applies λ·F⁻¹ (the reference applies F⁻¹, ≈ R/λ): the same direction for Adam,
//     and an empty history gives GaLore exactly. The current gradient joins the history after use.
// ggml order: W [n = in, m = out]; Q is stored [n, r] (its rows), P [m, r] (its columns), R [r, m]
// (right) or [n, r] (left).
import type { Engine } from '../engine/backend.js';
import { Graph, GraphBuilder, type Tensor } from '../engine/graph.js';
import { T } from '../engine/types.js';
import { inputGrad } from '../model/backward.js';
import { LAYER_FIELDS, type LlamaModel, type ModelHeader, type Weights } from '../model/llama.js';
import type { GgufTensorInfo } from '../model/gguf.js';
import { TrainableStore, addGrad, type Adapter, type Trainable, type TrainedLinear } from './adapter.js';
import { topSingularVectors } from './svd.js';
import type { OptimizerConfig } from './trainer.js';
import type { Method, MethodConfig } from './method.js';
import { trainDefaults } from './settings.js';

export type FullMethod = 'full' | 'galore' | 'natural-galore';

export interface GaloreConfig {
  method: FullMethod;
  /** r */
  rank: number;
  /** T: steps between projector refreshes */
  updateGap: number;
  /** α: scale of the projected-back update */
  scale: number;
  /** s: projected gradients kept for Natural GaLore's Fisher */
  history: number;
  /** λ: Natural GaLore's damping */
  damping: number;
}


/** every weight of the model with its name, in a fixed order */
export function namedWeights(w: Weights): Tensor[] {
  const out = [w.tokEmbd];
  for (const L of w.layers) {
    for (const f of LAYER_FIELDS) if (L[f]) out.push(L[f]!);
  }
  out.push(w.outputNorm);
  if (w.output !== w.tokEmbd) out.push(w.output);
  if (w.outputBias) out.push(w.outputBias);
  return out;
}

interface Projected {
  t: Trainable;
  /** logical PyTorch shape [m × n] */
  m: number;
  n: number;
  r: number;
  right: boolean;
  identity: boolean;
  proj: Tensor;
  /** Natural GaLore: the graph's R output, the Adam graph's R input, and the history */
  rOut?: Tensor;
  rIn?: Tensor;
  history: Float32Array[];
}

export class FullModel implements Adapter {
  readonly dropout = 0;
  readonly full = true;
  readonly trainables: Trainable[] = [];
  readonly projected: Projected[] = [];
  private readonly store = new TrainableStore();
  private step1?: { b: GraphBuilder; graph: Graph; s: UpdateInputs };
  private project?: { b: GraphBuilder; graph: Graph; gscale: Tensor };

  constructor(readonly engine: Engine, readonly model: LlamaModel, readonly cfg: GaloreConfig, readonly opt: OptimizerConfig) {
    if (cfg.method !== 'full' && !(cfg.rank >= 1 && cfg.updateGap >= 1)) throw new Error(`GaLore needs rank ≥ 1 and update gap ≥ 1, got rank ${cfg.rank}, gap ${cfg.updateGap}`);
    const weights = namedWeights(model.weights);
    if (weights.some((w) => w.type !== T.F32)) throw new Error('full-parameter training needs the model loaded with F32 master weights (LlamaModel.load(path, engine, { master: true }))');
    const linears = new Set(model.weights.layers.flatMap((L) => [L.wq, L.wk, L.wv, L.wo, L.wGate, L.wUp, L.wDown]));
    for (const w of weights) {
      const [n, m] = w.shape;
      const twoD = linears.has(w) && cfg.method !== 'full';
      const acc = this.store.b.tensor(T.F32, w.shape.slice(0, 2), `${w.name}.acc`);
      if (!twoD) {
        this.trainables.push({ name: w.name, param: w, acc, m: this.store.b.tensor(T.F32, w.shape.slice(0, 2), `${w.name}.m`), v: this.store.b.tensor(T.F32, w.shape.slice(0, 2), `${w.name}.v`) });
        continue;
      }
      const right = m >= n;
      const r = Math.min(cfg.rank, Math.min(m, n));
      const rShape = right ? [r, m] : [n, r];
      const t: Trainable = { name: w.name, param: w, acc, m: this.store.b.tensor(T.F32, rShape, `${w.name}.m`), v: this.store.b.tensor(T.F32, rShape, `${w.name}.v`) };
      this.trainables.push(t);
      const p: Projected = { t, m, n, r, right, identity: cfg.rank >= Math.min(m, n), proj: this.store.b.tensor(T.F32, right ? [n, r] : [m, r], `${w.name}.galore_proj`), history: [] };
      this.projected.push(p);
    }
    this.store.alloc(engine, `${cfg.method} gradients and optimizer state`);
    if (cfg.method !== 'full') this.optimizerStep = (t, lr, g) => this.galoreStep(t, lr, g);
  }

  get method() { return this.cfg.method; }

  /** the projectors: saved with checkpoints (a resumed run continues in the same subspace) */
  get fixed(): Tensor[] {
    return this.projected.map((p) => p.proj);
  }

  /** Natural GaLore's gradient history, for checkpoints: per weight its last s projected gradients end to end */
  readonly hostState = {
    save: () => this.projected.filter((p) => p.history.length).map((p) => {
      const D = p.t.m.elements, data = new Float32Array(D * p.history.length);
      p.history.forEach((h, i) => data.set(h, i * D));
      return { name: `${p.t.name}.natural_history`, data };
    }),
    load: (read: (name: string) => Float32Array | null) => {
      for (const p of this.projected) {
        const data = read(`${p.t.name}.natural_history`), D = p.t.m.elements;
        p.history = data ? Array.from({ length: data.length / D }, (_, i) => data.slice(i * D, (i + 1) * D)) : [];
      }
    },
  };

  /** bytes of optimizer state: moments, projectors and Natural GaLore's history */
  get optimizerBytes(): number {
    const hist = this.cfg.method === 'natural-galore' ? this.projected.reduce((s, p) => s + this.cfg.history * p.t.m.elements, 0) : 0;
    return 4 * (this.trainables.reduce((s, t) => s + t.m.elements + t.v.elements, 0) + this.projected.reduce((s, p) => s + p.proj.elements, 0) + hist);
  }

  /** the weights start as the base's; moments zero; projectors identity where r ≥ min(m, n) */
  init() {
    for (const t of this.trainables) for (const x of [t.acc, t.m, t.v]) x.set(new Float32Array(x.elements));
    for (const p of this.projected) {
      const len = p.right ? p.n : p.m;
      const eye = new Float32Array(len * p.r);
      if (p.identity) for (let i = 0; i < p.r; i++) eye[i * len + i] = 1;
      p.proj.set(eye);
      p.history = [];
    }
  }

  linear(): TrainedLinear {
    return FULL_LINEAR;
  }

  private build() {
    const b = new GraphBuilder(64 + 40 * this.trainables.length);
    const s = updateInputs(b);
    const natural = this.cfg.method === 'natural-galore';
    const outs: Tensor[] = [];
    const projected = new Map(this.projected.map((p) => [p.t, p]));
    for (const t of this.trainables) {
      const p = projected.get(t);
      if (!p) { outs.push(adamwUpdate(b, t, s)); continue; }
      if (natural) p.rIn = b.input(T.F32, t.m.shape.slice(0, 2), `${t.name}.r`);
      outs.push(...galoreUpdate(b, { ...t, proj: p.proj, right: p.right }, s, this.opt, p.rIn));
    }
    this.step1 = { b, graph: new Graph(this.engine, b, outs), s };
    if (natural) {
      const pb = new GraphBuilder(64 + 8 * this.projected.length);
      const gscale = pb.input(T.F32, [1], 'grad_scale');
      for (const p of this.projected) p.rOut = projectGrad(pb, { acc: p.t.acc, proj: p.proj, right: p.right }, gscale);
      this.project = { b: pb, graph: new Graph(this.engine, pb, this.projected.map((p) => p.rOut!)), gscale };
    }
  }

  /** refreshes the projectors from the accumulated gradients at steps 1, T+1, 2T+1, … */
  private refresh(t: number) {
    if ((t - 1) % this.cfg.updateGap !== 0) return;
    for (const p of this.projected) {
      if (p.identity) continue;
      const G = p.t.acc.get(); // [m][n] row-major
      p.proj.set(topSingularVectors(G, p.m, p.n, p.r, p.right ? 'right' : 'left', t));
    }
  }

  /** Natural GaLore: R̃ = λF⁻¹R over the history, then R joins the history */
  private precondition(gradScale: number) {
    this.project!.gscale.set(new Float32Array([gradScale]));
    this.project!.graph.compute();
    for (const p of this.projected) {
      const g = p.rOut!.get();
      p.rIn!.set(naturalDirection(g, p.history, this.cfg.damping));
      if (this.cfg.history > 0) {
        p.history.push(g);
        if (p.history.length > this.cfg.history) p.history.shift();
      }
    }
  }

  /** GaLore's optimizer; full AdamW has none of its own (the trainer's AdamW graph runs) */
  readonly optimizerStep?: (t: number, lr: number, gradScale: number) => void;

  /** one GaLore step `t` (1-based) with the gradient scaled by `gradScale` (clipping / accumulation) */
  private galoreStep(t: number, lr: number, gradScale: number) {
    if (!this.step1) this.build();
    this.refresh(t);
    setUpdateInputs(this.step1!.s, t, lr, gradScale, this.opt, this.cfg.scale);
    if (this.cfg.method === 'natural-galore') this.precondition(gradScale);
    this.step1!.graph.compute();
  }

  free() {
    for (const g of [this.step1, this.project]) { g?.graph.free(); g?.b.free(); }
    this.store.free(this.engine);
  }
}

/** a linear whose weight itself trains (full-parameter methods): ∂L/∂W = dy·xᵀ as [in, out] */
export const FULL_LINEAR: TrainedLinear = {
  forward: (g, W, x) => g.mulMat(W, x),
  backward: (g, W, x, dy, grads) => {
    addGrad(g, grads, W, g.outProd(x, dy));
    return inputGrad(g, W, dy);
  },
};

/** the scalars an optimizer graph reads each step: gradient scale (clipping, accumulation), lr·α,
 *  weight decay factor, Adam's bias corrections and ε, and ggml's AdamW parameter vector */
export interface UpdateInputs { gscale: Tensor; lrScale: Tensor; decay: Tensor; b1h: Tensor; b2h: Tensor; eps: Tensor; hyper: Tensor }

export function updateInputs(b: GraphBuilder): UpdateInputs {
  const input = (name: string) => b.input(T.F32, [1], name);
  return { gscale: input('grad_scale'), lrScale: input('lr_alpha'), decay: input('decay'), b1h: input('beta1h'), b2h: input('beta2h'), eps: input('eps'), hyper: b.input(T.F32, [7], 'adamw_params') };
}

/** step `t` (1-based) at `lr`, gradients scaled by `gradScale`, projected updates by α = `scale` */
export function setUpdateInputs(s: UpdateInputs, t: number, lr: number, gradScale: number, opt: OptimizerConfig, scale: number) {
  const { beta1, beta2, eps, weightDecay } = opt;
  const b1h = 1 / (1 - beta1 ** t), b2h = 1 / (1 - beta2 ** t);
  const one = (x: Tensor, v: number) => { if (x.allocated) x.set(new Float32Array([v])); }; // AdamW-only graphs read two of them
  one(s.gscale, gradScale); one(s.lrScale, lr * scale); one(s.decay, 1 - lr * weightDecay); one(s.b1h, b1h); one(s.b2h, b2h); one(s.eps, eps);
  if (s.hyper.allocated) s.hyper.set(new Float32Array([lr, beta1, beta2, eps, weightDecay, b1h, b2h]));
}

/** AdamW on one weight (ggml's opt_step_adamw, in place) */
export function adamwUpdate(b: GraphBuilder, w: { param: Tensor; acc: Tensor; m: Tensor; v: Tensor }, s: UpdateInputs): Tensor {
  return b.adamwStep(w.param, b.mul(w.acc, s.gscale), w.m, w.v, s.hyper);
}

/** a GaLore-managed weight's state: W [n, m], its gradient, Adam's moments [r, m] or [n, r], the projector */
export interface GaloreWeight { param: Tensor; acc: Tensor; m: Tensor; v: Tensor; proj: Tensor; right: boolean }

/** R of one projected weight, from its (scaled) gradient: [r, m] (right) or [n, r] (left) */
export function projectGrad(b: GraphBuilder, w: Pick<GaloreWeight, 'acc' | 'proj' | 'right'>, gscale: Tensor): Tensor {
  const G = b.mul(w.acc, gscale); // [n, m]
  return w.right ? b.mulMat(w.proj, G) : b.mulMat(b.cont(b.transpose(G)), w.proj);
}

/** one GaLore update of W (moments and weight written in place): Adam on R (the projected gradient,
 *  or `R` given: Natural GaLore's preconditioned one), projected back and scaled by α */
export function galoreUpdate(b: GraphBuilder, w: GaloreWeight, s: UpdateInputs, opt: OptimizerConfig, R = projectGrad(b, w, s.gscale)): Tensor[] {
  const { beta1, beta2 } = opt;
  const M = b.add(b.scale(w.m, beta1), b.scale(R, 1 - beta1));
  const V = b.add(b.scale(w.v, beta2), b.scale(b.sqr(R), 1 - beta2));
  const N = b.div(b.mul(M, s.b1h), b.add(b.sqrt(b.mul(V, s.b2h)), s.eps)); // M̂ / (√V̂ + ε), as opt_step_adamw
  const D = w.right ? b.mulMat(b.cont(b.transpose(w.proj)), N) : b.mulMat(b.cont(b.transpose(N)), b.cont(b.transpose(w.proj))); // [n, m]
  return [b.cpy(M, w.m), b.cpy(V, w.v), b.cpy(b.sub(b.mul(w.param, s.decay), b.mul(D, s.lrScale)), w.param)];
}

/**
 * λ·F⁻¹g with F = λI + H·Hᵀ over the history rows h_1 … h_s (Woodbury): g − H·z where
 * (λI + HᵀH)·z = Hᵀg. With no history, g itself.
 */
export function naturalDirection(g: Float32Array, history: Float32Array[], lambda: number): Float32Array {
  const s = history.length;
  if (s === 0) return g;
  const K = new Float64Array(s * s), rhs = new Float64Array(s);
  for (let i = 0; i < s; i++) {
    let d = 0;
    for (let k = 0; k < g.length; k++) d += history[i][k] * g[k];
    rhs[i] = d;
    for (let j = 0; j <= i; j++) {
      let e = 0;
      for (let k = 0; k < g.length; k++) e += history[i][k] * history[j][k];
      K[i * s + j] = K[j * s + i] = e + (i === j ? lambda : 0);
    }
  }
  const z = choleskySolve(K, rhs, s);
  const out = Float32Array.from(g);
  for (let i = 0; i < s; i++) for (let k = 0; k < g.length; k++) out[k] -= z[i] * history[i][k];
  return out;
}

/** solves K z = b for a symmetric positive-definite K [n×n] */
export function choleskySolve(K: Float64Array, b: Float64Array, n: number): Float64Array {
  const L = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let sum = K[i * n + j];
      for (let k = 0; k < j; k++) sum -= L[i * n + k] * L[j * n + k];
      L[i * n + j] = i === j ? Math.sqrt(Math.max(sum, 1e-300)) : sum / L[j * n + j];
    }
  }
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) { let sum = b[i]; for (let k = 0; k < i; k++) sum -= L[i * n + k] * y[k]; y[i] = sum / L[i * n + i]; }
  const z = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) { let sum = y[i]; for (let k = i + 1; k < n; k++) sum -= L[k * n + i] * z[k]; z[i] = sum / L[i * n + i]; }
  return z;
}

/**
 * Memory a full-parameter run needs, from the file's header alone (shown before loading): F32 master
 * weights, F32 gradients, and the optimizer state as FullModel allocates it.
 */
export interface MemoryPlan {
  weights: number;
  gradients: number;
  optimizer: number;
  total: number;
  /** optimizer state of the GaLore-managed weights, and what AdamW would keep for them */
  projected: { galore: number; adamw: number };
}

export function fullMemoryPlan(model: ModelHeader, cfg: GaloreConfig): MemoryPlan {
  const { plan } = model;
  const infos = new Set<GgufTensorInfo>([plan.tokEmbd, plan.outputNorm, plan.output, ...(plan.outputBias ? [plan.outputBias] : [])]);
  for (const L of plan.layers) for (const t of Object.values(L)) if (t) infos.add(t as GgufTensorInfo);
  const linears = new Set(plan.layers.flatMap((L) => [L.wq, L.wk, L.wv, L.wo, L.wGate, L.wUp, L.wDown]));
  let n = 0, opt = 0, projected = 0, projectedAdamw = 0;
  for (const t of infos) {
    const [cols, rows = 1] = t.shape;
    const size = cols * rows;
    n += size;
    if (!linears.has(t) || cfg.method === 'full') { opt += 2 * size; continue; }
    const r = Math.min(cfg.rank, Math.min(rows, cols));
    const state = 2 * r * Math.max(rows, cols) + r * Math.min(rows, cols) + (cfg.method === 'natural-galore' ? cfg.history * r * Math.max(rows, cols) : 0);
    opt += state;
    projected += state;
    projectedAdamw += 2 * size;
  }
  const out = { weights: 4 * n, gradients: 4 * n, optimizer: 4 * opt };
  return { ...out, total: out.weights + out.gradients + out.optimizer, projected: { galore: 4 * projected, adamw: 4 * projectedAdamw } };
}

/** GaLore's settings from a run config; missing ones from the settings table (Natural GaLore's
 *  defaults hold all four, so full AdamW gets numbers there too, unused) */
export function galoreSettings(c: MethodConfig): GaloreConfig {
  const d = trainDefaults('natural-galore');
  return {
    method: c.method as FullMethod, rank: c.rank, updateGap: c.galoreGap ?? d.galoreGap!,
    scale: c.galoreScale ?? d.galoreScale!, history: c.naturalHistory ?? d.naturalHistory!, damping: c.naturalDamping ?? d.naturalDamping!,
  };
}

/** full AdamW, GaLore and Natural GaLore as methods: checkpoints hold every weight under its own GGUF
 *  name (F32), with its moments (`.m`, `.v`, projected for GaLore), projectors (`.galore_proj`) and
 *  Natural GaLore's gradient history; the merge replaces the base's weights with them */
function fullMethod(name: FullMethod, notStreamed: string | null): Method {
  return {
    name, full: true, notLowRank: `a ${name} run trained every weight`, notStreamed,
    build: (engine, model, c, opt) => {
      if (c.dropout > 0) throw new Error(`--dropout applies to adapter methods (LoRA, MoS), not to ${name}`);
      if (!model.loaded) throw new Error(`${name} needs the model loaded with F32 master weights`);
      return new FullModel(engine, model.loaded, galoreSettings(c), opt);
    },
  };
}

export const full = fullMethod('full', null);
export const galore = fullMethod('galore', null);
export const naturalGalore = fullMethod('natural-galore', 'Natural GaLore keeps a gradient history per weight that streaming training does not store yet');
