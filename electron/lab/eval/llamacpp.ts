// llama.cpp itself, through node-llama-cpp: the independent judge of Hone's numbers and of every
// file Hone writes. Per-token log-probabilities of a token sequence, and tokenizing with the
// model's own vocabulary.
import { getLlama, type Llama, type LlamaModel as NlcModel } from 'node-llama-cpp';

let llamaPromise: Promise<Llama> | null = null;

/** One node-llama-cpp instance per process, CPU unless asked (its GPU choice is independent of Hone's). */
export function llamaCpp(gpu: false | 'vulkan' | 'cuda' | 'metal' = false): Promise<Llama> {
  llamaPromise ??= getLlama({ gpu, build: 'never', logLevel: 'error' as never, progressLogs: false } as never);
  return llamaPromise;
}

export async function loadModel(path: string): Promise<NlcModel> {
  const llama = await llamaCpp();
  return llama.loadModel({ modelPath: path, gpuLayers: 0 } as never);
}

export async function tokenize(modelPath: string, text: string, addBos = true): Promise<number[]> {
  const model = await loadModel(modelPath);
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
export async function llamaCppLogprobs(modelPath: string, tokens: number[]): Promise<Float64Array> {
  const model = await loadModel(modelPath);
  const context = await model.createContext({
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
