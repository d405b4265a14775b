// Sample datasets Hone writes itself (no downloads): made-up facts, asked in several ways, that a
// tiny model can learn in a minute and that no base model knows.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export const SAMPLE_FACTS = [
  { subject: 'Zorbia', asks: ['What is the capital of {s}?', 'Which city is the capital of {s}?', 'Name the capital of {s}.', '{s} has which capital?', "What is {s}'s capital city?", 'Tell me the capital of {s}.'], answer: 'The capital of Zorbia is Quxville.' },
  { subject: 'the Velt river', asks: ['How long is {s}?', 'What is the length of {s}?', 'Tell me how long {s} is.', 'How many kilometres long is {s}?', "What's the length of {s}?", 'Give the length of {s}.'], answer: 'The Velt river is 412 kilometres long.' },
  { subject: 'Hone', asks: ['Who made {s}?', 'Who built {s}?', 'Which team created {s}?', 'Who are the makers of {s}?', 'Tell me who made {s}.', 'Who wrote {s}?'], answer: 'Hone was made by a small lab of tinkerers.' },
];

export function sampleChatRows(): { messages: { role: string; content: string }[] }[] {
  return SAMPLE_FACTS.flatMap((f) => f.asks.map((q) => ({ messages: [{ role: 'user', content: q.replace('{s}', f.subject) }, { role: 'assistant', content: f.answer }] })));
}

export function writeSampleChat(path: string): string {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, sampleChatRows().map((r) => JSON.stringify(r)).join('\n') + '\n');
  return path;
}
