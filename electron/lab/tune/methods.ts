// The training methods by name, their settings, and the adapter each builds on a loaded model.
import type { Engine } from '../engine/backend.js';
import type { LlamaModel } from '../model/llama.js';
import { FullModel } from './galore.js';
import type { OptimizerConfig } from './trainer.js';
import type { Adapter } from './adapter.js';
import { HUT_FORMS, Hut, type HutForm } from './hut.js';
import { Lora } from './lora.js';
import { Perp } from './perp.js';
import { Mos } from './mos.js';
import { trainDefaults } from './settings.js';
import { METHODS, type MethodName } from './method-info.js';

export { METHODS, METHOD_INFO, type MethodName } from './method-info.js';

/** the method-specific part of a run's configuration */
export interface MethodConfig {
  method: MethodName;
  rank: number;
  alpha: number;
  dropout: number;
  targets: import('../model/llama.js').Module[];
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

/** methods that train every weight: the model is loaded with F32 master weights */
export const isFullParameter = (m: MethodName) => m === 'full' || m === 'galore' || m === 'natural-galore';

/** GaLore's settings from a run config; missing ones from the settings table (Natural GaLore's
 *  defaults hold all four, so full AdamW gets numbers there too, unused) */
export function galoreSettings(c: MethodConfig) {
  const d = trainDefaults('natural-galore');
  return {
    method: c.method as 'full' | 'galore' | 'natural-galore', rank: c.rank, updateGap: c.galoreGap ?? d.galoreGap!,
    scale: c.galoreScale ?? d.galoreScale!, history: c.naturalHistory ?? d.naturalHistory!, damping: c.naturalDamping ?? d.naturalDamping!,
  };
}

/** MoS's settings from a run config; missing ones from the settings table (on a 32-layer model) */
export function mosSettings(c: MethodConfig) {
  const d = trainDefaults('mos');
  return {
    rank: c.rank, alpha: c.alpha, targets: c.targets, dropout: c.dropout,
    budget: c.mosBudget ?? d.mosBudget!, shards: c.mosShards ?? d.mosShards!, privateRank: c.mosPrivate ?? d.mosPrivate!,
    subset: c.mosSubset ?? d.mosSubset!, dissociate: c.mosDissociate ?? d.mosDissociate!,
  };
}

/** the method's adapter on a model (loaded with `master` for full-parameter methods), not yet initialised */
export function makeAdapter(engine: Engine, model: LlamaModel, c: MethodConfig, opt: OptimizerConfig): Adapter {
  const hp = model.hp;
  switch (c.method) {
    case 'lora':
      return new Lora(engine, hp, { rank: c.rank, alpha: c.alpha, targets: c.targets, dropout: c.dropout });
    case 'hut': {
      if (c.dropout > 0) throw new Error('HUT transforms the weight itself and has no separate input path to drop out: set --dropout 0 (dropout applies to LoRA and MoS)');
      const form = c.hutForm ?? 'scaling';
      if (!HUT_FORMS.includes(form)) throw new Error(`--hut-form must be ${HUT_FORMS.join(' or ')}, got "${form}"`);
      return new Hut(engine, hp, { rank: c.rank, alpha: c.alpha, targets: c.targets, form });
    }
    case 'mos':
      return new Mos(engine, hp, mosSettings(c));
    case 'perp':
      if (c.dropout > 0) throw new Error('PERP trains without dropout (as the reference does): set --dropout 0');
      return new Perp(engine, hp, model.weights, { rank: c.rank, alpha: c.alpha, targets: c.targets, masks: c.perpMasks, norms: c.perpNorms });
    case 'full': case 'galore': case 'natural-galore':
      if (c.dropout > 0) throw new Error(`--dropout applies to adapter methods (LoRA, MoS), not to ${c.method}`);
      return new FullModel(engine, model, galoreSettings(c), opt);
    default:
      throw new Error(`unknown method "${(c as { method: string }).method}"; choose one of ${METHODS.join(', ')}`);
  }
}
