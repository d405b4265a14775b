// MoS, Mixture of Shards (Wang et al., ICLR 2025): LoRA whose A and B rows are assembled, per layer,
// from shard pools shared by all layers of one projection type. Per module type (q, k, …):
//   pools P_A [d_in/l, R_v·L·l] and P_B [d_out/l, R_v·L·l] (ggml order: a row is one shard),
//   the same trainable parameters as a rank-R_v LoRA, while every layer sees rank r > R_v.
// Layer i draws r·l shard indices for A and for B once (seeded, saved with checkpoints):
//   (r − R_p)·l public rows [0, S) and its own R_p·l private rows [S + i·R_p·l, …),
//   S = (R_v − R_p)·L·l. Row j of A_i is the concatenation of shards j, j+r, …, j+(l−1)r.
// The four differentiation strategies are switches: subset selection (each layer draws its own
// public subset; off: every layer takes the same rows), pair dissociation (B's draw independent of
// A's; off: the same), vector sharding (l > 1), shard privatization (R_p > 0).
// y = W x + (α/r)·B_i A_i x; P_A starts uniform in ±1/√d_in and P_B at zero, so ΔW = 0 at step 0.
import type { Engine } from '../engine/backend.js';
import type { GraphBuilder, Tensor } from '../engine/graph.js';
import { T } from '../engine/types.js';
import type { Hparams, Module } from '../model/llama.js';
import { Rng } from '../data/pack.js';
import { PerGraph, TrainableStore, addGrad, checkTargets, lowRankMerged, moduleDims, type Adapter, type Layerwise, type TrainedLinear } from './adapter.js';
import type { Method, MethodConfig } from './method.js';
import { trainDefaults } from './settings.js';
import { lowRankLinear } from './lora.js';

export interface MosConfig {
  /** r: the rank each layer's adapter has */
  rank: number;
  /** R_v: the LoRA rank whose parameter count the pools match */
  budget: number;
  /** l: shards per rank vector (vector sharding; 1 turns it off) */
  shards: number;
  /** R_p: private rank per layer (shard privatization; 0 turns it off) */
  privateRank: number;
  /** subset selection: each layer draws its own public shards */
  subset: boolean;
  /** pair dissociation: B's shards drawn independently of A's */
  dissociate: boolean;
  alpha: number;
  targets: Module[];
  dropout?: number;
}


/** Why a configuration cannot be built on this model, or null. */
export function mosConfigError(hp: Hparams, c: MosConfig): string | null {
  const { rank: r, budget: Rv, shards: l, privateRank: Rp } = c;
  if (!(r >= 1 && Rv >= 1 && l >= 1 && Rp >= 0) || ![r, Rv, l, Rp].every(Number.isInteger)) return `MoS needs whole numbers rank ≥ 1, budget ≥ 1, shards ≥ 1, private ≥ 0; got rank ${r}, budget ${Rv}, shards ${l}, private ${Rp}`;
  if (Rp > Rv || Rp > r) return `MoS private rank ${Rp} cannot exceed the budget (${Rv}) or the rank (${r})`;
  if (r - Rp > (Rv - Rp) * hp.nLayer) return `MoS rank ${r} needs ${(r - Rp) * l} public shards per layer but the pools hold ${(Rv - Rp) * hp.nLayer * l} (budget ${Rv} × ${hp.nLayer} layers × ${l} shards, less private ones): lower --rank or --mos-private, or raise --mos-budget`;
  for (const m of c.targets) {
    const [i, o] = moduleDims(hp, m);
    if (i % l || o % l) return `MoS shards ${l} must divide the ${m} projection's dimensions (${i} in, ${o} out)`;
  }
  return null;
}

/** Shard rows of layer `il` for one side: (r − R_p)·l public ones then R_p·l private ones. */
export function drawShards(rng: Rng | null, il: number, nLayer: number, c: Pick<MosConfig, 'rank' | 'budget' | 'shards' | 'privateRank'>): Int32Array {
  const { rank: r, budget: Rv, shards: l, privateRank: Rp } = c;
  const S = (Rv - Rp) * nLayer * l;
  const pub = Array.from({ length: S }, (_, i) => i);
  const picked = (rng ? rng.shuffle(pub) : pub).slice(0, (r - Rp) * l);
  const priv = Array.from({ length: Rp * l }, (_, k) => S + il * Rp * l + k);
  return Int32Array.from([...picked, ...priv]);
}

interface ModulePools { a: Tensor; b: Tensor; inDim: number; outDim: number }
interface LayerDraw { idxA: Tensor; idxB: Tensor }

export class Mos implements Adapter {
  readonly method = 'mos' as const;
  readonly scale: number;
  readonly dropout: number;
  readonly pools = new Map<Module, ModulePools>();
  readonly draws = new Map<string, LayerDraw>();
  private readonly store = new TrainableStore();
  private readonly memo = new PerGraph<TrainedLinear>();

  constructor(readonly engine: Engine, readonly hp: Hparams, readonly cfg: MosConfig) {
    checkTargets(cfg.targets);
    const err = mosConfigError(hp, cfg);
    if (err) throw new Error(err);
    this.scale = cfg.alpha / cfg.rank;
    this.dropout = cfg.dropout ?? 0;
    const rows = cfg.budget * hp.nLayer * cfg.shards;
    for (const m of cfg.targets) {
      const [inDim, outDim] = moduleDims(hp, m);
      this.pools.set(m, {
        a: this.store.add([inDim / cfg.shards, rows], `mos.${m}.pool_a`),
        b: this.store.add([outDim / cfg.shards, rows], `mos.${m}.pool_b`),
        inDim, outDim,
      });
      for (let il = 0; il < hp.nLayer; il++) {
        const n = cfg.rank * cfg.shards;
        this.draws.set(`${il}.${m}`, { idxA: this.store.b.tensor(T.I32, [n], `mos.${il}.${m}.idx_a`), idxB: this.store.b.tensor(T.I32, [n], `mos.${il}.${m}.idx_b`) });
      }
    }
    this.store.alloc(engine, 'MoS shard pools, index draws and optimizer state');
  }

  get trainables() { return this.store.trainables; }

  /** the index draws: not trained, saved with checkpoints */
  get fixed(): Tensor[] {
    return [...this.draws.values()].flatMap((d) => [d.idxA, d.idxB]);
  }

  /** fresh pools and index draws from `seed` */
  init(seed: number) {
    const rng = new Rng(seed);
    for (const [m, p] of this.pools) {
      const bound = 1 / Math.sqrt(p.inDim);
      p.a.set(Float32Array.from({ length: p.a.elements }, () => (2 * rng.next() - 1) * bound));
      p.b.set(new Float32Array(p.b.elements));
      for (let il = 0; il < this.hp.nLayer; il++) {
        const d = this.draws.get(`${il}.${m}`)!;
        const a = drawShards(this.cfg.subset ? rng : null, il, this.hp.nLayer, this.cfg);
        d.idxA.set(a);
        let bIdx = a;
        if (this.cfg.dissociate && this.cfg.subset) bIdx = drawShards(rng, il, this.hp.nLayer, this.cfg);
        else if (this.cfg.dissociate) {
          // the same public rows as A, paired differently
          const nPub = (this.cfg.rank - this.cfg.privateRank) * this.cfg.shards;
          bIdx = Int32Array.from([...rng.shuffle(Array.from(a.subarray(0, nPub))), ...a.subarray(nPub)]);
        }
        d.idxB.set(bIdx);
      }
    }
    this.store.resetState();
  }

  linear(b: GraphBuilder, layer: number, module: Module): TrainedLinear | undefined {
    const p = this.pools.get(module);
    if (!p) return undefined;
    const d = this.draws.get(`${layer}.${module}`)!;
    return this.memo.get(b, `${layer}.${module}`, () => this.linearOf(b, p, d.idxA, d.idxB));
  }

  /** a layer's A [in, r] and Bᵀ [out, r] gathered from the shared pools by its index draws: shards →
   *  rows, get_rows gives [w, r·l] with shard j + k·r at column j + k·r; as [w, r, l] swapped to
   *  [w, l, r] and flattened, row j is shards j, j+r, …, j+(l−1)r end to end */
  private assembled(b: GraphBuilder, p: ModulePools, idxA: Tensor, idxB: Tensor) {
    const { rank: r, shards: l } = this.cfg;
    const assemble = (pool: Tensor, idx: Tensor) => {
      const w = pool.shape[0];
      return b.reshape(b.cont(b.permute(b.reshape(b.getRows(pool, idx), w, r, l), 0, 2, 1, 3)), w * l, r);
    };
    return { A: assemble(p.a, idxA), Bt: assemble(p.b, idxB) };
  }

  /** a layer's linear over its assembled A and B; gradients scatter back to the pools */
  private linearOf(b: GraphBuilder, p: ModulePools, idxA: Tensor, idxB: Tensor): TrainedLinear {
    const { rank: r, shards: l } = this.cfg;
    const scatter = (g: GraphBuilder, dRows: Tensor, pool: Tensor, idx: Tensor) => {
      const w = pool.shape[0];
      const shards = g.reshape(g.cont(g.permute(g.reshape(dRows, w, l, r), 0, 2, 1, 3)), w, r * l);
      return g.getRowsBack(shards, idx, pool); // rows drawn by several layers sum over them
    };
    const { A, Bt } = this.assembled(b, p, idxA, idxB); // [in, r], [out, r]
    return lowRankLinear(A, b.cont(b.transpose(Bt)), this.scale, (g, grads, dA, dB) => {
      addGrad(g, grads, p.a, scatter(g, dA, p.a, idxA));
      addGrad(g, grads, p.b, scatter(g, g.cont(g.transpose(dB)), p.b, idxB));
    });
  }

  /** layer `layer`'s A [in, r] and B [r, out], assembled */
  lowRank(b: GraphBuilder, layer: number, module: Module) {
    const p = this.pools.get(module);
    if (!p) return undefined;
    const d = this.draws.get(`${layer}.${module}`)!;
    const { A, Bt } = this.assembled(b, p, d.idxA, d.idxB);
    return { A, B: b.cont(b.transpose(Bt)) };
  }

  merged(b: GraphBuilder, layer: number, module: Module, W: Tensor): Tensor | undefined {
    const ab = this.lowRank(b, layer, module);
    return ab && lowRankMerged(b, W, ab.A, ab.B, this.scale);
  }

  /** streaming: a layer's own tensors are its index draws; the pools stay resident and shared */
  readonly layerwise: Layerwise = {
    own: (layer, module) => { const d = this.draws.get(`${layer}.${module}`); return d ? [d.idxA, d.idxB] : []; },
    linearOver: (b, module, [idxA, idxB]) => this.linearOf(b, this.pools.get(module)!, idxA, idxB),
  };

  free() {
    this.store.free(this.engine);
  }
}

/** MoS's settings from a run config; missing ones from the settings table (on a 32-layer model) */
export function mosSettings(c: MethodConfig): MosConfig {
  const d = trainDefaults('mos');
  return {
    rank: c.rank, alpha: c.alpha, targets: c.targets, dropout: c.dropout,
    budget: c.mosBudget ?? d.mosBudget!, shards: c.mosShards ?? d.mosShards!, privateRank: c.mosPrivate ?? d.mosPrivate!,
    subset: c.mosSubset ?? d.mosSubset!, dissociate: c.mosDissociate ?? d.mosDissociate!,
  };
}

/** MoS as a method: checkpoints hold the pools `mos.<module>.pool_a` / `.pool_b` with their moments
 *  and each layer's index draws `mos.<layer>.<module>.idx_a` / `.idx_b`; exports as the assembled
 *  per-layer LoRA pairs */
export const mos: Method = {
  name: 'mos', full: false, notLowRank: null, notStreamed: null,
  build: (engine, model, c) => new Mos(engine, model.hp, mosSettings(c)),
};
