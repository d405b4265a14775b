// Messages between the job manager and a job process.
import type { TrainConfig, TrainEvent } from '../tune/run.js';

export type JobSpec = { kind: 'train'; runDir: string; config: TrainConfig; resume: boolean };

export type ToJob = { type: 'start'; spec: JobSpec } | { type: 'cancel' };
export type FromJob = { type: 'event'; event: TrainEvent } | { type: 'error'; message: string };
