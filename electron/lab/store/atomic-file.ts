// A lowdb adapter that never leaves a half-written database: each write goes to a temp file beside
// it, is fsynced, then renamed over the old one (rename is atomic on one file system).
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from 'node:fs';
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
    const tmp = `${this.path}.${process.pid}.tmp`;
    const fd = openSync(tmp, 'w');
    try {
      const buf = Buffer.from(JSON.stringify(data, null, 2));
      let done = 0;
      while (done < buf.length) done += writeSync(fd, buf, done, buf.length - done);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
  }
}

/** a small file written whole or not at all: temp file beside it, flushed, renamed */
export function writeFileAtomic(path: string, data: Buffer) {
  const tmp = `${path}.partial-${process.pid}`;
  writeFileSync(tmp, data, { flush: true });
  renameSync(tmp, path);
}
