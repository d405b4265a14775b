// The lab: Hone's core behind the one typed API of api-contract.ts, over the store and job manager.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { listDevices } from './engine/backend.js';
import { previewDataset } from './data/dataset.js';
import { ggmlTypeName } from './engine/types.js';
import { openChat, type Chat } from './eval/chat.js';
import { EventEmitter } from 'node:events';
import { withTrainedRun, writeExport } from './export/run-export.js';
import { JobManager, type Spawner } from './jobs/manager.js';
import { COMPRESS_DEFAULTS, checkCompressConfig, type CompressConfig, type StageRecord } from './compress/job.js';
import type { LabApi, LabEvent, ModelSummary } from './api-contract.js';
import { readGguf } from './model/gguf.js';
import { describe, hparamsOf } from './model/llama.js';
import { Store, dataFolder, fingerprint, type ModelRecord } from './store/store.js';
import type { TrainConfig } from './tune/run.js';
import { resolveTrainConfig } from './tune/settings.js';

export * from './api-contract.js';

export function summarize(path: string): ModelSummary {
  const f = readGguf(path);
  const d = describe(f);
  return {
    path, architecture: d.hparams.arch, parameters: d.parameters, layers: d.hparams.nLayer, embedding: d.hparams.nEmbd, heads: d.hparams.nHead,
    kvHeads: d.hparams.nHeadKv, vocabulary: d.hparams.nVocab, context: d.hparams.nCtxTrain, weightTypes: d.tensorTypes, fileBytes: f.fileSize,
    tensors: f.tensors.map((t) => ({ name: t.name, shape: t.shape, type: ggmlTypeName(t.type) })),
  };
}

function findGguf(dir: string, depth = 4): string[] {
  if (depth < 0 || !existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...findGguf(p, depth - 1));
    else if (e.name.endsWith('.gguf')) out.push(p);
  }
  return out;
}

export interface Lab extends LabApi {
  /** Hone's data folder: the store, runs, imports, compressed models */
  home: string;
  store: Store;
  jobs: JobManager;
  on(listener: (e: LabEvent) => void): () => void;
}

export async function createLab(opts: { home?: string; spawner?: Spawner } = {}): Promise<Lab> {
  const home = opts.home ?? dataFolder();
  const store = await Store.open(home);
  const jobs = new JobManager(store, opts.spawner);
  const runsFolder = join(home, 'runs');
  const events = new EventEmitter();
  jobs.on('job', (e: LabEvent) => events.emit('event', e));
  const chats = new Map<string, Promise<Chat>>();
  const run = (id: string) => {
    const r = store.data.runs.find((x) => x.id === id);
    if (!r) throw new Error(`no run ${id}`);
    return r;
  };
  return {
    home,
    store,
    jobs,
    on(listener) {
      events.on('event', listener);
      return () => events.off('event', listener);
    },
    async inspectModel(path) { return summarize(path); },
    async addModel(path) {
      const s = summarize(path);
      const rec: ModelRecord = { id: fingerprint(path), path: resolve(path), fingerprint: fingerprint(path), architecture: s.architecture, parameters: s.parameters, addedAt: Date.now() };
      await store.update((d) => { d.models = [...d.models.filter((m) => m.path !== rec.path), rec]; });
      return rec;
    },
    async listModels() { return store.data.models; },
    async discoverModels() {
      const home = homedir();
      const places = [
        { source: 'LM Studio', dir: join(home, '.lmstudio', 'models') },
        { source: 'LM Studio', dir: join(home, '.cache', 'lm-studio', 'models') },
        { source: 'Ollama', dir: join(process.env.OLLAMA_MODELS ?? join(home, '.ollama', 'models'), 'blobs') },
      ];
      const found: { path: string; source: string; bytes: number }[] = [];
      for (const { source, dir } of places) {
        // Ollama stores GGUFs as sha256-named blobs: keep those that start with the GGUF magic
        const files = source === 'Ollama' && existsSync(dir) ? readdirSync(dir).map((f) => join(dir, f)).filter((p) => isGguf(p)) : findGguf(dir);
        for (const path of files) found.push({ path, source, bytes: statSync(path).size });
      }
      return found;
    },
    async previewDataset(path, modelPath, format) { return previewDataset(path, modelPath, { format }); },
    async startRun(partial) {
      const id = `run-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}-${Math.random().toString(36).slice(2, 6)}`;
      // the same check and defaults as `hone train` (tune/settings.ts), before the job starts
      const config: TrainConfig = resolveTrainConfig(partial, { nLayer: hparamsOf(readGguf(partial.model)).nLayer });
      await jobs.startTraining(id, join(runsFolder, id), config);
      return run(id);
    },
    async startCompression(partial) {
      const id = `compress-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}-${Math.random().toString(36).slice(2, 6)}`;
      const out = join(home, 'compressed', id);
      const config: CompressConfig = { ...COMPRESS_DEFAULTS, ...partial, out, retrain: { ...COMPRESS_DEFAULTS.retrain, ...partial.retrain }, icbs: { ...COMPRESS_DEFAULTS.icbs, ...partial.icbs } };
      checkCompressConfig(config, !!config.calib || existsSync(join(config.model, 'config.json')));
      await jobs.startCompression(id, out, config);
      return run(id);
    },
    async compressionReport(id) {
      const file = join(run(id).dir, 'compress.json');
      return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { stages: StageRecord[] }).stages : [];
    },
    async pauseRun(id) { await jobs.pause(id); },
    async resumeRun(id) { await jobs.resume(id); },
    async cancelRun(id) { jobs.cancel(id); },
    async listRuns() { return store.data.runs; },
    async runMetrics(id) {
      const file = join(run(id).dir, 'metrics.jsonl');
      if (!existsSync(file)) return [];
      return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => {
        const e = JSON.parse(l);
        return e.type === 'eval' ? { step: e.step, valLoss: e.valLoss } : { step: e.step, loss: e.loss, tokensPerSecond: e.tokensPerSecond, lr: e.lr };
      });
    },
    async exportRun(id, format, type) {
      type ??= 'f16'; // null from JSON too
      const r = run(id);
      const out = withTrainedRun(r.dir, (l) => writeExport(l, join(r.dir, 'export'), format, type, true));
      const artifacts = out.map((path) => ({ path, bytes: statSync(path).size }));
      await store.upsertRun({ id, artifacts: [...r.artifacts.filter((a) => !out.includes(a.path)), ...artifacts.map((a) => ({ ...a, format }))] });
      return artifacts;
    },
    async importFile(name, base64) {
      const dir = join(home, 'imports');
      mkdirSync(dir, { recursive: true });
      const safe = basename(name).replace(/[^\w.-]+/g, '_') || 'file';
      const path = join(dir, `${Date.now()}-${safe}`);
      writeFileSync(path, Buffer.from(base64, 'base64'));
      return path;
    },
    async devices() {
      return listDevices().map(({ name, description, kind, memoryFree, memoryTotal }) => ({ name, description, kind, memoryFree, memoryTotal }));
    },
    async chat(modelPath, question, loraPath, streamId) {
      const key = `${resolve(modelPath)}|${loraPath ? resolve(loraPath) : ''}`;
      if (!chats.has(key)) {
        // keep the two most recent conversations (base and tuned side by side)
        while (chats.size >= 2) {
          const [oldest] = chats.keys();
          const c = chats.get(oldest)!;
          chats.delete(oldest);
          void c.then((x) => x.dispose()).catch(() => {});
        }
        chats.set(key, openChat(modelPath, loraPath, { contextSize: 2048 }));
      }
      const c = await chats.get(key)!;
      return c.ask(question, 128, streamId ? (text) => events.emit('event', { type: 'chat', streamId, text } satisfies LabEvent) : undefined);
    },
  };
}

function isGguf(path: string): boolean {
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const b = Buffer.alloc(4);
    readSync(fd, b, 0, 4, 0);
    return b.toString('latin1') === 'GGUF';
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
