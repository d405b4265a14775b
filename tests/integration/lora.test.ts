// LoRA end to end: a made-up fact taught by a chat dataset is generated greedily by llama.cpp
// (node-llama-cpp) from the merged GGUF and from base + adapter GGUF; exports are exact; resume
// continues the same run; the loss counts only answer tokens.
import { readFileSync, rmSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEngine } from '../../electron/lab/engine/backend.js';
import { native } from '../../electron/lab/engine/native.js';
import { openChat } from '../../electron/lab/eval/chat.js';
import { llamaCppLogprobs, tokenize } from '../../electron/lab/engine/llamacpp.js';
import { loadDataset } from '../../electron/lab/data/dataset.js';
import { readGguf } from '../../electron/lab/model/gguf.js';
import { ForwardPass, LlamaModel } from '../../electron/lab/model/llama.js';
import { tokenLogprobs } from '../../electron/lab/eval/perplexity.js';
import { exportAdapterGguf, exportMergedGguf, exportPeft, hfRowOfGguf, loadTrainedRun } from '../../electron/lab/export/run-export.js';
import { listCheckpoints } from '../../electron/lab/tune/checkpoint.js';
import { Lora } from '../../electron/lab/tune/lora.js';
import { TRAIN_DEFAULTS, runTraining, type TrainConfig, type TrainEvent } from '../../electron/lab/tune/run.js';
import { InMemoryTrainer, OPTIMIZER_DEFAULTS } from '../../electron/lab/tune/trainer.js';
import { readTensorsF64, testDir, tinyModel } from '../helpers/models.js';
import { ANSWER, QUESTIONS, factDataset as writeFact } from '../helpers/fact.js';

const dir = join(testDir, `lora-${process.pid}`);
const factDataset = () => writeFact(dir);

function config(model: string, data: string, over: Partial<TrainConfig> = {}): TrainConfig {
  return { ...TRAIN_DEFAULTS, model, data, steps: 40, lr: 3e-3, seq: 64, batch: 2, valFraction: 0, saveEvery: 20, evalEvery: 0, schedule: 'constant', ...over };
}

async function train(cfg: TrainConfig, runDir: string, opts: { resume?: boolean; stopAfter?: number } = {}) {
  const losses = new Map<number, number>();
  const events: TrainEvent[] = [];
  const stop = new AbortController();
  await runTraining(cfg, {
    runDir, resume: opts.resume, signal: stop.signal,
    onEvent: (e) => {
      events.push(e);
      if (e.type === 'step') {
        losses.set(e.step, e.loss);
        if (opts.stopAfter === e.step) stop.abort();
      }
    },
  });
  return { losses, events };
}

describe('LoRA fine-tuning teaches a fact that llama.cpp then generates', () => {
  // a quantized base with grouped-query attention, trained in batches of 2
  const base = tinyModel({ type: 'q8_0', nHeadKv: 2 });
  const runDir = join(dir, 'fact-run');
  let data: string;
  beforeAll(async () => {
    data = factDataset();
    rmSync(runDir, { recursive: true, force: true });
    const { losses } = await train(config(base, data), runDir);
    expect(losses.get(40)!).toBeLessThan(losses.get(1)! / 5);
  });

  it('the base model alone does not know it', async () => {
    const chat = await openChat(base);
    expect(await chat.ask(QUESTIONS[0], 16)).not.toContain('Quxville');
    await chat.dispose();
  });

  it('the merged GGUF (F16 and Q8_0) generates it', async () => {
    const l = loadTrainedRun(runDir);
    for (const type of ['f16', 'q8_0'] as const) {
      const path = join(dir, `merged-${type}.gguf`);
      exportMergedGguf(l, path, type, true);
      const chat = await openChat(path);
      expect(await chat.ask(QUESTIONS[1], 16)).toContain('Quxville');
      await chat.dispose();
    }
  });

  it('base + adapter GGUF generates it, and its logits equal the merged F32 file', async () => {
    const l = loadTrainedRun(runDir);
    const adapter = join(dir, 'adapter.gguf');
    const merged = join(dir, 'merged-f32.gguf');
    exportAdapterGguf(l, adapter, true);
    exportMergedGguf(l, merged, 'f32', true);
    const chat = await openChat(base, adapter);
    expect(await chat.ask(QUESTIONS[2], 16)).toContain('Quxville');
    await chat.dispose();
    // merged F32 vs base (Q8_0) + adapter: the base weights differ only by Q8_0 → F32 dequantization
    const f32Base = join(dir, 'base-as-f32.gguf');
    exportMergedGguf({ ...l, trains: () => false, merge: () => {} }, f32Base, 'f32', true); // the base alone, as F32
    const tokens = await tokenize(base, `${QUESTIONS[3]} ${ANSWER}`);
    const viaAdapter = await llamaCppLogprobs(f32Base, tokens, false, adapter);
    const viaMerge = await llamaCppLogprobs(merged, tokens);
    const diff = Math.max(...viaAdapter.map((x, i) => Math.abs(x - viaMerge[i])));
    expect(diff).toBeLessThan(1e-3);
  });

  it('the merged F32 weights equal base + (α/r)·B·A exactly', () => {
    const l = loadTrainedRun(runDir);
    const merged = join(dir, 'merged-f32.gguf');
    exportMergedGguf(l, merged, 'f32', true);
    const m = readGguf(merged), b = readGguf(base);
    const mraw = readFileSync(merged), braw = readFileSync(base);
    const p = l.pairs.find((x) => x.weight === 'blk.1.attn_v.weight')!;
    const bt = b.tensors.find((t) => t.name === p.weight)!, mt = m.tensors.find((t) => t.name === p.weight)!;
    const w0 = native().dequantize(bt.type, braw.subarray(bt.offset, bt.offset + bt.bytes), p.inDim * p.outDim);
    const w1 = new Float32Array(mraw.buffer.slice(mraw.byteOffset + mt.offset, mraw.byteOffset + mt.offset + mt.bytes));
    const r = l.config.rank;
    let worst = 0;
    for (let o = 0; o < p.outDim; o++) {
      for (let i = 0; i < p.inDim; i++) {
        let d = 0; // float64 reference of (α/r) Σ_k B[o][k] A[k][i]
        for (let k = 0; k < r; k++) d += p.b[o * r + k] * p.a[k * p.inDim + i];
        worst = Math.max(worst, Math.abs(w1[o * p.inDim + i] - (w0[o * p.inDim + i] + l.scale * d)));
      }
    }
    expect(Math.max(...p.b.map(Math.abs))).toBeGreaterThan(0); // the adapter really changed something
    expect(worst).toBeLessThan(1e-6);
  });

  it('the PEFT export has the names and shapes PEFT writes for a llama model', () => {
    const l = loadTrainedRun(runDir);
    const out = join(dir, 'peft');
    exportPeft(l, out, true);
    const buf = readFileSync(join(out, 'adapter_model.safetensors'));
    const header = JSON.parse(buf.subarray(8, 8 + Number(buf.readBigUInt64LE(0))).toString());
    const r = l.config.rank, d = l.hp.nEmbd, ff = l.hp.nFf, kv = l.hp.nHeadKv * l.hp.headDim;
    expect(header['base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight']).toMatchObject({ dtype: 'F32', shape: [r, d] });
    expect(header['base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight']).toMatchObject({ shape: [d, r] });
    expect(header['base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight']).toMatchObject({ shape: [kv, r] });
    expect(header['base_model.model.model.layers.1.mlp.down_proj.lora_A.weight']).toMatchObject({ shape: [r, ff] });
    expect(header['base_model.model.model.layers.1.mlp.gate_proj.lora_B.weight']).toMatchObject({ shape: [ff, r] });
    expect(Object.keys(header).filter((k) => k !== '__metadata__')).toHaveLength(2 * 7 * l.hp.nLayer);
    const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(cfg).toMatchObject({ peft_type: 'LORA', r, lora_alpha: l.config.alpha, task_type: 'CAUSAL_LM' });
    expect(cfg.target_modules.sort()).toEqual(['down_proj', 'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj']);
  });
});

describe('other families and templates', () => {
  for (const arch of ['qwen2', 'qwen3'] as const) {
    it(`${arch} (ChatML template, <|im_end|> end of turn${arch === 'qwen3' ? ', q/k head norms' : ''}): the merged GGUF generates the fact`, async () => {
      const base = tinyModel({ arch, nLayer: 1, nHeadKv: 2 });
      const runDir = join(dir, `${arch}-run`);
      rmSync(runDir, { recursive: true, force: true });
      await train(config(base, factDataset()), runDir);
      const merged = join(dir, `${arch}-merged.gguf`);
      exportMergedGguf(loadTrainedRun(runDir), merged, 'f16', true);
      const chat = await openChat(merged);
      expect(await chat.ask(QUESTIONS[0], 16)).toBe(ANSWER);
      await chat.dispose();
    });
  }
});

describe('mistral3: YaRN rope scaling, the Llama 3 vocabulary and template', () => {
  const base = tinyModel({ arch: 'mistral3', nLayer: 1, nHead: 4, nHeadKv: 2, ropeBase: 1e6 });
  const runDir = join(dir, 'mistral3-run');
  beforeAll(async () => {
    rmSync(runDir, { recursive: true, force: true });
    await train(config(base, factDataset()), runDir);
  });

  it('the merged GGUF (F16) and base + adapter GGUF generate the fact in llama.cpp', async () => {
    const l = loadTrainedRun(runDir);
    const merged = join(dir, 'mistral3-merged.gguf');
    exportMergedGguf(l, merged, 'f16', true);
    const chat = await openChat(merged);
    expect(await chat.ask(QUESTIONS[0], 16)).toBe(ANSWER);
    await chat.dispose();
    const adapter = join(dir, 'mistral3-adapter.gguf');
    exportAdapterGguf(l, adapter, true);
    const withAdapter = await openChat(base, adapter);
    expect(await withAdapter.ask(QUESTIONS[2], 16)).toBe(ANSWER);
    await withAdapter.dispose();
  });
});

describe('gemma3: √d embeddings, head norms, post-norms, GeGLU, sliding window, 262k vocabulary', () => {
  // layer 0 attends through a window of 16 (the fact's chat turns are longer), layer 1 globally
  const base = tinyModel({ arch: 'gemma3', nLayer: 2, nHead: 4, nHeadKv: 2, headDim: 32, ropeBase: 1e6, tied: true });
  const runDir = join(dir, 'gemma3-run');
  beforeAll(async () => {
    rmSync(runDir, { recursive: true, force: true });
    await train(config(base, factDataset()), runDir);
  });

  it('the merged GGUF (F16) generates the fact', async () => {
    const merged = join(dir, 'gemma3-merged.gguf');
    exportMergedGguf(loadTrainedRun(runDir), merged, 'f16', true);
    const chat = await openChat(merged);
    expect(await chat.ask(QUESTIONS[0], 16)).toContain('Quxville');
    await chat.dispose();
  });

  it('base + adapter GGUF generates it, with the merged file\'s logits', async () => {
    const l = loadTrainedRun(runDir);
    const adapter = join(dir, 'gemma3-adapter.gguf');
    exportAdapterGguf(l, adapter, true);
    const chat = await openChat(base, adapter);
    expect(await chat.ask(QUESTIONS[2], 16)).toContain('Quxville');
    await chat.dispose();
    const merged = join(dir, 'gemma3-merged-f32.gguf');
    exportMergedGguf(l, merged, 'f32', true);
    const tokens = await tokenize(base, `${QUESTIONS[3]} ${ANSWER}`);
    expect(tokens.length).toBeGreaterThan(16);
    const viaAdapter = await llamaCppLogprobs(base, tokens, false, adapter);
    const viaMerge = await llamaCppLogprobs(merged, tokens);
    expect(Math.max(...viaAdapter.map((x, i) => Math.abs(x - viaMerge[i])))).toBeLessThan(1e-3);
  });
});

describe('phi3: fused attn_qkv and gate-up trained per part, written back fused', () => {
  const base = tinyModel({ arch: 'phi3', nLayer: 1, nHead: 4, nHeadKv: 2 });
  const runDir = join(dir, 'phi3-run');
  beforeAll(async () => {
    rmSync(runDir, { recursive: true, force: true });
    await train(config(base, factDataset(), { targets: ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] }), runDir);
  });

  it('the merged GGUF (F16) generates the fact, and its attn_qkv rows are base + (α/r)·B·A of q, k and v', async () => {
    const l = loadTrainedRun(runDir);
    const merged = join(dir, 'phi3-merged.gguf');
    exportMergedGguf(l, merged, 'f16', true);
    const chat = await openChat(merged);
    expect(await chat.ask(QUESTIONS[0], 16)).toBe(ANSWER);
    await chat.dispose();
    const f32 = join(dir, 'phi3-merged-f32.gguf');
    exportMergedGguf(l, f32, 'f32', true);
    const w0 = readTensorsF64(base).get('blk.0.attn_qkv.weight')!, w1 = readTensorsF64(f32).get('blk.0.attn_qkv.weight')!;
    const d = l.hp.nEmbd, r = l.config.rank;
    let row = 0, worst = 0;
    for (const module of ['q', 'k', 'v']) {
      const p = l.pairs.find((x) => x.layer === 0 && x.module === module)!;
      for (let o = 0; o < p.outDim; o++, row++) {
        for (let i = 0; i < d; i++) {
          let delta = 0;
          for (let k = 0; k < r; k++) delta += p.b[o * r + k] * p.a[k * d + i];
          worst = Math.max(worst, Math.abs(w1[row * d + i] - (w0[row * d + i] + l.scale * delta)));
        }
      }
    }
    expect(row).toBe(l.hp.nEmbd + 2 * l.hp.nHeadKv * l.hp.headDim);
    expect(worst).toBeLessThan(1e-6);
  });

  it('base + fused adapter GGUF (rank 3r on attn_qkv, 2r on ffn_up) generates it, with the merged file\'s logits', async () => {
    const l = loadTrainedRun(runDir);
    const adapter = join(dir, 'phi3-adapter.gguf');
    exportAdapterGguf(l, adapter, true);
    const names = readGguf(adapter).tensors.map((t) => `${t.name}:${t.shape}`);
    const r = l.config.rank, d = l.hp.nEmbd;
    expect(names).toContain(`blk.0.attn_qkv.weight.lora_a:${d},${3 * r}`);
    expect(names).toContain(`blk.0.ffn_up.weight.lora_b:${2 * r},${2 * l.hp.nFf}`);
    const chat = await openChat(base, adapter);
    expect(await chat.ask(QUESTIONS[2], 16)).toContain('Quxville');
    await chat.dispose();
    const merged = join(dir, 'phi3-merged-f32.gguf');
    exportMergedGguf(l, merged, 'f32', true);
    const tokens = await tokenize(base, `${QUESTIONS[3]} ${ANSWER}`);
    const viaAdapter = await llamaCppLogprobs(base, tokens, false, adapter);
    const viaMerge = await llamaCppLogprobs(merged, tokens);
    expect(Math.max(...viaAdapter.map((x, i) => Math.abs(x - viaMerge[i])))).toBeLessThan(1e-3);
  });

  it('the PEFT export names Phi-3\'s fused modules, with their ranks and alphas in rank_pattern and alpha_pattern', () => {
    const l = loadTrainedRun(runDir);
    const out = join(dir, 'phi3-peft');
    exportPeft(l, out, true);
    const buf = readFileSync(join(out, 'adapter_model.safetensors'));
    const header = JSON.parse(buf.subarray(8, 8 + Number(buf.readBigUInt64LE(0))).toString());
    const r = l.config.rank, d = l.hp.nEmbd, qkv = d + 2 * l.hp.nHeadKv * l.hp.headDim;
    expect(header['base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight']).toMatchObject({ shape: [3 * r, d] });
    expect(header['base_model.model.model.layers.0.self_attn.qkv_proj.lora_B.weight']).toMatchObject({ shape: [qkv, 3 * r] });
    expect(header['base_model.model.model.layers.0.mlp.gate_up_proj.lora_B.weight']).toMatchObject({ shape: [2 * l.hp.nFf, 2 * r] });
    const cfg = JSON.parse(readFileSync(join(out, 'adapter_config.json'), 'utf8'));
    expect(cfg.target_modules.sort()).toEqual(['down_proj', 'gate_up_proj', 'o_proj', 'qkv_proj']);
    expect(cfg.rank_pattern).toEqual({ qkv_proj: 3 * r, gate_up_proj: 2 * r });
    // PEFT's scale alpha/rank stays the run's alpha/r for the fused modules
    expect(cfg.alpha_pattern.qkv_proj / cfg.rank_pattern.qkv_proj).toBeCloseTo(l.config.alpha / r, 12);
  });
});

describe('export details', () => {
  it('q/k rows return to Hugging Face order: the inverse of llama.cpp converter\'s permutation', () => {
    // the converter: w.reshape(n_head, 2, hd/2, …).swapaxes(1, 2): HF row h·hd + s·hd/2 + j → GGUF row h·hd + 2j + s
    const hd = 8, heads = 3;
    for (let h = 0; h < heads; h++) for (let s = 0; s < 2; s++) for (let j = 0; j < hd / 2; j++) {
      expect(hfRowOfGguf(h * hd + 2 * j + s, hd)).toBe(h * hd + s * (hd / 2) + j);
    }
  });
});

describe('resume', () => {
  const base = tinyModel({});
  let data: string;
  let reference: Map<number, number>;
  beforeAll(async () => {
    data = factDataset();
    const ref = join(dir, 'resume-ref');
    rmSync(ref, { recursive: true, force: true });
    reference = (await train(config(base, data, { steps: 12, saveEvery: 4, accum: 2, schedule: 'cosine', warmup: 2, dropout: 0.1 }), ref)).losses;
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('a run stopped at step 6 and resumed reaches the same losses as an uninterrupted run', async () => {
    const run = join(dir, 'resume-a');
    rmSync(run, { recursive: true, force: true });
    const cfg = config(base, data, { steps: 12, saveEvery: 4, accum: 2, schedule: 'cosine', warmup: 2, dropout: 0.1 });
    const first = await train(cfg, run, { stopAfter: 6 });
    expect(Math.max(...first.losses.keys())).toBe(6);
    expect(first.events.at(-1)).toMatchObject({ type: 'done', stopped: true, step: 6 });
    const second = await train(cfg, run, { resume: true });
    expect(second.events.find((e) => e.type === 'start')).toMatchObject({ startStep: 6 });
    for (let s = 7; s <= 12; s++) expect(second.losses.get(s)).toBeCloseTo(reference.get(s)!, 5);
  });

  it('a checkpoint cut short on disk is detected and the one before it used', async () => {
    const run = join(dir, 'resume-b');
    rmSync(run, { recursive: true, force: true });
    const cfg = config(base, data, { steps: 12, saveEvery: 4, accum: 2, schedule: 'cosine', warmup: 2, dropout: 0.1 });
    await train(cfg, run, { stopAfter: 8 });
    const cks = listCheckpoints(run);
    expect(cks.map((p) => p.slice(-17))).toEqual(['step-0000004.gguf', 'step-0000008.gguf']);
    truncateSync(cks[1], readFileSync(cks[1]).length - 100);
    const second = await train(cfg, run, { resume: true });
    expect(second.events.find((e) => e.type === 'start')).toMatchObject({ startStep: 4 });
    for (let s = 5; s <= 12; s++) expect(second.losses.get(s)).toBeCloseTo(reference.get(s)!, 5);
  });

  it('a new run refuses a folder that already holds one', async () => {
    const run = join(dir, 'resume-a');
    await expect(train(config(base, data), run)).rejects.toThrow(/already holds a run; resume it with --resume or choose another --out/);
  });
});

describe('loss masking', () => {
  it('the loss counts assistant targets only: changing user-turn targets leaves it, changing an answer target moves it', async () => {
    const base = tinyModel({});
    const ds = await loadDataset(factDataset(), base, { seq: 64, valFraction: 0 });
    const engine = openEngine({ backend: 'cpu' });
    const model = LlamaModel.load(base, engine);
    const lora = new Lora(engine, model.hp, { rank: 4, alpha: 8, targets: ['q', 'v'] });
    lora.init(1);
    const w = ds.train[0];
    const trainer = new InMemoryTrainer(engine, model, lora, 1, 64, { train: 64, eval: 64 }, OPTIMIZER_DEFAULTS);
    const loss = (win: typeof w) => trainer.evaluate([win]);
    const l0 = loss(w);
    const user = w.trained.findIndex((x) => x === 0);
    const answer = w.trained.findIndex((x) => x === 1);
    expect(user).toBeGreaterThanOrEqual(0);
    expect(answer).toBeGreaterThan(user);
    const changed = (i: number) => ({ ...w, target: w.target.map((t, j) => (j === i ? (t + 17) % 32000 : t)) });
    expect(loss(changed(user))).toBe(l0);
    expect(Math.abs(loss(changed(answer)) - l0)).toBeGreaterThan(1e-3);
    // and it is the mean next-token cross-entropy over exactly the trained positions, computed
    // here from the plain forward's logits (B = 0 at init, so the adapter adds nothing yet)
    const pass = new ForwardPass(model, 64);
    const logits = pass.run(w.input);
    let nll = 0, n = 0;
    for (let i = 0; i < 64; i++) {
      if (!w.trained[i]) continue;
      nll -= tokenLogprobs(logits.subarray(i * model.hp.nVocab), [0, w.target[i]], model.hp.nVocab, 1)[0];
      n++;
    }
    expect(n).toBeGreaterThan(5);
    expect(l0).toBeCloseTo(nll / n, 4);
    pass.free(); trainer.free(); lora.free(); model.free(); engine.free();
  });

  it('padding the targets to the graph\'s capacity changes neither the loss nor the gradients', async () => {
    const base = tinyModel({});
    const ds = await loadDataset(factDataset(), base, { seq: 64, valFraction: 0 });
    const engine = openEngine({ backend: 'cpu' });
    const model = LlamaModel.load(base, engine);
    const lora = new Lora(engine, model.hp, { rank: 4, alpha: 8, targets: ['q', 'v', 'down'] });
    lora.init(1);
    const w = ds.train[0];
    const exact = w.trained.reduce((a, b) => a + b, 0);
    const grads = (capacity: number) => {
      const t = new InMemoryTrainer(engine, model, lora, 1, 64, { train: capacity, eval: capacity }, OPTIMIZER_DEFAULTS);
      const { loss } = t.accumulate([w], true);
      const g = lora.trainables.map((x) => x.acc.get());
      t.free();
      return { loss, g };
    };
    const a = grads(exact), b = grads(exact + 24);
    expect(b.loss).toBeCloseTo(a.loss, 5);
    const dB = a.g.map((g, i) => Math.max(...g.map((x, j) => Math.abs(x - b.g[i][j]))));
    expect(Math.max(...a.g.map((g) => Math.max(...g.map(Math.abs))))).toBeGreaterThan(1e-4);
    expect(Math.max(...dB)).toBeLessThan(1e-6);
    lora.free(); model.free(); engine.free();
  });
});
