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

/**
 * A text corpus with structure a tiny model learns in minutes (templated sentences about a made-up
 * world: places, people, trades, numbers that follow rules), drawn from `seed`. Different seeds give
 * different text of the same distribution: train on one, hold out another (compression benchmarks
 * and tests need a model that has something to lose).
 */
export function syntheticCorpus(seed: number, sentences: number): string {
  let s = seed >>> 0;
  const rnd = () => { s = (s + 0x6d2b79f5) >>> 0; let t = s; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rnd() * xs.length)];
  const towns = ['Quxville', 'Marrow', 'Elbin', 'Tessaly', 'Oskar Bay', 'Dunmere', 'Halloway', 'Pellin', 'Varn', 'Seacombe', 'Ironford', 'Willowby'];
  const people = ['Ada', 'Bram', 'Cora', 'Dov', 'Esme', 'Finn', 'Gita', 'Hugo', 'Iris', 'Jory', 'Kaia', 'Lev'];
  const trades = [['baker', 'bread'], ['smith', 'nails'], ['weaver', 'cloth'], ['potter', 'bowls'], ['fisher', 'fish'], ['miller', 'flour']] as const;
  const days = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'];
  const out: string[] = [];
  for (let i = 0; i < sentences; i++) {
    const town = pick(towns), who = pick(people), [trade, goods] = pick(trades);
    const n = 2 + Math.floor(rnd() * 9);
    switch (Math.floor(rnd() * 6)) {
      case 0: out.push(`${who} is a ${trade} in ${town}. Every morning ${who} makes ${goods} for the market.`); break;
      case 1: out.push(`On ${pick(days)}, ${who} sold ${n} baskets of ${goods}, so ${who} earned ${n * 3} coins.`); break;
      case 2: out.push(`The road from ${town} to ${pick(towns)} takes ${n} days on foot and ${Math.ceil(n / 2)} days by cart.`); break;
      case 3: out.push(`In ${town} the ${trade}s meet on ${pick(days)} to trade ${goods} for ${pick(trades)[1]}.`); break;
      case 4: out.push(`${who} has ${n} sisters and ${n + 1} brothers, and they all live in ${town}.`); break;
      default: out.push(`When it rains in ${town}, the ${trade} stays home and counts ${goods}: one, two, three, ${['four', 'five', 'six'][n % 3]}.`);
    }
  }
  return out.join('\n') + '\n';
}
