// Encoded examples to fixed-length training windows, and the deterministic train/validation split.
// A window is T positions: the input token at each, the next token as its target, and whether
// that target counts in the loss (llm.c's inputs / targets, with a mask instead of −1).
import type { Encoded } from './tokenize.js';
import type { RowIssue } from './read.js';

export interface Window {
  input: Int32Array;
  target: Int32Array;
  /** 1 where target[i] counts in the loss */
  trained: Uint8Array;
}

export type LongPolicy = 'drop' | 'truncate';

/** Seeded PRNG state (mulberry32), serializable for checkpoints. */
export class Rng {
  constructor(public state: number) {}
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  }
}

/** Splits examples by seed: `fraction` for validation (at least one when there are 5 or more). */
export function splitExamples<T>(items: T[], fraction: number, seed: number): { train: T[]; val: T[] } {
  const order = new Rng(seed ^ 0x5eed).shuffle(items.map((_, i) => i));
  const nVal = items.length >= 5 && fraction > 0 ? Math.max(1, Math.round(items.length * fraction)) : 0;
  const val = new Set(order.slice(0, nVal));
  return { train: items.filter((_, i) => !val.has(i)), val: items.filter((_, i) => val.has(i)) };
}

/**
 * Packs examples end to end into windows of T+1 tokens (the last one padded, padding untrained),
 * a chat or completion always whole in one window, or with `pack: false` pads each example to its
 * own window(s).
 * Chats and completions longer than a window are dropped (reported) or truncated; raw text is
 * split across windows.
 */
export function packWindows(file: string, examples: Encoded[], T: number, opts: { long: LongPolicy; pad: number; isText: (e: Encoded) => boolean; pack?: boolean }): { windows: Window[]; issues: RowIssue[] } {
  const issues: RowIssue[] = [];
  const windows: Window[] = [];
  let toks: number[] = [];
  let flags: number[] = [];
  /** cuts the stream so far into windows (the last one padded, padding untrained) */
  const flush = () => {
    for (let s = 0; s + 1 < toks.length; s += T) {
      const input = new Int32Array(T).fill(opts.pad);
      const target = new Int32Array(T).fill(opts.pad);
      const trained = new Uint8Array(T);
      const n = Math.min(T + 1, toks.length - s);
      for (let i = 0; i + 1 < n; i++) {
        input[i] = toks[s + i];
        target[i] = toks[s + i + 1];
        trained[i] = flags[s + i + 1];
      }
      if (trained.some((x) => x)) windows.push({ input, target, trained });
    }
    toks = [];
    flags = [];
  };
  for (const e of examples) {
    let { tokens, trained } = e;
    if (tokens.length > T + 1 && !opts.isText(e)) {
      if (opts.long === 'drop') {
        issues.push({ file, row: e.row, reason: `is ${tokens.length} tokens, longer than the sequence length ${T + 1} (raise --seq or use --long truncate)` });
        continue;
      }
      tokens = tokens.slice(0, T + 1);
      trained = trained.slice(0, T + 1);
      if (!trained.some((x) => x)) {
        issues.push({ file, row: e.row, reason: `has no answer tokens left after truncation to ${T + 1} tokens` });
        continue;
      }
    }
    // a chat or completion never straddles two windows (its answer would lose its prompt): one that
    // does not fit in the window being filled starts the next one; raw text flows on
    if (!opts.isText(e) && toks.length + tokens.length > T + 1) flush();
    for (let i = 0; i < tokens.length; i++) { toks.push(tokens[i]); flags.push(trained[i]); }
    if (opts.pack === false) flush(); // padding: every example starts its own window
  }
  flush();
  return { windows, issues };
}
