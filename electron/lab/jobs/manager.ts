// Jobs: each training or compression job runs in its own process, so a crash or out-of-memory never takes the app
// down. Start, pause (SIGSTOP), resume (SIGCONT, or a new process from the last checkpoint),
// cancel (stop after a checkpoint). At most one device job runs at a time; the rest wait in order.
// A process that dies is marked failed with its last log lines and can be resumed.
import { fork, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot } from '../engine/native.js';
import type { RunStatus, Store } from '../store/store.js';
import type { TrainConfig, TrainEvent } from '../tune/run.js';
import type { CompressConfig, CompressEvent } from '../compress/job.js';
import type { FromJob, JobSpec, ToJob } from './protocol.js';

export interface JobProcess {
  send(m: ToJob): void;
  kill(signal: NodeJS.Signals): void;
  pid?: number;
  on(event: 'message', f: (m: FromJob) => void): void;
  on(event: 'exit', f: (code: number | null, signal: NodeJS.Signals | null) => void): void;
  output: string[];
}

/** Starts a job process: child_process.fork here; Electron's main passes utilityProcess instead. */
export type Spawner = () => JobProcess;

/** The last 40 lines a job process printed, for the failure message. */
export function lastLines(...streams: (NodeJS.ReadableStream | null | undefined)[]): string[] {
  const output: string[] = [];
  const keep = (chunk: Buffer) => {
    for (const line of chunk.toString().split('\n')) if (line.trim()) output.push(line);
    if (output.length > 40) output.splice(0, output.length - 40);
  };
  for (const s of streams) s?.on('data', keep);
  return output;
}

export const forkSpawner: Spawner = () => {
  const worker = join(projectRoot, 'electron/lab/jobs/worker.ts');
  const child: ChildProcess = fork(worker, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  const output = lastLines(child.stdout, child.stderr);
  return {
    output,
    get pid() { return child.pid; },
    send: (m) => { if (child.connected) child.send(m); },
    kill: (signal) => { child.kill(signal); },
    // 'close' comes after the process's last IPC messages and output, unlike 'exit'
    on: ((event: string, f: (...a: unknown[]) => void) => child.on(event === 'exit' ? 'close' : event, f)) as JobProcess['on'],
  };
};

export type JobEvent =
  | { type: 'state'; runId: string; status: RunStatus; error?: string }
  | { type: 'train'; runId: string; event: TrainEvent }
  | { type: 'compress'; runId: string; event: CompressEvent };

interface Job { runId: string; spec: JobSpec; proc?: JobProcess; status: RunStatus; failure?: string; finished: boolean; cancelled?: boolean }

export class JobManager extends EventEmitter {
  private jobs = new Map<string, Job>();
  private queue: string[] = [];
  private active: string | null = null;

  constructor(private readonly store: Store, private readonly spawn: Spawner = forkSpawner) {
    super();
  }

  /** Starts (or queues) a training run in `runDir`; `resume` continues its last checkpoint. */
  async startTraining(runId: string, runDir: string, config: TrainConfig, resume = false): Promise<void> {
    if (this.jobs.get(runId)?.status === 'running' || this.queue.includes(runId)) throw new Error(`run ${runId} is already running or queued`);
    this.jobs.set(runId, { runId, spec: { kind: 'train', runDir, config, resume }, status: 'queued', finished: false });
    await this.store.upsertRun({ id: runId, dir: runDir, method: config.method, config: config as unknown as Record<string, unknown>, status: 'queued', error: undefined });
    this.queue.push(runId);
    this.emitState(runId, 'queued');
    this.next();
  }

  /** Starts (or queues) a compression job writing into `outDir`; run again, it resumes at its last finished stage. */
  async startCompression(runId: string, outDir: string, config: CompressConfig): Promise<void> {
    if (this.jobs.get(runId)?.status === 'running' || this.queue.includes(runId)) throw new Error(`job ${runId} is already running or queued`);
    this.jobs.set(runId, { runId, spec: { kind: 'compress', runDir: outDir, config, resume: false }, status: 'queued', finished: false });
    await this.store.upsertRun({ id: runId, dir: outDir, method: 'compress', config: config as unknown as Record<string, unknown>, status: 'queued', error: undefined });
    this.queue.push(runId);
    this.emitState(runId, 'queued');
    this.next();
  }

  /** Resumes a paused run in place, or a stopped / failed one from its last checkpoint. */
  async resume(runId: string): Promise<void> {
    const job = this.jobs.get(runId);
    if (job?.status === 'paused' && job.proc) {
      job.proc.kill('SIGCONT');
      await this.setStatus(job, 'running');
      return;
    }
    const rec = this.store.data.runs.find((r) => r.id === runId);
    if (!rec) throw new Error(`no run ${runId}`);
    if (rec.status === 'done') throw new Error(`run ${runId} is finished`);
    if (rec.method === 'compress') await this.startCompression(runId, rec.dir, rec.config as unknown as CompressConfig);
    else await this.startTraining(runId, rec.dir, rec.config as unknown as TrainConfig, true);
  }

  /** Freezes the job's process where it is (memory kept); resume continues it. */
  async pause(runId: string): Promise<void> {
    const job = this.runningJob(runId);
    job.proc!.kill('SIGSTOP');
    await this.setStatus(job, 'paused');
  }

  /** Stops the job after its current step and a checkpoint. */
  cancel(runId: string): void {
    const queued = this.queue.indexOf(runId);
    if (queued >= 0) {
      this.queue.splice(queued, 1);
      void this.setStatus(this.jobs.get(runId)!, 'stopped');
      return;
    }
    const job = this.runningJob(runId, true);
    job.cancelled = true;
    if (job.status === 'paused') job.proc!.kill('SIGCONT');
    job.proc!.send({ type: 'cancel' });
  }

  status(runId: string): RunStatus | undefined {
    return this.jobs.get(runId)?.status;
  }

  /** Waits until the run is no longer queued or running. */
  settled(runId: string): Promise<RunStatus> {
    return new Promise((resolve) => {
      const check = () => {
        const s = this.jobs.get(runId)?.status;
        if (s && !['queued', 'running', 'paused'].includes(s)) { this.off('job', on); resolve(s); return true; }
        return false;
      };
      const on = () => { check(); };
      if (!check()) this.on('job', on);
    });
  }

  private runningJob(runId: string, allowPaused = true): Job {
    const job = this.jobs.get(runId);
    if (!job?.proc || !(job.status === 'running' || (allowPaused && job.status === 'paused'))) throw new Error(`run ${runId} is not running`);
    return job;
  }

  private next() {
    if (this.active || this.queue.length === 0) return;
    const runId = this.queue.shift()!;
    const job = this.jobs.get(runId)!;
    this.active = runId;
    const proc = this.spawn();
    job.proc = proc;
    job.finished = false;
    job.failure = undefined;
    job.cancelled = false;
    void this.setStatus(job, 'running');
    proc.on('message', (m) => {
      if (m.type === 'error') job.failure = m.message;
      if (m.type === 'compress') {
        const e = m.event;
        this.emit('job', { type: 'compress', runId, event: e } satisfies JobEvent);
        if (e.type === 'done') {
          job.finished = true;
          job.status = 'done';
          void this.store.upsertRun({ id: runId, artifacts: e.files.map((path) => ({ path, format: 'compressed', bytes: statSync(path).size })) });
        }
        return;
      }
      if (m.type !== 'event') return;
      const e = m.event;
      this.emit('job', { type: 'train', runId, event: e } satisfies JobEvent);
      if (e.type === 'start') void this.store.upsertRun({ id: runId, totalSteps: e.totalSteps, step: e.startStep });
      if (e.type === 'checkpoint') void this.store.upsertRun({ id: runId, step: e.step });
      if (e.type === 'done') {
        job.finished = true;
        job.status = e.stopped ? 'stopped' : 'done';
      }
    });
    proc.on('exit', (code, signal) => {
      this.active = null;
      const ok = job.finished && code === 0;
      // a compression job stops on cancel by throwing; it resumes at its last finished stage
      const stopped = !ok && job.cancelled && job.spec.kind === 'compress';
      const status: RunStatus = ok ? job.status : stopped ? 'stopped' : 'failed';
      const error = ok || stopped ? undefined : job.failure ?? `the job process ${signal ? `was killed (${signal})` : `exited with code ${code}`}; last output:\n${proc.output.slice(-10).join('\n')}`;
      void this.setStatus(job, status, error).then(() => this.next());
    });
    proc.send({ type: 'start', spec: job.spec });
  }

  private async setStatus(job: Job, status: RunStatus, error?: string) {
    job.status = status;
    await this.store.upsertRun({ id: job.runId, status, ...(error ? { error } : {}) });
    this.emitState(job.runId, status, error);
  }

  private emitState(runId: string, status: RunStatus, error?: string) {
    this.emit('job', { type: 'state', runId, status, error } satisfies JobEvent);
  }
}
