// The temporary files a write makes beside its final name (`<name>.partial-<pid>`, renamed over the
// final name once whole). While one exists it is registered, so SIGTERM and SIGINT remove it before
// the process ends (removeLiveTemps, from the shells' signal handlers); what a SIGKILL left behind
// (its pid no longer runs) is removed by the next write into the same folder.
import { readdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';

const live = new Set<string>();

/** whether process `pid` still runs (a pid of another user's process counts as running) */
function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** removes the temporary files in `dir` whose writer no longer runs */
export function sweepTemps(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return; // a folder not made yet holds nothing
  }
  for (const n of names) {
    const m = /\.partial-(\d+)$/.exec(n);
    if (m && !alive(Number(m[1]))) rmSync(join(dir, n), { force: true, recursive: true });
  }
}

/** the temporary name to write `path` under (registered until `settled`); stale ones swept first */
export function tempFor(path: string): string {
  sweepTemps(dirname(path));
  const tmp = `${path}.partial-${process.pid}`;
  live.add(tmp);
  return tmp;
}

/** the temporary file was renamed to its final name, or removed */
export function settled(tmp: string): void {
  live.delete(tmp);
}

/** removes every temporary file this process is writing (before it exits on a signal) */
export function removeLiveTemps(): void {
  for (const t of live) rmSync(t, { force: true });
  live.clear();
}
