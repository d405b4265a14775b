// Messages between the job manager and a job process.
import type { TrainConfig, TrainEvent } from '../tune/run.js';
import type { CompressConfig, CompressEvent } from '../compress/job.js';

export type JobSpec =
  | { kind: 'train'; runDir: string; config: TrainConfig; resume: boolean }
  | { kind: 'compress'; runDir: string; config: CompressConfig; resume: boolean };

export type ToJob = { type: 'start'; spec: JobSpec } | { type: 'cancel' };
export type FromJob = { type: 'event'; event: TrainEvent } | { type: 'compress'; event: CompressEvent } | { type: 'error'; message: string };
