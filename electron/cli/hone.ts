#!/usr/bin/env -S npx tsx
// The `hone` command: thin over electron/lab.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { openEngine } from '../lab/engine/backend.js';
import { ggmlTypeName } from '../lab/engine/types.js';
import { tokenize } from '../lab/eval/llamacpp.js';
import { perplexity } from '../lab/eval/perplexity.js';
import { readGguf } from '../lab/model/gguf.js';
import { LlamaModel, describe } from '../lab/model/llama.js';
import { TINY_DEFAULTS, makeTiny } from '../lab/model/tiny.js';
import type { VocabName } from '../lab/model/vocab.js';
import { Progress } from './progress.js';

const usage = `hone — fine-tune, compress and export LLMs on one machine

  hone info <model.gguf> [--json]
      architecture, shapes, weight types and parameter count
  hone perplexity --model <model.gguf> --text <file> [--ctx N] [--json]
      perplexity of the model on a text file, in windows of N tokens (default 512)
  hone make-tiny --out <file.gguf> [--arch llama|qwen2] [--vocab llama-spm|llama-bpe|qwen2]
      [--type f32|f16|bf16|q8_0|q4_0|q4_k|q5_k|q6_k] [--embd N] [--layers N] [--heads N]
      [--kv-heads N] [--ff N] [--ctx N] [--rope-base X] [--rope-freqs] [--tied] [--seed N] [--force]
      a tiny model with random weights and a real tokenizer, for tests and demos

Environment: HONE_BACKEND=cpu|cuda|vulkan|metal picks the device, HONE_THREADS the CPU threads.`;

function fail(msg: string): never {
  process.stderr.write(`hone: ${msg}\n`);
  process.exit(1);
}

function num(v: string | undefined, name: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) fail(`--${name} must be a number, got "${v}"`);
  return n;
}

async function info(argv: string[]) {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { json: { type: 'boolean' } } });
  const path = positionals[0] ?? fail('usage: hone info <model.gguf>');
  const f = readGguf(path);
  const d = describe(f);
  if (values.json) {
    console.log(JSON.stringify({ path, ...d, tensors: f.tensors.map((t) => ({ name: t.name, shape: t.shape, type: ggmlTypeName(t.type) })) }));
    return;
  }
  const hp = d.hparams;
  console.log(`${path}
  architecture   ${hp.arch}
  parameters     ${d.parameters.toLocaleString('en-US')}
  layers         ${hp.nLayer}
  embedding      ${hp.nEmbd}
  heads          ${hp.nHead} (kv ${hp.nHeadKv}, head dim ${hp.headDim})
  feed-forward   ${hp.nFf}
  vocabulary     ${hp.nVocab}
  context        ${hp.nCtxTrain}
  rope           base ${hp.rope.freqBase}, scale ${hp.rope.freqScale}${f.tensors.some((t) => t.name === 'rope_freqs.weight') ? ', frequency factors' : ''}
  output head    ${d.tied ? 'tied to the token embedding' : 'separate'}
  weight types   ${Object.entries(d.tensorTypes).map(([t, n]) => `${t} ×${n}`).join(', ')}
  file           ${(f.fileSize / 2 ** 20).toFixed(1)} MiB, GGUF v${f.version}`);
}

async function ppl(argv: string[]) {
  const { values } = parseArgs({ args: argv, options: { model: { type: 'string' }, text: { type: 'string' }, ctx: { type: 'string' }, json: { type: 'boolean' } } });
  const modelPath = values.model ?? fail('--model <model.gguf> is required');
  const textPath = values.text ?? fail('--text <file> is required');
  let text: string;
  try {
    text = readFileSync(textPath, 'utf8');
  } catch (e) {
    fail(`cannot read ${textPath}: ${(e as Error).message}`);
  }
  const engine = openEngine();
  const model = LlamaModel.load(modelPath, engine);
  const ctx = num(values.ctx, 'ctx') ?? Math.min(512, model.hp.nCtxTrain);
  if (ctx < 2 || ctx > model.hp.nCtxTrain) fail(`--ctx must be between 2 and the model's context (${model.hp.nCtxTrain})`);
  const tokens = await tokenize(modelPath, text);
  const bar = new Progress('perplexity');
  const t0 = Date.now();
  const r = perplexity(model, tokens, ctx, (done, total) => bar.update(done, total));
  const secs = (Date.now() - t0) / 1000;
  if (values.json) console.log(JSON.stringify({ model: modelPath, text: textPath, ctx, backend: engine.kind, ...r, tokensPerSecond: r.scored / secs }));
  else console.log(`perplexity ${r.perplexity.toFixed(4)} over ${r.scored} tokens in ${r.windows} windows of ${ctx} (${engine.kind}, ${(r.scored / secs).toFixed(0)} tokens/s)`);
  model.free();
  engine.free();
}

async function tiny(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      out: { type: 'string' }, arch: { type: 'string' }, vocab: { type: 'string' }, type: { type: 'string' },
      embd: { type: 'string' }, layers: { type: 'string' }, heads: { type: 'string' }, 'kv-heads': { type: 'string' },
      ff: { type: 'string' }, ctx: { type: 'string' }, 'rope-base': { type: 'string' }, 'rope-freqs': { type: 'boolean' },
      tied: { type: 'boolean' }, seed: { type: 'string' }, force: { type: 'boolean' },
    },
  });
  const out = values.out ?? fail('--out <file.gguf> is required');
  if (values.arch && !['llama', 'qwen2'].includes(values.arch)) fail(`--arch must be llama or qwen2`);
  const heads = num(values.heads, 'heads');
  const spec = makeTiny(
    out,
    {
      arch: values.arch as 'llama' | 'qwen2' | undefined,
      vocab: values.vocab as VocabName | undefined,
      type: values.type,
      nEmbd: num(values.embd, 'embd'),
      nLayer: num(values.layers, 'layers'),
      nHead: heads,
      nHeadKv: num(values['kv-heads'], 'kv-heads') ?? heads,
      nFf: num(values.ff, 'ff'),
      nCtx: num(values.ctx, 'ctx'),
      ropeBase: num(values['rope-base'], 'rope-base'),
      ropeFreqs: values['rope-freqs'],
      tied: values.tied,
      seed: num(values.seed, 'seed'),
    } as Partial<typeof TINY_DEFAULTS>,
    { overwrite: values.force },
  );
  console.log(`wrote ${out}: ${spec.arch}, ${spec.vocab} vocabulary, ${spec.type}, d=${spec.nEmbd}, ${spec.nLayer} layers`);
}

const commands: Record<string, (argv: string[]) => Promise<void>> = { info, perplexity: ppl, 'make-tiny': tiny };

const [cmd, ...rest] = process.argv.slice(2);
if (!cmd || cmd === '--help' || cmd === '-h' || !commands[cmd]) {
  console.log(usage);
  process.exit(cmd && !['--help', '-h'].includes(cmd) ? 1 : 0);
}
commands[cmd](rest).catch((e: Error) => fail(e.message));
