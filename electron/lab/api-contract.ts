// The one typed API of Hone's core. Electron's IPC (electron/main), the browser host
// (electron/serve) and the CLI all serve this interface; the renderer sees it as `window.hone`.
// Types and the method list only: the preload and the renderer import this without the core.
import type { DatasetPreview } from './data/dataset.js';
import type { Shape } from './data/shape.js';
import type { ExportFormat, MergedType } from './export/run-export.js';
import type { JobEvent } from './jobs/manager.js';
import type { ModelRecord, RunRecord } from './store/store.js';
import type { TrainConfig } from './tune/run.js';
import type { CompressConfig, StageRecord } from './compress/job.js';

export interface ModelSummary {
  path: string;
  architecture: string;
  parameters: number;
  layers: number;
  embedding: number;
  heads: number;
  kvHeads: number;
  vocabulary: number;
  context: number;
  weightTypes: Record<string, number>;
  fileBytes: number;
  tensors: { name: string; shape: number[]; type: string }[];
}

export interface MetricPoint { step: number; loss?: number; valLoss?: number; tokensPerSecond?: number; lr?: number }
export interface Artifact { path: string; bytes: number }

/** Everything the UI can ask of the core. Paths are the user's own files (chosen or dropped). */
export interface LabApi {
  inspectModel(path: string): Promise<ModelSummary>;
  addModel(path: string): Promise<ModelRecord>;
  listModels(): Promise<ModelRecord[]>;
  /** GGUF files in LM Studio's and Ollama's model folders */
  discoverModels(): Promise<{ path: string; source: string; bytes: number }[]>;
  previewDataset(path: string, modelPath: string, format?: Shape): Promise<DatasetPreview>;
  startRun(config: Partial<TrainConfig> & { model: string; data: string }): Promise<RunRecord>;
  pauseRun(id: string): Promise<void>;
  resumeRun(id: string): Promise<void>;
  cancelRun(id: string): Promise<void>;
  listRuns(): Promise<RunRecord[]>;
  runMetrics(id: string): Promise<MetricPoint[]>;
  exportRun(id: string, format: ExportFormat, type?: MergedType): Promise<Artifact[]>;
  /** a compression job (prune → retrain → quantize → export) on a model or a run's merged weights;
   *  progress arrives as `compress` job events; cancel/resume with cancelRun/resumeRun */
  startCompression(config: Partial<CompressConfig> & { model: string }): Promise<RunRecord>;
  /** a compression job's report (its stages so far) */
  compressionReport(id: string): Promise<StageRecord[]>;
  /** one turn of a conversation with a model (kept per model + adapter); with `streamId`, text
   *  chunks arrive as `chat` events while it answers */
  chat(modelPath: string, question: string, loraPath?: string, streamId?: string): Promise<string>;
  /** a browser's dropped file (no path of its own) saved into the lab's imports folder; returns its path */
  importFile(name: string, base64: string): Promise<string>;
  /** compute devices and memory, for the "will it fit" estimate */
  devices(): Promise<{ name: string; description: string; kind: string | null; memoryFree: number; memoryTotal: number }[]>;
}

export type LabEvent = JobEvent | { type: 'chat'; streamId: string; text: string };
export const LAB_METHODS = [
  'inspectModel', 'addModel', 'listModels', 'discoverModels', 'previewDataset', 'startRun', 'pauseRun', 'resumeRun', 'cancelRun',
  'listRuns', 'runMetrics', 'exportRun', 'startCompression', 'compressionReport', 'chat', 'importFile', 'devices',
] as const satisfies readonly (keyof LabApi)[];

