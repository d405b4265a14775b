// Choosing the compute device: a GPU when node-llama-cpp's package for it is installed and a device
// exists, else the CPU. HONE_BACKEND=cpu|cuda|vulkan|metal overrides; an unavailable choice is an error.
import { availableParallelism } from 'node:os';
import { native, type NativeBackend, type NativeDevice } from './native.js';

export type BackendKind = 'cpu' | 'cuda' | 'vulkan' | 'metal';
export const BACKEND_KINDS: BackendKind[] = ['cpu', 'cuda', 'vulkan', 'metal'];

export function kindOf(d: NativeDevice): BackendKind | null {
  const b = d.backend.toLowerCase();
  if (d.type === 'cpu') return 'cpu';
  if (b.includes('cuda')) return 'cuda';
  if (b.includes('vulkan')) return 'vulkan';
  if (b.includes('metal') || b.includes('mtl')) return 'metal';
  return null;
}

export function listDevices(): (NativeDevice & { kind: BackendKind | null })[] {
  return native().devices().map((d) => ({ ...d, kind: kindOf(d) }));
}

/** the threads Hone computes with: HONE_THREADS, else every core */
export function defaultThreads(): number {
  const n = Number(process.env.HONE_THREADS ?? 0);
  return n > 0 ? n : availableParallelism();
}

export interface Engine {
  kind: BackendKind;
  device: NativeDevice;
  threads: number;
  native: NativeBackend;
  /** large F32 matmuls and outer products run through OpenBLAS (CPU engine, addon built with it) */
  blas: boolean;
  free(): void;
}

const preference: BackendKind[] = ['cuda', 'metal', 'vulkan', 'cpu'];

/** Opens the compute device. `backend` (or HONE_BACKEND) forces a kind; otherwise the best one found.
 *  `blas: false` keeps a CPU engine off OpenBLAS (the parity tests compare both). */
export function openEngine(opts: { backend?: BackendKind; threads?: number; blas?: boolean } = {}): Engine {
  const want = opts.backend ?? (process.env.HONE_BACKEND as BackendKind | undefined) ?? undefined;
  if (want && !BACKEND_KINDS.includes(want)) throw new Error(`HONE_BACKEND="${want}" is not a backend; use one of ${BACKEND_KINDS.join(', ')}`);
  const devices = listDevices();
  let device: (typeof devices)[number] | undefined;
  if (want) {
    device = devices.find((d) => d.kind === want);
    if (!device) {
      const have = [...new Set(devices.map((d) => d.kind).filter(Boolean))].join(', ');
      const hint = want === 'vulkan' ? ' (install a Vulkan driver, e.g. Debian\'s mesa-vulkan-drivers, and set GGML_VK_VISIBLE_DEVICES=0 to use a CPU Vulkan device)' : want === 'cuda' ? ' (needs an NVIDIA GPU and driver, and the @node-llama-cpp/*-cuda package)' : '';
      throw new Error(`the ${want} backend is not available on this machine${hint}; available: ${have}`);
    }
  } else {
    for (const k of preference) {
      device = devices.find((d) => d.kind === k && (k === 'cpu' || d.type === 'gpu' || d.type === 'igpu'));
      if (device) break;
    }
  }
  if (!device) throw new Error('no compute device found, not even the CPU; reinstall node-llama-cpp');
  const nb = new (native().Backend)(device.name, { blas: opts.blas ?? true });
  const n = opts.threads && opts.threads > 0 ? opts.threads : defaultThreads();
  nb.setThreads(n);
  return { kind: device.kind!, device, threads: n, native: nb, blas: nb.name().endsWith('+ BLAS'), free: () => nb.free() };
}

/**
 * A second CPU engine with its own threads and buffers, for work that computes beside the main
 * engine (the CPU optimizer of streamed full-parameter training, Fuyou-style): its graphs may
 * compute on a worker thread (Graph.computeAsync) while the main engine's compute. With BLAS only
 * where the main engine has none (a GPU device), so the two never share OpenBLAS's one thread pool.
 */
export function openHostEngine(threads: number, blas = false): Engine {
  const device = listDevices().find((d) => d.kind === 'cpu');
  if (!device) throw new Error('no CPU device found; reinstall node-llama-cpp');
  const nb = new (native().Backend)(device.name, { blas });
  nb.setThreads(threads);
  return { kind: 'cpu', device: { ...device, kind: 'cpu' } as Engine['device'], threads, native: nb, blas: nb.name().endsWith('+ BLAS'), free: () => nb.free() };
}
