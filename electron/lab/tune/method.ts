// What a training method is to the rest of Hone: one module per method (lora.ts, hut.ts, mos.ts,
// perp.ts, galore.ts) exports one `Method`, and the registry (methods.ts) lists them. The method's
// adapter (adapter.ts) carries its graph pieces: the trained linear for training and, for export
// and compression, its merge into the base weights, built from the same tensors on ggml.
import type { Engine } from '../engine/backend.js';
import type { LlamaModel, ModelHeader, Module } from '../model/llama.js';
import type { Adapter } from './adapter.js';
import type { HutForm } from './hut.js';
import type { MethodName } from './method-info.js';
import type { OptimizerConfig } from './trainer.js';

/** the method-specific part of a run's configuration */
export interface MethodConfig {
  method: MethodName;
  rank: number;
  alpha: number;
  dropout: number;
  targets: Module[];
  /** HUT: which reading of the transformation */
  hutForm?: HutForm;
  /** MoS: R_v, l, R_p and the subset-selection / pair-dissociation switches */
  mosBudget?: number;
  mosShards?: number;
  mosPrivate?: number;
  mosSubset?: boolean;
  mosDissociate?: boolean;
  /** GaLore: T (steps between projector refreshes) and α (update scale); Natural GaLore: s and λ */
  galoreGap?: number;
  galoreScale?: number;
  naturalHistory?: number;
  naturalDamping?: number;
  /** PERP: the pruning stage's masks.gguf, and whether norms and biases train too */
  perpMasks?: string;
  perpNorms?: boolean;
}

/** The model a method is built on: its header, read once per run, and the weights when loaded. */
export interface ModelView extends ModelHeader {
  /** the weights on the engine's device; absent when the blocks stream from the file, or for export */
  loaded?: LlamaModel;
}

export interface Method {
  readonly name: MethodName;
  /** trains every weight: the model loads with F32 master weights, checkpoints hold each trained
   *  weight under its own GGUF name, and the merge replaces the base's weights with them */
  readonly full: boolean;
  /** why its trained change is not an added low-rank pair, so it has no llama.cpp adapter GGUF or
   *  PEFT form (every method exports merged); null when it is one */
  readonly notLowRank: string | null;
  /** why streaming training (out of core) cannot run it yet, or null */
  readonly notStreamed: string | null;
  /** its adapter on a model, not yet initialised. Full-parameter methods need `model.loaded`
   *  (loaded with `master`); the others only the header, so export builds them without the weights. */
  build(engine: Engine, model: ModelView, c: MethodConfig, opt: OptimizerConfig): Adapter;
}
