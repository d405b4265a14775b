// The hone command: train with --json events and metrics.jsonl, export, and clear errors.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../electron/lab/engine/native.js';
import { writeSampleChat } from '../../electron/lab/data/samples.js';
import { testDir, tinyModel } from '../helpers/models.js';

const hone = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', join(projectRoot, 'electron/cli/hone.ts'), ...args], { encoding: 'utf8' });

describe('hone CLI', () => {
  const dir = join(testDir, `cli-${process.pid}`);
  const run = join(dir, 'run');

  it('train --json prints one event per line and appends metrics.jsonl; export writes the adapter', () => {
    rmSync(dir, { recursive: true, force: true });
    const data = writeSampleChat(join(dir, 'facts.jsonl'));
    const r = hone('train', '--model', tinyModel({}), '--data', data, '--out', run, '--steps', '6', '--seq', '64', '--batch', '2', '--eval-every', '3', '--val', '0.2', '--json');
    expect(r.status, r.stderr).toBe(0);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(events[0]).toMatchObject({ type: 'dataset', shape: 'chat', rows: 18 });
    expect(events.filter((e) => e.type === 'step').map((e) => e.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(events.filter((e) => e.type === 'eval').map((e) => e.step)).toEqual([3, 6]);
    expect(events.at(-1)).toMatchObject({ type: 'done', step: 6, stopped: false });
    const metrics = readFileSync(join(run, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(metrics.filter((m) => m.type === 'step')).toHaveLength(6);
    expect(r.stderr).toMatch(/train \[#+\] 6\/6 loss/);
    const e = hone('export', '--run', run, '--format', 'adapter');
    expect(e.status, e.stderr).toBe(0);
    expect(existsSync(join(run, 'export', 'adapter.gguf'))).toBe(true);
  });

  it('bad arguments get one clear line', () => {
    const cases: [string[], RegExp][] = [
      [['train', '--out', run, '--model', 'm.gguf', '--data', 'd.jsonl', '--schedule', 'steep'], /Schedule \(--schedule\) must be one of constant, cosine, wsd/],
      [['train', '--out', run, '--model', 'm.gguf', '--data', 'd.jsonl', '--targets', 'q,x'], /Targets \(--targets\): "x" is not one of q, k, v, o, gate, up, down/],
      [['train', '--out', run, '--model', 'm.gguf', '--data', 'd.jsonl', '--lr', 'fast'], /Learning rate \(--lr\) must be a number, got "fast"/],
      [['export', '--run', run, '--format', 'zip'], /--format must be one of adapter, merged, peft, ollama/],
      [['train', '--out', run, '--model', tinyModel({}), '--data', join(dir, 'facts.jsonl')], /already holds a run; resume it with --resume or choose another --out/],
    ];
    for (const [args, msg] of cases) {
      const r = hone(...args);
      expect(r.status).toBe(1);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(msg);
    }
  });
});
