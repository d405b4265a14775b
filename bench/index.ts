// `npm run bench [-- engine|train|methods|compress|learn|offload|defaults|scale]`: figures, printed as tables (see docs/benchmarks.md).
//   learn: learned codes' parts on one layer of a real shape (bench/learn.ts)
//   defaults: the learning-rate sweep behind the settings table's per-method defaults (bench/defaults.ts)
//   compress: pruning and quantization on a tiny model the bench trains (bench/compress.ts)
//   offload: LoRA and GaLore training in memory and streamed block by block, Fuyou-style (bench/offload.ts)
//   methods: LoRA, HUT and MoS on one tiny task (bench/methods.ts)
//   train:  LoRA training tokens/s, peak RSS and share of the ceiling on configs A and B, PyTorch on
//           the same configs when python3-torch is installed; BENCH_PROFILE=1 adds a per-op breakdown
//   engine: forward+backward of one llama block with LoRA on q and v (d=512, 8 heads, ff=1376,
//           T=256) per frozen weight type, against the same run's ggml F32 matmul ceiling (1024³).
import { peakRss } from '../electron/lab/offload/measure.js';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng, type Window } from '../electron/lab/data/pack.js';
import { LlamaModel } from '../electron/lab/model/llama.js';
import { makeTiny } from '../electron/lab/model/tiny.js';
import { Lora, MODULES } from '../electron/lab/tune/lora.js';
import { OPTIMIZER_DEFAULTS, InMemoryTrainer, targetCapacity } from '../electron/lab/tune/trainer.js';
import { openEngine, type Engine } from '../electron/lab/engine/backend.js';
import { Graph, GraphBuilder, allocStatic, type Tensor } from '../electron/lab/engine/graph.js';
import { native } from '../electron/lab/engine/native.js';
import { T, ggmlTypeByName } from '../electron/lab/engine/types.js';
import { buildBlock, forwardInputs, setAttentionInputs, type AdapterHook, type Hparams } from '../electron/lab/model/llama.js';
import { randn } from '../electron/lab/model/tiny.js';

const threads = Number(process.env.HONE_THREADS ?? 2);
/** how a train-one child reports its tokens/s to the parent (a line of its stdout) */
const RESULT = '@tokens/s ';

function time(fn: () => void, minMs = 1500, minRuns = 3): number {
  fn(); // warm-up
  const t0 = performance.now();
  let n = 0;
  while (n < minRuns || performance.now() - t0 < minMs) { fn(); n++; }
  return (performance.now() - t0) / n;
}

function matmulCeiling(engine: Engine): number {
  const N = 1024;
  const store = new GraphBuilder(4);
  const a = store.tensor(T.F32, [N, N], 'a');
  const bb = store.tensor(T.F32, [N, N], 'b');
  const buf = allocStatic(engine, store, 'ceiling');
  a.set(randn(1, N * N, 1));
  bb.set(randn(2, N * N, 1));
  const g = new GraphBuilder(8);
  const graph = new Graph(engine, g, [g.mulMat(a, bb)]);
  const ms = time(() => graph.compute());
  graph.free(); g.free(); engine.native.freeBuffer(buf); store.free();
  return (2 * N ** 3) / (ms / 1000) / 1e9;
}

interface BlockResult { type: string; ms: number; gflops: number; nodes: number; splits: number; note: string }

function blockStep(engine: Engine, typeName: string, d = 512, nHead = 8, ff = 1376, nTok = 256, rank = 16): BlockResult {
  const type = ggmlTypeByName(typeName).id;
  const hd = d / nHead;
  const hp: Hparams = {
    arch: 'llama', nVocab: 0, nCtxTrain: nTok, nEmbd: d, nLayer: 1, nHead, nHeadKv: nHead, headDim: hd, nFf: ff, rmsEps: 1e-5,
    rope: { nDims: hd, mode: 0, nCtxOrig: nTok, freqBase: 10000, freqScale: 1, extFactor: 0, attnFactor: 1, betaFast: 32, betaSlow: 1 },
    math: { embedScale: 1, attnScale: 1 / Math.sqrt(hd), act: 'silu' },
  };
  const store = new GraphBuilder(64);
  // like llama.cpp's quantizer, rows that do not fill whole blocks of the type fall back to Q8_0
  const fallbacks: string[] = [];
  const mk = (shape: number[], name: string, t = type) => {
    if (shape[0] % ggmlTypeByName(typeName).blockSize !== 0 && t === type) { t = T.Q8_0; fallbacks.push(name); }
    return store.tensor(t, shape, name);
  };
  const layer = {
    attnNorm: mk([d], 'attn_norm', T.F32), ffnNorm: mk([d], 'ffn_norm', T.F32),
    wq: mk([d, d], 'wq'), wk: mk([d, d], 'wk'), wv: mk([d, d], 'wv'), wo: mk([d, d], 'wo'),
    wGate: mk([d, ff], 'gate'), wUp: mk([d, ff], 'up'), wDown: mk([ff, d], 'down'),
  };
  const x0 = store.param([d, nTok], 'x'); // the block input: its gradient is what the block below needs
  const lora = { q: { a: store.param([d, rank], 'qa'), b: store.param([rank, d], 'qb') }, v: { a: store.param([d, rank], 'va'), b: store.param([rank, d], 'vb') } };
  const buf = allocStatic(engine, store, 'bench block');
  const fill = (t: Tensor, seed: number, std: number, mean = 0) => {
    const [n0, n1] = t.shape;
    const x = randn(seed, n0 * n1, std, mean);
    t.set(t.type === T.F32 ? x : native().quantize(t.type, x, n1, n0));
  };
  let seed = 1;
  for (const t of Object.values(layer)) fill(t, seed++, t.shape[1] === 1 ? 0.1 : 1 / Math.sqrt(t.shape[0]), t.shape[1] === 1 ? 1 : 0);
  fill(x0, seed++, 1);
  for (const p of Object.values(lora)) { fill(p.a, seed++, 0.02); fill(p.b, seed++, 0.02); }

  const b = new GraphBuilder();
  const adapt: AdapterHook = (g, _il, mod, W, x) => {
    const p = (lora as Record<string, { a: Tensor; b: Tensor }>)[mod];
    const y = g.mulMat(W, x);
    return p ? g.add(y, g.scale(g.mulMat(p.b, g.mulMat(p.a, x)), 2)) : y;
  };
  const inp = forwardInputs(b, nTok, 1);
  const out = buildBlock(b, hp, layer, 0, x0, inp, null, nTok, 1, adapt);
  const loss = b.sum(b.sqr(out));
  const graph = new Graph(engine, b, [loss], { backward: true });
  setAttentionInputs(inp, nTok, 1);
  const ms = time(() => graph.compute());
  const res = { type: typeName, ms, gflops: blockFlops(d, ff, nTok, rank) / (ms / 1000) / 1e9, nodes: graph.nodes, splits: graph.native.splits(), note: fallbacks.length ? `${fallbacks.join(', ')} in q8_0` : '' };
  graph.free(); b.free(); engine.native.freeBuffer(buf); store.free();
  return res;
}

/** useful FLOPs of forward + backward: frozen linears (forward + input-gradient), attention, LoRA */
function blockFlops(d: number, ff: number, n: number, r: number): number {
  const linears = 4 * d * d + 3 * d * ff; // MACs per token
  const frozen = 2 * linears * n * 2; // forward + input gradient
  const attn = 2 * 2 * n * n * d * 3; // QK and PV: forward + two gradients each
  const loraF = 2 * 2 * (2 * d * r) * n * 3; // two adapters, two matmuls, fwd + 2 grads
  return frozen + attn + loraF;
}

/** FLOPs of a MUL_MAT or OUT_PROD node from its operand shapes ("f32[k,m,b] x f32[k,n,b]"), else 0 */
function nodeFlops(op: string, operands: string): number {
  const dims = operands.split(' x ').map((o) => (o.match(/\[(.*)\]/)?.[1] ?? '').split(',').map(Number));
  if (dims.length !== 2) return 0;
  const [a, b] = dims;
  if (op === 'MUL_MAT') return 2 * a[0] * a[1] * b[1] * (b[2] || 1) * (b[3] || 1);
  if (op === 'OUT_PROD') return 2 * a[0] * a[1] * b[0] * (a[2] || 1) * (a[3] || 1);
  // Hone's int8 product (q8_gemm): pack [576, blocks, groups of 16 rows] × quantized x [40·blocks, m]
  if (op === 'Q8_GEMM') return 2 * 16 * a[2] * 32 * a[1] * b[1];
  // a [hd, T_q, G] · p [T_k, T_q, G]: the dense count (the causal kernel does half)
  if (op === 'ATTN_SUM') return 2 * a[0] * b[0] * a[1] * (a[2] || 1);
  return 0;
}

/**
 * Where one training step's time goes: the train graph run node by node (each node timed alone, so
 * the sum is a little above a normal compute), grouped by op and operand shapes, with the rate of
 * matrix products; the rest of the step (inputs from JavaScript, gradient norm, AdamW) is the step
 * time minus the graph's.
 */
function breakdown(trainer: InMemoryTrainer, windows: Window[], stepMs: number, label: string) {
  const t0 = performance.now();
  trainer.accumulate(windows, true);
  const graphMs = performance.now() - t0;
  const rows = trainer.profile(windows);
  const groups = new Map<string, { us: number; n: number; flops: number }>();
  for (const [op, , us, operands] of rows) {
    // Hone's custom ops (native/src): the int8 product, the activations' quantization, attention's sums
    const custom = operands.startsWith('i8[576,') ? 'Q8_GEMM' : operands.includes(' x ') ? 'ATTN_SUM' : 'Q8_QUANTIZE';
    const key = `${op === 'CUSTOM' ? custom : op} ${operands}`;
    const g = groups.get(key) ?? { us: 0, n: 0, flops: 0 };
    g.us += us; g.n++; g.flops += nodeFlops(key.split(' ')[0], operands);
    groups.set(key, g);
  }
  const total = [...groups.values()].reduce((a, g) => a + g.us, 0) / 1000;
  console.log(`    per-op time of one step, ${label}: step ${stepMs.toFixed(0)} ms = train graph ${graphMs.toFixed(0)} ms (node by node ${total.toFixed(0)} ms) + norm, AdamW and inputs ${(stepMs - graphMs).toFixed(0)} ms`);
  for (const [key, g] of [...groups].sort((a, b) => b[1].us - a[1].us).slice(0, 20)) {
    const rate = g.flops ? `${(g.flops / g.us / 1e3).toFixed(0).padStart(4)} GFLOP/s` : ''.padStart(12);
    console.log(`      ${(g.us / 1000).toFixed(1).padStart(7)} ms ${((100 * g.us) / 1000 / total).toFixed(1).padStart(5)}% ${String(g.n).padStart(4)}× ${rate}  ${key}`);
  }
}

/** a Python that imports torch: HONE_PYTHON, python3 on the PATH, or Debian's /usr/bin/python3 */
const torchPython = [process.env.HONE_PYTHON, 'python3', '/usr/bin/python3'].find((p) => p && spawnSync(p, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0);

/** the same configs in PyTorch (Debian's python3-torch), if it is installed: one JSON line, or null */
function torchBench(spec: object): { ms: number; tokensPerSecond: number; peakRssMiB: number; torch: string } | null {
  const script = fileURLToPath(new URL('./torch_lora.py', import.meta.url));
  const r = spawnSync(torchPython!, [script, JSON.stringify({ ...spec, threads })], { encoding: 'utf8', env: { ...process.env, OMP_WAIT_POLICY: 'PASSIVE', OMP_NUM_THREADS: String(threads) } });
  if (r.status !== 0) return null;
  try { return JSON.parse(r.stdout.trim().split('\n').pop()!); } catch { return null; }
}

/** LoRA training on a tiny model with random weights: tokens/s, peak RSS and the share of the ceiling */
async function trainBench(engine: Engine, ceiling: number, name: string, spec: { d: number; layers: number; heads: number; ff: number; seq: number; batch: number; rank: number; type: string; answers?: number; loss50?: boolean }) {
  const path = join(tmpdir(), `hone-bench-${name}-${spec.type}.gguf`);
  if (!existsSync(path)) makeTiny(path, { nEmbd: spec.d, nLayer: spec.layers, nHead: spec.heads, nHeadKv: spec.heads, nFf: spec.ff, nCtx: spec.seq, type: spec.type, tied: false }, { overwrite: true });
  const model = LlamaModel.load(path, engine, { int8: true }); // as a training run loads it
  const lora = new Lora(engine, model.hp, { rank: spec.rank, alpha: 2 * spec.rank, targets: MODULES });
  lora.init(1);
  const { seq: T, batch: B } = spec;
  const rng = new Rng(3);
  const windows: Window[] = Array.from({ length: B }, () => ({
    input: Int32Array.from({ length: T }, () => Math.floor(rng.next() * 32000)),
    target: Int32Array.from({ length: T }, () => Math.floor(rng.next() * 32000)),
    // `answers`: the trained share of each window (its last positions, like an instruction's answer)
    trained: Uint8Array.from({ length: T }, (_, i) => (i >= T * (1 - (spec.answers ?? 1)) ? 1 : 0)),
  }));
  const capacity = targetCapacity(windows, B);
  const trainer = new InMemoryTrainer(engine, model, lora, B, T, { train: capacity, eval: capacity }, OPTIMIZER_DEFAULTS);
  let step = 0;
  if (spec.loss50) {
    // the loss after 50 steps at lr 2e-4 from the same start, to compare weight types on the same data
    let loss = 0;
    for (let t = 1; t <= 50; t++) { loss = trainer.accumulate(windows, true).loss; trainer.step(++step, 2e-4, 1); }
    console.log(`  ${name} ${spec.type.padEnd(5)} loss at step 50 (lr 2e-4, one batch of random tokens): ${loss.toFixed(6)}`);
    trainer.free(); lora.free(); model.free();
    return;
  }
  const ms = time(() => { trainer.accumulate(windows, true); trainer.step(++step, 1e-4, 1); }, 4000, 3);
  if (process.env.BENCH_PROFILE && spec.answers === undefined) breakdown(trainer, windows, ms, `${name} ${spec.type}`);
  const tokens = B * T;
  const { d, layers, ff, rank } = spec;
  const V = 32000;
  const linear = 4 * d * d + 3 * d * ff; // MACs per token per layer
  const loraMacs = 2 * rank * (4 * d + 3 * d + 3 * ff + d) / 2; // A and B of all seven modules (≈)
  // frozen linears and head: forward + input gradient; attention: forward + two gradients; LoRA: forward + two gradients
  const flopsPerToken = layers * (2 * linear * 2 + 2 * 2 * T * d * 3 + 2 * loraMacs * 3) + 2 * d * V * 2;
  const gflops = (flopsPerToken * tokens) / (ms / 1000) / 1e9;
  if (spec.answers !== undefined) {
    console.log(`  ${name} ${spec.type.padEnd(5)} answers ${(100 * spec.answers).toFixed(0)}% of positions: ${ms.toFixed(0)} ms/step, ${(tokens / (ms / 1000)).toFixed(0)} tok/s (head and loss at those positions only)`);
    trainer.free(); lora.free(); model.free();
    return;
  }
  console.log(`${RESULT}${tokens / (ms / 1000)}`);
  console.log(`  ${name} ${spec.type.padEnd(5)} ${(tokens / (ms / 1000)).toFixed(0).padStart(8)} tok/s ${ms.toFixed(0).padStart(7)} ms/step ${gflops.toFixed(1).padStart(7)} GFLOP/s ${((100 * gflops) / ceiling).toFixed(0).padStart(4)}% of ceiling   peak RSS ${(peakRss() / 2 ** 20).toFixed(0)} MiB`);
  trainer.free(); lora.free(); model.free();
}

if (process.argv[2] === 'offload') {
  const { offloadBench } = await import('./offload.js');
  offloadBench(fileURLToPath(new URL('./offload.ts', import.meta.url)));
  process.exit(0);
}
if (process.argv[2] === 'compress') {
  const { compressBench } = await import('./compress.js');
  await compressBench();
  process.exit(0);
}
if (process.argv[2] === 'defaults') {
  const { defaultsSweep } = await import('./defaults.js');
  await defaultsSweep();
  process.exit(0);
}
if (process.argv[2] === 'scale') {
  const { scaleBench, scaleSelf } = await import('./scale.js');
  await scaleBench(scaleSelf);
  process.exit(0);
}
if (process.argv[2] === 'learn') {
  const { learnBench } = await import('./learn.js');
  learnBench();
  process.exit(0);
}
if (process.argv[2] === 'methods') {
  const { methodsBench } = await import('./methods.js');
  methodsBench(fileURLToPath(new URL('./methods.ts', import.meta.url)));
  process.exit(0);
}
const engine = openEngine({ threads });
if (process.argv[2] !== 'train-one') console.log(`Hone engine bench — ${engine.kind} (${engine.device.description}), ${threads} threads of ${availableParallelism()} (${cpus()[0]?.model ?? 'cpu'}), ${new Date().toISOString().slice(0, 10)}`);
const what = process.argv[2] ?? 'all';
const ceiling = what === 'train-one' ? 0 : matmulCeiling(engine);
if (what !== 'train-one') console.log(`ggml F32 matmul 1024³: ${ceiling.toFixed(1)} GFLOP/s`);
if (what === 'all' || what === 'engine') {
  console.log('llama block d=512 heads=8 ff=1376 T=256, LoRA r=16 on q,v — forward + backward (ggml autodiff):');
  console.log('  weights   ms/step   GFLOP/s   of ceiling   graph nodes   splits');
  for (const t of (process.env.BENCH_TYPES ?? 'f32,f16,q8_0,q4_k').split(',')) {
    const r = blockStep(engine, t);
    console.log(`  ${r.type.padEnd(8)} ${r.ms.toFixed(1).padStart(8)} ${r.gflops.toFixed(1).padStart(9)} ${((100 * r.gflops) / ceiling).toFixed(0).padStart(10)}% ${String(r.nodes).padStart(13)} ${String(r.splits).padStart(8)}  ${r.note}`);
  }
}
if (what === 'train-one') {
  // one config in its own process, so that its peak RSS is its own
  const [name, spec] = JSON.parse(process.argv[3]);
  await trainBench(engine, Number(process.argv[4]), name, spec);
}
if (what === 'all' || what === 'train') {
  console.log('LoRA training step (all seven modules, every position trained, vocab 32000, untied head; each config in its own process,');
  console.log(`PyTorch ${torchPython ? '(Debian python3-torch, fp32, OMP_WAIT_POLICY=PASSIVE) right after Hone on each config, so both see the machine alike' : 'not installed (apt install python3-torch): no side-by-side figures'}):`);
  const configs: [string, object][] = [
    ['A d=256 L=4 h=4 ff=688  T=256 B=4 r=8 ', { d: 256, layers: 4, heads: 4, ff: 688, seq: 256, batch: 4, rank: 8 }],
    ['B d=512 L=8 h=8 ff=1376 T=256 B=4 r=16', { d: 512, layers: 8, heads: 8, ff: 1376, seq: 256, batch: 4, rank: 16 }],
  ];
  /** one config in its own process; its lines are printed, and its tokens/s returned */
  // a type "q8_0:ggml" is Q8_0 with Hone's int8 kernels off (HONE_INT8=0): ggml's own Q8_0 kernels
  // (OpenBLAS takes F32 weights only; "q8_0:blas" lets it take the Q8_0 products too, dequantizing the
  // weight to F32 for each, as before session 7)
  const trainOne = (name: string, spec: { type: string; [k: string]: unknown }): number | null => {
    const [type, kernels] = spec.type.split(':');
    const env = kernels === 'ggml' ? { ...process.env, HONE_INT8: '0' } : kernels === 'blas' ? { ...process.env, HONE_INT8: '0', HONE_BLAS_WEIGHTS: 'any' } : process.env;
    const r = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), 'train-one', JSON.stringify([name, { ...spec, type }]), String(ceiling)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], env });
    let tps: number | null = null;
    for (const line of (r.stdout ?? '').split('\n')) {
      if (line.startsWith(RESULT)) tps = Number(line.slice(RESULT.length));
      else if (line) console.log(kernels ? line.replace(` ${type.padEnd(5)} `, ` ${spec.type.padEnd(5)} `) : line);
    }
    return tps;
  };
  const ratios: string[] = [];
  for (const [name, spec] of configs) {
    const hone = (process.env.BENCH_TYPES ?? 'f32,q8_0,q8_0:ggml,q8_0:blas').split(',').map((type) => [type, trainOne(name, { ...spec, type })] as const);
    if (!torchPython) continue;
    const t = torchBench(spec);
    console.log(t ? `  ${name} torch ${t.torch} ${t.tokensPerSecond.toFixed(0).padStart(8)} tok/s ${t.ms.toFixed(0).padStart(7)} ms/step   peak RSS ${t.peakRssMiB.toFixed(0)} MiB` : `  ${name}: the PyTorch run failed`);
    if (t) ratios.push(`  ${name.slice(0, 1)}: ${hone.map(([type, tps]) => `${type} ${tps ? (tps / t.tokensPerSecond).toFixed(2) : '?'}×`).join(', ')} PyTorch's tokens/s`);
  }
  if (ratios.length) console.log(`Hone against PyTorch:\n${ratios.join('\n')}`);
  // Q8_0 against F32 on config B: the loss after 50 steps on the same data
  for (const type of ['f32', 'q8_0', 'q8_0:ggml']) trainOne(configs[1][0], { ...configs[1][1], type, loss50: true });
  // answer-only loss: instruction data trains on answers; the output head runs only where a label is
  const [nameB, specB] = configs[1];
  trainOne(nameB, { ...specB, type: 'f32', answers: 0.25 });
}
engine.free();
