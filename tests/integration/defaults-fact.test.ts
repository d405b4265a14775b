// Defaults that work: every method, with nothing set but the number of steps, teaches the demo's
// made-up facts to a 3-layer chat model, and llama.cpp (node-llama-cpp) answers each fact greedily
// from the merged export. The settings come from the table (tune/settings.ts), whose per-method
// defaults the sweep in bench/defaults.ts chose on this same model and data.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SWEEP_MODEL, SWEEP_STEPS, factChecks } from '../../bench/defaults.js';
import { writeSampleChat } from '../../electron/lab/data/samples.js';
import { openChat } from '../../electron/lab/eval/chat.js';
import { exportMergedGguf, loadTrainedRun } from '../../electron/lab/export/run-export.js';
import { METHODS } from '../../electron/lab/tune/method-info.js';
import { runTraining } from '../../electron/lab/tune/run.js';
import { trainDefaults } from '../../electron/lab/tune/settings.js';
import { testDir, tinyModel } from '../helpers/models.js';

const dir = join(testDir, `defaults-${process.pid}`);

describe('every method learns the sample facts with the table\'s defaults', () => {
  for (const method of METHODS) {
    it(method, async () => {
      mkdirSync(dir, { recursive: true });
      const model = tinyModel({ ...SWEEP_MODEL, type: 'q8_0' });
      const data = writeSampleChat(join(dir, 'facts.jsonl'));
      const runDir = join(dir, method);
      rmSync(runDir, { recursive: true, force: true });
      const losses: number[] = [];
      await runTraining({ ...trainDefaults(method, { nLayer: SWEEP_MODEL.nLayer }), model, data, steps: SWEEP_STEPS }, { runDir, onEvent: (e) => { if (e.type === 'step') losses.push(e.loss); } });
      expect(losses[losses.length - 1]).toBeLessThan(losses[0] / 10);
      const merged = join(runDir, 'merged.gguf');
      exportMergedGguf(loadTrainedRun(runDir), merged, 'f16', true);
      for (const f of factChecks()) {
        const chat = await openChat(merged);
        const answer = await chat.ask(f.question, 24);
        await chat.dispose();
        expect(answer, f.question).toContain(f.key);
      }
      rmSync(runDir, { recursive: true, force: true });
    }, 600_000);
  }
});
