// A job process: runs one training or compression job and reports its events to the parent. Killing
// it loses at most the steps since the last checkpoint (training) or the stage under way
// (compression); a 'cancel' message stops it after writing a checkpoint.
import { runTraining } from '../tune/run.js';
import { runCompression } from '../compress/job.js';
import type { FromJob, ToJob } from './protocol.js';

// Electron's utility process talks through process.parentPort; child_process.fork through process.send
const parentPort = (process as unknown as { parentPort?: { postMessage(m: unknown): void; on(e: 'message', f: (e: { data: ToJob }) => void): void } }).parentPort;
const send = (m: FromJob) => (parentPort ? parentPort.postMessage(m) : process.send?.(m));
const stop = new AbortController();

const onMessage = async (m: ToJob) => {
  if (m.type === 'cancel') { stop.abort(); return; }
  if (m.type !== 'start') return;
  try {
    if (m.spec.kind === 'compress') {
      await runCompression({ ...m.spec.config, out: m.spec.runDir }, { signal: stop.signal, onEvent: (event) => send({ type: 'compress', event }) });
    } else {
      await runTraining(m.spec.config, { runDir: m.spec.runDir, resume: m.spec.resume, signal: stop.signal, onEvent: (event) => send({ type: 'event', event }) });
    }
    process.exitCode = 0;
  } catch (e) {
    send({ type: 'error', message: (e as Error).message });
    process.exitCode = 1;
  }
  if (parentPort) process.exit(process.exitCode ?? 0);
  process.disconnect?.();
};
if (parentPort) parentPort.on('message', (e) => void onMessage(e.data));
else process.on('message', (m: ToJob) => void onMessage(m));
