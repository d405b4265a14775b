// The machine's rates for the offload plan, measured once and cached: SSD read and write in the
// offload folder (O_DIRECT where allowed, so the page cache does not flatter it), host → device copy,
// and the device's matmul rate. Budgets default to what the machine has.
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, statfsSync, writeFileSync } from 'node:fs';
import { freemem, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Engine } from '../engine/backend.js';
import { Graph, GraphBuilder, allocStatic } from '../engine/graph.js';
import { T } from '../engine/types.js';
import { randn } from '../model/tiny.js';
import { AsyncFiles, explainIoError } from './io.js';
import type { Budgets, Rates } from './plan.js';

/** "6G", "512M", "1.5GiB", "800000000" → bytes */
export function parseBytes(s: string): number {
  const m = /^\s*([\d.]+)\s*([kmgt]?)(i?b)?\s*$/i.exec(s);
  if (!m) throw new Error(`"${s}" is not a size; write it like 6G, 512M or 800000000`);
  return Math.round(Number(m[1]) * 1024 ** 'bkmgt'.indexOf((m[2] || 'b').toLowerCase()));
}

/** free bytes of the file system holding `dir` */
export function freeSpace(dir: string): number {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
}

export function defaultBudgets(engine: Engine, ssdDir?: string): Budgets {
  const cpu = engine.kind === 'cpu';
  return { device: cpu ? freemem() : engine.device.memoryFree, ram: freemem(), ssd: ssdDir ? freeSpace(ssdDir) : 0, cpuDevice: cpu };
}

async function ssdRates(dir: string, bytes = 64 * 2 ** 20): Promise<{ ssdRead: number; ssdWrite: number }> {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `.hone-rate-${process.pid}.bin`);
  const files = new AsyncFiles(4);
  const chunk = 4 * 2 ** 20;
  const data = new Uint8Array(chunk).map((_, i) => i * 31);
  try {
    let t0 = performance.now();
    await Promise.all(Array.from({ length: bytes / chunk }, (_, i) => files.write(path, i * chunk, data, true)));
    const ssdWrite = bytes / ((performance.now() - t0) / 1000);
    t0 = performance.now();
    await Promise.all(Array.from({ length: bytes / chunk }, (_, i) => files.read(path, i * chunk, chunk, true)));
    const ssdRead = bytes / ((performance.now() - t0) / 1000);
    return { ssdRead, ssdWrite };
  } catch (e) {
    throw explainIoError(e, 'ssd');
  } finally {
    rmSync(path, { force: true });
  }
}

function deviceRates(engine: Engine): { hostToDevice: number; flops: number } {
  const N = 512;
  const store = new GraphBuilder(4);
  const a = store.tensor(T.F32, [N, N], 'a'), b = store.tensor(T.F32, [N, N], 'b');
  const buf = allocStatic(engine, store, 'rate probe');
  const x = randn(1, N * N, 1);
  let t0 = performance.now();
  for (let i = 0; i < 8; i++) a.set(x);
  const hostToDevice = (8 * x.byteLength) / ((performance.now() - t0) / 1000);
  b.set(x);
  const g = new GraphBuilder(8);
  const graph = new Graph(engine, g, [g.mulMat(a, b)]);
  graph.compute();
  t0 = performance.now();
  for (let i = 0; i < 4; i++) graph.compute();
  const flops = (4 * 2 * N ** 3) / ((performance.now() - t0) / 1000);
  graph.free(); g.free(); engine.native.freeBuffer(buf); store.free();
  return { hostToDevice, flops };
}

/** rates for `engine` and the SSD folder, from the cache when measured before on this machine */
export async function machineRates(engine: Engine, ssdDir = tmpdir(), cacheDir = join(tmpdir(), 'hone-rates')): Promise<Rates & { cached: boolean }> {
  const key = `${engine.kind}:${engine.device.name}:${engine.threads}:dev${statSync(ssdDir).dev}`;
  const cacheFile = join(cacheDir, 'rates.json');
  const cache = existsSync(cacheFile) ? (JSON.parse(readFileSync(cacheFile, 'utf8')) as Record<string, Rates>) : {};
  if (cache[key]) return { ...cache[key], cached: true };
  const rates: Rates = { ...(await ssdRates(ssdDir)), ...deviceRates(engine) };
  mkdirSync(cacheDir, { recursive: true });
  writeFileSync(cacheFile, JSON.stringify({ ...cache, [key]: rates }, null, 2));
  return { ...rates, cached: false };
}

/** this process's peak RSS: Linux's VmHWM where there is one (getrusage's maxrss also counts the parent's
 *  peak from before exec, since a spawned child starts as a copy of its parent) */
export function peakRss(): number {
  if (existsSync('/proc/self/status')) {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  }
  return process.resourceUsage().maxRSS * 1024;
}
