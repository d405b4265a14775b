#!/usr/bin/env -S npx tsx
// The `hone` command: thin over electron/lab.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { openEngine } from '../lab/engine/backend.js';
import { ggmlTypeName } from '../lab/engine/types.js';
import { tokenize } from '../lab/engine/llamacpp.js';
import { perplexity } from '../lab/eval/perplexity.js';
import { readGguf } from '../lab/model/gguf.js';
import { LlamaModel, describe } from '../lab/model/llama.js';
import { describePlan, gib } from '../lab/offload/plan.js';
import { parseBytes } from '../lab/offload/measure.js';
import { TINY_DEFAULTS, makeTiny } from '../lab/model/tiny.js';
import { VOCABS, type VocabName } from '../lab/model/vocab.js';
import { ARCHITECTURE_NAMES } from '../lab/model/architectures.js';
import { Progress } from './progress.js';
import { MODULES } from '../lab/tune/adapter.js';
import { METHODS, type MethodName } from '../lab/tune/methods.js';
import { planRun, runTraining } from '../lab/tune/run.js';
import { usageText } from '../lab/tune/settings.js';
import { trainConfigFromArgs } from './train-args.js';
import { EXPORT_FORMATS, withTrainedRun, writeExport, type ExportFormat, type MergedType } from '../lab/export/run-export.js';
import { openChat } from '../lab/eval/chat.js';
import { COMPRESS_DEFAULTS, runCompression, type CompressConfig, type PatternName, type PruneMethod } from '../lab/compress/job.js';
import type { PruneScore } from '../lab/compress/prune.js';
import type { Quant } from '../lab/compress/quantize.js';
import { createLab } from '../lab/api.js';
import { projectRoot } from '../lab/engine/native.js';
import { serve } from '../serve/server.js';
import { removeLiveTemps } from '../lab/store/temp-files.js';

const usage = `hone — fine-tune, compress and export LLMs on one machine

  hone info <model.gguf> [--json]
      architecture, shapes, weight types and parameter count
  hone perplexity --model <model.gguf> --text <file> [--ctx N] [--json]
      perplexity of the model on a text file, in windows of N tokens (default 512)
  hone make-tiny --out <file.gguf> [--arch llama|mistral3|qwen2|qwen3|phi3|gemma3] [--vocab llama-spm|llama-bpe|qwen2|phi-3|gemma-4]
      [--type f32|f16|bf16|q8_0|q4_0|q4_k|q5_k|q6_k] [--embd N] [--layers N] [--heads N]
      [--kv-heads N] [--ff N] [--ctx N] [--rope-base X] [--rope-freqs] [--tied] [--seed N] [--force]
      a tiny model with random weights and a real tokenizer, for tests and demos

  hone train --model <gguf> --data <file> --out <dir> [--resume] [--json] [settings]
      fine-tunes; Ctrl-C stops after writing a checkpoint, --resume continues from the last one;
      with budgets, a memory plan decides whether blocks stream from the model file (--offload forces it;
      LoRA, HUT, MoS, GaLore and full stream; GaLore/full keep each block's F32 state in RAM or in --ssd);
      --ram bounds the whole process's peak memory: over it, the micro-batch halves (accumulating more),
      else the run is refused with the shortfall.
      Settings (electron/lab/tune/settings.ts; the app's Train page reads the same table):
${usageText()}
  hone export --run <dir> --format merged|adapter|peft|ollama [--type f16|f32|q8_0] [--force]
  hone compress --model <gguf or run folder> --out <dir> [--prune magnitude|wanda|perp|icbs|structured] [--sparsity 0.5]
      [--pattern unstructured|2:4|4:8] [--per row|matrix|global] [--score wanda|magnitude] [--heads 0] [--recover]
      [--quant f16|q8_0|q4_0|q4_k|iq4_nl|q8_0-learned|q4_0-learned|q4_k-learned|iq4_nl-learned|nupes4|nupes3]
      [--calib <text or dataset file>] [--calib-samples 128] [--calib-seq 128] [--eval <file>] [--eval-tokens 16384]
      [--retrain-steps 100] [--retrain-lr 5e-4] [--retrain-rank 16] [--retrain-alpha 32] [--retrain-no-norms]
      [--icbs-epochs 3] [--icbs-block 128] [--icbs-blocks 100000] [--learn-sweeps 4]
      [--restart] [--json]
      prune → retrain (PERP; --recover after any pruning) → quantize → GGUF + Ollama Modelfile + report;
      structured removes --sparsity of the FFN channels and --heads of the KV head groups; the input is never changed;
      Ctrl-C stops, and the same command resumes at the last finished stage
  hone plan --model <gguf> [--method lora|…] [--rank 8] [--batch 4] [--seq 256] [--gpu-mem 6G] [--ram 8G] [--ssd <folder>] [--json]
      where weights, trainable state and activations would live for a run within these budgets
      (default: what the machine has), and the expected step time from measured rates
  hone chat --model <gguf> [--lora <adapter.gguf>] [--prompt "…"]
  hone serve [--port N] [--allow <folder> …]
      the app's UI and API over HTTP + WebSocket on 127.0.0.1, guarded by a printed token

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
      embd: { type: 'string' }, layers: { type: 'string' }, heads: { type: 'string' }, 'kv-heads': { type: 'string' }, 'head-dim': { type: 'string' },
      ff: { type: 'string' }, ctx: { type: 'string' }, 'rope-base': { type: 'string' }, 'rope-freqs': { type: 'boolean' },
      tied: { type: 'boolean' }, seed: { type: 'string' }, force: { type: 'boolean' },
    },
  });
  const out = values.out ?? fail('--out <file.gguf> is required');
  if (values.arch && !ARCHITECTURE_NAMES.includes(values.arch)) fail(`--arch must be one of ${ARCHITECTURE_NAMES.join(', ')}`);
  if (values.vocab && !(values.vocab in VOCABS)) fail(`--vocab must be one of ${Object.keys(VOCABS).join(', ')}`);
  const heads = num(values.heads, 'heads');
  const spec = makeTiny(
    out,
    {
      arch: values.arch,
      vocab: values.vocab as VocabName | undefined,
      type: values.type,
      nEmbd: num(values.embd, 'embd'),
      nLayer: num(values.layers, 'layers'),
      nHead: heads,
      nHeadKv: num(values['kv-heads'], 'kv-heads') ?? heads,
      headDim: num(values['head-dim'], 'head-dim'),
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

async function train(argv: string[]) {
  const { cfg, out, resume, json } = trainConfigFromArgs(argv);
  const values = { resume, json };
  const stop = new AbortController();
  process.on('SIGINT', () => {
    if (stop.signal.aborted) { removeLiveTemps(); process.exit(130); }
    process.stderr.write('\nhone: stopping after this step and writing a checkpoint (Ctrl-C again to quit now)\n');
    stop.abort();
  });
  const bar = new Progress('train');
  let lastVal = '';
  await runTraining(cfg, {
    runDir: out,
    resume,
    signal: stop.signal,
    onEvent: (e) => {
      if (values.json) console.log(JSON.stringify(e));
      switch (e.type) {
        case 'dataset':
          process.stderr.write(`data: ${e.file} (${e.shape}, template ${e.template}): ${e.examples} of ${e.rows} rows used, ${e.trainWindows} training and ${e.valWindows} validation windows, ${e.trainedTokens} trained tokens\n`);
          for (const r of e.rejected.slice(0, 20)) process.stderr.write(`  skipped ${e.file}: row ${r.row} ${r.reason}\n`);
          if (e.rejected.length > 20) process.stderr.write(`  … and ${e.rejected.length - 20} more rows skipped\n`);
          break;
        case 'offload':
          process.stderr.write(`offload: ${e.streaming ? 'streaming the blocks' : 'everything fits in memory'}\n${e.plan}\n`);
          break;
        case 'memory': {
          const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
          process.stderr.write(`memory: F32 master weights ${gib(e.weights)}, gradients ${gib(e.gradients)}, optimizer state ${gib(e.optimizer)} — ${gib(e.total)} before activations\n`);
          break;
        }
        case 'start':
          process.stderr.write(`train: ${e.parameters.toLocaleString('en-US')} ${e.method} parameters on ${e.backend}${e.int8 ? ' (int8 kernels through the Q8_0 weights)' : ''}, steps ${e.startStep + 1}..${e.totalSteps}${e.resumedFrom ? ` (resumed from ${e.resumedFrom})` : ''}\n`);
          break;
        case 'step':
          bar.update(e.step, e.totalSteps, `loss ${e.loss.toFixed(4)}${lastVal} ${e.tokensPerSecond.toFixed(0)} tok/s`);
          break;
        case 'eval':
          lastVal = ` val ${e.valLoss.toFixed(4)}`;
          break;
        case 'done':
          process.stderr.write(`${e.stopped ? 'stopped' : 'done'} at step ${e.step}; run folder ${e.runDir}\n`);
          break;
      }
    },
  });
}

async function exportCmd(argv: string[]) {
  const { values } = parseArgs({ args: argv, options: { run: { type: 'string' }, format: { type: 'string' }, type: { type: 'string' }, force: { type: 'boolean' }, out: { type: 'string' } } });
  const run = values.run ?? fail('--run <dir> is required');
  const format = (values.format ?? fail(`--format ${EXPORT_FORMATS.join('|')} is required`)) as ExportFormat;
  if (!EXPORT_FORMATS.includes(format)) fail(`--format must be one of ${EXPORT_FORMATS.join(', ')}`);
  const type = (values.type ?? 'f16') as MergedType;
  if (!['f16', 'f32', 'q8_0'].includes(type)) fail('--type must be f16, f32 or q8_0');
  const written = withTrainedRun(run, (l) => {
    const out = values.out ?? join(run, 'export');
    process.stderr.write(`export: ${format}${format === 'merged' || format === 'ollama' ? ` (${type})` : ''} of ${run} at step ${l.step} into ${out}\n`);
    return writeExport(l, out, format, type, values.force ?? false);
  });
  for (const f of written) console.log(`${f}  ${(statSync(f).size / 2 ** 20).toFixed(2)} MiB`);
}

async function chat(argv: string[]) {
  const { values } = parseArgs({ args: argv, options: { model: { type: 'string' }, lora: { type: 'string' }, prompt: { type: 'string' }, 'max-tokens': { type: 'string' } } });
  const modelPath = values.model ?? fail('--model <gguf> is required');
  const maxTokens = num(values['max-tokens'], 'max-tokens') ?? 128;
  const ask = async (session: Awaited<ReturnType<typeof openChat>>, q: string) => {
    process.stdout.write('> ');
    await session.ask(q, maxTokens, (t) => process.stdout.write(t));
    process.stdout.write('\n');
  };
  const session = await openChat(modelPath, values.lora);
  try {
    if (values.prompt) return await ask(session, values.prompt);
    const rl = createInterface({ input: process.stdin, output: process.stdout });
    for await (const line of rl) {
      if (line.trim()) await ask(session, line);
    }
  } finally {
    await session.dispose();
  }
}

async function serveCmd(argv: string[]) {
  const { values } = parseArgs({ args: argv, options: { port: { type: 'string' }, allow: { type: 'string', multiple: true } } });
  const lab = await createLab();
  const staticDir = join(projectRoot, 'out', 'renderer');
  const allow = (values.allow ?? [process.cwd()]).map((p) => resolve(p));
  const s = await serve({ lab, port: num(values.port, 'port'), allow, staticDir: existsSync(staticDir) ? staticDir : undefined });
  console.log(`Hone is serving on ${s.url}\n(files readable through it: ${allow.join(', ')}; the token in the URL is required)`);
  if (!existsSync(staticDir)) console.log('the renderer is not built yet: run "npm run build" for the UI; the API works without it');
}

async function compress(argv: string[]) {
  const o = { type: 'string' } as const;
  const { values } = parseArgs({
    args: argv,
    options: {
      model: o, out: o, prune: o, sparsity: o, pattern: o, per: o, score: o, quant: o, calib: o, 'calib-samples': o, 'calib-seq': o, eval: o, 'eval-tokens': o,
      heads: o, recover: { type: 'boolean' }, 'icbs-epochs': o, 'icbs-block': o, 'icbs-blocks': o, 'learn-sweeps': o, 'retrain-steps': o, 'retrain-lr': o, 'retrain-rank': o, 'retrain-alpha': o, 'retrain-no-norms': { type: 'boolean' }, restart: { type: 'boolean' }, json: { type: 'boolean' },
    },
  });
  const d = COMPRESS_DEFAULTS;
  const cfg: CompressConfig = {
    model: values.model ?? fail('--model <gguf or run folder> is required'),
    out: values.out ?? fail('--out <dir> is required'),
    prune: values.prune as PruneMethod | undefined,
    score: values.score as PruneScore | undefined,
    sparsity: num(values.sparsity, 'sparsity') ?? d.sparsity,
    pattern: (values.pattern ?? d.pattern) as PatternName,
    per: (values.per ?? d.per) as 'row' | 'matrix' | 'global',
    heads: num(values.heads, 'heads') ?? d.heads,
    recover: values.recover ?? d.recover,
    quant: (values.quant ?? d.quant) as Quant,
    calib: values.calib,
    calibSamples: num(values['calib-samples'], 'calib-samples') ?? d.calibSamples,
    calibSeq: num(values['calib-seq'], 'calib-seq') ?? d.calibSeq,
    eval: values.eval,
    evalTokens: num(values['eval-tokens'], 'eval-tokens') ?? d.evalTokens,
    retrain: {
      ...d.retrain, steps: num(values['retrain-steps'], 'retrain-steps') ?? d.retrain.steps, lr: num(values['retrain-lr'], 'retrain-lr') ?? d.retrain.lr,
      rank: num(values['retrain-rank'], 'retrain-rank') ?? d.retrain.rank, alpha: num(values['retrain-alpha'], 'retrain-alpha') ?? d.retrain.alpha, norms: !values['retrain-no-norms'],
    },
    icbs: { epochs: num(values['icbs-epochs'], 'icbs-epochs') ?? d.icbs.epochs, blockSize: num(values['icbs-block'], 'icbs-block') ?? d.icbs.blockSize, maxBlocks: num(values['icbs-blocks'], 'icbs-blocks') ?? d.icbs.maxBlocks },
    learnSweeps: num(values['learn-sweeps'], 'learn-sweeps') ?? d.learnSweeps,
    seed: d.seed,
  };
  if (!['row', 'matrix', 'global'].includes(cfg.per)) fail('--per must be row, matrix or global');
  if (cfg.score && !['wanda', 'magnitude'].includes(cfg.score)) fail('--score must be wanda or magnitude');
  const stop = new AbortController();
  process.on('SIGINT', () => {
    if (stop.signal.aborted) { removeLiveTemps(); process.exit(130); }
    process.stderr.write('\nhone: stopping; the same command resumes at the last finished stage (Ctrl-C again to quit now)\n');
    stop.abort();
  });
  const bars = new Map<string, Progress>();
  const bar = (k: string) => { let b = bars.get(k); if (!b) bars.set(k, (b = new Progress(k))); return b; };
  const { files } = await runCompression(cfg, {
    signal: stop.signal,
    restart: values.restart,
    onEvent: (e) => {
      if (values.json) console.log(JSON.stringify(e.type === 'stage' && e.record?.layers ? { ...e, record: { ...e.record, layers: e.record.layers.length } } : e));
      if (e.type === 'progress') bar(e.stage).update(e.done, e.total, e.what ?? '');
      if (e.type === 'train' && e.event.type === 'step') bar('retrain').update(e.event.step, e.event.totalSteps, `loss ${e.event.loss.toFixed(4)}`);
      if (e.type === 'stage') {
        bars.clear();
        const r = e.record;
        if (e.status === 'start') process.stderr.write(`${e.stage}…\n`);
        else if (r) process.stderr.write(`${e.stage}${e.status === 'reused' ? ' (done earlier)' : ''}: ${r.file} ${(r.bytes / 2 ** 20).toFixed(2)} MiB${r.perplexity !== undefined ? `, perplexity ${r.perplexity.toFixed(3)}` : ''}${r.sparsity !== undefined ? `, sparsity ${(100 * r.sparsity).toFixed(1)}%` : ''}${r.trainable ? `, trained ${r.trainable.parameters} parameters (${(100 * r.trainable.fraction).toFixed(2)}%)` : ''}, ${r.seconds.toFixed(1)} s\n`);
      }
    },
  });
  for (const f of files) console.log(f);
}

async function plan(argv: string[]) {
  const o = { type: 'string' } as const;
  const { values } = parseArgs({ args: argv, options: { model: o, method: o, rank: o, batch: o, seq: o, 'gpu-mem': o, ram: o, ssd: o, json: { type: 'boolean' } } });
  const path = values.model ?? fail('--model <gguf> is required');
  const method = (values.method ?? 'lora') as MethodName;
  if (!METHODS.includes(method)) fail(`--method must be one of ${METHODS.join(', ')}`);
  const rank = num(values.rank, 'rank') ?? 8;
  const engine = openEngine();
  try {
    const offload = { gpuMem: values['gpu-mem'] ? parseBytes(values['gpu-mem']) : undefined, ram: values.ram ? parseBytes(values.ram) : undefined, ssd: values.ssd };
    const { plan: p, budgets, rates } = await planRun(engine, { model: path, method, rank, targets: MODULES, batch: num(values.batch, 'batch') ?? 4, seq: num(values.seq, 'seq') ?? 256, offload });
    if (values.json) { console.log(JSON.stringify({ budgets, rates, plan: p }, null, 2)); return; }
    const mbs = (x: number) => `${(x / 2 ** 20).toFixed(0)} MB/s`;
    console.log(`budgets: device ${gib(budgets.device)}${budgets.cpuDevice ? ' (the CPU: device and RAM are one pool)' : ''}, RAM ${gib(budgets.ram)}, SSD ${values.ssd ? `${gib(budgets.ssd)} free in ${values.ssd}` : 'none (give --ssd <folder>)'}`);
    console.log(`rates${rates.cached ? ' (measured earlier)' : ''}: SSD read ${mbs(rates.ssdRead)}, write ${mbs(rates.ssdWrite)}, host→device ${mbs(rates.hostToDevice)}, matmul ${(rates.flops / 1e9).toFixed(1)} GFLOP/s`);
    console.log(describePlan(p));
  } finally {
    engine.free();
  }
}

const commands: Record<string, (argv: string[]) => Promise<void>> = { info, perplexity: ppl, 'make-tiny': tiny, train, export: exportCmd, compress, plan, chat, serve: serveCmd };

// a signal ends the command without leaving its temporary files; train and compress stop at a step
// or stage boundary on the first Ctrl-C (their own handlers), every command at once on SIGTERM
const [cmd, ...rest] = process.argv.slice(2);
process.on('SIGTERM', () => { removeLiveTemps(); process.exit(143); });
if (cmd !== 'train' && cmd !== 'compress') process.on('SIGINT', () => { removeLiveTemps(); process.exit(130); });
if (!cmd || cmd === '--help' || cmd === '-h' || !commands[cmd]) {
  console.log(usage);
  process.exit(cmd && !['--help', '-h'].includes(cmd) ? 1 : 0);
}
// what a long command held at most, as the OS counts it (resident set, engine buffers included)
const LONG = new Set(['info', 'perplexity', 'make-tiny', 'train', 'export', 'compress']);
commands[cmd](rest)
  .then(() => { if (LONG.has(cmd)) process.stderr.write(`peak memory: ${(process.resourceUsage().maxRSS / 2 ** 20).toFixed(2)} GiB resident\n`); })
  .catch((e: Error) => fail(e.message));
