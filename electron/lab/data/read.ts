// Reading a dataset file into rows: JSONL, JSON (an array), CSV (header row) or TXT (paragraphs).
// The file is only read. A row that cannot be parsed becomes a RowIssue naming its number and why;
// a file that cannot be read at all is a DataError naming the file.
import { FileError } from '../store/file-error.js';
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';

export interface Row {
  /** 1-based: the line of a JSONL file, the element of a JSON array, the record after a CSV header, the paragraph of a TXT */
  row: number;
  value: unknown;
}

export interface RowIssue {
  file: string;
  row: number;
  reason: string;
}

/** a dataset file that cannot be read at all */
export class DataError extends FileError {}

export type FileKind = 'jsonl' | 'json' | 'csv' | 'txt';

export function fileKind(path: string): FileKind {
  const ext = extname(path).toLowerCase();
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  if (ext === '.json') return 'json';
  if (ext === '.csv') return 'csv';
  if (ext === '.txt' || ext === '.md' || ext === '') return 'txt';
  throw new DataError(path, `unknown dataset type "${ext}"; Hone reads .jsonl, .json, .csv and .txt`);
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Splits raw bytes into lines, decoding each strictly; a line with invalid UTF-8 is reported. */
function decodeLines(bytes: Buffer): { line: number; text: string | null }[] {
  const out: { line: number; text: string | null }[] = [];
  let start = 0, line = 1;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === 0x0a) {
      let end = i;
      if (end > start && bytes[end - 1] === 0x0d) end--;
      let text: string | null;
      try {
        text = utf8.decode(bytes.subarray(start, end));
      } catch {
        text = null;
      }
      if (!(i === bytes.length && start === i)) out.push({ line, text });
      start = i + 1;
      line++;
    }
  }
  return out;
}

export interface ReadResult {
  kind: FileKind;
  rows: Row[];
  issues: RowIssue[];
}

export function readRows(path: string, kind: FileKind = fileKind(path)): ReadResult {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new DataError(path, `cannot read: ${(e as Error).message}`);
  }
  if (bytes.length === 0) throw new DataError(path, 'the file is empty');
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3); // UTF-8 BOM
  const rows: Row[] = [];
  const issues: RowIssue[] = [];
  const bad = (row: number, reason: string) => issues.push({ file: path, row, reason });

  if (kind === 'jsonl') {
    for (const { line, text } of decodeLines(bytes)) {
      if (text === null) { bad(line, 'invalid UTF-8'); continue; }
      if (text.trim() === '') continue;
      try {
        rows.push({ row: line, value: JSON.parse(text) });
      } catch (e) {
        bad(line, `not valid JSON (${(e as Error).message})`);
      }
    }
  } else if (kind === 'json') {
    let text: string;
    try {
      text = utf8.decode(bytes);
    } catch {
      throw new DataError(path, 'invalid UTF-8; save the file as UTF-8');
    }
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (e) {
      throw new DataError(path, `not valid JSON (${(e as Error).message}); a .json dataset is one array of rows (use .jsonl for one row per line)`);
    }
    if (!Array.isArray(data)) throw new DataError(path, 'a .json dataset must be an array of rows');
    data.forEach((value, i) => rows.push({ row: i + 1, value }));
  } else if (kind === 'csv') {
    const lines = decodeLines(bytes);
    const broken = lines.find((l) => l.text === null);
    const text = lines.map((l) => l.text ?? '').join('\n');
    const records = parseCsv(text);
    if (records.length === 0) throw new DataError(path, 'no header row');
    const header = records[0].cells.map((h) => h.trim());
    if (header.some((h) => h === '')) throw new DataError(path, 'the header row has an empty column name');
    for (const rec of records.slice(1)) {
      const row = rec.index;
      if (broken && broken.line >= rec.firstLine && broken.line <= rec.lastLine) { bad(row, 'invalid UTF-8'); continue; }
      if (rec.cells.length === 1 && rec.cells[0] === '') continue;
      if (rec.cells.length !== header.length) { bad(row, `has ${rec.cells.length} columns, the header has ${header.length}`); continue; }
      rows.push({ row, value: Object.fromEntries(header.map((h, i) => [h, rec.cells[i]])) });
    }
  } else {
    let para: string[] = [];
    let n = 0, invalid = false;
    const flush = () => {
      if (para.length || invalid) {
        n++;
        if (invalid) bad(n, 'invalid UTF-8');
        else rows.push({ row: n, value: { text: para.join('\n') } });
      }
      para = [];
      invalid = false;
    };
    for (const { text } of decodeLines(bytes)) {
      if (text === null) { invalid = true; continue; }
      if (text.trim() === '') flush();
      else para.push(text);
    }
    flush();
  }
  return { kind, rows, issues };
}

interface CsvRecord { cells: string[]; index: number; firstLine: number; lastLine: number }

/** RFC 4180: quoted fields with "" escapes and embedded newlines. */
export function parseCsv(text: string): CsvRecord[] {
  const out: CsvRecord[] = [];
  let cells: string[] = [], cell = '', quoted = false, line = 1, first = 1, index = 0;
  const endRecord = () => {
    cells.push(cell);
    out.push({ cells, index: index++, firstLine: first, lastLine: line });
    cells = []; cell = '';
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; }
      else if (c === '"') quoted = false;
      else { if (c === '\n') line++; cell += c; }
    } else if (c === '"' && cell === '') quoted = true;
    else if (c === ',') { cells.push(cell); cell = ''; }
    else if (c === '\n') { endRecord(); line++; first = line; }
    else cell += c;
  }
  if (cell !== '' || cells.length) endRecord();
  return out;
}
