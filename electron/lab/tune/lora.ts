// LoRA: y = W x + (α/r)·B (A x) on chosen linear layers of a frozen base of any weight type.
// A [in, r] (ggml order; rows of length `in`) starts uniform in ±1/√in as PEFT's Kaiming init,
// B [r, out] starts at zero, so training starts from the base model exactly.
import type { Engine } from '../engine/backend.js';
import { GraphBuilder, allocStatic, type Tensor } from '../engine/graph.js';
import type { AdapterHook, Hparams, Module } from '../model/llama.js';
import { Rng } from '../data/pack.js';

export const MODULES: Module[] = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'];

export interface LoraConfig {
  rank: number;
  alpha: number;
  targets: Module[];
  /** dropout on the adapter's input during training (0 = none) */
  dropout?: number;
}

/** Modules reading the same input share one dropout mask per layer (a mask per module would
 * multiply the masks JavaScript draws each step); eval graphs apply none. */
export const DROPOUT_INPUT: Record<Module, string> = { q: 'attn_in', k: 'attn_in', v: 'attn_in', o: 'attn_out', gate: 'ffn_in', up: 'ffn_in', down: 'ffn_act' };

/** [in, out] of each module's frozen weight */
export function moduleDims(hp: Hparams, m: Module): [number, number] {
  const q = hp.nHead * hp.headDim, kv = hp.nHeadKv * hp.headDim;
  switch (m) {
    case 'q': return [hp.nEmbd, q];
    case 'k': case 'v': return [hp.nEmbd, kv];
    case 'o': return [q, hp.nEmbd];
    case 'gate': case 'up': return [hp.nEmbd, hp.nFf];
    case 'down': return [hp.nFf, hp.nEmbd];
  }
}

/** llama.cpp's tensor name of each module's weight */
export const GGUF_NAMES: Record<Module, string> = {
  q: 'attn_q', k: 'attn_k', v: 'attn_v', o: 'attn_output', gate: 'ffn_gate', up: 'ffn_up', down: 'ffn_down',
};

export interface LoraPair {
  layer: number;
  module: Module;
  a: Tensor;
  b: Tensor;
}

export interface Trainable {
  name: string;
  param: Tensor;
  /** gradient accumulator, AdamW first and second moments: static, same shape as param */
  acc: Tensor;
  m: Tensor;
  v: Tensor;
}

export class Lora {
  readonly pairs: LoraPair[] = [];
  readonly trainables: Trainable[] = [];
  readonly scale: number;
  private readonly store = new GraphBuilder(1 << 12);
  private readonly bufferId: number;
  private readonly byKey = new Map<string, LoraPair>();

  constructor(readonly engine: Engine, readonly hp: Hparams, readonly cfg: LoraConfig) {
    if (!(cfg.rank >= 1)) throw new Error(`LoRA rank must be at least 1, got ${cfg.rank}`);
    const bad = cfg.targets.filter((t) => !MODULES.includes(t));
    if (bad.length || cfg.targets.length === 0) throw new Error(`LoRA targets must be some of ${MODULES.join(',')}; got "${cfg.targets.join(',')}"`);
    this.scale = cfg.alpha / cfg.rank;
    const mk = (shape: number[], name: string) => {
      const param = this.store.param(shape, name);
      const t: Trainable = {
        name,
        param,
        acc: this.store.tensor(0, shape, `${name}.acc`),
        m: this.store.tensor(0, shape, `${name}.m`),
        v: this.store.tensor(0, shape, `${name}.v`),
      };
      this.trainables.push(t);
      return param;
    };
    for (let il = 0; il < hp.nLayer; il++) {
      for (const module of cfg.targets) {
        const [inDim, outDim] = moduleDims(hp, module);
        const base = `blk.${il}.${GGUF_NAMES[module]}.weight`;
        const pair = { layer: il, module, a: mk([inDim, cfg.rank], `${base}.lora_a`), b: mk([cfg.rank, outDim], `${base}.lora_b`) };
        this.pairs.push(pair);
        this.byKey.set(`${il}.${module}`, pair);
      }
    }
    this.bufferId = allocStatic(engine, this.store, 'LoRA parameters and optimizer state');
  }

  /** fresh adapter: A uniform in ±1/√in, B and optimizer state zero */
  init(seed: number) {
    const rng = new Rng(seed);
    for (const t of this.trainables) {
      const [n0, n1] = t.param.shape;
      const n = n0 * n1;
      const isA = t.name.endsWith('lora_a');
      const bound = 1 / Math.sqrt(n0);
      t.param.set(isA ? Float32Array.from({ length: n }, () => (2 * rng.next() - 1) * bound) : new Float32Array(n));
      t.m.set(new Float32Array(n));
      t.v.set(new Float32Array(n));
      t.acc.set(new Float32Array(n));
    }
  }

  pair(layer: number, module: Module): LoraPair | undefined {
    return this.byKey.get(`${layer}.${module}`);
  }

  get parameterCount(): number {
    return this.trainables.reduce((s, t) => s + t.param.elements, 0);
  }

  /** y + s·B(A·x), without dropout (evaluation; training builds its graph in model/backward.ts) */
  readonly hook: AdapterHook = (b, layer, module, x, y) => {
    const p = this.byKey.get(`${layer}.${module}`);
    return p ? b.add(y, b.scale(b.mulMat(p.b, b.mulMat(p.a, x)), this.scale)) : y;
  };

  free() {
    this.engine.native.freeBuffer(this.bufferId);
    this.store.free();
  }
}
