// Hone's table of ggml types agrees with the ggml library it runs on.
import { describe, expect, it } from 'vitest';
import { native } from '../../electron/lab/engine/native.js';
import { GGML_TYPES } from '../../electron/lab/engine/types.js';

describe('ggml types', () => {
  it('block sizes, bytes per block and names match ggml', () => {
    for (const t of GGML_TYPES.values()) {
      const info = native().typeInfo(t.id);
      expect(info, t.name).not.toBeNull();
      expect({ name: info!.name.toUpperCase(), blockSize: info!.blockSize, typeSize: info!.typeSize }).toEqual({ name: t.name, blockSize: t.blockSize, typeSize: t.typeSize });
    }
  });

  it('quantize then dequantize stays close to the input for 8-bit types', () => {
    const x = Float32Array.from({ length: 256 }, (_, i) => Math.sin(i));
    const back = native().dequantize(8, native().quantize(8, x, 1, 256), 256);
    const err = Math.max(...x.map((v, i) => Math.abs(v - back[i])));
    expect(err).toBeGreaterThan(0);
    expect(err).toBeLessThan(1 / 127);
  });
});
