// Int8 packs of a model's Q8_0 frozen weights, for the CPU engine on x86 CPUs with AVX-512 VNNI
// (native/src/q8_gemm.h). The forward's products through a packed weight run at about three times
// ggml's own Q8_0 kernel, which on such CPUs is no faster than fp32 BLAS; the backward's input
// gradients go through a pack of Wᵀ (requantized per 32 values along W's output dimension).
// The file's Q8_0 tensors stay loaded beside the packs (embeddings, export and every other path
// read them); the packs add about 2 × 1.1 bytes per weight value, so they are made only where that
// memory is free.
import { freemem } from 'node:os';
import { allocStatic, GraphBuilder, type Int8Packs } from '../engine/graph.js';
import type { Engine } from '../engine/backend.js';
import { native } from '../engine/native.js';
import { T } from '../engine/types.js';
import type { Weights } from './llama.js';

const GROUP_BYTES = 576; // 16 rows × 32 values + 16 f32 scales
const groupsFor = (rows: number) => { const g = Math.ceil(rows / 16); return g + (g & 1); };

/** whether the int8 kernels serve this engine (HONE_INT8=0 turns them off) */
export function int8Available(engine: Engine): boolean {
  return engine.kind === 'cpu' && process.env.HONE_INT8 !== '0' && native().int8Supported();
}

export interface Int8Weights { packs: Int8Packs; bytes: number; free(): void }

/** bytes of the packs of a Q8_0 weight W [k, n] (and of Wᵀ when n is a multiple of 32) */
function packBytes([k, n]: number[]): number {
  return GROUP_BYTES * (k / 32) * groupsFor(n) + (n % 32 === 0 ? GROUP_BYTES * (n / 32) * groupsFor(k) : 0);
}

/**
 * Packs every Q8_0 linear weight (the blocks' and the output head's). Null when none is Q8_0, or
 * when the packs (about 2.2 bytes per weight, twice the Q8_0 weights themselves) would take more
 * than `maxBytes` (default: half the memory the OS reports free): the run then uses ggml's path.
 */
export function packInt8(engine: Engine, weights: Weights, label: string, maxBytes = freemem() / 2): Int8Weights | null {
  const linears = [...weights.layers.flatMap((L) => [L.wq, L.wk, L.wv, L.wo, L.wGate, L.wUp, L.wDown]), weights.output]
    .filter((W, i, all) => W.type === T.Q8_0 && all.indexOf(W) === i);
  if (!linears.length || linears.reduce((s, W) => s + packBytes(W.shape), 0) > maxBytes) return null;
  const b = new GraphBuilder(2 * linears.length + 16);
  const pairs = linears.map((W) => {
    const [k, n] = W.shape; // W [k, n]: n rows of k values
    const w = b.tensor(T.I8, [GROUP_BYTES, k / 32, groupsFor(n)], `int8(${W.name})`);
    const wT = n % 32 === 0 ? b.tensor(T.I8, [GROUP_BYTES, n / 32, groupsFor(k)], `int8(${W.name}ᵀ)`) : null;
    return { W, pack: { w, wT } };
  });
  const bufferId = allocStatic(engine, b, `int8 packs of ${label}`);
  for (const { W, pack } of pairs) {
    native().packQ8(W.h, pack.w.h, false);
    if (pack.wT) native().packQ8(W.h, pack.wT.h, true);
  }
  const bytes = pairs.reduce((s, { pack }) => s + pack.w.elements + (pack.wT?.elements ?? 0), 0);
  return {
    packs: new Map(pairs.map(({ W, pack }) => [W, pack])),
    bytes,
    free() { engine.native.freeBuffer(bufferId); b.free(); },
  };
}
