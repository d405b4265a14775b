// Learning-rate schedules: constant, cosine with linear warmup, warmup-stable-decay.
export type ScheduleName = 'constant' | 'cosine' | 'wsd';
export const SCHEDULES: ScheduleName[] = ['constant', 'cosine', 'wsd'];

export interface Schedule {
  name: ScheduleName;
  lr: number;
  warmup: number;
  total: number;
  /** cosine and WSD decay to lr·minRatio */
  minRatio?: number;
  /** WSD: the last fraction of steps decays (default 0.2) */
  decayFraction?: number;
}

/** learning rate for optimizer step `step` (1-based) */
export function lrAt(s: Schedule, step: number): number {
  const min = s.lr * (s.minRatio ?? 0.1);
  if (s.warmup > 0 && step <= s.warmup) return (s.lr * step) / s.warmup;
  if (s.name === 'constant') return s.lr;
  if (s.name === 'cosine') {
    const p = Math.min(1, (step - s.warmup) / Math.max(1, s.total - s.warmup));
    return min + (s.lr - min) * 0.5 * (1 + Math.cos(Math.PI * p));
  }
  const decaySteps = Math.max(1, Math.round(s.total * (s.decayFraction ?? 0.2)));
  const decayStart = s.total - decaySteps;
  if (step <= decayStart) return s.lr;
  return s.lr + (min - s.lr) * Math.min(1, (step - decayStart) / decaySteps);
}
