// `npm run demo`: the main job on the embedded default. Makes a tiny llama model with a real
// vocabulary, a sample text, and runs `hone info` and `hone perplexity` on them (the demo grows
// with training and export as those land).
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../lab/engine/native.js';

const dir = join(projectRoot, '.hone-cache', 'demo');
mkdirSync(dir, { recursive: true });
const model = join(dir, 'tiny-llama-q8_0.gguf');
const text = join(dir, 'sample.txt');

const subjects = ['The river', 'A small lab', 'Every model', 'The old map', 'Our garden'];
const verbs = ['remembers', 'teaches', 'carries', 'explains', 'measures'];
const objects = ['the shape of the valley', 'what the data says', 'one fact at a time', 'the cost of memory', 'a quiet afternoon'];
const lines: string[] = [];
for (let i = 0; i < 40; i++) lines.push(`${subjects[i % 5]} ${verbs[(i * 3) % 5]} ${objects[(i * 7) % 5]}.`);
writeFileSync(text, lines.join('\n') + '\n');

function hone(...args: string[]) {
  console.log(`\n$ hone ${args.join(' ')}`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(projectRoot, 'electron/cli/hone.ts'), ...args], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

hone('make-tiny', '--out', model, '--type', 'q8_0', '--embd', '128', '--layers', '2', '--heads', '4', '--kv-heads', '2', '--ff', '352', '--force');
hone('info', model);
hone('perplexity', '--model', model, '--text', text, '--ctx', '128');
console.log('\nRandom weights predict worse than chance (perplexity above the 32,000-token vocabulary); training brings it down.');
