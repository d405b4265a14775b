// The memory plan of an out-of-core run (Fuyou-style; ALGORITHMS.md §4, whose cost model is INFERRED):
// from the model's GGUF header, the method, batch and sequence length, three budgets (device memory,
// RAM, an SSD folder) and the machine's measured rates, where each block's weights, trainable state
// and activations live, and for each block's activations whether they are kept, swapped or
// recomputed — and the step time that costs. Pure: no I/O here (offload/measure.ts measures rates).
import type { GgufFile } from '../model/gguf.js';
import type { Hparams } from '../model/llama.js';
import { headChunkRows } from '../model/backward.js';

export interface Rates {
  /** bytes/s */
  ssdRead: number;
  ssdWrite: number;
  /** host → device copies, bytes/s (on a CPU device: memory copy) */
  hostToDevice: number;
  /** sustained matmul rate of the device, FLOP/s */
  flops: number;
}

export interface Budgets {
  /** device memory for weights, activations and compute buffers (on a CPU device the same RAM) */
  device: number;
  ram: number;
  /** free bytes in the SSD folder (0: no SSD tier) */
  ssd: number;
  /** the compute device is the CPU: device and RAM are one pool */
  cpuDevice: boolean;
  /** RAM the plan cannot give out: the process's own memory when the run starts (node, the libraries,
   *  the dataset) and a reserve for what a run maps on the way (thread stacks, allocator slack), so that
   *  `ram` bounds the process's peak resident memory, as the OS measures it */
  reserved?: number;
}

export type WeightHome = 'device' | 'ram' | 'stream';
export type ActivationChoice = 'keep' | 'swap' | 'recompute';

export interface BlockPlan {
  block: number;
  weightBytes: number;
  /** where the block's frozen weights live between uses; 'stream': read from the model file each time */
  weights: WeightHome;
  /** activations the backward needs inside the block, and the choice for them */
  activationBytes: number;
  activations: ActivationChoice;
  forwardFlops: number;
}

export interface MemoryPlan {
  blocks: BlockPlan[];
  /** bytes per tier at the peak of a step */
  device: number;
  ram: number;
  ssd: number;
  /** trainable state: parameters, gradients, optimizer moments (bytes) and where it lives */
  trainable: { bytes: number; home: 'device' | 'ram' | 'ssd' };
  /** seconds: compute, I/O, and the step with I/O overlapped as planned */
  compute: number;
  io: number;
  step: number;
  fits: boolean;
  /** when it does not fit: by how much, per tier, and what would make it fit */
  shortfall?: string;
}

export interface PlanInput {
  file: GgufFile;
  hp: Hparams;
  /** 'adapter': frozen base + small trainables (LoRA…); 'full': every weight trains (F32 master, grads, 2 moments) */
  training: 'adapter' | 'full';
  /** trainable parameters of an adapter method (ignored for 'full') */
  adapterParams: number;
  batch: number;
  seq: number;
  budgets: Budgets;
  rates: Rates;
  /** stream the weights even when they fit (tests, bench); activations are still kept where RAM allows */
  forceStream?: boolean;
}

const F32 = 4;

/** swapped activation records on their way to the disk at once, at most (the streaming trainer's
 *  forward waits beyond that); each holds its block's activations twice in RAM while it waits */
export const SWAP_WRITES = 2;

/** the bytes each block's backward needs kept from its forward (model/llama.ts BlockActs), F32 */
export function blockActivationBytes(hp: Hparams, batch: number, seq: number): number {
  const n = batch * seq, d = hp.nEmbd, kv = hp.nHeadKv * hp.headDim, q = hp.nHead * hp.headDim;
  // x, h, x1, h2, out [d]; q3, attn [q]; k3, v3 [kv]; gate, up, act [ff]; probs [T, T, heads·B]
  return F32 * (n * (5 * d + 2 * q + 2 * kv + 3 * hp.nFf) + seq * seq * hp.nHead * batch);
}

export function planMemory(p: PlanInput): MemoryPlan {
  const { file, hp, budgets: b, rates: r } = p;
  const n = p.batch * p.seq;
  const blockBytes = Array.from({ length: hp.nLayer }, (_, i) => file.tensors.filter((t) => t.name.startsWith(`blk.${i}.`)).reduce((s, t) => s + t.bytes, 0));
  const otherBytes = file.tensors.filter((t) => !t.name.startsWith('blk.')).reduce((s, t) => s + t.bytes, 0);
  const count = (t: { shape: number[] }) => t.shape.reduce((a, c) => a * c, 1);
  const blockParams = Array.from({ length: hp.nLayer }, (_, i) => file.tensors.filter((t) => t.name.startsWith(`blk.${i}.`)).reduce((s, t) => s + count(t), 0));
  const otherParams = file.tensors.filter((t) => !t.name.startsWith('blk.')).reduce((s, t) => s + count(t), 0);
  const full = p.training === 'full';
  const act = blockActivationBytes(hp, p.batch, p.seq);
  const boundary = F32 * n * hp.nEmbd; // a block's input, always kept for the backward
  const logits = F32 * n * hp.nVocab * 2; // logits and their gradient at the head
  const blockFlops = (i: number) => 2 * n * blockParams[i] + 4 * n * p.seq * hp.nHead * hp.headDim;
  // trainable state: adapters are small; full training keeps F32 master + gradient + two moments
  // (GaLore's projected moments are smaller: an upper bound) — the blocks' here, the embeddings' and
  // head's always on the device with the compute
  const trainableBytes = full ? blockParams.reduce((a, c) => a + c, 0) * F32 * 4 : p.adapterParams * F32 * 4;
  const residentTrainable = full ? otherParams * F32 * 4 : 0;

  // device: the pool the compute runs from. Fixed costs: embeddings/head, logits, two blocks' weights
  // in flight (the one computing and the one prefetched), one block's activations while it computes
  const reserved = b.reserved ?? 0;
  // what the plan hands out: the budget less what is reserved and 5% kept free for what moves while
  // a step runs (garbage not yet collected, swap reads in flight), so the peak stays under the budget
  const ramBudget = (b.reserved !== undefined ? 0.95 : 1) * b.ram - reserved;
  const pool = b.cpuDevice ? Math.min(b.device, ramBudget) : b.device;
  // full training computes on F32 master weights and leaves an F32 gradient of each in the slot
  const window = full ? 2 * 2 * F32 * Math.max(...blockParams) : 2 * Math.max(...blockBytes);
  // compute buffers: the streaming trainer's graphs — per slot a forward (about one block's
  // activations) and backwards whose allocator peak is two F32 copies of the largest weight (the
  // input gradients through a quantized or F16 weight; the activations reuse that room). Measured for
  // d 1024, ff 2816, F16, 48 tokens: four backwards of 22.5 MiB (2 × 4 × 2.88M = 22.0) and two
  // forwards of 3.1 MiB (one block's activations: 3.3)
  const largest = Math.max(...file.tensors.filter((t) => t.name.startsWith('blk.')).map((t) => t.shape.reduce((a, c) => a * c, 1)));
  const computeBuffers = 4 * 2 * F32 * largest + 2 * act;
  // the head's backward multiplies by an F32 copy of the head (BLAS's outer product of a dequantized
  // head, or ggml's transposed copy), a vocabulary chunk at a time (model/backward.ts headInputGrad)
  const headCopy = full ? 0 : F32 * hp.nEmbd * headChunkRows(hp.nEmbd, hp.nVocab);
  const fixedDevice = (full ? residentTrainable : otherBytes) + logits + window + boundary * 2 + computeBuffers + headCopy;
  let trainHome: 'device' | 'ram' | 'ssd' = p.training === 'adapter' ? 'device' : 'ram';
  let deviceUse = fixedDevice + (trainHome === 'device' ? trainableBytes : 0);
  let ramUse = 0;
  let ssdUse = 0;
  const blocks: BlockPlan[] = blockBytes.map((w, i) => ({ block: i, weightBytes: w, weights: 'stream', activationBytes: act, activations: 'recompute', forwardFlops: blockFlops(i) }));
  const freeDevice = () => pool - deviceUse - (b.cpuDevice ? ramUse : 0);
  const freeRam = () => (b.cpuDevice ? pool - deviceUse - ramUse : ramBudget - ramUse);

  // full training: the whole model in memory when its state fits the device with room to compute
  // (no streaming: the in-memory trainer); else the blocks' F32 state (master, gradient, moments) in
  // RAM if it fits, else in the SSD folder, and every block streams from it
  let fullInMemory = false;
  if (full) {
    if (!p.forceStream && freeDevice() >= trainableBytes + act * hp.nLayer && !b.cpuDevice) { fullInMemory = true; deviceUse += trainableBytes; trainHome = 'device'; }
    else if (!p.forceStream && b.cpuDevice && freeRam() >= trainableBytes + act * hp.nLayer) { fullInMemory = true; ramUse += trainableBytes; }
    else if (freeRam() >= trainableBytes) ramUse += trainableBytes;
    else { trainHome = 'ssd'; ssdUse += trainableBytes; }
    if (fullInMemory) for (const bl of blocks) bl.weights = b.cpuDevice ? 'ram' : 'device';
  }
  // boundary activations of every block stay (RAM, or SSD when RAM is short)
  const boundaries = boundary * hp.nLayer;
  if (freeRam() >= boundaries) ramUse += boundaries; else ssdUse += boundaries;
  // weights: device-resident where they fit (whole model first), else RAM, else streamed from the
  // file — read through page-aligned host buffers as large as its tensors (io.cc), the next block's
  // while this one computes: one block's bytes of RAM
  const maxBlock = Math.max(...blockBytes);
  // (swapping activations holds RAM too: the records being written, each twice, and the one being
  // read and the next, prefetched)
  const swapCheaper = (bl: BlockPlan) => bl.activationBytes / r.ssdWrite + bl.activationBytes / r.ssdRead < bl.forwardFlops / r.flops;
  const swapBuffers = b.ssd > 0 && swapCheaper(blocks[0]) ? (2 * SWAP_WRITES + 2) * act : 0;
  if (!p.forceStream && !full) {
    for (const bl of blocks) {
      if (freeDevice() >= bl.weightBytes && !b.cpuDevice) { bl.weights = 'device'; deviceUse += bl.weightBytes; }
      else if (freeRam() - maxBlock - swapBuffers >= bl.weightBytes) { bl.weights = 'ram'; ramUse += bl.weightBytes; } // room left to read a streamed block and to swap
    }
  }
  if (blocks.some((bl) => bl.weights === 'stream')) ramUse += maxBlock;

  // activations: keep where memory is left; else the cheaper of a swap (write + read) and a recompute
  // when not every block's activations stay in RAM and swapping beats recomputing, the swap's buffers first
  const swapping = swapBuffers > 0 && blocks.length * act > freeRam() && b.ssd - ssdUse >= act && freeRam() >= swapBuffers;
  if (swapping) ramUse += swapBuffers;
  for (const bl of [...blocks].reverse()) {
    if (freeRam() >= bl.activationBytes) { bl.activations = 'keep'; ramUse += bl.activationBytes; }
    else if (swapping && b.ssd - ssdUse >= bl.activationBytes && swapCheaper(bl)) { bl.activations = 'swap'; ssdUse += bl.activationBytes; }
    else bl.activations = 'recompute';
  }

  // time: per block, compute overlapped with its I/O (prefetch of the next block during this one)
  let compute = 0, io = 0, step = 0;
  for (const bl of blocks) {
    const fwd = bl.forwardFlops / r.flops;
    const bwd = (2 * bl.forwardFlops + (bl.activations === 'recompute' ? bl.forwardFlops : 0)) / r.flops;
    const master = F32 * blockParams[bl.block]; // full training: a block's F32 master weights
    const load = full
      ? (fullInMemory ? 0 : master / (trainHome === 'ssd' ? r.ssdRead : r.hostToDevice))
      : bl.weights === 'stream' ? bl.weightBytes / r.ssdRead + bl.weightBytes / r.hostToDevice : bl.weights === 'ram' ? bl.weightBytes / r.hostToDevice : 0;
    const swapIo = bl.activations === 'swap' ? bl.activationBytes / r.ssdWrite + bl.activationBytes / r.ssdRead : 0;
    // full training from the SSD: the gradient written, the record (master, gradient, moments) read
    // and written back by the optimizer step
    const stateIo = full && trainHome === 'ssd' ? (master + 3 * master) / r.ssdWrite + 4 * master / r.ssdRead : 0;
    compute += fwd + bwd;
    io += 2 * load + swapIo + stateIo;
    step += Math.max(fwd, load) + Math.max(bwd, load + swapIo + stateIo);
  }
  const deviceTotal = deviceUse + (b.cpuDevice ? ramUse : 0);
  const ramTotal = reserved + (b.cpuDevice ? deviceTotal : ramUse);
  const over: string[] = [];
  if (!b.cpuDevice && deviceUse > b.device) over.push(`device memory by ${gib(deviceUse - b.device)} (at least ${gib(fixedDevice)} for embeddings, head, logits and two blocks in flight: lower --batch or --seq)`);
  const ramLimit = b.cpuDevice ? reserved + pool : b.ram;
  if (ramTotal > ramLimit) {
    const why = b.cpuDevice && fixedDevice > pool
      ? `the working set alone (embeddings, head, logits, two blocks in flight: ${gib(fixedDevice)}, beside the ${gib(reserved)} the process holds) exceeds it: lower --batch or --seq`
      : `${b.ssd > 0 ? 'the SSD folder takes what it can; ' : 'give an --ssd folder for activations' + (p.training === 'full' ? ' and optimizer state' : '') + ', or '}lower --batch / --seq`;
    over.push(`RAM by ${gib(ramTotal - ramLimit)}: ${why}`);
  }
  if (ssdUse > b.ssd) over.push(`the SSD folder by ${gib(ssdUse - b.ssd)}: free space there or choose a bigger disk`);
  return {
    blocks, device: deviceTotal, ram: ramTotal, ssd: ssdUse, trainable: { bytes: trainableBytes, home: trainHome },
    compute, io, step, fits: over.length === 0, shortfall: over.length ? `does not fit: over ${over.join('; over ')}` : undefined,
  };
}

export const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;

/** the plan as text, one line per block and a summary (CLI `hone plan`, the Train page) */
export function describePlan(m: MemoryPlan): string {
  const lines = m.blocks.map((b) => `  block ${String(b.block).padStart(3)}: weights ${(b.weightBytes / 2 ** 20).toFixed(1).padStart(8)} MiB ${b.weights.padEnd(6)}  activations ${(b.activationBytes / 2 ** 20).toFixed(1).padStart(8)} MiB ${b.activations}`);
  lines.push(`device ${gib(m.device)}, RAM ${gib(m.ram)}, SSD ${gib(m.ssd)}; trainable state ${gib(m.trainable.bytes)} in ${m.trainable.home}`);
  lines.push(`expected step ${m.step.toFixed(2)} s (compute ${m.compute.toFixed(2)} s, I/O ${m.io.toFixed(2)} s, overlapped per block)`);
  lines.push(m.fits ? 'fits' : m.shortfall!);
  return lines.join('\n');
}
