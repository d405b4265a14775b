// Which files a caller of the lab API may touch. A path the user shared (a folder given to
// `hone serve --allow`, a file picked in a dialog or dropped on the window) may be read; Hone's own
// data folder and shared folders may be written. Every path in every API call, nested config fields
// included, is checked against that before the core sees it, with links and `..` resolved first.
//
// What is a path is declared once, in API_PATHS, typed from the API and config types themselves:
// every field of every argument must be classified, so a new field that holds a path cannot slip by
// (tsc refuses the table until the field is named here).
import { lstatSync, realpathSync } from 'node:fs';
import { dirname, isAbsolute, join, parse, resolve, sep } from 'node:path';
import type { LabApi } from './api-contract.js';

export type PathUse = 'read' | 'write';

/** how one value is checked: a path read or written, a nested config's own rules, or a plain value */
export type Rule<V> = [V] extends [string] ? PathUse | 'value'
  : [V] extends [readonly unknown[]] ? 'value'
  : [V] extends [object] ? FieldRules<V>
  : 'value';
/** one rule for every field of a config, optional fields included */
export type FieldRules<T> = { [K in keyof T]-?: Rule<NonNullable<T[K]>> };
type ArgRules<P extends readonly unknown[]> = { [I in keyof P]-?: Rule<NonNullable<P[I]>> };

const V = 'value' as const;
const R = 'read' as const;
const W = 'write' as const;

/** the path fields of every API method's arguments */
export const API_PATHS: { [M in keyof LabApi]: ArgRules<Parameters<LabApi[M]>> } = {
  inspectModel: [R],
  addModel: [R],
  listModels: [],
  discoverModels: [],
  previewDataset: [R, R, V],
  startRun: [{
    model: R, data: R, steps: V, epochs: V, lr: V, seq: V, batch: V, accum: V, schedule: V, warmup: V, evalEvery: V, saveEvery: V,
    seed: V, valFraction: V, format: V, long: V, pack: V, maxGradNorm: V, weightDecay: V,
    method: V, rank: V, alpha: V, dropout: V, targets: V, hutForm: V, mosBudget: V, mosShards: V, mosPrivate: V, mosSubset: V,
    mosDissociate: V, galoreGap: V, galoreScale: V, naturalHistory: V, naturalDamping: V, perpMasks: R, perpNorms: V,
    offload: { force: V, gpuMem: V, ram: V, ssd: W, direct: V, activations: V, state: V, overlap: V },
  }],
  pauseRun: [V],
  resumeRun: [V],
  cancelRun: [V],
  listRuns: [],
  runMetrics: [V],
  exportRun: [V, V, V],
  startCompression: [{
    model: R, out: W, prune: V, score: V, sparsity: V, pattern: V, per: V, heads: V, recover: V, quant: V, calib: R, calibSamples: V,
    calibSeq: V, eval: R, evalTokens: V, seed: V,
    retrain: { steps: V, lr: V, rank: V, alpha: V, batch: V, norms: V },
    icbs: { epochs: V, blockSize: V, maxBlocks: V },
    learnSweeps: V,
  }],
  compressionReport: [V],
  chat: [R, V, R, V],
  importFile: [V, V],
  devices: [],
};

/** a path the caller may not use; `hone serve` answers it with 403 */
export class PathRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PathRefused';
  }
}

const onWindows = process.platform === 'win32';
const key = (p: string) => (onWindows ? p.toLowerCase() : p);

/** `path` with every link resolved and every `..` taken after the link before it, as the OS would;
 *  the part that does not exist yet (a folder a run will make) is appended as written */
export function canonicalPath(path: string): string {
  const abs = isAbsolute(path) ? path : join(process.cwd(), path);
  const { root } = parse(abs);
  let cur = root;
  let missing = false;
  for (const part of abs.slice(root.length).split(/[\\/]+/)) {
    if (part === '' || part === '.') continue;
    if (part === '..') { cur = dirname(cur); continue; }
    const next = join(cur, part);
    if (!missing) {
      try {
        lstatSync(next);
        cur = realpathSync(next);
        continue;
      } catch {
        missing = true;
      }
    }
    cur = next;
  }
  return resolve(cur);
}

function inside(path: string, root: string): boolean {
  const p = key(path), r = key(root);
  return p === r || p.startsWith(r.endsWith(sep) ? r : r + sep);
}

export interface PathPolicyOptions {
  /** folders the user shared: read and written (`hone serve --allow`) */
  shared?: string[];
  /** Hone's own data folder: read and written */
  home: string;
  /** how to tell the user to share more, ending the refusal message */
  howToShare: string;
  /** files shared for reading beyond the folders (e.g. the models the user added before) */
  alsoReadable?: () => Iterable<string>;
}

export class PathPolicy {
  private readonly folders: string[];
  private readonly picked: { path: string; use: PathUse }[] = [];

  constructor(private readonly opts: PathPolicyOptions) {
    this.folders = [...(opts.shared ?? []), opts.home].map(canonicalPath);
  }

  /** a file or folder the user chose (dialog, drop, a listed discovery): readable, and writable
   *  inside when `use` is 'write' */
  share(path: string, use: PathUse = 'read') {
    this.picked.push({ path: canonicalPath(path), use });
  }

  /** the canonical path when `use` of it is allowed; otherwise PathRefused naming `where` */
  check(path: unknown, use: PathUse, where: string): string {
    if (typeof path !== 'string' || path === '') throw new PathRefused(`${where}: expected a file path, got ${JSON.stringify(path)}`);
    if (path.includes('\0')) throw new PathRefused(`${where}: a path cannot contain a NUL character`);
    const p = canonicalPath(path);
    if (this.folders.some((f) => inside(p, f))) return p;
    if (this.picked.some((x) => x.use === 'write' && inside(p, x.path))) return p;
    if (use === 'read') {
      if (this.picked.some((x) => inside(p, x.path))) return p;
      for (const f of this.opts.alsoReadable?.() ?? []) if (key(canonicalPath(f)) === key(p)) return p;
    }
    const what = use === 'read' ? 'read' : 'write to';
    throw new PathRefused(`${where}: Hone may not ${what} ${path}: it is outside the folders shared with it (${this.folders.join(', ')}); ${this.opts.howToShare}`);
  }

  /** the arguments of one API call with every path checked and made canonical; PathRefused on the
   *  first path that may not be used, or on a config field the API does not have */
  confine<M extends keyof LabApi>(method: M, args: readonly unknown[]): unknown[] {
    const rules = API_PATHS[method] as readonly unknown[] | undefined;
    if (!rules) throw new PathRefused(`no API method ${String(method)}`);
    if (args.length > rules.length) throw new PathRefused(`${method} takes at most ${rules.length} arguments, got ${args.length}`);
    return args.map((a, i) => this.apply(rules[i], a, `${method}${rules.length > 1 ? ` argument ${i + 1}` : ''}`));
  }

  private apply(rule: unknown, value: unknown, where: string): unknown {
    if (value === undefined || value === null || rule === 'value') return value;
    if (rule === 'read' || rule === 'write') return this.check(value, rule, where);
    if (typeof value !== 'object' || Array.isArray(value)) throw new PathRefused(`${where}: expected an object of settings`);
    const fields = rule as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (!Object.hasOwn(fields, k)) throw new PathRefused(`${where}: there is no setting "${k}"`);
      out[k] = this.apply(fields[k], v, `${where}.${k}`);
    }
    return out;
  }
}

/** every path field of every method as [method, argument index, field path, use]: for tests */
export function pathFields(): { method: keyof LabApi; arg: number; field: string[]; use: PathUse }[] {
  const out: { method: keyof LabApi; arg: number; field: string[]; use: PathUse }[] = [];
  const walk = (method: keyof LabApi, arg: number, rule: unknown, field: string[]) => {
    if (rule === 'read' || rule === 'write') out.push({ method, arg, field, use: rule });
    else if (rule && typeof rule === 'object') for (const [k, r] of Object.entries(rule)) walk(method, arg, r, [...field, k]);
  };
  for (const [method, rules] of Object.entries(API_PATHS) as [keyof LabApi, unknown[]][]) rules.forEach((r, i) => walk(method, i, r, []));
  return out;
}

/** one API call through the policy: its paths checked, then the core's answer; models the core
 *  discovered in LM Studio's and Ollama's folders become readable, since the user picks from them */
export async function callConfined(api: LabApi, policy: PathPolicy, method: keyof LabApi, args: readonly unknown[]): Promise<unknown> {
  const checked = policy.confine(method, args);
  const value = await (api[method] as (...a: unknown[]) => Promise<unknown>)(...checked);
  if (method === 'discoverModels') for (const m of value as { path: string }[]) policy.share(m.path, 'read');
  return value;
}
