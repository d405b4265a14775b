// llama.cpp itself, through node-llama-cpp: the independent judge of Hone's numbers and of every
// file Hone writes. Per-token log-probabilities of a token sequence, and tokenizing with the
// model's own vocabulary.
import { getLlama, type Llama, type LlamaModel as NlcModel } from 'node-llama-cpp';

export type LlamaCppGpu = false | 'vulkan' | 'cuda' | 'metal';
const instances = new Map<LlamaCppGpu, Promise<Llama>>();

/** node-llama-cpp on the CPU, or on a GPU backend when asked (one instance per backend). */
export function llamaCpp(gpu: LlamaCppGpu = false): Promise<Llama> {
  let p = instances.get(gpu);
  if (!p) {
    p = getLlama({ gpu, build: 'never', logLevel: 'error' as never, progressLogs: false, vramPadding: 0 } as never);
    instances.set(gpu, p);
  }
  return p;
}

export async function loadModel(path: string, gpu: LlamaCppGpu = false): Promise<NlcModel> {
  const llama = await llamaCpp(gpu);
  return llama.loadModel({ modelPath: path, gpuLayers: gpu ? 'max' : 0 } as never);
}

/** Tokenizes with the model's own vocabulary (llama.cpp's tokenizer; loads the vocabulary only). */
export async function tokenize(modelPath: string, text: string, addBos = true): Promise<number[]> {
  const model = await (await llamaCpp()).loadModel({ modelPath, gpuLayers: 0, vocabOnly: true } as never);
  try {
    const toks = model.tokenize(text) as number[];
    const bos = model.tokens.bos;
    return addBos && bos != null && model.tokens.shouldPrependBosToken ? [bos as number, ...toks] : toks;
  } finally {
    await model.dispose();
  }
}

/**
 * log p(tokens[i+1] | tokens[0..i]) for i = 0..n-2 as llama.cpp computes it, with an F32 KV cache
 * and no flash attention so that the arithmetic matches Hone's graph.
 */
export async function llamaCppLogprobs(modelPath: string, tokens: number[], gpu: LlamaCppGpu = false, loraPath?: string): Promise<Float64Array> {
  const model = await loadModel(modelPath, gpu);
  const context = await model.createContext({
    ...(loraPath ? { lora: { adapters: [{ filePath: loraPath }] } } : {}),
    contextSize: Math.max(32, tokens.length),
    batchSize: Math.max(32, tokens.length),
    flashAttention: false,
    experimentalKvCacheKeyType: 'F32',
    experimentalKvCacheValueType: 'F32',
    threads: 2,
  } as never);
  try {
    const seq = context.getSequence();
    const out = await seq.controlledEvaluate(tokens.map((t, i) => (i < tokens.length - 1 ? [t, { generateNext: { probabilities: true } }] : t)) as never);
    const lp = new Float64Array(tokens.length - 1);
    for (let i = 0; i < tokens.length - 1; i++) {
      const p = out[i]?.next.probabilities?.get(tokens[i + 1] as never);
      if (p === undefined) throw new Error(`llama.cpp returned no probability at position ${i}`);
      lp[i] = Math.log(p);
    }
    return lp;
  } finally {
    await context.dispose();
    await model.dispose();
  }
}
