// Loads Hone's native addon and registers ggml backends from node-llama-cpp's prebuilt binaries.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ggmlBinsDir } from '../../../native/paths.mjs';

export type External = { readonly __tensor: unique symbol };

export interface NativeDevice {
  name: string;
  description: string;
  backend: string;
  type: 'cpu' | 'gpu' | 'igpu' | 'accel';
  memoryFree: number;
  memoryTotal: number;
}

export interface NativeContext {
  newTensor(type: number, ne: number[], name: string, role: 0 | 1 | 2): External;
  /** an op of native/src/hone.cc's op table: its tensors in order, its numbers by name */
  op(name: string, tensors: (External | null)[], numbers: Record<string, number | number[]>): External;
  free(): void;
}

export interface NativeBackend {
  setThreads(n: number): void;
  allocContext(ctx: NativeContext, label: string, onHost?: boolean, zero?: boolean): number;
  freeBuffer(id: number): void;
  memory(): { current: number; peak: number; buffers: { label: string; bytes: number }[] };
  name(): string;
  free(): void;
}

export interface NativeGraph {
  compute(): void;
  /** the same compute on a worker thread; keep the graph and its tensors untouched until it settles */
  computeAsync(): Promise<void>;
  /** one compute, each node run and timed on its own: [op, tensor name, microseconds, operand types and shapes] */
  profile(): [string, string, number, string][];
  grad(t: External): External | null;
  nodeCount(): number;
  computeBytes(): number;
  splits(): number;
  free(): void;
}

export interface HoneNative {
  loadBackends(cpuDir: string, extra: string[]): string[];
  devices(): NativeDevice[];
  setVerbose(v: boolean): void;
  typeInfo(type: number): { name: string; blockSize: number; typeSize: number; quantized: boolean; canDequantize: boolean; needsImatrix: boolean } | null;
  quantize(type: number, src: Float32Array, nRows: number, nPerRow: number): Buffer;
  randomTensor(type: number, nRows: number, nPerRow: number, seed: number, std: number, mean: number, threads: number): Buffer;
  dequantize(type: number, src: Uint8Array, n: number): Float32Array;
  /** whether this CPU runs the int8 kernels through Q8_0 weights (x86 AVX-512 VNNI) */
  int8Supported(): boolean;
  /** packs a Q8_0 matrix (or its transpose) for the int8 kernels; both tensors in host memory */
  packQ8(src: External, dst: External, transposed: boolean): void;
  /** whether this CPU runs attention's causal sums over keys or queries (x86 AVX-512) */
  attnSumSupported(): boolean;
  tensorInfo(t: External): [number, number, number, number, number, number, number, number, number, boolean];
  setName(t: External, name: string): void;
  markOutput(t: External): void;
  tensorSet(t: External, data: ArrayBufferView, byteOffset?: number): void;
  tensorHasMemory(t: External): boolean;
  tensorGet(t: External, raw?: boolean): Float32Array;
  tensorLoadFile(t: External, path: string, fileOffset: number): void;
  tensorCopy(src: External, dst: External): void;
  /** elements [first, first + count) of a contiguous F32 tensor */
  tensorRead(t: External, first: number, count: number): Float32Array;
  /** learned codes' in-block coordinate descent (native/src/compress.cc); returns the change of L */
  learnBlock(args: LearnBlockArgs): number;
  /** iCBS blocks over a layer's rows (native/src/compress.cc): [predicted, actual] per accepted move */
  icbsEpoch(args: {
    w0: Float32Array; h: Float32Array; g: Float32Array; scores: Float32Array; keep: Uint8Array; fixed: Uint8Array;
    rows: number; cols: number; blockSize: number; groupSize: number; blocks: number; restarts: number; tabuFraction: number; seed: number; threads: number; check: boolean;
  }): Float64Array;
  /** NUPES: the (weighted) error of the power grid of one exponent over every rowStep-th row */
  powerGridError(args: { w: Float32Array; rows: number; cols: number; bits: number; exponent: number; weights?: Float64Array; rowStep: number; threads: number }): number;
  Context: new (maxTensors: number) => NativeContext;
  Backend: new (deviceName: string, opts?: { blas?: boolean }) => NativeBackend;
  Graph: new (backend: NativeBackend, ctx: NativeContext, outputs: External[], opts: { backward?: boolean; maxNodes?: number; exact?: boolean }) => NativeGraph;
}

export interface LearnBlockArgs {
  codes: Uint16Array; alpha: Float32Array; beta: Float32Array; table: Float64Array; movable?: Uint8Array;
  /** G's block columns [width][rows] */
  slab: Float32Array;
  /** H's diagonal block [width][width] */
  hBlock: Float32Array;
  /** out: value changes [rows][stride] */
  delta: Float32Array;
  active: Uint8Array;
  changed: Int32Array;
  rows: number; cols: number; b0: number; width: number; stride: number; groupSize: number;
  scales: boolean; roundHalf: boolean; threads: number;
}

/** The folder holding Hone's package.json, found from this module upward (source or bundled). */
export const projectRoot = ((): string => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && JSON.parse(readFileSync(pkg, 'utf8')).name === 'hone') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find Hone's package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
})();

/** GPU backend libraries node-llama-cpp installs beside its CPU build, by Hone backend name. */
const gpuVariants: Record<string, { variant: string; lib: RegExp }[]> = {
  cuda: [{ variant: 'cuda', lib: /^(lib)?ggml-cuda\.(so|dll|dylib)$/ }],
  vulkan: [{ variant: 'vulkan', lib: /^(lib)?ggml-vulkan\.(so|dll|dylib)$/ }],
  metal: [{ variant: '', lib: /^(lib)?ggml-metal\.(so|dylib)$/ }],
};

let loaded: HoneNative | null = null;

export function native(): HoneNative {
  if (loaded) return loaded;
  // in a packaged app the addon sits outside the asar archive (electron-builder's asarUnpack)
  const addon = join(projectRoot.replace(/app\.asar$/, 'app.asar.unpacked'), 'native', 'build', 'Release', 'hone.node');
  if (!existsSync(addon)) throw new Error(`Hone's native engine is not built (${addon} is missing); run "npm install" (or "npm run build:native") in ${projectRoot}`);
  // OpenBLAS's worker threads spin for ~2^28 cycles after each call by default, fighting ggml's
  // threads for the cores between matmuls (a 2.5× slowdown measured on 2 cores): the shortest wait.
  // Read when the library loads, so it is set before the addon (linked to OpenBLAS) is.
  process.env.OPENBLAS_THREAD_TIMEOUT ??= '4';
  const n = createRequire(import.meta.url)(addon) as HoneNative;
  const cpuDir: string | null = ggmlBinsDir(projectRoot.replace(/app\.asar$/, 'app.asar.unpacked'));
  if (!cpuDir) throw new Error(`node-llama-cpp's prebuilt binaries for ${process.platform}-${process.arch} are missing; run "npm install"`);
  n.setVerbose(process.env.HONE_DEBUG === '1');
  const extra: string[] = [];
  for (const variants of Object.values(gpuVariants)) {
    for (const { variant, lib } of variants) {
      const dir: string | null = variant ? ggmlBinsDir(projectRoot, variant) : cpuDir;
      if (!dir) continue;
      const file = readdirSync(dir).find((f) => lib.test(f));
      if (file) extra.push(join(dir, file));
    }
  }
  n.loadBackends(cpuDir, extra);
  loaded = n;
  return n;
}
