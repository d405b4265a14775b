// Chatting with a GGUF (optionally with a LoRA adapter GGUF) through node-llama-cpp: greedy by
// default, streamed, with the model's own chat template. No system prompt unless one is given: the
// conversation is rendered as Hone renders training chats (node-llama-cpp would otherwise add its
// default system prompt, which a model tuned on chats without one has never seen).
import { LlamaChatSession } from 'node-llama-cpp';
import { llamaCpp } from './llamacpp.js';

export interface Chat {
  ask(question: string, maxTokens?: number, onText?: (t: string) => void): Promise<string>;
  dispose(): Promise<void>;
}

export async function openChat(modelPath: string, loraPath?: string, opts: { temperature?: number; contextSize?: number; systemPrompt?: string } = {}): Promise<Chat> {
  const llama = await llamaCpp();
  const model = await llama.loadModel({ modelPath, gpuLayers: 0 } as never);
  const context = await model.createContext({ contextSize: opts.contextSize ?? 256, ...(loraPath ? { lora: { adapters: [{ filePath: loraPath }] } } : {}) } as never);
  const session = new LlamaChatSession({ contextSequence: context.getSequence(), ...(opts.systemPrompt ? { systemPrompt: opts.systemPrompt } : {}) });
  if (!opts.systemPrompt) session.setChatHistory([]);
  return {
    ask: (q, maxTokens = 64, onText) => session.prompt(q, { maxTokens, temperature: opts.temperature ?? 0, onTextChunk: onText }),
    dispose: async () => { await context.dispose(); await model.dispose(); },
  };
}
