// Hone's run history: a lowdb JSON database in the app's data folder. Models, datasets and runs,
// with a schema version and migrations. Large artifacts are files beside it, referenced by path.
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, mkdirSync, openSync, readSync, readdirSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { Low } from 'lowdb';
import { AtomicJsonFile } from './atomic-file.js';

export const SCHEMA_VERSION = 2;

export interface ModelRecord { id: string; path: string; fingerprint: string; architecture: string; parameters: number; addedAt: number }
export interface DatasetRecord { id: string; path: string; fingerprint: string; shape: string; rows: number; rejected: number; addedAt: number }
export type RunStatus = 'queued' | 'running' | 'paused' | 'stopped' | 'failed' | 'done';
export interface RunRecord {
  id: string;
  dir: string;
  method: string;
  config: Record<string, unknown>;
  status: RunStatus;
  step: number;
  totalSteps: number;
  createdAt: number;
  updatedAt: number;
  /** last lines a failed job printed */
  error?: string;
  artifacts: { path: string; format: string; bytes: number }[];
}
export interface ProjectRecord { id: string; name: string; createdAt: number }

export interface StoreData {
  schemaVersion: number;
  projects: ProjectRecord[];
  models: ModelRecord[];
  datasets: DatasetRecord[];
  runs: RunRecord[];
}

const empty = (): StoreData => ({ schemaVersion: SCHEMA_VERSION, projects: [], models: [], datasets: [], runs: [] });

/** migrations[v] takes data at version v to v+1 */
const migrations: Record<number, (d: Record<string, unknown>) => Record<string, unknown>> = {
  // v1 had no artifacts list on runs
  1: (d) => ({ ...d, runs: ((d.runs as Record<string, unknown>[]) ?? []).map((r) => ({ artifacts: [], ...r })), schemaVersion: 2 }),
};

export function migrate(data: Record<string, unknown>, path: string): StoreData {
  let v = Number(data.schemaVersion ?? 1);
  if (v > SCHEMA_VERSION) throw new Error(`${path} was written by a newer Hone (schema ${v}, this one reads up to ${SCHEMA_VERSION}); update Hone`);
  let d = data;
  while (v < SCHEMA_VERSION) { d = migrations[v](d); v++; }
  return { ...empty(), ...d } as StoreData;
}

/** The folder Hone keeps its database and runs in: HONE_HOME, else the platform's app data folder. */
export function dataFolder(): string {
  if (process.env.HONE_HOME) return process.env.HONE_HOME;
  const home = homedir();
  if (process.platform === 'win32') return join(process.env.APPDATA ?? join(home, 'AppData', 'Roaming'), 'Hone');
  if (process.platform === 'darwin') return join(home, 'Library', 'Application Support', 'Hone');
  return join(process.env.XDG_DATA_HOME ?? join(home, '.local', 'share'), 'hone');
}

export class Store {
  private constructor(readonly db: Low<StoreData>, readonly path: string) {}

  static async open(folder = dataFolder()): Promise<Store> {
    mkdirSync(folder, { recursive: true });
    const path = join(folder, 'hone-db.json');
    // temp files of writers that were killed before their rename
    for (const f of readdirSync(folder)) if (/^hone-db\.json\.\d+\.tmp$/.test(f)) rmSync(join(folder, f), { force: true });
    const db = new Low<StoreData>(new AtomicJsonFile<StoreData>(path), empty());
    await db.read();
    const before = db.data.schemaVersion;
    db.data = migrate(db.data as unknown as Record<string, unknown>, path);
    if (before !== db.data.schemaVersion) await db.write();
    return new Store(db, path);
  }

  get data(): StoreData { return this.db.data; }

  async update(fn: (d: StoreData) => void): Promise<void> {
    fn(this.db.data);
    await this.db.write();
  }

  async upsertRun(run: Partial<RunRecord> & { id: string }): Promise<RunRecord> {
    let rec!: RunRecord;
    await this.update((d) => {
      const i = d.runs.findIndex((r) => r.id === run.id);
      const now = Date.now();
      rec = i >= 0 ? { ...d.runs[i], ...run, updatedAt: now } : { dir: '', method: 'lora', config: {}, status: 'queued', step: 0, totalSteps: 0, createdAt: now, updatedAt: now, artifacts: [], ...run };
      if (i >= 0) d.runs[i] = rec; else d.runs.push(rec);
    });
    return rec;
  }
}

/** A quick identity for large files: size, and SHA-256 of the first and last MiB. */
export function fingerprint(path: string): string {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const h = createHash('sha256').update(String(size));
    const chunk = Buffer.alloc(Math.min(size, 1 << 20));
    readSync(fd, chunk, 0, chunk.length, 0);
    h.update(chunk);
    readSync(fd, chunk, 0, chunk.length, Math.max(0, size - chunk.length));
    h.update(chunk);
    return `${size}:${h.digest('hex').slice(0, 32)}`;
  } finally {
    closeSync(fd);
  }
}
