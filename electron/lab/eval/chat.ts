// Chatting with a GGUF (optionally with a LoRA adapter GGUF) through node-llama-cpp: greedy by
// default, streamed, with the model's own chat template. No system prompt unless one is given: the
// conversation is rendered as Hone renders training chats (node-llama-cpp would otherwise add its
// default system prompt, which a model tuned on chats without one has never seen). Hone's NUPES files
// chat through a dequantized F16 copy.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { LlamaChatSession } from 'node-llama-cpp';
import { llamaCpp } from '../engine/llamacpp.js';
import { readGguf } from '../model/gguf.js';
import { isNupesFile, isNupesTensor, nupesShape } from '../model/nupes-weights.js';
import { T } from '../engine/types.js';
import { encode, readValues, rewriteModel } from '../model/rewrite.js';

/**
 * The file llama.cpp can load for `path`: the file itself, or for Hone's NUPES variant (which
 * llama.cpp cannot read) a dequantized F16 copy in the temp folder, made once per file version.
 */
export function llamaCppLoadable(path: string): string {
  const f = readGguf(path);
  if (!isNupesFile(f)) return path;
  const key = createHash('sha256').update(`${resolve(path)}|${statSync(path).mtimeMs}|${statSync(path).size}`).digest('hex').slice(0, 16);
  const dir = join(tmpdir(), 'hone-nupes-f16');
  const out = join(dir, `${key}.gguf`);
  if (!existsSync(out)) {
    mkdirSync(dir, { recursive: true });
    rewriteModel(f, out, (info) => {
      if (info.shape.length < 2) return null;
      const shape = isNupesTensor(f, info.name) ? nupesShape(info) : info.shape;
      return [{ name: info.name, shape, type: T.F16, data: () => encode(readValues(f, info), shape, T.F16) }];
    }, {}, { overwrite: true });
  }
  return out;
}

export interface Chat {
  ask(question: string, maxTokens?: number, onText?: (t: string) => void): Promise<string>;
  dispose(): Promise<void>;
}

export async function openChat(modelPath: string, loraPath?: string, opts: { temperature?: number; contextSize?: number; systemPrompt?: string } = {}): Promise<Chat> {
  const llama = await llamaCpp();
  const model = await llama.loadModel({ modelPath: llamaCppLoadable(modelPath), gpuLayers: 0 } as never);
  const context = await model.createContext({ contextSize: opts.contextSize ?? 256, ...(loraPath ? { lora: { adapters: [{ filePath: loraPath }] } } : {}) } as never);
  const session = new LlamaChatSession({ contextSequence: context.getSequence(), ...(opts.systemPrompt ? { systemPrompt: opts.systemPrompt } : {}) });
  if (!opts.systemPrompt) session.setChatHistory([]);
  return {
    ask: (q, maxTokens = 64, onText) => session.prompt(q, { maxTokens, temperature: opts.temperature ?? 0, onTextChunk: onText }),
    dispose: async () => { await context.dispose(); await model.dispose(); },
  };
}
