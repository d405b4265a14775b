// Making the folders a user names (a run's output, an SSD folder): one level at a time, so a path
// under /proc or another special filesystem fails at once with the reason (Node's recursive
// mkdir loops forever there).
import { mkdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** makes `path` and its missing parents; an error names `what` and the path when it cannot */
export function makeFolder(path: string, what: string): void {
  const abs = resolve(path);
  const missing: string[] = [];
  for (let p = abs; ; p = dirname(p)) {
    try {
      if (!statSync(p).isDirectory()) throw new Error(`${p} is a file, not a folder`);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${what} ${path} cannot be made: ${(e as Error).message}`);
      if (dirname(p) === p) break;
      missing.push(p);
    }
  }
  for (const p of missing.reverse()) {
    try {
      mkdirSync(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST' && statSync(p).isDirectory()) continue;
      throw new Error(`${what} ${path} cannot be made: ${(e as Error).message}`);
    }
  }
}
