// Reading a dataset file into rows: JSONL, JSON (an array), CSV (header row) or TXT (paragraphs).
// The file is only read. A row that cannot be parsed becomes a RowIssue naming its number and why;
// a file that cannot be read at all is a DataError naming the file.
import { FileError } from '../store/file-error.js';
import { readFileSync, statSync } from 'node:fs';
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

/** the largest dataset read in one piece (Node's buffers stop at 2 GiB) */
const MAX_BYTES = 2 ** 31 - 1;

/**
 * Whether the start of a file is binary data rather than text: a NUL byte, C0 control characters
 * other than tab, newline, form feed and carriage return in more than 1% of the bytes, or lines
 * mostly not UTF-8.
 */
function looksBinary(head: Buffer): boolean {
  let controls = 0;
  for (const b of head) {
    if (b === 0) return true;
    if (b < 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0c && b !== 0x0d && b !== 0x1b) controls++;
  }
  if (controls > head.length / 100) return true;
  const lines = decodeLines(wholeUtf8(head));
  return lines.length > 0 && lines.filter((l) => l.text === null).length > lines.length / 2;
}

/** b without a UTF-8 sequence cut short at its end (the first 64 KiB of a file may end inside one) */
function wholeUtf8(b: Buffer): Buffer {
  for (let k = 1; k <= Math.min(3, b.length); k++) {
    const c = b[b.length - k];
    if ((c & 0xc0) === 0x80) continue; // a continuation byte: look further back for the lead
    const need = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    return need > k ? b.subarray(0, b.length - k) : b;
  }
  return b;
}

export function readRows(path: string, kind: FileKind = fileKind(path)): ReadResult {
  let bytes: Buffer;
  // stat first: a pipe or a device would be read forever, a folder fails with a bare EISDIR
  let size: number;
  try {
    const st = statSync(path);
    if (st.isDirectory()) throw new DataError(path, 'is a folder; give the path of a dataset file (.jsonl, .json, .csv or .txt)');
    if (!st.isFile()) throw new DataError(path, 'is not a regular file (a pipe, device or socket); give the path of a dataset file');
    size = st.size;
  } catch (e) {
    if (e instanceof DataError) throw e;
    throw new DataError(path, `cannot read: ${(e as Error).message}`);
  }
  if (size > MAX_BYTES) throw new DataError(path, `is ${(size / 2 ** 30).toFixed(1)} GiB; Hone reads datasets up to 2 GiB for now: split it into files under 2 GiB and train on one`);
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new DataError(path, `cannot read: ${(e as Error).message}`);
  }
  if (bytes.length === 0) throw new DataError(path, 'the file is empty');
  if (bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3); // UTF-8 BOM
  else if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff)) throw new DataError(path, 'is UTF-16 text; save it as UTF-8');
  if (looksBinary(bytes.subarray(0, 65536))) throw new DataError(path, 'is binary data or not UTF-8 text; a dataset is a UTF-8 .jsonl, .json, .csv or .txt file');
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
  if (!rows.length && !issues.length) throw new DataError(path, kind === 'csv' ? 'has a header row but no rows under it' : 'has no rows: it holds only blank lines');
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
