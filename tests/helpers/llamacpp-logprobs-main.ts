// Child-process entry for llamacpp-process.ts: argv[2] = JSON [modelPath, tokens, gpu].
import { llamaCppLogprobs } from '../../electron/lab/engine/llamacpp.js';

const [path, tokens, gpu] = JSON.parse(process.argv[2]);
const lp = await llamaCppLogprobs(path, tokens, gpu);
process.stdout.write(JSON.stringify(Array.from(lp)));
process.exit(0);
