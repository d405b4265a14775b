// The graph layer's contracts: ops cross N-API through the native op table, which refuses a call
// with the wrong operands or arguments by name; the training graph's nodes carry llama.cpp's names.
import { afterAll, describe, expect, it } from 'vitest';
import { openEngine } from '../../electron/lab/engine/backend.js';
import { GraphBuilder } from '../../electron/lab/engine/graph.js';
import { T } from '../../electron/lab/engine/types.js';
import { loadDataset } from '../../electron/lab/data/dataset.js';
import { LlamaModel } from '../../electron/lab/model/llama.js';
import { Lora } from '../../electron/lab/tune/lora.js';
import { InMemoryTrainer, OPTIMIZER_DEFAULTS, targetCapacity } from '../../electron/lab/tune/trainer.js';
import { factDataset } from '../helpers/fact.js';
import { testDir, tinyModel } from '../helpers/models.js';
import { join } from 'node:path';

describe('the native op table', () => {
  const b = new GraphBuilder(64);
  afterAll(() => b.free());
  const x = b.tensor(T.F32, [8, 4], 'x');
  const op = (name: string, ts: unknown[], ns: Record<string, unknown>) => () => b.ctx.op(name, ts.map((t) => (t as { h: unknown }).h) as never, ns as never);

  it('takes numbers by name', () => {
    expect(b.rmsNorm(x, 1e-5).shape).toEqual([8, 4, 1, 1]);
    expect(b.reshape(x, 4, 8).shape).toEqual([4, 8, 1, 1]);
    expect(b.view(x, [8, 2], [32], 64).shape).toEqual([8, 2, 1, 1]);
    expect(b.permute(b.reshape(x, 2, 4, 4), 0, 2, 1, 3).shape).toEqual([2, 4, 4, 1]);
  });

  it('refuses unknown ops, wrong operand counts, missing and unknown arguments, by name', () => {
    expect(op('rms_nrom', [x], { eps: 1e-5 })).toThrow('unknown op rms_nrom');
    expect(op('add', [x], {})).toThrow('add takes 2 tensors, got 1');
    expect(op('rms_norm', [x], {})).toThrow("rms_norm needs the argument 'eps'");
    expect(op('rms_norm', [x], { eps: 1e-5, epsilon: 1 })).toThrow("rms_norm has no argument 'epsilon'");
    expect(op('scale', [x], { s: 'two' })).toThrow("scale: 's' must be a number");
    expect(op('view', [x], { ne: [8, 2], nb: [], offset: 0 })).toThrow('one stride fewer');
  });
});

describe('named nodes', () => {
  it("a training step's profile names nodes as llama.cpp does, per block, gradients too", async () => {
    const model = tinyModel({ nLayer: 2 });
    const ds = await loadDataset(factDataset(join(testDir, `graph-${process.pid}`)), model, { seq: 32, valFraction: 0, seed: 1, long: 'truncate', pack: true });
    const engine = openEngine({ backend: 'cpu' });
    const m = LlamaModel.load(model, engine);
    const lora = new Lora(engine, m.hp, { rank: 4, alpha: 8, targets: ['q', 'v', 'gate'] });
    lora.init(1);
    const cap = targetCapacity(ds.train, 1);
    const trainer = new InMemoryTrainer(engine, m, lora, 1, 32, { train: cap, eval: cap }, OPTIMIZER_DEFAULTS);
    try {
      const names = new Set(trainer.profile(ds.train.slice(0, 1)).map(([, name]) => name));
      for (const n of ['inp_embd', 'blk.0.attn_norm', 'blk.0.Qcur', 'blk.1.kq_soft_max', 'blk.1.ffn_gate', 'blk.1.l_out', 'blk.1.d_ffn_inp', 'blk.1.d_inp', 'blk.0.d_kq']) {
        expect(names, n).toContain(n);
      }
    } finally {
      trainer.free(); lora.free(); m.free(); engine.free();
    }
  }, 60_000);
});
