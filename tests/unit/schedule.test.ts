// Learning-rate schedules: warmup, cosine and warmup-stable-decay hit their defining points.
import { describe, expect, it } from 'vitest';
import { lrAt, type Schedule } from '../../electron/lab/tune/schedule.js';

describe('learning-rate schedules', () => {
  const base = { lr: 1e-3, warmup: 10, total: 110, minRatio: 0.1 };

  it('warm up linearly from lr/warmup to lr', () => {
    for (const name of ['constant', 'cosine', 'wsd'] as const) {
      const s: Schedule = { ...base, name };
      expect(lrAt(s, 1)).toBeCloseTo(1e-4, 12);
      expect(lrAt(s, 5)).toBeCloseTo(5e-4, 12);
      expect(lrAt(s, 10)).toBeCloseTo(1e-3, 12);
    }
  });

  it('constant stays; cosine falls to min at the end through the midpoint average', () => {
    expect(lrAt({ ...base, name: 'constant' }, 110)).toBe(1e-3);
    const c: Schedule = { ...base, name: 'cosine' };
    expect(lrAt(c, 60)).toBeCloseTo((1e-3 + 1e-4) / 2, 12);
    expect(lrAt(c, 110)).toBeCloseTo(1e-4, 12);
    for (let t = 11; t < 110; t++) expect(lrAt(c, t + 1)).toBeLessThanOrEqual(lrAt(c, t));
  });

  it('warmup-stable-decay holds lr until the last 20% of steps, then decays linearly to min', () => {
    const w: Schedule = { ...base, name: 'wsd' };
    expect(lrAt(w, 88)).toBe(1e-3);
    expect(lrAt(w, 99)).toBeCloseTo(1e-3 + (1e-4 - 1e-3) * (11 / 22), 12);
    expect(lrAt(w, 110)).toBeCloseTo(1e-4, 12);
  });
});
