// What a row means: a chat (messages), an instruction (instruction / input / output), a
// prompt / completion pair, or raw text. Detected from the rows' keys; `--format` overrides.
import type { Row, RowIssue } from './read.js';

export type Shape = 'chat' | 'instruction' | 'completion' | 'text';
export const SHAPES: Shape[] = ['chat', 'instruction', 'completion', 'text'];

export interface Message { role: 'system' | 'user' | 'assistant'; content: string }

export type Example =
  | { row: number; kind: 'chat'; messages: Message[] }
  | { row: number; kind: 'completion'; prompt: string; completion: string }
  | { row: number; kind: 'text'; text: string };

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** the shape one row has, by its keys, or null */
export function shapeOfRow(value: unknown): Shape | null {
  if (!isObj(value)) return null;
  return Array.isArray(value.messages) || Array.isArray(value.conversations) ? 'chat'
    : 'instruction' in value && 'output' in value ? 'instruction'
    : 'prompt' in value && 'completion' in value ? 'completion'
    : 'text' in value ? 'text' : null;
}

/** the shape most of the first 50 rows have, or null */
export function detectShape(rows: Row[]): Shape | null {
  const votes = new Map<Shape, number>();
  for (const { value } of rows.slice(0, 50)) {
    const s = shapeOfRow(value);
    if (s) votes.set(s, (votes.get(s) ?? 0) + 1);
  }
  let best: Shape | null = null;
  for (const [s, n] of votes) if (!best || n > votes.get(best)!) best = s;
  return best;
}

const roles: Record<string, Message['role']> = { system: 'system', user: 'user', human: 'user', assistant: 'assistant', gpt: 'assistant', model: 'assistant' };

/** One row as an Example of the shape, or the reason it cannot be one. */
export function toExample(r: Row, shape: Shape): Example | string {
  const v = r.value;
  if (!isObj(v)) return 'is not an object';
  const str = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  switch (shape) {
    case 'chat': {
      const list = (v.messages ?? v.conversations) as unknown;
      if (!Array.isArray(list)) return 'missing "messages" (a list of {role, content})';
      const messages: Message[] = [];
      for (const [i, m] of list.entries()) {
        if (!isObj(m)) return `message ${i + 1} is not an object`;
        const role = roles[String(m.role ?? m.from ?? '').toLowerCase()];
        const content = m.content ?? m.value;
        if (!role) return `message ${i + 1} has role "${String(m.role ?? m.from)}"; use system, user or assistant`;
        if (typeof content !== 'string') return `message ${i + 1} has no text "content"`;
        messages.push({ role, content });
      }
      if (!messages.some((m) => m.role === 'assistant')) return 'has no assistant message to learn from';
      if (messages.some((m) => m.role === 'assistant' && m.content.trim() === '')) return 'has an empty assistant answer';
      return { row: r.row, kind: 'chat', messages };
    }
    case 'instruction': {
      const instruction = str('instruction'), output = str('output'), input = str('input') ?? '', system = str('system');
      if (instruction === undefined) return 'missing "instruction"';
      if (output === undefined) return 'missing "output"';
      if (output.trim() === '') return 'has an empty "output"';
      const user = input.trim() ? `${instruction}\n\n${input}` : instruction;
      return { row: r.row, kind: 'chat', messages: [...(system ? [{ role: 'system' as const, content: system }] : []), { role: 'user', content: user }, { role: 'assistant', content: output }] };
    }
    case 'completion': {
      const prompt = str('prompt'), completion = str('completion');
      if (prompt === undefined) return 'missing "prompt"';
      if (completion === undefined) return 'missing "completion"';
      if (completion.trim() === '') return 'has an empty "completion"';
      return { row: r.row, kind: 'completion', prompt, completion };
    }
    case 'text': {
      const text = str('text');
      if (text === undefined) return 'missing "text"';
      if (text.trim() === '') return 'has empty "text"';
      return { row: r.row, kind: 'text', text };
    }
  }
}

export function toExamples(file: string, rows: Row[], shape: Shape): { examples: Example[]; issues: RowIssue[] } {
  const examples: Example[] = [];
  const issues: RowIssue[] = [];
  for (const r of rows) {
    const e = toExample(r, shape);
    if (typeof e === 'string') issues.push({ file, row: r.row, reason: e });
    else examples.push(e);
  }
  return { examples, issues };
}
