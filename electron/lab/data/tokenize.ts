// Examples to tokens with the model's own vocabulary and chat template (node-llama-cpp's chat
// wrapper, resolved from the GGUF's template), and which tokens are trained: assistant answers and
// their end-of-turn token for chats, the completion for prompt/completion pairs, everything for text.
import { resolveChatWrapper, type ChatHistoryItem, type ChatWrapper, type LlamaModel } from 'node-llama-cpp';
import { llamaCpp } from '../engine/llamacpp.js';
import type { Example, Message } from './shape.js';

export interface Encoded {
  row: number;
  tokens: number[];
  /** trained[i] = 1 when tokens[i] is a target the loss counts */
  trained: Uint8Array;
}

export interface Tokenizer {
  model: LlamaModel;
  wrapper: ChatWrapper;
  templateName: string;
  bos: number | null;
  /** the token that ends an assistant turn: end-of-turn if the vocabulary has one, else end-of-sequence */
  endOfTurn: number;
  encode(e: Example): Encoded | string;
  dispose(): Promise<void>;
}

function history(messages: Message[]): ChatHistoryItem[] {
  return messages.map((m) =>
    m.role === 'assistant' ? { type: 'model', response: [m.content] } : m.role === 'system' ? { type: 'system', text: m.content } : { type: 'user', text: m.content },
  );
}

export async function openTokenizer(modelPath: string): Promise<Tokenizer> {
  const llama = await llamaCpp();
  const model = await llama.loadModel({ modelPath, vocabOnly: true } as never);
  const wrapper = resolveChatWrapper(model);
  const tokens = model.tokens as unknown as { bos: number | null; eos: number | null; eot: number | null };
  const eos = tokens.eos;
  const eot = tokens.eot ?? eos;
  if (eot == null) throw new Error(`${modelPath}: the vocabulary has no end-of-sequence token; Hone cannot teach the model to stop`);
  const endOfTurn: number = eot;
  const endOfText: number = eos ?? eot;
  const bos = model.tokens.shouldPrependBosToken ? tokens.bos : null;
  const tok = (text: string, trim = false) => model.tokenize(text, false, trim ? 'trimLeadingSpace' : undefined) as number[];
  const render = (items: ChatHistoryItem[]) => wrapper.generateContextState({ chatHistory: items }).contextText.tokenize(model.tokenizer) as number[];

  const isEnd = (t: number) => t === endOfTurn || t === endOfText;

  /**
   * Renders growing prefixes of the chat: the prompt before each answer (ending with the assistant
   * header) and the chat through that answer. Tokens between an answer and the next prompt start
   * with the answer's closing (e.g. " </s>" or "<|im_end|>"): trained up to and including the first
   * end token, so the model learns to stop the way the template stops.
   */
  function encodeChat(e: Extract<Example, { kind: 'chat' }>): Encoded | string {
    const items = history(e.messages);
    const seq: number[] = [];
    const trained: number[] = [];
    const push = (ts: number[], flag: number) => { for (const t of ts) { seq.push(t); trained.push(flag); } };
    const pushClosing = (ts: number[]) => {
      const end = ts.findIndex(isEnd);
      push(ts.slice(0, end + 1), 1);
      push(ts.slice(end + 1), 0);
      return end >= 0;
    };
    const inconsistent = (turn: number) => `the chat template (${wrapper.wrapperName}) renders turn ${turn} inconsistently with the turns before it`;
    let closed = true;
    for (let i = 0; i < items.length; i++) {
      if (items[i].type !== 'model') continue;
      const prompt = render([...items.slice(0, i), { type: 'model', response: [] }]);
      const full = render(items.slice(0, i + 1));
      if (!startsWith(prompt, seq) || !startsWith(full, prompt)) return inconsistent(i + 1);
      if (closed) push(prompt.slice(seq.length), 0);
      else pushClosing(prompt.slice(seq.length));
      push(full.slice(prompt.length), 1);
      closed = false;
    }
    // the last answer's closing, as the template would render it before another user turn
    const after = render([...items, { type: 'user', text: '' }]);
    if (!(startsWith(after, seq) && pushClosing(after.slice(seq.length)))) {
      seq.splice(seq.length, 0, endOfTurn);
      trained.push(1);
    }
    // drop the untrained tail (the next user turn's header) the closing render added
    while (trained.length && trained[trained.length - 1] === 0) { seq.pop(); trained.pop(); }
    return { row: e.row, tokens: seq, trained: Uint8Array.from(trained) };
  }

  function encode(e: Example): Encoded | string {
    if (e.kind === 'chat') return encodeChat(e);
    const head = bos == null ? [] : [bos];
    if (e.kind === 'completion') {
      const p = tok(e.prompt), c = tok(e.completion, e.prompt.length > 0);
      if (c.length === 0) return 'the completion has no tokens';
      const tokens = [...head, ...p, ...c, endOfText];
      const trained = new Uint8Array(tokens.length);
      trained.fill(1, head.length + p.length);
      return { row: e.row, tokens, trained };
    }
    const body = tok(e.text);
    const tokens = [...head, ...body, endOfText];
    const trained = new Uint8Array(tokens.length).fill(1);
    if (head.length) trained[0] = 0;
    return { row: e.row, tokens, trained };
  }

  return { model, wrapper, templateName: wrapper.wrapperName, bos, endOfTurn, encode, dispose: () => model.dispose() };
}

function startsWith(a: number[], prefix: number[]): boolean {
  if (prefix.length > a.length) return false;
  for (let i = 0; i < prefix.length; i++) if (a[i] !== prefix[i]) return false;
  return true;
}

/** The text a chat would be rendered to, for previews. */
export function renderForPreview(t: Tokenizer, e: Encoded): { text: string; trained: boolean }[] {
  const out: { text: string; trained: boolean }[] = [];
  let start = 0;
  for (let i = 1; i <= e.tokens.length; i++) {
    if (i === e.tokens.length || e.trained[i] !== e.trained[start]) {
      out.push({ text: t.model.detokenize(e.tokens.slice(start, i) as never, true), trained: e.trained[start] === 1 });
      start = i;
    }
  }
  return out;
}

