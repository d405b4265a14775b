// Every setting of a training run in one table, in the spirit of nanoGPT's train.py: its name, type,
// default (per method where methods differ, from the sweep in bench/defaults.ts), range and help.
// The CLI's flags and usage text, the app's Train form, and the check every shell's config passes
// (`resolveTrainConfig`, which the lab API runs on every call) are all read from here, so the same
// choices give the same run in every shell. Plain data: the renderer imports it.
import type { Shape } from '../data/shape.js';
import type { LongPolicy } from '../data/pack.js';
import type { ActivationChoice } from '../offload/plan.js';
import type { StateHome } from './block-state.js';
import type { ScheduleName } from './schedule.js';
import { HUT_FORM_INFO, METHODS, MODULES, type MethodName } from './method-info.js';
import type { OffloadConfig, TrainConfig } from './run.js';

export type Value = number | string | boolean | string[];
/** what a default may depend on: the method, the model's depth, and the settings resolved before it */
export interface DefaultContext { method: MethodName; nLayer?: number; resolved: Record<string, unknown> }

export interface Setting {
  /** the command-line flag (without --) */
  flag: string;
  /** the name a person reads (the app's label) */
  label: string;
  kind: 'int' | 'number' | 'bool' | 'choice' | 'list' | 'path' | 'bytes';
  choices?: readonly string[];
  min?: number;
  /** the smallest value is excluded (a rate above zero) */
  above?: boolean;
  max?: number;
  /** absent: no default (the setting stays unset unless given) */
  default?: Value | ((c: DefaultContext) => Value | undefined);
  /** the only methods whose configs carry it (absent: every config carries it) */
  methods?: readonly MethodName[];
  /** the methods that read it, where every config carries it anyway (the app shows it for these) */
  readBy?: readonly MethodName[];
  /** a boolean the CLI spells as its negation (`--pad` for pack: false) */
  cliNegation?: string;
  help: string;
  /** shown on the app's Train form (the rest keep their defaults there) */
  app?: boolean;
}

type RunKey = Exclude<keyof TrainConfig, 'model' | 'data' | 'offload'>;
type OffloadKey = `offload.${keyof OffloadConfig}`;
export type SettingKey = RunKey | OffloadKey;

const ADAPTERS: MethodName[] = ['lora', 'hut', 'mos', 'perp'];
const GALORE: MethodName[] = ['galore', 'natural-galore'];

/** learning rates per method: the lowest of the sweep's candidates whose 300 steps on a 3-layer model
 *  taught all three sample facts (bench/defaults.ts; docs/benchmarks.md has the table). LoRA keeps the
 *  usual 2e-4, which the sweep confirms (1e-4 recalls none); PERP's is its compression default. */
export const LEARNING_RATES: Record<MethodName, number> = {
  lora: 2e-4, hut: 1e-3, mos: 5e-4, galore: 3e-4, 'natural-galore': 3e-4, full: 3e-5, perp: 5e-4,
};

/** every setting of a run; a new field of TrainConfig does not compile until it is here */
export const TRAIN_SETTINGS: { [K in SettingKey]: Setting } = {
  method: { flag: 'method', label: 'Method', kind: 'choice', choices: [...METHODS, 'perp'], default: 'lora', help: 'how the model is trained (docs/methods.md)', app: true },
  steps: { flag: 'steps', label: 'Steps', kind: 'int', min: 1, max: 10_000_000, help: 'optimizer steps (default: one epoch; give steps or epochs, not both)', app: true },
  epochs: { flag: 'epochs', label: 'Epochs', kind: 'number', min: 0, above: true, max: 10_000, help: 'passes over the training windows, instead of steps' },
  lr: { flag: 'lr', label: 'Learning rate', kind: 'number', min: 0, above: true, max: 1, default: ({ method }) => LEARNING_RATES[method], help: 'peak learning rate (default per method)', app: true },
  rank: {
    flag: 'rank', label: 'Rank', kind: 'int', min: 1, max: 65_536, default: ({ method }) => (GALORE.includes(method) ? 64 : method === 'perp' ? 16 : 8),
    readBy: [...ADAPTERS, ...GALORE], help: 'adapter rank r; GaLore: the rank of each gradient projection', app: true,
  },
  alpha: { flag: 'alpha', label: 'Alpha', kind: 'number', min: 0, above: true, max: 1e6, default: ({ resolved }) => 2 * (resolved.rank as number), readBy: ADAPTERS, help: "scale α: the adapter's output is multiplied by α / r (default 2r)", app: true },
  dropout: { flag: 'dropout', label: 'Dropout', kind: 'number', min: 0, max: 0.99, default: 0, readBy: ADAPTERS, help: "dropout on each adapter's input" },
  targets: { flag: 'targets', label: 'Targets', kind: 'list', choices: MODULES, default: [...MODULES], readBy: ADAPTERS, help: 'the linear layers adapted, a comma list' },
  seq: { flag: 'seq', label: 'Sequence', kind: 'int', min: 8, max: 131_072, default: 256, help: 'tokens per training window', app: true },
  batch: { flag: 'batch', label: 'Batch', kind: 'int', min: 1, max: 4096, default: 4, help: 'windows per micro-batch', app: true },
  accum: { flag: 'accum', label: 'Accumulation', kind: 'int', min: 1, max: 4096, default: 1, help: 'micro-batches per optimizer step' },
  schedule: { flag: 'schedule', label: 'Schedule', kind: 'choice', choices: ['constant', 'cosine', 'wsd'] satisfies ScheduleName[], default: 'cosine', help: 'how the learning rate changes over the run', app: true },
  warmup: { flag: 'warmup', label: 'Warm-up steps', kind: 'int', min: 0, max: 10_000_000, default: 0, help: 'steps of linear warm-up' },
  evalEvery: { flag: 'eval-every', label: 'Validate every', kind: 'int', min: 0, max: 10_000_000, default: 50, help: 'steps between validation losses (0: never)' },
  saveEvery: { flag: 'save-every', label: 'Save every', kind: 'int', min: 0, max: 10_000_000, default: 100, help: 'steps between checkpoints (0: only at the end)' },
  seed: { flag: 'seed', label: 'Seed', kind: 'int', min: 0, max: 2 ** 31 - 1, default: 1, help: 'seed of the data order, the adapter init and dropout' },
  valFraction: { flag: 'val', label: 'Validation share', kind: 'number', min: 0, max: 0.9, default: 0.1, help: 'share of the examples held out for validation' },
  format: { flag: 'format', label: 'Format', kind: 'choice', choices: ['chat', 'instruction', 'completion', 'text'] satisfies Shape[], help: "the dataset's shape (default: detected)" },
  long: { flag: 'long', label: 'Long examples', kind: 'choice', choices: ['drop', 'truncate'] satisfies LongPolicy[], default: 'drop', help: 'what to do with examples longer than a window' },
  pack: { flag: 'pack', label: 'Pack examples', kind: 'bool', default: true, cliNegation: 'pad', help: 'several examples per window (--pad: one example per window, padded)' },
  maxGradNorm: { flag: 'max-grad-norm', label: 'Gradient clip', kind: 'number', min: 0, max: 1e6, default: 1, help: 'global gradient norm clipped to this (0: no clipping)' },
  weightDecay: { flag: 'weight-decay', label: 'Weight decay', kind: 'number', min: 0, max: 10, default: 0, help: "AdamW's decoupled weight decay" },
  hutForm: { flag: 'hut-form', label: 'HUT form', kind: 'choice', choices: Object.keys(HUT_FORM_INFO), default: 'scaling', methods: ['hut'], help: 'scaling: rows and columns of W rescaled; hadamard: W ⊙ (1 + s·BA)', app: true },
  mosBudget: {
    flag: 'mos-budget', label: 'MoS budget', kind: 'int', min: 1, max: 65_536, methods: ['mos'], app: true,
    // the pools must hold the rank's public shards: budget × layers ≥ rank (fewer layers, more budget)
    default: ({ nLayer, resolved }) => Math.max(2, Math.ceil((resolved.rank as number) / (nLayer ?? 32))),
    help: 'R_v: the LoRA rank whose parameter count the shard pools match (default 2, more on shallow models)',
  },
  mosShards: { flag: 'mos-shards', label: 'MoS shards', kind: 'int', min: 1, max: 64, default: 2, methods: ['mos'], help: 'l: shards per rank vector (1: no vector sharding)', app: true },
  mosPrivate: { flag: 'mos-private', label: 'MoS private rank', kind: 'int', min: 0, max: 65_536, default: 0, methods: ['mos'], help: 'R_p: private rank per layer (0: no privatization)', app: true },
  mosSubset: { flag: 'mos-subset', label: 'MoS subset selection', kind: 'bool', default: true, cliNegation: 'mos-no-subset', methods: ['mos'], help: 'each layer draws its own public shards' },
  mosDissociate: { flag: 'mos-dissociate', label: 'MoS pair dissociation', kind: 'bool', default: true, cliNegation: 'mos-no-dissociate', methods: ['mos'], help: "B's shards drawn apart from A's" },
  galoreGap: { flag: 'galore-gap', label: 'Projector refresh', kind: 'int', min: 1, max: 10_000_000, default: 200, methods: GALORE, help: 'T: steps between GaLore projector refreshes', app: true },
  galoreScale: { flag: 'galore-scale', label: 'GaLore scale', kind: 'number', min: 0, above: true, max: 100, default: 0.25, methods: GALORE, help: 'α: scale of the projected update', app: true },
  naturalHistory: { flag: 'natural-history', label: 'Fisher history', kind: 'int', min: 1, max: 1000, default: 20, methods: ['natural-galore'], help: 'Natural GaLore: s, the gradients the Fisher estimate keeps', app: true },
  naturalDamping: { flag: 'natural-damping', label: 'Fisher damping', kind: 'number', min: 0, above: true, max: 1e3, default: 1e-3, methods: ['natural-galore'], help: 'Natural GaLore: λ, damping of the inverse Fisher', app: true },
  perpMasks: { flag: 'perp-masks', label: 'PERP masks', kind: 'path', methods: ['perp'], help: "PERP: the pruning stage's masks.gguf" },
  perpNorms: { flag: 'perp-norms', label: 'PERP norms', kind: 'bool', default: true, methods: ['perp'], help: 'PERP: norms and biases train too' },
  'offload.force': { flag: 'offload', label: 'Stream from disk', kind: 'bool', help: 'stream the blocks even when they fit', app: true },
  'offload.gpuMem': { flag: 'gpu-mem', label: 'Device budget', kind: 'bytes', min: 1, help: 'device memory the run may use (6G; default: what the device has)', app: true },
  'offload.ram': { flag: 'ram', label: 'RAM budget', kind: 'bytes', min: 1, help: 'RAM the run may use (8G; default: what the machine has)', app: true },
  'offload.ssd': { flag: 'ssd', label: 'SSD folder', kind: 'path', help: 'a folder on a fast SSD for state that does not fit in memory', app: true },
  'offload.direct': { flag: 'direct-io', label: 'Direct reads', kind: 'bool', help: 'O_DIRECT reads of the model file (default on)' },
  'offload.activations': { flag: 'activations', label: 'Activations', kind: 'choice', choices: ['keep', 'swap', 'recompute'] satisfies ActivationChoice[], help: "override the plan's choice for activations (tests, bench)" },
  'offload.state': { flag: 'state', label: 'State home', kind: 'choice', choices: ['ram', 'ssd'] satisfies StateHome[], help: "full-parameter training: override where the blocks' state lives (tests, bench)" },
  'offload.overlap': { flag: 'overlap', label: 'Overlap optimizer', kind: 'bool', help: "run each block's optimizer step beside the device (default: on GPUs)" },
};

export const SETTING_KEYS = Object.keys(TRAIN_SETTINGS) as SettingKey[];

/** a setting's value in a config (offload.* inside `offload`) */
function read(cfg: Record<string, unknown>, key: SettingKey): unknown {
  if (!key.startsWith('offload.')) return cfg[key];
  return (cfg.offload as Record<string, unknown> | undefined)?.[key.slice(8)];
}

function write(cfg: Record<string, unknown>, key: SettingKey, value: unknown) {
  if (!key.startsWith('offload.')) { cfg[key] = value; return; }
  const offload = (cfg.offload ??= {}) as Record<string, unknown>;
  offload[key.slice(8)] = value;
}

/** why `value` is not a valid value of setting `s`, or null */
export function settingError(s: Setting, value: unknown): string | null {
  const name = `${s.label} (--${s.flag})`;
  const range = () => `${s.min !== undefined ? `${s.above ? 'above' : 'from'} ${s.min}` : ''}${s.max !== undefined ? `${s.min !== undefined ? ' ' : ''}${s.above && s.min !== undefined ? 'up ' : ''}to ${s.max}` : ''}`;
  switch (s.kind) {
    case 'int':
    case 'number':
    case 'bytes': {
      if (typeof value !== 'number' || !Number.isFinite(value)) return `${name} must be a number, got ${JSON.stringify(value)}`;
      if ((s.kind === 'int' || s.kind === 'bytes') && !Number.isInteger(value)) return `${name} must be a whole number, got ${value}`;
      const low = s.min !== undefined && (s.above ? value <= s.min : value < s.min);
      if (low || (s.max !== undefined && value > s.max)) return `${name} must be ${range()}, got ${value}`;
      return null;
    }
    case 'bool':
      return typeof value === 'boolean' ? null : `${name} must be true or false, got ${JSON.stringify(value)}`;
    case 'choice':
      return typeof value === 'string' && s.choices!.includes(value) ? null : `${name} must be one of ${s.choices!.join(', ')}, got ${JSON.stringify(value)}`;
    case 'list':
      if (!Array.isArray(value) || value.length === 0) return `${name} must be a non-empty list of ${s.choices!.join(', ')}`;
      for (const v of value) if (!s.choices!.includes(v)) return `${name}: "${v}" is not one of ${s.choices!.join(', ')}`;
      return new Set(value).size === value.length ? null : `${name} names a layer twice: ${value.join(',')}`;
    case 'path':
      return typeof value === 'string' && value.length > 0 ? null : `${name} must be a path, got ${JSON.stringify(value)}`;
  }
}

/** the table's defaults for `method` on a model of `nLayer` blocks, for the settings that method reads */
export function trainDefaults(method: MethodName, model: { nLayer?: number } = {}): Omit<TrainConfig, 'model' | 'data'> {
  return resolveTrainConfig({ method }, model, { partial: true }) as Omit<TrainConfig, 'model' | 'data'>;
}

/** a refused configuration: every problem, one per line */
export class TrainConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.length === 1 ? problems[0] : `the run's settings have ${problems.length} problems:\n  ${problems.join('\n  ')}`);
    this.name = 'TrainConfigError';
  }
}

/**
 * A whole run configuration from what a shell was given: the given values checked against the
 * table, each missing one from its (method's) default; settings the method does not read are
 * dropped. TrainConfigError lists every problem, before anything is written or opened.
 */
export function resolveTrainConfig(given: Record<string, unknown>, model: { nLayer?: number } = {}, opts: { partial?: boolean } = {}): TrainConfig {
  const problems: string[] = [];
  for (const k of Object.keys(given)) {
    if (k === 'model' || k === 'data') continue;
    if (k === 'offload') {
      const o = given.offload;
      if (o !== undefined && (typeof o !== 'object' || o === null || Array.isArray(o))) problems.push('offload must be an object of memory settings');
      else for (const ok of Object.keys(o ?? {})) if (!(`offload.${ok}` in TRAIN_SETTINGS)) problems.push(`there is no memory setting "${ok}"`);
      continue;
    }
    if (!(k in TRAIN_SETTINGS)) problems.push(`there is no setting "${k}"`);
  }
  const method = (given.method ?? TRAIN_SETTINGS.method.default) as MethodName;
  const methodError = settingError(TRAIN_SETTINGS.method, method);
  if (methodError) throw new TrainConfigError([methodError, ...problems]);
  const out: Record<string, unknown> = {};
  if (!opts.partial) {
    for (const k of ['model', 'data'] as const) {
      if (typeof given[k] !== 'string' || given[k] === '') problems.push(`the ${k === 'model' ? 'model (--model)' : 'dataset (--data)'} must be a path, got ${JSON.stringify(given[k])}`);
      else out[k] = given[k];
    }
  }
  for (const key of SETTING_KEYS) {
    const s = TRAIN_SETTINGS[key];
    if (s.methods && !s.methods.includes(method)) continue;
    let value = read(given, key);
    if (value === undefined || value === null) {
      value = typeof s.default === 'function' ? s.default({ method, nLayer: model.nLayer, resolved: out }) : s.default;
      if (Array.isArray(value)) value = [...value];
    } else {
      const e = settingError(s, value);
      if (e) { problems.push(e); continue; }
    }
    if (value !== undefined) write(out, key, value);
  }
  if (out.steps !== undefined && out.epochs !== undefined) problems.push('give Steps (--steps) or Epochs (--epochs), not both');
  if (out.method === 'mos' && (out.mosPrivate as number) > Math.min(out.mosBudget as number, out.rank as number)) problems.push(`MoS private rank (--mos-private) ${out.mosPrivate} cannot exceed the budget (${out.mosBudget}) or the rank (${out.rank})`);
  if (problems.length) throw new TrainConfigError(problems);
  return out as unknown as TrainConfig;
}

/** the settings as `node:util` parseArgs options (booleans under their CLI spelling) */
export function cliOptions(): Record<string, { type: 'string' | 'boolean' }> {
  const o: Record<string, { type: 'string' | 'boolean' }> = {};
  for (const s of Object.values(TRAIN_SETTINGS)) {
    if (s.kind === 'bool') o[s.cliNegation ?? s.flag] = { type: 'boolean' };
    else o[s.flag] = { type: 'string' };
  }
  return o;
}

/** given values from parsed flags (strings as typed), or a message naming the flag */
export function fromFlags(values: Record<string, string | boolean | undefined>, parseBytes: (s: string) => number): Record<string, unknown> {
  const given: Record<string, unknown> = {};
  for (const key of SETTING_KEYS) {
    const s = TRAIN_SETTINGS[key];
    if (s.kind === 'bool') {
      if (values[s.cliNegation ?? s.flag]) write(given, key, !s.cliNegation);
      continue;
    }
    const raw = values[s.flag];
    if (typeof raw !== 'string') continue;
    let v: unknown = raw;
    if (s.kind === 'int' || s.kind === 'number') v = raw.trim() === '' ? NaN : Number(raw);
    else if (s.kind === 'bytes') {
      try { v = parseBytes(raw); } catch { v = NaN; }
      if (!Number.isFinite(v as number)) throw new TrainConfigError([`${s.label} (--${s.flag}) must be a size such as 512M or 8G, got "${raw}"`]);
    } else if (s.kind === 'list') v = raw.split(',').map((x) => x.trim()).filter(Boolean);
    if ((s.kind === 'int' || s.kind === 'number') && !Number.isFinite(v as number)) throw new TrainConfigError([`${s.label} (--${s.flag}) must be a number, got "${raw}"`]);
    write(given, key, v);
  }
  return given;
}

/** usage lines for `hone train`: every setting with its default (LR per method) */
export function usageText(): string {
  const lines: string[] = [];
  for (const s of Object.values(TRAIN_SETTINGS)) {
    const flag = s.kind === 'bool' ? `--${s.cliNegation ?? s.flag}` : `--${s.flag} ${s.kind === 'choice' || s.kind === 'list' ? s.choices!.join(s.kind === 'list' ? ',' : '|') : s.kind === 'path' ? '<folder or file>' : s.kind === 'bytes' ? '<size>' : 'N'}`;
    const dflt = typeof s.default === 'function' || s.default === undefined || s.kind === 'bool' ? '' : ` (default ${Array.isArray(s.default) ? s.default.join(',') : s.default})`;
    const only = s.methods ?? s.readBy ? ` [${(s.methods ?? s.readBy)!.join(', ')}]` : '';
    lines.push(`      ${flag.padEnd(40)} ${s.help}${dflt}${only}`);
  }
  lines.push(`      learning rates by method: ${Object.entries(LEARNING_RATES).map(([m, lr]) => `${m} ${lr}`).join(', ')}`);
  return lines.join('\n');
}
