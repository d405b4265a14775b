// make-tiny's native generator: the values of model/tiny.ts randn (mulberry32 and Box-Muller), row
// ranges on any number of threads, quantized as ggml quantizes the whole tensor.
import { describe, expect, it } from 'vitest';
import { native } from '../../electron/lab/engine/native.js';
import { T } from '../../electron/lab/engine/types.js';
import { randn } from '../../electron/lab/model/tiny.js';

describe('randomTensor', () => {
  it('gives randn\'s values, whatever the rows, threads and an odd row length', () => {
    for (const [rows, cols, seed, std, mean] of [[7, 33, 1, 1, 0], [64, 64, 0xdeadbeef, 0.125, 0], [5, 17, 42, 0.1, 1]] as const) {
      const want = randn(seed, rows * cols, std, mean);
      for (const threads of [1, 3, 8]) {
        const got = new Float32Array(native().randomTensor(T.F32, rows, cols, seed, std, mean, threads).buffer.slice(0));
        let ulps = 0;
        for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) ulps = Math.max(ulps, Math.abs(got[i] - want[i]) / (Math.abs(want[i]) * 2 ** -23));
        expect(ulps, `${rows}×${cols} seed ${seed}, ${threads} threads`).toBeLessThanOrEqual(1); // libm and V8 may round a last bit apart
      }
    }
  });

  it('quantizes each row as ggml quantizes the whole tensor (Q8_0, Q4_K)', () => {
    for (const [type, cols] of [[T.Q8_0, 64], [T.Q4_K, 256]] as const) {
      const rows = 9;
      const want = native().quantize(type, randn(7, rows * cols, 0.5), rows, cols);
      const got = native().randomTensor(type, rows, cols, 7, 0.5, 0, 4);
      expect(Buffer.compare(Buffer.from(got), Buffer.from(want))).toBe(0);
    }
  });
});
