// The store: migrations, and a writer killed mid-write never leaves a corrupt database.
import { fork } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SCHEMA_VERSION, Store, fingerprint } from '../../electron/lab/store/store.js';
import { projectRoot } from '../../electron/lab/engine/native.js';
import { testDir } from '../helpers/models.js';

const dir = join(testDir, `store-${process.pid}`);

describe('store', () => {
  it('creates, updates and reopens', async () => {
    const folder = join(dir, 'basic');
    rmSync(folder, { recursive: true, force: true });
    const s = await Store.open(folder);
    await s.upsertRun({ id: 'a', dir: '/x', status: 'running', totalSteps: 10 });
    await s.upsertRun({ id: 'a', step: 5 });
    const again = await Store.open(folder);
    expect(again.data.runs).toHaveLength(1);
    expect(again.data.runs[0]).toMatchObject({ id: 'a', dir: '/x', status: 'running', step: 5, totalSteps: 10, artifacts: [] });
    expect(again.data.schemaVersion).toBe(SCHEMA_VERSION);
  });

  it('migrates a version 1 database and refuses one from a newer Hone', async () => {
    const folder = join(dir, 'old');
    mkdirSync(folder, { recursive: true });
    writeFileSync(join(folder, 'hone-db.json'), JSON.stringify({ schemaVersion: 1, runs: [{ id: 'r', status: 'done' }], models: [], datasets: [], projects: [] }));
    const s = await Store.open(folder);
    expect(s.data.runs[0]).toMatchObject({ id: 'r', artifacts: [] });
    expect(JSON.parse(readFileSync(join(folder, 'hone-db.json'), 'utf8')).schemaVersion).toBe(SCHEMA_VERSION);
    writeFileSync(join(folder, 'hone-db.json'), JSON.stringify({ schemaVersion: 99 }));
    await expect(Store.open(folder)).rejects.toThrow(/written by a newer Hone \(schema 99, this one reads up to 2\); update Hone/);
  });

  it('a writer killed in the middle of writes leaves a readable database, every time', async () => {
    const folder = join(dir, 'killed');
    rmSync(folder, { recursive: true, force: true });
    for (let round = 0; round < 5; round++) {
      const child = fork(join(projectRoot, 'tests/helpers/store-writer-main.ts'), [folder], { execArgv: ['--import', 'tsx'], stdio: 'ignore' });
      await new Promise<void>((resolve) => child.once('message', () => resolve()));
      await new Promise((r) => setTimeout(r, 150 + 97 * round));
      child.kill('SIGKILL');
      await new Promise((r) => child.once('exit', r));
      const s = await Store.open(folder);
      expect(s.data.runs.length).toBeGreaterThan(0);
      for (const r of s.data.runs) expect((r.config as { blob: string }).blob).toHaveLength(200_000);
    }
    expect(readdirSync(folder).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('fingerprints a file by size and its ends', () => {
    const f = join(dir, 'f.bin');
    mkdirSync(dir, { recursive: true });
    writeFileSync(f, Buffer.alloc(3 << 20, 7));
    const a = fingerprint(f);
    writeFileSync(f, Buffer.concat([Buffer.alloc(3 << 20, 7).subarray(1), Buffer.from([8])]));
    expect(fingerprint(f)).not.toBe(a);
    expect(a).toMatch(/^3145728:[0-9a-f]{32}$/);
  });
});
