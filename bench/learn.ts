// `npm run bench -- learn`: learned codes on one layer of a real shape (`LEARN_SHAPE` rows×cols,
// default the 1.1B down projection 2048×5632), from its Q4_K round-to-nearest codes against
// H = XᵀX/64 of 64 random rows + 0.01·I, for 1, 2 and 4 sweeps: the layer output error, and the
// time of each part — the native in-block descent, the block updates G += Δ·H (full, and the last
// sweep's right-of-block tails) and the start product G = E·H.
import { openEngine } from '../electron/lab/engine/backend.js';
import { native } from '../electron/lab/engine/native.js';
import { LEARNABLE_TYPES, referenceQuantize } from '../electron/lab/compress/grid.js';
import { LayerCurvature } from '../electron/lab/compress/learn-codes.js';
import { randn } from '../electron/lab/model/tiny.js';

/** wraps `o[k]` (a method) to add its time into `acc.ms` */
function timed(o: Record<string, unknown>, k: string, acc: { ms: number }) {
  const f = (o[k] as (...a: unknown[]) => unknown).bind(o);
  o[k] = (...a: unknown[]) => { const t = performance.now(); try { return f(...a); } finally { acc.ms += performance.now() - t; } };
}

export function learnBench() {
  const [rows, cols] = (process.env.LEARN_SHAPE ?? '2048x5632').split('x').map(Number);
  const engine = openEngine({ backend: 'cpu' });
  const n = 64, x = randn(3, n * cols, 1), H = new Float32Array(cols * cols);
  for (let t = 0; t < n; t++) for (let i = 0; i < cols; i++) { const xi = x[t * cols + i] / n; for (let j = 0; j < cols; j++) H[i * cols + j] += xi * x[t * cols + j]; }
  for (let i = 0; i < cols; i++) H[i * cols + i] += 0.01;
  const w = randn(5, rows * cols, 0.05);
  const { grid } = referenceQuantize(LEARNABLE_TYPES.q4_k, w, rows, cols);
  console.log(`learned codes, ${rows} × ${cols} from Q4_K, ${engine.threads} threads, OpenBLAS ${engine.blas ? 'on' : 'off'}, ${new Date().toISOString().slice(0, 10)}`);
  console.log('| sweeps | error before → after | descent s | block updates s | last-sweep tails s | start product s | total s |');
  console.log('|---|---|---|---|---|---|---|');
  for (const sweeps of [1, 2, 4]) {
    const c = new LayerCurvature(engine, H, rows, cols);
    const descent = { ms: 0 }, updates = { ms: 0 }, tails = { ms: 0 }, start = { ms: 0 };
    const inner = c as unknown as Record<string, Record<string, unknown>>;
    timed(native() as unknown as Record<string, unknown>, 'learnBlock', descent);
    timed(inner.updateGraph, 'compute', updates);
    timed(inner.productGraph, 'compute', start);
    timed(c as unknown as Record<string, unknown>, 'updateTail', tails);
    const t0 = performance.now();
    const r = c.learn(w, grid, { sweeps, scales: true, roundHalf: true });
    const total = performance.now() - t0;
    c.free();
    const s = (a: { ms: number }) => (a.ms / 1e3).toFixed(2);
    console.log(`| ${sweeps} | ${r.before.toFixed(2)} → ${r.after.toFixed(4)} | ${s(descent)} | ${s(updates)} | ${s(tails)} | ${s(start)} | ${(total / 1e3).toFixed(2)} |`);
  }
  engine.free();
}
