// `npm run demo`: the main job on the embedded default, end to end on the CPU in a few minutes:
// a tiny llama model with a real vocabulary, a sample chat dataset of made-up facts, LoRA
// fine-tuning, export (merged GGUF, adapter GGUF, Ollama Modelfile, PEFT), and a chat with the
// base and the tuned model through llama.cpp.
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../lab/engine/native.js';
import { SAMPLE_FACTS, writeSampleChat } from '../lab/data/samples.js';

const dir = join(projectRoot, '.hone-cache', 'demo');
mkdirSync(dir, { recursive: true });
const model = join(dir, 'tiny-llama-q8_0.gguf');
const data = writeSampleChat(join(projectRoot, 'resources', 'samples', 'made-up-facts.jsonl'));
const run = join(dir, 'run');
rmSync(run, { recursive: true, force: true });

function hone(...args: string[]) {
  console.log(`\n$ hone ${args.join(' ')}`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(projectRoot, 'electron/cli/hone.ts'), ...args], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

hone('make-tiny', '--out', model, '--type', 'q8_0', '--embd', '128', '--layers', '2', '--heads', '4', '--kv-heads', '2', '--ff', '352', '--force');
hone('info', model);
hone('train', '--model', model, '--data', data, '--out', run, '--steps', '80', '--lr', '3e-3', '--rank', '8', '--alpha', '16', '--seq', '64', '--batch', '4', '--schedule', 'constant', '--val', '0', '--save-every', '40');
hone('export', '--run', run, '--format', 'ollama', '--type', 'q8_0');
hone('export', '--run', run, '--format', 'adapter');
hone('export', '--run', run, '--format', 'peft');
const question = SAMPLE_FACTS[0].asks[0].replace('{s}', SAMPLE_FACTS[0].subject);
console.log('\nThe base model, which never saw the facts:');
hone('chat', '--model', model, '--prompt', question, '--max-tokens', '16');
console.log('\nThe tuned model (merged Q8_0 GGUF, as llama.cpp, Ollama and LM Studio load it):');
hone('chat', '--model', join(run, 'export', 'model-q8_0.gguf'), '--prompt', question, '--max-tokens', '16');
console.log('\nThe base model with the LoRA adapter GGUF (llama.cpp --lora):');
hone('chat', '--model', model, '--lora', join(run, 'export', 'adapter.gguf'), '--prompt', SAMPLE_FACTS[1].asks[1].replace('{s}', SAMPLE_FACTS[1].subject), '--max-tokens', '16');
