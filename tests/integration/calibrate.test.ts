// Calibration walks the model block by block (one block's full statistics in memory at a time):
// its statistics equal those of the whole-model forward it replaced, summed in float64 from the
// inputs every linear layer sees, for llama, gemma3 (sliding windows shorter than the sequence)
// and phi3 (fused weights); over uneven chunks of sequences; and when a stage asks for an earlier
// block again.
import { afterAll, describe, expect, it } from 'vitest';
import { Graph, GraphBuilder, type Tensor } from '../../electron/lab/engine/graph.js';
import { openEngine } from '../../electron/lab/engine/backend.js';
import { LlamaModel, buildForward, forwardInputs, setForwardInputs } from '../../electron/lab/model/llama.js';
import { INPUT_OF, calibrate } from '../../electron/lab/compress/calibrate.js';
import { tinyModel } from '../helpers/models.js';

const engine = openEngine({ backend: 'cpu' });
afterAll(() => engine.free());

/** per `${layer}.${group}`: H = XᵀX / N in float64, from the inputs the whole-model graph hands each linear */
function wholeModelStats(model: LlamaModel, seqs: Int32Array[]): Map<string, { n: number; h: Float64Array }> {
  const T = seqs[0].length;
  const b = new GraphBuilder();
  b.on(engine);
  const inp = forwardInputs(b, T, 1);
  const inputs = new Map<string, Tensor>();
  const logits = buildForward(b, model, inp, T, 1, (g, layer, module, W, x) => {
    const key = `${layer}.${INPUT_OF[module]}`;
    if (!inputs.has(key)) inputs.set(key, g.cont(x));
    return g.mulMat(W, x);
  });
  const graph = new Graph(engine, b, [logits, ...inputs.values()]);
  const out = new Map<string, { n: number; h: Float64Array }>();
  try {
    for (const s of seqs) {
      setForwardInputs(inp, s, T, 1);
      graph.compute();
      for (const [key, t] of inputs) {
        const n = t.shape[0], x = t.get();
        if (!out.has(key)) out.set(key, { n, h: new Float64Array(n * n) });
        const h = out.get(key)!.h;
        for (let k = 0; k < T; k++) for (let i = 0; i < n; i++) { const xi = x[k * n + i]; for (let j = 0; j < n; j++) h[i * n + j] += xi * x[k * n + j]; }
      }
    }
  } finally { graph.free(); b.free(); }
  for (const v of out.values()) for (let i = 0; i < v.h.length; i++) v.h[i] /= T * seqs.length;
  return out;
}

const WEIGHT_OF = { attn_in: 'attn_q', attn_out: 'attn_output', ffn_in: 'ffn_gate', ffn_mid: 'ffn_down' } as const;

/** the largest difference relative to the matrix's largest entry: float32 rounding of a batched
 *  graph against a one-sequence one stays under 1e-4 (gemma3's scaled embeddings: 4e-5); gemma3 with
 *  the sliding window left out measures 7e-2 */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) { d = Math.max(d, Math.abs(a[i] - b[i])); m = Math.max(m, Math.abs(b[i])); }
  return d / m;
}

const cases = [
  { name: 'llama', spec: { nLayer: 2, nFf: 96 }, T: 32, count: 70 }, // chunks of 64 sequences and 6
  { name: 'gemma3 (windows of 16 in sequences of 32)', spec: { arch: 'gemma3', nLayer: 2, nEmbd: 64, nHead: 4, nHeadKv: 2, headDim: 32, nFf: 128 }, T: 32, count: 5 },
  { name: 'phi3 (fused qkv and gate-up)', spec: { arch: 'phi3', nLayer: 2, nHead: 4, nHeadKv: 2 }, T: 32, count: 5 },
  { name: 'mistral3 (the attention temperature on positions 16 to 31)', spec: { arch: 'mistral3', vocab: 'llama-spm' as const, nLayer: 2, nHead: 4, nHeadKv: 2 }, T: 32, count: 5 },
];

describe('block-by-block calibration', () => {
  for (const c of cases) {
    it(`${c.name}: full matrices and diagonals equal the whole-model forward's, in any order of layers`, () => {
      const model = LlamaModel.load(tinyModel(c.spec), engine);
      const seqs = Array.from({ length: c.count }, (_, s) => Int32Array.from({ length: c.T }, (_, t) => (s * 131 + t * 17 + 3) % model.hp.nVocab));
      const ref = wholeModelStats(model, seqs);
      const full = calibrate(model, seqs, { full: true });
      const diag = calibrate(model, seqs);
      try {
        expect(full.tokens).toBe(c.T * c.count);
        // the last block first, then back to the first (a fresh walk from the embeddings)
        const layers = [...Array(model.hp.nLayer).keys()].reverse();
        for (const il of layers) {
          for (const [group, weight] of Object.entries(WEIGHT_OF)) {
            const r = ref.get(`${il}.${group}`)!;
            const g = full.gram(`blk.${il}.${weight}.weight`);
            expect(g.n).toBe(r.n);
            expect(relDiff(g.h, r.h)).toBeLessThan(2e-4);
            const d = Float64Array.from({ length: r.n }, (_, j) => r.h[j * r.n + j]);
            expect(relDiff(diag.normSq(`blk.${il}.${weight}.weight`), d)).toBeLessThan(2e-4);
            expect(relDiff(full.normSq(`blk.${il}.${weight}.weight`), d)).toBeLessThan(2e-4);
          }
        }
        // q, k and v share their input's statistics, as gate and up do
        expect(full.gram('blk.0.attn_v.weight').h).toBe(full.gram('blk.0.attn_q.weight').h);
        expect(() => diag.gram('blk.0.attn_q.weight')).toThrow(/only the diagonals/);
        expect(() => full.gram('blk.9.attn_q.weight')).toThrow(/no calibration statistics for blk\.9/);
      } finally {
        full.free();
        diag.free();
        model.free();
      }
    });
  }
});
