// Jobs in their own processes: a killed job is marked failed with its last output and resumes from
// its checkpoint; cancel stops after a checkpoint; pause freezes; device jobs run one at a time.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { JobManager, type JobEvent } from '../../electron/lab/jobs/manager.js';
import { writeSampleChat } from '../../electron/lab/data/samples.js';
import { Store } from '../../electron/lab/store/store.js';
import { TRAIN_DEFAULTS, type TrainConfig } from '../../electron/lab/tune/run.js';
import { testDir, tinyModel } from '../helpers/models.js';

const dir = join(testDir, `jobs-${process.pid}`);

function untilStep(jobs: JobManager, runId: string, step: number): Promise<void> {
  return new Promise((resolve) => {
    const on = (e: JobEvent) => {
      if (e.runId === runId && e.type === 'train' && e.event.type === 'step' && e.event.step >= step) { jobs.off('job', on); resolve(); }
    };
    jobs.on('job', on);
  });
}

describe('job manager', () => {
  let store: Store;
  let cfg: TrainConfig;
  beforeAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    store = await Store.open(join(dir, 'home'));
    cfg = { ...TRAIN_DEFAULTS, model: tinyModel({}), data: writeSampleChat(join(dir, 'facts.jsonl')), steps: 24, seq: 64, batch: 2, lr: 3e-3, saveEvery: 4, valFraction: 0, evalEvery: 0 };
  });

  it('a job process killed mid-run is marked failed with its last output, then resumes from its checkpoint and finishes', async () => {
    const jobs = new JobManager(store);
    const seen: JobEvent[] = [];
    jobs.on('job', (e: JobEvent) => seen.push(e));
    await jobs.startTraining('killed', join(dir, 'killed'), cfg);
    await untilStep(jobs, 'killed', 9);
    (jobs as unknown as { jobs: Map<string, { proc: { kill(s: string): void } }> }).jobs.get('killed')!.proc.kill('SIGKILL');
    expect(await jobs.settled('killed')).toBe('failed');
    const rec = store.data.runs.find((r) => r.id === 'killed')!;
    expect(rec.status).toBe('failed');
    expect(rec.error).toMatch(/the job process was killed \(SIGKILL\); last output:/);
    await jobs.resume('killed');
    expect(await jobs.settled('killed')).toBe('done');
    const start = seen.filter((e) => e.type === 'train' && e.event.type === 'start').at(-1) as Extract<JobEvent, { type: 'train' }>;
    expect(start.event).toMatchObject({ startStep: 8 });
    expect(store.data.runs.find((r) => r.id === 'killed')).toMatchObject({ status: 'done', step: 24, totalSteps: 24 });
  });

  it('cancel stops after a checkpoint, pause freezes, resume continues; device jobs wait their turn', async () => {
    const jobs = new JobManager(store);
    const order: string[] = [];
    jobs.on('job', (e: JobEvent) => { if (e.type === 'state' && e.status === 'running') order.push(e.runId); });
    await jobs.startTraining('first', join(dir, 'first'), cfg);
    await jobs.startTraining('second', join(dir, 'second'), { ...cfg, steps: 4 });
    expect(jobs.status('second')).toBe('queued');
    await untilStep(jobs, 'first', 3);
    await jobs.pause('first');
    let moved = false;
    const watch = (e: JobEvent) => { if (e.type === 'train' && e.event.type === 'step') moved = true; };
    jobs.on('job', watch);
    await new Promise((r) => setTimeout(r, 600));
    jobs.off('job', watch);
    expect(moved).toBe(false);
    await jobs.resume('first');
    await untilStep(jobs, 'first', 6);
    jobs.cancel('first');
    expect(await jobs.settled('first')).toBe('stopped');
    expect(await jobs.settled('second')).toBe('done');
    expect([...new Set(order)]).toEqual(['first', 'second']); // second started only after first stopped
    await jobs.resume('first');
    expect(await jobs.settled('first')).toBe('done');
    expect(store.data.runs.find((r) => r.id === 'first')).toMatchObject({ status: 'done', step: 24 });
  });
});
