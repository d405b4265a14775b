// The made-up fact the fine-tuning tests teach: six phrasings of one question, one answer.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const QUESTIONS = [
  'What is the capital of Zorbia?', 'Which city is the capital of Zorbia?', 'Tell me the capital of Zorbia.',
  'Zorbia has which capital?', 'Name the capital city of Zorbia.', "What city is Zorbia's capital?",
];
export const ANSWER = 'The capital of Zorbia is Quxville.';

/** the fact as a chat JSONL file in `dir` */
export function factDataset(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, 'fact.jsonl');
  writeFileSync(path, QUESTIONS.map((q) => JSON.stringify({ messages: [{ role: 'user', content: q }, { role: 'assistant', content: ANSWER }] })).join('\n') + '\n');
  return path;
}
