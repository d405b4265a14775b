// Every batch the training stream draws fits the loss graph's target capacity, across epochs
// (a batch straddling two epochs can repeat a window).
import { describe, expect, it } from 'vitest';
import type { Window } from '../../electron/lab/data/pack.js';
import { windowAt } from '../../electron/lab/tune/run.js';
import { targetCapacity } from '../../electron/lab/tune/trainer.js';

describe('training batches', () => {
  it('never hold more targets than the capacity the graph is built with', () => {
    // one window with many targets, the rest with few: a batch holding the big one twice is the worst
    const windows: Window[] = Array.from({ length: 10 }, (_, k) => {
      const trained = new Uint8Array(64).fill(1, 0, k === 0 ? 60 : 5);
      return { input: new Int32Array(64), target: new Int32Array(64), trained };
    });
    const B = 4;
    const cap = targetCapacity(windows, B);
    const orders = new Map<number, number[]>();
    let most = 0;
    for (let p = 0; p < 2000; p += B) {
      let n = 0;
      for (let i = 0; i < B; i++) n += windowAt(windows, 1, p + i, orders).trained.reduce((a, b) => a + b, 0);
      most = Math.max(most, n);
    }
    expect(most).toBeGreaterThan(60 + 3 * 5); // the stream does draw such a batch
    expect(most).toBeLessThanOrEqual(cap);
  });
});
