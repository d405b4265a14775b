// llama.cpp's log-probabilities computed in a child process. node-llama-cpp's GPU build and Hone's
// engine would share one instance of the same GPU backend library (dlopen returns the same
// handle), so GPU references run apart from the engine under test.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { projectRoot } from '../../electron/lab/engine/native.js';
import type { LlamaCppGpu } from '../../electron/lab/engine/llamacpp.js';

export function llamaCppLogprobsApart(modelPath: string, tokens: number[], gpu: LlamaCppGpu): Float64Array {
  const main = join(projectRoot, 'tests/helpers/llamacpp-logprobs-main.ts');
  const r = spawnSync(process.execPath, ['--import', 'tsx', main, JSON.stringify([modelPath, tokens, gpu])], { encoding: 'utf8', cwd: projectRoot });
  if (r.status !== 0) throw new Error(`llama.cpp (${gpu || 'cpu'}) reference failed: ${r.stderr.trim().split('\n').slice(-3).join(' ')}`);
  return Float64Array.from(JSON.parse(r.stdout) as number[]);
}
