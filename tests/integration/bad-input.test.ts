// The bad-input catalogue (docs/reliability.md): malformed models, datasets, settings, paths and
// runs given to the `hone` command as a user would. Every case must end with exit status 1 and one
// error line on stderr, the last, that names the file, row or setting (no stack trace, no native
// abort, no signal; what the run reported before it, such as the dataset's summary, may precede it),
// write nothing where a run would go, and leave every input byte-identical. GGUF cases run through
// `info` and through `train`: Hone's own reader refuses them before node-llama-cpp opens anything.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../electron/lab/engine/native.js';
import { writeSampleChat } from '../../electron/lab/data/samples.js';
import { readGguf } from '../../electron/lab/model/gguf.js';
import { testDir, tinyModel } from '../helpers/models.js';

const dir = join(testDir, `bad-input-${process.pid}`);
afterAll(() => { try { chmodSync(join(dir, 'read-only'), 0o755); } catch { /* not made */ } rmSync(dir, { recursive: true, force: true }); });

interface Case {
  name: string;
  args: string[];
  /** what the one line must say (besides the file, where `names` gives it) */
  says: RegExp;
  /** the path or setting the message must name */
  names?: string;
  /** files that must stay byte-identical */
  inputs?: string[];
  /** a run folder that must not get a run */
  out?: string;
}

function hone(args: string[]): Promise<{ status: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, ['--import', 'tsx', join(projectRoot, 'electron/cli/hone.ts'), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000); // a hang fails the case
    p.on('close', (status, signal) => { clearTimeout(timer); resolve({ status, signal, stderr }); });
  });
}

const hash = (path: string) => (existsSync(path) && statSync(path).isFile() ? createHash('sha256').update(readFileSync(path)).digest('hex') : 'not a file');

// --- GGUF files written byte by byte, from a valid tiny llama (d 8, 1 block, 16 tokens) ---------

type Kv = [string, number, unknown]; // key, GGUF value type, value (arrays: [itemType, items])
interface TensorSpec { name: string; dims: number[]; type: number; offset?: number }
interface GgufSpec { magic?: number; version?: number; nTensors?: bigint; nKv?: bigint; kvs: Kv[]; tensors: TensorSpec[]; cutAt?: number; data?: (b: Buffer, offsets: Map<string, number>) => void }

const U32 = 4, F32 = 6, STR = 8, ARR = 9;
const D = 8, FF = 16, V = 16;
const seedKvs = (): Kv[] => [
  ['general.architecture', STR, 'llama'], ['general.name', STR, 'bad input seed'],
  ['llama.context_length', U32, 64], ['llama.embedding_length', U32, D], ['llama.block_count', U32, 1],
  ['llama.feed_forward_length', U32, FF], ['llama.attention.head_count', U32, 2], ['llama.attention.head_count_kv', U32, 2],
  ['llama.attention.layer_norm_rms_epsilon', F32, 1e-5], ['tokenizer.ggml.model', STR, 'llama'],
  ['tokenizer.ggml.tokens', ARR, [STR, Array.from({ length: V }, (_, i) => `t${i}`)]],
];
const seedTensors = (): TensorSpec[] => [
  ['token_embd.weight', [D, V]], ['output_norm.weight', [D]], ['output.weight', [D, V]], ['blk.0.attn_norm.weight', [D]],
  ['blk.0.attn_q.weight', [D, D]], ['blk.0.attn_k.weight', [D, D]], ['blk.0.attn_v.weight', [D, D]], ['blk.0.attn_output.weight', [D, D]],
  ['blk.0.ffn_norm.weight', [D]], ['blk.0.ffn_gate.weight', [D, FF]], ['blk.0.ffn_up.weight', [D, FF]], ['blk.0.ffn_down.weight', [FF, D]],
].map(([name, dims]) => ({ name: name as string, dims: dims as number[], type: 0 }));

/** the GGUF bytes of `s` (F32 and F16 tensors only), laid out as llama.cpp writes them */
function gguf(s: GgufSpec): Buffer {
  const parts: Buffer[] = [];
  const u32 = (x: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(x >>> 0); parts.push(b); };
  const u64 = (x: bigint) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(x); parts.push(b); };
  const str = (x: string) => { u64(BigInt(Buffer.byteLength(x))); parts.push(Buffer.from(x)); };
  const value = (type: number, v: unknown) => {
    if (type === U32) u32(v as number);
    else if (type === F32) { const b = Buffer.alloc(4); b.writeFloatLE(v as number); parts.push(b); }
    else if (type === STR) str(v as string);
    else if (type === ARR) { const [it, items] = v as [number, unknown[]]; u32(it); u64(BigInt(items.length)); for (const x of items) value(it, x); }
    else u32(v as number); // an unknown type id: some bytes follow
  };
  u32(s.magic ?? 0x46554747);
  u32(s.version ?? 3);
  u64(s.nTensors ?? BigInt(s.tensors.length));
  u64(s.nKv ?? BigInt(s.kvs.length));
  for (const [k, t, v] of s.kvs) { str(k); u32(t); value(t, v); }
  const bytesOf = (t: TensorSpec) => t.dims.reduce((a, b) => a * b, 1) * (t.type === 1 ? 2 : 4);
  const offsets = new Map<string, number>();
  let next = 0; // the layout llama.cpp writes; an offset given stands in its place
  for (const t of s.tensors) {
    const offset = t.offset ?? next;
    offsets.set(t.name, offset);
    next += Math.ceil(bytesOf(t) / 32) * 32;
    str(t.name); u32(t.dims.length); for (const d of t.dims) u64(BigInt(d)); u32(t.type); u64(BigInt(offset));
  }
  let header = Buffer.concat(parts);
  header = Buffer.concat([header, Buffer.alloc((32 - (header.length % 32)) % 32)]);
  const data = Buffer.alloc(s.tensors.length ? next : 0);
  data.fill(0x3c, 0); // every F32 about 0.012
  s.data?.(data, offsets);
  const all = Buffer.concat([header, data]);
  return s.cutAt !== undefined ? all.subarray(0, s.cutAt < 0 ? all.length + s.cutAt : s.cutAt) : all;
}

const withKv = (key: string, type: number, value: unknown): GgufSpec => ({ kvs: seedKvs().map((kv) => (kv[0] === key ? [key, type, value] as Kv : kv)), tensors: seedTensors() });
const plusKv = (key: string, type: number, value: unknown): GgufSpec => ({ kvs: [...seedKvs(), [key, type, value]], tensors: seedTensors() });
const withoutKv = (key: string): GgufSpec => ({ kvs: seedKvs().filter((kv) => kv[0] !== key), tensors: seedTensors() });
const withTensor = (name: string, change: (t: TensorSpec) => TensorSpec | null): GgufSpec => ({ kvs: seedKvs(), tensors: seedTensors().flatMap((t) => (t.name === name ? [change(t)].filter((x): x is TensorSpec => !!x) : [t])) });

describe('the bad-input catalogue', () => {
  mkdirSync(dir, { recursive: true });
  const facts = writeSampleChat(join(dir, 'facts.jsonl'));
  const model = tinyModel({});
  const cases: Case[] = [];
  const at = (name: string) => join(dir, name);
  let runs = 0;
  const out = () => at(`run-${runs++}`);
  const train = (modelPath: string, dataPath: string, ...extra: string[]) => ['train', '--model', modelPath, '--data', dataPath, '--out', out(), '--steps', '2', '--seq', '32', '--batch', '1', ...extra];

  // ---- GGUF models: each through `info` and `train`
  const seedSpec: GgufSpec = { kvs: seedKvs(), tensors: seedTensors() };
  const full = gguf(seedSpec);
  const headerEnd = full.length - seedTensors().reduce((s, t) => s + Math.ceil((t.dims.reduce((a, b) => a * b, 1) * 4) / 32) * 32, 0);
  const ggufCases: [string, Buffer | string, RegExp][] = [
    ['an empty file', Buffer.alloc(0), /not a GGUF file/],
    ['a text file named .gguf', Buffer.from('hello, I am not a model\n'), /not a GGUF file/],
    ['GGML magic (an older format)', gguf({ ...seedSpec, magic: 0x67676d6c }), /not a GGUF file/],
    ['GGUF version 1', gguf({ ...seedSpec, version: 1 }), /GGUF version 1 is not supported/],
    ['GGUF version 4', gguf({ ...seedSpec, version: 4 }), /GGUF version 4 is not supported/],
    ['cut short in the fixed header', full.subarray(0, 6), /cut short/],
    ['cut short in the metadata', full.subarray(0, 120), /cut short in metadata/],
    ['cut short in the tensor table', full.subarray(0, headerEnd - 40), /cut short in tensor/],
    ['cut short in the tensor data', full.subarray(0, full.length - 100), /cut short: tensor/],
    ['a tensor count of 2^63', gguf({ ...seedSpec, nTensors: 1n << 63n }), /cut short|count/],
    ['a metadata count of 2^64 − 1', gguf({ ...seedSpec, nKv: (1n << 64n) - 1n }), /cut short|count/],
    ['a tensor whose data lies past the end', gguf(withTensor('blk.0.ffn_up.weight', (t) => ({ ...t, offset: 1 << 30 }))), /cut short: tensor "blk\.0\.ffn_up\.weight"/],
    ['a tensor of an unknown type', gguf(withTensor('blk.0.attn_q.weight', (t) => ({ ...t, type: 99 }))), /unknown type id 99/],
    ['a tensor with 7 dimensions', gguf(withTensor('blk.0.attn_q.weight', (t) => ({ ...t, dims: [1, 1, 1, 1, 1, 8, 8] }))), /7 dimensions/],
    ['two tensors that overlap', gguf(withTensor('blk.0.attn_k.weight', (t) => ({ ...t, offset: 0 }))), /"blk\.0\.attn_k\.weight" starts at data offset 0 where llama\.cpp expects/],
    ['a tensor off the alignment', gguf(withTensor('blk.0.attn_k.weight', (t) => ({ ...t, offset: 4 }))), /starts at data offset 4 where llama\.cpp expects/],
    ['a tensor named twice', gguf({ kvs: seedKvs(), tensors: [...seedTensors(), { ...seedTensors()[4] }] }), /appears twice/],
    ['a metadata key written twice', gguf({ kvs: [...seedKvs(), ['llama.block_count', U32, 1]], tensors: seedTensors() }), /appears twice/],
    ['a metadata value of an unknown type', gguf({ kvs: [...seedKvs(), ['x.y', 99, 0]], tensors: seedTensors() }), /unknown metadata value type 99/],
    ['an alignment of 3', gguf({ kvs: [...seedKvs(), ['general.alignment', U32, 3]], tensors: seedTensors() }), /general\.alignment is 3/],
    ['no general.architecture', gguf(withoutKv('general.architecture')), /general\.architecture is missing/],
    ['an architecture Hone cannot train', gguf(withKv('general.architecture', STR, 'gpt2')), /architecture "gpt2" is not one Hone can train; Hone trains llama, qwen2, qwen3, phi3, gemma3/],
    ['a family Hone does not train yet', gguf(withKv('general.architecture', STR, 'gemma2')), /Gemma 2 is not trained by Hone yet; Hone trains llama, qwen2, qwen3, phi3, gemma3/],
    ['a mixture of experts by its architecture', gguf(withKv('general.architecture', STR, 'qwen3moe')), /"qwen3moe" is a mixture-of-experts model; Hone cannot train it yet \(it would train the attention layers and norms with the experts frozen\)/],
    ['a mixture of experts stored as llama (Mixtral)', gguf(plusKv('llama.expert_count', U32, 8)), /"llama" is a mixture-of-experts model \(8 experts\)/],
    ['rope scaling Hone does not turn', gguf(plusKv('llama.rope.scaling.type', STR, 'dynamic')), /rope scaling "dynamic" is not supported yet \(Hone handles none, linear, YaRN, long-rope and Llama-3 frequency factors\)/],
    ['a head count of 0', gguf(withKv('llama.attention.head_count', U32, 0)), /head_count" is "0", not a whole number above 0/],
    ['heads that do not split the embedding', gguf({ kvs: withKv('llama.attention.head_count', U32, 3).kvs.map((kv) => (kv[0] === 'llama.attention.head_count_kv' ? [kv[0], U32, 3] as Kv : kv)), tensors: seedTensors() }), /does not split into 3 heads/],
    ['key/value heads that do not divide the heads', gguf(withKv('llama.attention.head_count_kv', U32, 3)), /cannot share 3 key\/value heads/],
    ['an absurd block count', gguf(withKv('llama.block_count', U32, 100000)), /tensor "blk\.1\.attn_norm\.weight" is missing/],
    ['no block count', gguf(withoutKv('llama.block_count')), /llama\.block_count" is missing/],
    ['an embedding length written as text', gguf(withKv('llama.embedding_length', STR, 'eight')), /embedding_length" is "eight"/],
    ['a negative norm epsilon', gguf(withKv('llama.attention.layer_norm_rms_epsilon', F32, -1)), /layer_norm_rms_epsilon" is "-1", not a finite number above 0/],
    ['a NaN norm epsilon', gguf(withKv('llama.attention.layer_norm_rms_epsilon', F32, NaN)), /layer_norm_rms_epsilon" is "NaN"/],
    ['no vocabulary in the metadata', gguf(withoutKv('tokenizer.ggml.tokens')), /vocabulary is missing/],
    ['a shape that does not match the architecture', gguf(withTensor('token_embd.weight', (t) => ({ ...t, dims: [D, V - 1] }))), /"token_embd\.weight" has shape \[8,15\]/],
    ['a tensor the architecture needs is missing', gguf(withTensor('blk.0.ffn_down.weight', () => null)), /"blk\.0\.ffn_down\.weight" is missing/],
    ['a norm stored as F16', gguf(withTensor('blk.0.attn_norm.weight', (t) => ({ ...t, type: 1 }))), /norms and biases must be F32/],
    ['a block past the block count', gguf({ kvs: seedKvs(), tensors: [...seedTensors(), { name: 'blk.1.attn_norm.weight', dims: [D], type: 0 }] }), /past llama\.block_count/],
    ['a dataset given as the model', readFileSync(facts), /not a GGUF file/],
  ];
  ggufCases.forEach(([what, bytes, says], i) => {
    const path = at(`model-${i}.gguf`);
    writeFileSync(path, bytes as Buffer);
    cases.push({ name: `model: ${what} (info)`, args: ['info', path], says, names: path, inputs: [path] });
    const o = out();
    cases.push({ name: `model: ${what} (train)`, args: ['train', '--model', path, '--data', facts, '--out', o, '--steps', '2'], says, names: path, inputs: [path, facts], out: o });
  });
  // special files as the model
  mkdirSync(at('a-folder.gguf'), { recursive: true });
  spawnSync('mkfifo', [at('a-pipe.gguf')]);
  for (const [what, path, says] of [
    ['a folder', at('a-folder.gguf'), /is a folder/],
    ['a named pipe', at('a-pipe.gguf'), /not a regular file/],
    ['/dev/null', '/dev/null', /not a regular file/],
    ['/dev/zero', '/dev/zero', /not a regular file/],
    ['a /proc file', '/proc/self/status', /not a GGUF file/],
    ['a path that does not exist', at('missing.gguf'), /cannot open/],
  ] as const) {
    cases.push({ name: `model: ${what} (info)`, args: ['info', path], says, names: path });
    const o = out();
    cases.push({ name: `model: ${what} (train)`, args: ['train', '--model', path, '--data', facts, '--out', o], says, names: path, out: o });
  }
  // broken weights in a real model: the run stops at its first step, before any update or checkpoint
  for (const [what, value] of [['NaN', NaN], ['infinite', Infinity]] as const) {
    const path = at(`weights-${what}.gguf`);
    copyFileSync(model, path);
    const f = readGguf(path);
    const t = f.tensors.find((x) => x.name === 'blk.0.attn_q.weight')!;
    const buf = readFileSync(path);
    for (let k = 0; k < 64; k++) buf.writeFloatLE(value, t.offset + 4 * k);
    writeFileSync(path, buf);
    const o = out();
    cases.push({ name: `model: ${what} weights (train)`, args: ['train', '--model', path, '--data', facts, '--out', o, '--steps', '2', '--seq', '32', '--batch', '1'], says: /the loss is (NaN|Infinity|-Infinity)/, names: path, inputs: [path, facts] });
  }

  // ---- datasets, with the valid tiny model
  const data = (name: string, content: string | Buffer) => { const p = at(name); writeFileSync(p, content); return p; };
  const row = (q: string, a: string) => JSON.stringify({ messages: [{ role: 'user', content: q }, { role: 'assistant', content: a }] });
  let deep = '"x"';
  for (let i = 0; i < 100_000; i++) deep = `[${deep}]`;
  const dataCases: [string, string, RegExp][] = [
    ['an empty .jsonl', data('empty.jsonl', ''), /the file is empty/],
    ['an empty .csv', data('empty.csv', ''), /the file is empty/],
    ['an empty .txt', data('empty.txt', ''), /the file is empty/],
    ['a .jsonl of blank lines', data('blank.jsonl', '\n\n  \n\n'), /only blank lines/],
    ['a .jsonl that is all invalid UTF-8', data('bad-utf8.jsonl', Buffer.from([0xc3, 0x28, 0x0a, 0xa0, 0xa1, 0x0a])), /not UTF-8 text/],
    ['a .jsonl in UTF-16', data('utf16.jsonl', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{"text": "hi"}\n', 'utf16le')])), /is UTF-16 text; save it as UTF-8/],
    ['a .jsonl whose every line is broken JSON', data('broken.jsonl', '{"messages": [\n{oops}\n"unterminated\n'), /none of its 3 rows could be read: row 1 not valid JSON/],
    ['a .jsonl of numbers', data('numbers.jsonl', '1\n2\n3\n'), /cannot tell the dataset's shape/],
    ['a .jsonl of arrays', data('arrays.jsonl', '[1,2]\n["a"]\n'), /cannot tell the dataset's shape/],
    ['a .json that is one object', data('object.json', '{"a": 1}'), /must be an array of rows/],
    ['a .json that is broken', data('broken.json', '[{"messages": '), /not valid JSON/],
    ['a .csv with unknown columns', data('columns.csv', 'a,b\n1,2\n3,4\n'), /cannot tell the dataset's shape/],
    ['a .csv with a header only', data('header.csv', 'instruction,output\n'), /header row but no rows under it/],
    ['a .csv with an unclosed quote', data('quote.csv', 'instruction,output\n"what is it,it is\n'), /no usable rows|row 1/],
    ['random bytes named .jsonl', data('random.jsonl', Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 2654435761) & 0xff))), /is binary data/],
    ['a PNG named .csv', data('image.csv', Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(256, 1)])), /is binary data/],
    ['chat messages nested 100,000 deep', data('deep.jsonl', `{"messages": [{"role": "user", "content": ${deep}}]}\n`), /row 1/],
    ['a 100 MB single line', data('long-line.jsonl', `{"messages": "${'x'.repeat(100 * 2 ** 20)}"\n`), /none of its 1 rows could be read: row 1 not valid JSON/],
    ['chats with roles the template does not know', data('roles.jsonl', `${JSON.stringify({ messages: [{ role: 'wizard', content: 'hi' }, { role: 'dragon', content: 'ho' }] })}\n`.repeat(4)), /role|no usable/i],
    ['chats with no messages', data('no-messages.jsonl', '{"messages": []}\n'.repeat(4)), /no usable|empty|message/i],
    ['chats with no assistant turn', data('no-answer.jsonl', `${JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] })}\n`.repeat(4)), /assistant|no usable/i],
    ['instructions without outputs', data('no-output.jsonl', '{"instruction": "say hi"}\n'.repeat(4)), /output|no usable|shape/i],
    ['a mix of shapes', data('mixed.jsonl', [row('a', 'b'), '{"instruction": "x", "output": "y"}', row('c', 'd'), '{"text": "t"}'].join('\n') + '\n'), /row 2 is an instruction row but row 1 is a chat row: a dataset has one shape/],
    ['an unknown extension', data('facts.parquet', 'PAR1'), /unknown dataset type "\.parquet"/],
    ['a GGUF given as the data', model, /unknown dataset type "\.gguf"/],
    ['a folder', (mkdirSync(at('data-folder.jsonl'), { recursive: true }), at('data-folder.jsonl')), /is a folder/],
    ['a named pipe', (spawnSync('mkfifo', [at('data-pipe.jsonl')]), at('data-pipe.jsonl')), /is not a regular file/],
    ['/dev/zero', '/dev/zero', /is not a regular file/],
    ['a path that does not exist', at('missing.jsonl'), /cannot read: ENOENT/],
  ];
  for (const [what, path, says] of dataCases) {
    const o = out();
    cases.push({ name: `data: ${what}`, args: ['train', '--model', model, '--data', path, '--out', o, '--steps', '2', '--seq', '32', '--batch', '1'], says, names: path === '/dev/zero' ? '/dev/zero' : path, inputs: [path, model], out: o });
  }

  // ---- settings: each refused by name before anything is read or written
  const flagCases: [string[], string][] = [
    [['--rank', '0'], '--rank'], [['--rank', '1.5'], '--rank'], [['--rank=-4'], '--rank'], [['--rank', 'many'], '--rank'],
    [['--lr', '0'], '--lr'], [['--lr=-1'], '--lr'], [['--lr', 'NaN'], '--lr'], [['--lr', 'fast'], '--lr'], [['--lr', 'Infinity'], '--lr'],
    [['--steps', '0'], '--steps'], [['--steps', '1.5'], '--steps'], [['--steps=-3'], '--steps'],
    [['--accum', '0'], '--accum'], [['--accum', '2.5'], '--accum'],
    [['--seq', '0'], '--seq'], [['--seq', '1'], '--seq'], [['--seq', '1000000000'], '--seq'],
    [['--batch', '0'], '--batch'], [['--batch', '10000000'], '--batch'], [['--batch', '2.5'], '--batch'],
    [['--dropout', '1'], '--dropout'], [['--dropout=-0.1'], '--dropout'],
    [['--alpha', '0'], '--alpha'], [['--warmup=-1'], '--warmup'], [['--val', '1.5'], '--val'], [['--epochs', '0'], '--epochs'],
    [['--steps', '5', '--epochs', '1'], '--epochs'], [['--schedule', 'steep'], '--schedule'], [['--method', 'magic'], '--method'],
    [['--targets', ''], '--targets'], [['--targets', 'q,x'], '--targets'], [['--method', 'hut', '--hut-form', 'wavy'], '--hut-form'],
    [['--method', 'mos', '--mos-budget', '0'], '--mos-budget'], [['--method', 'galore', '--galore-gap', '0'], '--galore-gap'],
    [['--max-grad-norm=-1'], '--max-grad-norm'], [['--weight-decay=-0.1'], '--weight-decay'], [['--ram', 'lots'], '--ram'],
  ];
  for (const [flags, flag] of flagCases) {
    const o = out();
    cases.push({ name: `setting: ${flags.join(' ')}`, args: ['train', '--model', model, '--data', facts, '--out', o, ...flags], says: new RegExp(`\\(${flag}\\)|${flag}`), inputs: [model, facts], out: o });
  }
  cases.push({ name: 'setting: a flag that does not exist', args: ['train', '--model', model, '--data', facts, '--out', out(), '--learning-rate', '1'], says: /--learning-rate/, inputs: [model, facts] });

  // ---- where a run goes
  mkdirSync(at('read-only'), { recursive: true });
  chmodSync(at('read-only'), 0o555);
  const outCases: [string, string, RegExp][] = [
    ['--out naming the model file', model, /is a file, not a folder/],
    ['--out naming the dataset', facts, /is a file, not a folder/],
    ['--out under /proc', '/proc/hone-run', /cannot be made/],
  ];
  // root writes through any mode bits: the read-only case means something only for other users
  if (process.getuid?.() !== 0) outCases.push(['--out inside a read-only folder', join(at('read-only'), 'run'), /cannot be made: EACCES/]);
  for (const [what, o, says] of outCases) cases.push({ name: `out: ${what}`, args: ['train', '--model', model, '--data', facts, '--out', o, '--steps', '2', '--seq', '32', '--batch', '1'], says, names: o, inputs: [model, facts] });
  cases.push({ name: 'out: --ssd under /proc', args: train(model, facts, '--offload', '--ssd', '/proc/hone-ssd'), says: /cannot be made/, names: '/proc/hone-ssd', inputs: [model, facts] });
  cases.push({ name: 'out: --ssd naming a file', args: train(model, facts, '--offload', '--ssd', facts), says: /not a folder|is a file/, names: facts, inputs: [model, facts] });

  // ---- export of runs that are not whole
  const runNoCk = at('run-no-checkpoint'); mkdirSync(runNoCk, { recursive: true }); writeFileSync(join(runNoCk, 'config.json'), JSON.stringify({ model, data: facts, method: 'lora', rank: 8, alpha: 16, targets: ['q'] }));
  const runBadCfg = at('run-bad-config'); mkdirSync(runBadCfg, { recursive: true }); writeFileSync(join(runBadCfg, 'config.json'), '{"model": ');
  const exportCases: [string, string[], RegExp, string][] = [
    ['a folder that is not a run', ['--run', dir, '--format', 'merged'], /is not a Hone run \(config\.json is missing\)/, dir],
    ['a run with no checkpoint', ['--run', runNoCk, '--format', 'merged'], /has no checkpoint yet; train first/, runNoCk],
    ['a run whose config.json is broken', ['--run', runBadCfg, '--format', 'merged'], /config\.json is not readable JSON/, join(runBadCfg, 'config.json')],
    ['a run that does not exist', ['--run', at('no-such-run'), '--format', 'merged'], /is not a Hone run/, at('no-such-run')],
    ['an unknown format', ['--run', runNoCk, '--format', 'zip'], /--format must be one of/, '--format'],
    ['an unknown type', ['--run', runNoCk, '--format', 'merged', '--type', 'q2'], /--type must be/, '--type'],
  ];
  for (const [what, args, says, names] of exportCases) cases.push({ name: `export: ${what}`, args: ['export', ...args], says, names, inputs: [join(runNoCk, 'config.json'), join(runBadCfg, 'config.json')] });

  // ---- compression and perplexity
  const compressCases: [string, string[], RegExp, string][] = [
    ['a model that is not GGUF', ['--model', facts, '--out', at('c1'), '--quant', 'q8_0'], /not a GGUF file|not a Hone run/, facts],
    ['a sparsity of 1.5', ['--model', model, '--out', at('c2'), '--prune', 'magnitude', '--sparsity', '1.5'], /sparsity/, '--sparsity'],
    ['an unknown quantization', ['--model', model, '--out', at('c3'), '--quant', 'q1_0'], /quant/, '--quant'],
    ['an unknown pruning method', ['--model', model, '--out', at('c4'), '--prune', 'random'], /prune/, '--prune'],
    ['a calibration file that does not exist', ['--model', model, '--out', at('c5'), '--prune', 'wanda', '--calib', at('missing.txt')], /missing\.txt/, at('missing.txt')],
  ];
  for (const [what, args, says, names] of compressCases) cases.push({ name: `compress: ${what}`, args: ['compress', ...args], says, names, inputs: [model, facts] });
  cases.push({ name: 'perplexity: a text file that does not exist', args: ['perplexity', '--model', model, '--text', at('missing.txt')], says: /missing\.txt/, names: at('missing.txt'), inputs: [model] });
  cases.push({ name: 'perplexity: a folder as the model', args: ['perplexity', '--model', at('a-folder.gguf'), '--text', facts], says: /is a folder/, names: at('a-folder.gguf'), inputs: [facts] });

  // ---- make-tiny's sizes
  for (const [flags, says] of [
    [['--embd', '0'], /--embd must be a whole number from 1/], [['--ff=-5'], /--ff must be a whole number from 1/], [['--layers', '1.5'], /--layers must be a whole number/],
    [['--embd', '65536'], /a 7\.8 GiB tensor, more than the 4 GiB make-tiny builds at once/], [['--embd', '10', '--heads', '3'], /embedding 10 is not divisible by 3 heads/], [['--type', 'q9_9'], /unknown weight type "q9_9"/],
  ] as [string[], RegExp][]) cases.push({ name: `make-tiny: ${flags.join(' ')}`, args: ['make-tiny', '--out', at(`tiny-${flags.join('')}.gguf`), ...flags], says });

  it(`has at least 100 cases (${cases.length})`, () => {
    expect(cases.length).toBeGreaterThanOrEqual(100);
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
  });

  it('every case: exit 1, one error line (the last) naming the input, no stack trace or abort, nothing written, inputs unchanged', async () => {
    const failures: string[] = [];
    const todo = [...cases];
    const one = async (c: Case) => {
      const before = (c.inputs ?? []).map(hash);
      const r = await hone(c.args);
      const lines = r.stderr.trim().split('\n').filter(Boolean);
      const errors = lines.filter((l) => l.startsWith('hone: '));
      const problems: string[] = [];
      if (r.signal) problems.push(`killed by ${r.signal}`);
      if (r.status !== 1) problems.push(`exit ${r.status}`);
      if (errors.length !== 1 || lines.at(-1) !== errors[0]) problems.push(`${errors.length} error lines, last line ${JSON.stringify(lines.at(-1)?.slice(0, 80))}`);
      if (/^\s+at |GGML_ASSERT|Aborted|core dumped|Segmentation/m.test(r.stderr)) problems.push('a stack trace or abort');
      if (!c.says.test(errors[0] ?? '')) problems.push(`does not match ${c.says}`);
      if (c.names && !(errors[0] ?? '').includes(c.names)) problems.push(`does not name ${c.names}`);
      if (c.out && existsSync(join(c.out, 'config.json'))) problems.push('wrote a run');
      (c.inputs ?? []).forEach((p, i) => { if (hash(p) !== before[i]) problems.push(`changed ${p}`); });
      if (problems.length) failures.push(`${c.name}: ${problems.join(', ')}\n    ${r.stderr.trim().slice(0, 400)}`);
    };
    await Promise.all([0, 1].map(async () => { for (let c = todo.shift(); c; c = todo.shift()) await one(c); }));
    expect(failures, failures.join('\n')).toEqual([]);
  }, 900_000);
});
