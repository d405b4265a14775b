// A lowdb adapter that never leaves a half-written database: each write goes to a temp file beside
// it, is fsynced, then renamed over the old one (rename is atomic on one file system).
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { settled, tempFor } from './temp-files.js';
import type { Adapter } from 'lowdb';

export class AtomicJsonFile<T> implements Adapter<T> {
  constructor(readonly path: string) {}

  async read(): Promise<T | null> {
    if (!existsSync(this.path)) return null;
    const text = readFileSync(this.path, 'utf8');
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      throw new Error(`${this.path} is not valid JSON (${(e as Error).message}); Hone never writes it half-way, so another program changed it — restore it from a backup or move it away to start fresh`);
    }
  }

  async write(data: T): Promise<void> {
    writeFileAtomic(this.path, Buffer.from(JSON.stringify(data, null, 2)));
  }
}

/** a small file written whole or not at all: temp file beside it, flushed, renamed */
export function writeFileAtomic(path: string, data: Buffer) {
  const tmp = tempFor(path);
  try {
    writeFileSync(tmp, data, { flush: true });
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  } finally {
    settled(tmp);
  }
}
