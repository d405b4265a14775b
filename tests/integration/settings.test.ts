// The settings table (tune/settings.ts): the CLI's flags and the app's choices give the same run
// config for every method; every default lies in its own range; bad values are refused with the
// setting's name before anything is written.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { trainConfigFromArgs } from '../../electron/cli/train-args.js';
import { createLab, type Lab } from '../../electron/lab/api.js';
import { writeSampleChat } from '../../electron/lab/data/samples.js';
import { hparamsOf } from '../../electron/lab/model/llama.js';
import { readGguf } from '../../electron/lab/model/gguf.js';
import { METHODS } from '../../electron/lab/tune/method-info.js';
import { mosConfigError } from '../../electron/lab/tune/mos.js';
import { mosSettings } from '../../electron/lab/tune/methods.js';
import { runTraining, type TrainConfig } from '../../electron/lab/tune/run.js';
import { TRAIN_SETTINGS, TrainConfigError, resolveTrainConfig, settingError, trainDefaults } from '../../electron/lab/tune/settings.js';
import { testDir, tinyModel } from '../helpers/models.js';

const dir = join(testDir, `settings-${process.pid}`);
let model: string, data: string, lab: Lab;
/** what the lab hands the job manager for startRun(choices) (the job itself is not started) */
async function appConfig(choices: Record<string, unknown>): Promise<TrainConfig> {
  let captured: TrainConfig | undefined;
  lab.jobs.startTraining = (async (_id: string, _dir: string, cfg: TrainConfig) => { captured = cfg; }) as typeof lab.jobs.startTraining;
  await lab.startRun({ model, data, ...choices } as Parameters<Lab['startRun']>[0]).catch(() => {}); // no run record: the job never started
  if (!captured) throw new Error('startRun refused the choices');
  return captured;
}

beforeAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  model = tinyModel({ nLayer: 3 });
  data = writeSampleChat(join(dir, 'facts.jsonl'));
  lab = await createLab({ home: join(dir, 'home') });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('one settings table for every shell', () => {
  it('every default lies within its own setting\'s range, for every method', () => {
    for (const method of [...METHODS, 'perp' as const]) {
      const d = trainDefaults(method, { nLayer: 3 }) as unknown as Record<string, unknown>;
      for (const [key, s] of Object.entries(TRAIN_SETTINGS)) {
        const v = key.startsWith('offload.') ? undefined : d[key];
        if (v !== undefined) expect(settingError(s, v), `${method} ${key}`).toBeNull();
      }
    }
  });

  it('the CLI and the app give the same config for every method, with defaults and with choices', async () => {
    for (const method of METHODS) {
      const cli = trainConfigFromArgs(['--model', model, '--data', data, '--out', join(dir, 'x'), '--method', method]).cfg;
      expect(await appConfig({ method }), method).toEqual(cli);
      expect(cli.lr).toBe(trainDefaults(method).lr);
    }
    const flags = ['--method', 'mos', '--lr', '1e-3', '--rank', '4', '--targets', 'q,v', '--mos-budget', '2', '--mos-no-subset', '--seq', '64', '--pad', '--ram', '2G', '--ssd', join(dir, 'ssd')];
    const cli = trainConfigFromArgs(['--model', model, '--data', data, '--out', join(dir, 'x'), ...flags]).cfg;
    const app = await appConfig({ method: 'mos', lr: 1e-3, rank: 4, targets: ['q', 'v'], mosBudget: 2, mosSubset: false, seq: 64, pack: false, offload: { ram: 2 * 2 ** 30, ssd: join(dir, 'ssd') } });
    expect(app).toEqual(cli);
    expect(cli).toMatchObject({ alpha: 8, mosSubset: false, pack: false, offload: { ram: 2 ** 31 } });
  });

  it("MoS's default shard budget follows the model's depth, so its default rank builds on a 3-layer model", () => {
    const cfg = resolveTrainConfig({ model, data, method: 'mos' }, { nLayer: hparamsOf(readGguf(model)).nLayer });
    expect(cfg.mosBudget).toBe(3);
    expect(mosConfigError(hparamsOf(readGguf(model)), mosSettings(cfg))).toBeNull();
    expect(resolveTrainConfig({ model, data, method: 'mos' }, { nLayer: 32 }).mosBudget).toBe(2);
  });

  const BAD: [string[], Record<string, unknown>, RegExp][] = [
    [['--batch', '0'], { batch: 0 }, /Batch \(--batch\) must be from 1/],
    [['--seq', '0'], { seq: 0 }, /Sequence \(--seq\) must be from 8/],
    [['--accum', '0'], { accum: 0 }, /Accumulation \(--accum\) must be from 1/],
    [['--lr=-1'], { lr: -1 }, /Learning rate \(--lr\) must be above 0/],
    [['--lr', 'fast'], { lr: 'fast' }, /Learning rate \(--lr\) must be a number/],
    [['--steps', '1.5'], { steps: 1.5 }, /Steps \(--steps\) must be a whole number/],
    [['--rank', '0'], { rank: 0 }, /Rank \(--rank\) must be from 1/],
    [['--dropout', '1'], { dropout: 1 }, /Dropout \(--dropout\) must be from 0 to 0.99/],
    [['--targets', 'q,x'], { targets: ['q', 'x'] }, /Targets \(--targets\): "x" is not one of/],
    [['--schedule', 'linear'], { schedule: 'linear' }, /Schedule \(--schedule\) must be one of constant, cosine, wsd/],
    [['--steps', '10', '--epochs', '2'], { steps: 10, epochs: 2 }, /not both/],
    [['--ram', 'lots'], { offload: { ram: 'lots' } }, /RAM budget \(--ram\) must be (a size|a number)/],
  ];
  it('out-of-range and non-integer values are refused by name, in the CLI and the lab alike, before anything is written', async () => {
    for (const [flags, choices, message] of BAD) {
      const out = join(dir, 'never');
      expect(() => trainConfigFromArgs(['--model', model, '--data', data, '--out', out, ...flags]), flags.join(' ')).toThrow(message);
      await expect(lab.startRun({ model, data, ...choices } as Parameters<Lab['startRun']>[0]), JSON.stringify(choices)).rejects.toThrow(message);
      expect(existsSync(out)).toBe(false);
    }
    expect(lab.store.data.runs).toEqual([]);
    await expect(lab.startRun({ model, data, epoch: 2 } as unknown as Parameters<Lab['startRun']>[0])).rejects.toThrow(/there is no setting "epoch"/);
  });

  it('runTraining checks too, before writing: a refused run leaves no folder that blocks the corrected rerun', async () => {
    const runDir = join(dir, 'run-bad');
    await expect(runTraining({ ...trainDefaults('lora'), model, data, batch: 0 }, { runDir })).rejects.toThrow(TrainConfigError);
    expect(existsSync(runDir)).toBe(false);
    await expect(runTraining({ ...trainDefaults('mos'), model, data, rank: 16, mosBudget: 2, steps: 1 }, { runDir })).rejects.toThrow(/MoS rank 16 needs/);
    expect(existsSync(join(runDir, 'config.json'))).toBe(false);
    await runTraining({ ...trainDefaults('lora'), model, data, steps: 1, seq: 64, saveEvery: 0 }, { runDir });
    expect(existsSync(join(runDir, 'config.json'))).toBe(true);
  });
});
