// A dataset ready to train on: file → rows → examples → tokens → windows, with every rejected row
// reported (file, row, reason). The run goes on with the good rows; none left is an error.
import { DataError, readRows, type RowIssue } from './read.js';
import { SHAPES, shapeOfRow, toExamples, type Shape } from './shape.js';
import type { Row } from './read.js';
import { openTokenizer, renderForPreview, type Encoded } from './tokenize.js';
import { packWindows, splitExamples, type LongPolicy, type Window } from './pack.js';

export interface DatasetOptions {
  format?: Shape;
  /** T: tokens per window fed to the model */
  seq: number;
  valFraction?: number;
  seed?: number;
  long?: LongPolicy;
  /** pack examples end to end (default) or pad each to its own window */
  pack?: boolean;
}

export interface Dataset {
  file: string;
  shape: Shape;
  template: string;
  train: Window[];
  val: Window[];
  rows: number;
  examples: number;
  issues: RowIssue[];
  trainedTokens: number;
  tokens: number;
}

/**
 * The dataset's shape: the one given, else the one its first rows have. Rows of other shapes are
 * skipped and reported, unless they are a quarter or more of those rows (two files run together,
 * most often): that is refused by row. A file none of whose rows could be read says why.
 */
export function shapeOf(file: string, rows: Row[], issues: RowIssue[], given?: Shape): Shape {
  if (given) return given;
  const found = rows.slice(0, 50).map((r) => ({ row: r.row, shape: shapeOfRow(r.value) })).filter((r): r is { row: number; shape: Shape } => r.shape !== null);
  const first = found[0], other = found.find((r) => r.shape !== first?.shape);
  const a = (s: Shape) => `${/^[aeiou]/.test(s) ? 'an' : 'a'} ${s} row`;
  // a stray row is skipped and reported with the other bad rows; a quarter or more is two files in one
  const strays = found.filter((r) => r.shape !== first?.shape).length;
  if (first && other && strays >= found.length / 4) throw new DataError(file, `row ${other.row} is ${a(other.shape)} but row ${first.row} is ${a(first.shape)}: a dataset has one shape; split the file, or give --format ${first.shape} to use only its ${first.shape} rows`);
  if (first) return first.shape;
  if (!rows.length && issues.length) throw new DataError(file, `none of its ${issues.length} rows could be read: ${issues.slice(0, 3).map((i) => `row ${i.row} ${i.reason.slice(0, 120)}`).join('; ')}`);
  throw new DataError(file, `cannot tell the dataset's shape from its rows; give --format ${SHAPES.join('|')} (rows need "messages", "instruction"/"output", "prompt"/"completion" or "text")`);
}

export async function loadDataset(file: string, modelPath: string, opts: DatasetOptions): Promise<Dataset> {
  const { rows, issues } = readRows(file);
  const shape = shapeOf(file, rows, issues, opts.format);
  const { examples, issues: shapeIssues } = toExamples(file, rows, shape);
  issues.push(...shapeIssues);
  const tok = await openTokenizer(modelPath);
  const encoded: Encoded[] = [];
  try {
    for (const e of examples) {
      const r = tok.encode(e);
      if (typeof r === 'string') issues.push({ file, row: e.row, reason: r });
      else encoded.push(r);
    }
  } finally {
    await tok.dispose();
  }
  const seed = opts.seed ?? 1;
  const { train, val } = splitExamples(encoded, opts.valFraction ?? 0.1, seed);
  const pack = (list: Encoded[]) => packWindows(file, list, opts.seq, { long: opts.long ?? 'drop', pad: tok.endOfTurn, isText: () => shape === 'text', pack: opts.pack });
  const tr = pack(train), va = pack(val);
  issues.push(...tr.issues, ...va.issues);
  issues.sort((a, b) => a.row - b.row);
  if (tr.windows.length === 0) {
    const why = issues.slice(0, 3).map((i) => `row ${i.row} ${i.reason}`).join('; ');
    throw new DataError(file, `no usable rows (${rows.length + issues.filter((i) => !rows.some((r) => r.row === i.row)).length} read, ${issues.length} rejected${why ? `: ${why}` : ''})`);
  }
  const count = (ws: Window[], f: (w: Window) => number) => ws.reduce((s, w) => s + f(w), 0);
  return {
    file, shape, template: tok.templateName, train: tr.windows, val: va.windows, rows: rows.length, examples: encoded.length, issues,
    trainedTokens: count(tr.windows, (w) => w.trained.reduce((a, b) => a + b, 0)),
    tokens: count(tr.windows, (w) => w.trained.length),
  };
}

export function formatIssue(i: RowIssue): string {
  return `${i.file}: row ${i.row} ${i.reason}`;
}

export interface DatasetPreview {
  file: string;
  shape: Shape;
  template: string;
  rows: number;
  examples: number;
  issues: RowIssue[];
  /** token counts per example: histogram over `bins` upper edges */
  histogram: { edges: number[]; counts: number[] };
  /** the first examples as the model will see them, answer segments marked trained */
  preview: { row: number; segments: { text: string; trained: boolean }[] }[];
}

/** What the Datasets page shows: shape, template, rows as templated text with trained parts, lengths, rejects. */
export async function previewDataset(file: string, modelPath: string, opts: { format?: Shape; rows?: number } = {}): Promise<DatasetPreview> {
  const { rows, issues } = readRows(file);
  const shape = shapeOf(file, rows, issues, opts.format);
  const { examples, issues: shapeIssues } = toExamples(file, rows, shape);
  issues.push(...shapeIssues);
  const tok = await openTokenizer(modelPath);
  try {
    const lengths: number[] = [];
    const preview: DatasetPreview['preview'] = [];
    for (const e of examples) {
      const r = tok.encode(e);
      if (typeof r === 'string') { issues.push({ file, row: e.row, reason: r }); continue; }
      lengths.push(r.tokens.length);
      if (preview.length < (opts.rows ?? 20)) preview.push({ row: r.row, segments: renderForPreview(tok, r) });
    }
    issues.sort((a, b) => a.row - b.row);
    const max = Math.max(16, ...lengths);
    const edges = Array.from({ length: 12 }, (_, i) => Math.ceil((max * (i + 1)) / 12));
    const counts = edges.map(() => 0);
    for (const n of lengths) counts[edges.findIndex((e) => n <= e)]++;
    return { file, shape, template: tok.templateName, rows: rows.length, examples: lengths.length, issues, histogram: { edges, counts }, preview };
  } finally {
    await tok.dispose();
  }
}
