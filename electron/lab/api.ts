// The one typed API of Hone's core. Electron's IPC (electron/main), the browser host and the CLI
// all serve this interface; the renderer sees it as `window.hone`.
import { readGguf } from './model/gguf.js';
import { describe } from './model/llama.js';
import { ggmlTypeName } from './engine/types.js';

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

export interface LabApi {
  /** Reads a GGUF's header (never its weights) and describes the model, or throws naming what is wrong. */
  inspectModel(path: string): Promise<ModelSummary>;
}

export function createLab(): LabApi {
  return {
    async inspectModel(path) {
      const f = readGguf(path);
      const d = describe(f);
      return {
        path,
        architecture: d.hparams.arch,
        parameters: d.parameters,
        layers: d.hparams.nLayer,
        embedding: d.hparams.nEmbd,
        heads: d.hparams.nHead,
        kvHeads: d.hparams.nHeadKv,
        vocabulary: d.hparams.nVocab,
        context: d.hparams.nCtxTrain,
        weightTypes: d.tensorTypes,
        fileBytes: f.fileSize,
        tensors: f.tensors.map((t) => ({ name: t.name, shape: t.shape, type: ggmlTypeName(t.type) })),
      };
    },
  };
}
