// Dataset import: every file type, shape detection, and every malformed row reported with its exact
// reason while the good rows go on; the user's file is byte-identical afterwards.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatIssue, loadDataset } from '../../electron/lab/data/dataset.js';
import { packWindows, splitExamples } from '../../electron/lab/data/pack.js';
import { parseCsv, readRows } from '../../electron/lab/data/read.js';
import { detectShape, toExamples } from '../../electron/lab/data/shape.js';
import { testDir, tinyModel } from '../helpers/models.js';

const dir = join(testDir, 'data');
mkdirSync(dir, { recursive: true });
const write = (name: string, body: string | Buffer) => { const p = join(dir, name); writeFileSync(p, body); return p; };
const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
const chat = (q: string, a: string) => JSON.stringify({ messages: [{ role: 'user', content: q }, { role: 'assistant', content: a }] });

describe('reading files', () => {
  it('CSV with quotes, escaped quotes, commas and newlines inside fields', () => {
    const recs = parseCsv('prompt,completion\n"Say ""hi"", twice","hi,\nhi"\nplain,text\n');
    expect(recs.map((r) => r.cells)).toEqual([['prompt', 'completion'], ['Say "hi", twice', 'hi,\nhi'], ['plain', 'text']]);
    const p = write('pc.csv', 'prompt,completion\n"Q1","A1"\nQ2,A2,extra\n');
    const r = readRows(p);
    expect(r.rows).toEqual([{ row: 1, value: { prompt: 'Q1', completion: 'A1' } }]);
    expect(r.issues).toEqual([{ file: p, row: 2, reason: 'has 3 columns, the header has 2' }]);
  });

  it('TXT paragraphs, JSON arrays, JSONL lines', () => {
    expect(readRows(write('t.txt', 'one\nline\n\n\ntwo\n')).rows).toEqual([{ row: 1, value: { text: 'one\nline' } }, { row: 2, value: { text: 'two' } }]);
    expect(readRows(write('a.json', '[{"text":"x"},{"text":"y"}]')).rows).toHaveLength(2);
    expect(() => readRows(write('o.json', '{"text":"x"}'))).toThrow(/o\.json: a \.json dataset must be an array of rows/);
    expect(readRows(write('l.jsonl', '{"text":"x"}\n\n{"text":"y"}\n')).rows.map((r) => r.row)).toEqual([1, 3]);
  });

  it('detects each shape and converts instruction rows to a chat', () => {
    const rows = (v: unknown) => [{ row: 1, value: v }];
    expect(detectShape(rows({ messages: [] }))).toBe('chat');
    expect(detectShape(rows({ instruction: 'a', output: 'b' }))).toBe('instruction');
    expect(detectShape(rows({ prompt: 'a', completion: 'b' }))).toBe('completion');
    expect(detectShape(rows({ text: 'a' }))).toBe('text');
    const { examples } = toExamples('f', rows({ instruction: 'Add', input: '2+2', output: '4' }), 'instruction');
    expect(examples[0]).toEqual({ row: 1, kind: 'chat', messages: [{ role: 'user', content: 'Add\n\n2+2' }, { role: 'assistant', content: '4' }] });
  });

  it('splits deterministically by seed and packs windows with targets shifted by one', () => {
    const items = Array.from({ length: 20 }, (_, i) => i);
    expect(splitExamples(items, 0.1, 7)).toEqual(splitExamples(items, 0.1, 7));
    expect(splitExamples(items, 0.1, 7).val).toHaveLength(2);
    const { windows } = packWindows('f', [{ row: 1, tokens: [1, 2, 3, 4, 5], trained: Uint8Array.from([0, 0, 1, 1, 1]) }], 3, { long: 'drop', pad: 0, isText: () => true });
    expect(windows.map((w) => [...w.input])).toEqual([[1, 2, 3], [4, 0, 0]]);
    expect(windows.map((w) => [...w.target])).toEqual([[2, 3, 4], [5, 0, 0]]);
    expect(windows.map((w) => [...w.trained])).toEqual([[0, 1, 1], [1, 0, 0]]);
    // padding instead of packing: each example starts its own window
    const two = [{ row: 1, tokens: [1, 2, 3], trained: Uint8Array.from([0, 1, 1]) }, { row: 2, tokens: [4, 5], trained: Uint8Array.from([0, 1]) }];
    expect(packWindows('f', two, 3, { long: 'drop', pad: 0, isText: () => false, pack: false }).windows.map((w) => [...w.input])).toEqual([[1, 2, 0], [4, 0, 0]]);
    // packing chats: one that does not fit in the rest of a window starts the next, whole
    const three = [...two, { row: 3, tokens: [6, 7], trained: Uint8Array.from([0, 1]) }];
    expect(packWindows('f', three, 3, { long: 'drop', pad: 0, isText: () => false }).windows.map((w) => [...w.input])).toEqual([[1, 2, 0], [4, 5, 6]]);
    // raw text flows across windows
    expect(packWindows('f', two, 3, { long: 'drop', pad: 0, isText: () => true }).windows.map((w) => [...w.input])).toEqual([[1, 2, 3], [4, 0, 0]]);
  });
});

describe('malformed rows are reported and skipped; the file is never changed', () => {
  const model = tinyModel({});

  it('every kind of bad row, with its exact reason', async () => {
    const long = 'word '.repeat(200);
    const body = Buffer.concat([
      Buffer.from(`${chat('What is 2+2?', '4')}\n`), // 1 good
      Buffer.from('{"messages": [\n'), // 2 bad JSON
      Buffer.from(`${JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] })}\n`), // 3 no answer
      Buffer.from(`${chat('Empty?', '  ')}\n`), // 4 empty answer
      Buffer.from(`${JSON.stringify({ messages: [{ role: 'robot', content: 'x' }, { role: 'assistant', content: 'y' }] })}\n`), // 5 bad role
      Buffer.from(`${chat(long, 'too long')}\n`), // 6 longer than the window
      Buffer.from('{"messages": [{"role": "user", "content": "caf'), Buffer.from([0xc3, 0x28]), Buffer.from('"}]}\n'), // 7 invalid UTF-8
      Buffer.from(`${chat('What is 3+3?', '6')}\n`), // 8 good
      Buffer.from(`${JSON.stringify({ text: 'not a chat' })}\n`), // 9 missing messages
    ]);
    const file = write('mixed.jsonl', body);
    const before = sha(file);
    const ds = await loadDataset(file, model, { seq: 64, valFraction: 0 });
    expect(ds.examples).toBe(3);
    expect(ds.issues.map(formatIssue)).toEqual([
      `${file}: row 2 not valid JSON (Unexpected end of JSON input)`,
      `${file}: row 3 has no assistant message to learn from`,
      `${file}: row 4 has an empty assistant answer`,
      `${file}: row 5 message 1 has role "robot"; use system, user or assistant`,
      expect.stringMatching(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: row 6 is \\d+ tokens, longer than the sequence length 65 \\(raise --seq or use --long truncate\\)$`)),
      `${file}: row 7 invalid UTF-8`,
      `${file}: row 9 missing "messages" (a list of {role, content})`,
    ]);
    expect(sha(file)).toBe(before);
  });

  it('stops with one clear error when no row is usable', async () => {
    const file = write('allbad.jsonl', '{"messages": []}\nnot json\n');
    const before = sha(file);
    await expect(loadDataset(file, model, { seq: 64 })).rejects.toThrow(
      `${file}: no usable rows (2 read, 2 rejected: row 1 has no assistant message to learn from; row 2 not valid JSON (Unexpected token 'o', "not json" is not valid JSON))`,
    );
    expect(sha(file)).toBe(before);
  });

  it('a file of unknown type or shape says what it accepts', async () => {
    expect(() => readRows(write('data.xlsx', 'x'))).toThrow(/data\.xlsx: unknown dataset type "\.xlsx"; Hone reads \.jsonl, \.json, \.csv and \.txt/);
    await expect(loadDataset(write('odd.jsonl', '{"q":"a","a":"b"}\n'), model, { seq: 64 })).rejects.toThrow(/odd\.jsonl: cannot tell the dataset's shape from its rows; give --format chat\|instruction\|completion\|text/);
  });
});
