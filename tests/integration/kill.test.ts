// Kills at any moment: training, export and compression through the `hone` command, each killed
// with SIGKILL at 20 seeded points of its work. Every time, the next command (train --resume, the
// same export, the same compression) ends with the uninterrupted result: the same loss curve, the
// same file byte for byte. No file is ever half-written under its final name, and the temporary
// files a killed process left are gone after the next one. SIGTERM and SIGINT leave none.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../electron/lab/engine/native.js';
import { writeSampleChat } from '../../electron/lab/data/samples.js';
import { Rng } from '../../electron/lab/data/pack.js';
import { readGguf } from '../../electron/lab/model/gguf.js';
import { testDir, tinyModel } from '../helpers/models.js';

const dir = join(testDir, `kill-${process.pid}`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const POINTS = 20;

interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  ms: number;
  /** from the first output to the end: the work itself */
  workMs: number;
  /** lines written to stdout (--json: one event each) */
  lines: number;
}

/**
 * Runs `hone args`; with `kill`, sends SIGKILL `kill.ms` after the process has written `kill.line`
 * lines to stdout (default: after its first output of any kind, when its work has begun).
 */
function hone(args: string[], kill?: { ms: number; line?: number }): Promise<Run> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const p = spawn(process.execPath, ['--import', 'tsx', join(projectRoot, 'electron/cli/hone.ts'), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '', started = 0, lines = 0, armed = false;
    const arm = () => {
      if (armed || !kill) return;
      armed = true;
      setTimeout(() => p.kill('SIGKILL'), kill.ms);
    };
    p.stderr.on('data', (d) => { stderr += d; started ||= Date.now(); if (kill && !kill.line) arm(); });
    p.stdout.on('data', (d: Buffer) => {
      started ||= Date.now();
      lines += d.toString().split('\n').length - 1;
      if (kill && (!kill.line || lines >= kill.line)) arm();
    });
    const guard = setTimeout(() => p.kill('SIGKILL'), 300_000);
    p.on('close', (status, sig) => { clearTimeout(guard); resolve({ status, signal: sig, stderr, ms: Date.now() - t0, workMs: Date.now() - (started || t0), lines }); });
  });
}

/** every temporary file under `root` (a write's `<name>.partial-<pid>`) */
function temps(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, encoding: 'utf8' }).filter((f) => /\.partial-\d+$/.test(f));
}

/** a GGUF under its final name is whole: the header reads and every tensor lies inside the file */
function whole(path: string): boolean {
  try {
    const f = readGguf(path);
    return f.tensors.every((t) => t.offset + t.bytes <= statSync(path).size);
  } catch {
    return false;
  }
}

function losses(runDir: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const line of readFileSync(join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n')) {
    const e = JSON.parse(line) as { type: string; step: number; loss: number };
    if (e.type === 'step') {
      expect(out.has(e.step), `step ${e.step} logged twice in ${runDir}`).toBe(false);
      out.set(e.step, e.loss);
    }
  }
  return out;
}

describe('killed at any moment', () => {
  const model = tinyModel({});
  const data = writeSampleChat(join(dir, 'facts.jsonl'));
  const trainArgs = (out: string) => ['train', '--model', model, '--data', data, '--out', out, '--steps', '12', '--seq', '64', '--batch', '2', '--save-every', '2', '--eval-every', '0', '--val', '0', '--json'];
  const ref = join(dir, 'ref');

  it('training resumes to the uninterrupted loss curve', async () => {
    const r = await hone(trainArgs(ref));
    expect(r.status, r.stderr).toBe(0);
    // the kill points: after one of the run's events (dataset, start, each step and checkpoint), plus up to 200 ms
    const events = r.lines;
    const want = losses(ref);
    expect([...want.keys()]).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    const rng = new Rng(17);
    const outcomes: string[] = [];
    for (let k = 0; k < POINTS; k++) {
      const out = join(dir, `train-${k}`);
      const killed = await hone(trainArgs(out), { line: 1 + Math.floor(rng.next() * (events - 1)), ms: Math.floor(rng.next() * 200) });
      // no checkpoint under its final name is ever half-written
      const cks = existsSync(join(out, 'checkpoints')) ? readdirSync(join(out, 'checkpoints')).filter((f) => f.endsWith('.gguf')) : [];
      for (const c of cks) expect(whole(join(out, 'checkpoints', c)), `${out}: ${c}`).toBe(true);
      const hasRun = existsSync(join(out, 'config.json'));
      const again = await hone(hasRun ? [...trainArgs(out), '--resume'] : trainArgs(out));
      expect(again.status, `point ${k}: ${again.stderr}`).toBe(0);
      const got = losses(out);
      expect([...got.keys()], `point ${k}`).toEqual([...want.keys()]);
      for (const [s, l] of want) expect(Math.abs(got.get(s)! - l), `point ${k}, step ${s}`).toBeLessThan(1e-5);
      expect(temps(out), `point ${k}`).toEqual([]);
      outcomes.push(killed.signal ? `killed after ${cks.length} checkpoints` : 'finished first');
    }
    // the points fell across the run, not all before or after it
    expect(outcomes.filter((o) => o.startsWith('killed')).length).toBeGreaterThanOrEqual(POINTS / 2);
  }, 900_000);

  it('export ends with the uninterrupted file', async () => {
    const args = (out: string) => ['export', '--run', ref, '--format', 'merged', '--type', 'f16', '--out', out];
    const first = join(dir, 'export-ref');
    const r = await hone(args(first));
    expect(r.status, r.stderr).toBe(0);
    const want = readFileSync(join(first, 'model-f16.gguf'));
    const rng = new Rng(23);
    for (let k = 0; k < POINTS; k++) {
      const out = join(dir, `export-${k}`);
      const killed = await hone(args(out), { ms: Math.floor(rng.next() * r.workMs) });
      const file = join(out, 'model-f16.gguf');
      if (existsSync(file)) expect(readFileSync(file).equals(want), `point ${k}: a file under its final name is the whole file`).toBe(true);
      else {
        const again = await hone(args(out));
        expect(again.status, `point ${k}: ${again.stderr}`).toBe(0);
        expect(readFileSync(file).equals(want), `point ${k}`).toBe(true);
      }
      expect(temps(out), `point ${k} (${killed.signal ?? 'finished'})`).toEqual([]);
    }
  }, 900_000);

  it('compression resumes at its last stage to the uninterrupted file', async () => {
    const args = (out: string) => ['compress', '--model', model, '--out', out, '--prune', 'magnitude', '--sparsity', '0.5', '--quant', 'q8_0', '--eval', data, '--eval-tokens', '256', '--json'];
    const first = join(dir, 'compress-ref');
    const r = await hone(args(first));
    expect(r.status, r.stderr).toBe(0);
    const final = (out: string) => readdirSync(out).find((f) => f.endsWith('.gguf') && !f.startsWith('stage-'))!;
    const name = final(first);
    const want = readFileSync(join(first, name));
    const rng = new Rng(29);
    for (let k = 0; k < POINTS; k++) {
      const out = join(dir, `compress-${k}`);
      await hone(args(out), { ms: Math.floor(rng.next() * r.workMs) });
      if (existsSync(join(out, name))) expect(whole(join(out, name)), `point ${k}`).toBe(true);
      const again = await hone(args(out));
      expect(again.status, `point ${k}: ${again.stderr}`).toBe(0);
      expect(readFileSync(join(out, name)).equals(want), `point ${k}`).toBe(true);
      expect(temps(out), `point ${k}`).toEqual([]);
    }
  }, 900_000);

  it('SIGTERM and SIGINT end a write with no temporary file left and no half file under the final name', async () => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      const out = join(dir, `tiny-${signal}.gguf`);
      // make-tiny writes one large file in one synchronous stretch: the handler runs when it ends,
      // so the file is whole or absent, and the temporary name is gone either way
      const p = spawn(process.execPath, ['--import', 'tsx', join(projectRoot, 'electron/cli/hone.ts'), 'make-tiny', '--out', out, '--embd', '512', '--layers', '8', '--ff', '2048'], { stdio: 'ignore' });
      const closed = new Promise<number | null>((resolve) => p.on('close', (s) => resolve(s)));
      const seen = await new Promise<boolean>((resolve) => {
        const poll = setInterval(() => {
          if (temps(dir).some((f) => f.startsWith(`tiny-${signal}.gguf.partial-`))) { clearInterval(poll); p.kill(signal); resolve(true); }
        }, 10);
        void closed.then(() => { clearInterval(poll); resolve(false); });
      });
      const status = await closed;
      expect(seen, `${signal}: the write was seen under way`).toBe(true);
      expect([0, signal === 'SIGTERM' ? 143 : 130], signal).toContain(status);
      if (existsSync(out)) expect(whole(out), signal).toBe(true);
      expect(temps(dir).filter((f) => f.startsWith(`tiny-${signal}`)), signal).toEqual([]);
    }
  }, 120_000);
});
