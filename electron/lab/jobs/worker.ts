// A job process: runs one training job and reports its events to the parent. Killing it loses at
// most the steps since the last checkpoint; a 'cancel' message stops it after writing one.
import { runTraining } from '../tune/run.js';
import type { FromJob, ToJob } from './protocol.js';

const send = (m: FromJob) => process.send?.(m);
const stop = new AbortController();

process.on('message', async (m: ToJob) => {
  if (m.type === 'cancel') { stop.abort(); return; }
  if (m.type !== 'start') return;
  try {
    await runTraining(m.spec.config, { runDir: m.spec.runDir, resume: m.spec.resume, signal: stop.signal, onEvent: (event) => send({ type: 'event', event }) });
    process.exitCode = 0;
  } catch (e) {
    send({ type: 'error', message: (e as Error).message });
    process.exitCode = 1;
  }
  process.disconnect?.();
});
