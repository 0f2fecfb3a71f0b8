/**
 * select's two passes over the pool, so memory holds only ids, labels and score
 * columns: the first reads those, the second streams the parent again and writes
 * the kept rows (in its order, or in score order window by window). Plus the selection file and the summary's numbers.
 */
import { RecordBatch, Struct, Table, makeData, tableToIPC } from 'apache-arrow';
import { DataError } from '../../core/errors.js';
import { columnData, numericValues } from '../../data/columns.js';
import { makeSchema, type ColumnSpec } from '../../data/format.js';
import { IdList } from '../../data/id-list.js';
import { openDataset, ownerOf, type Dataset } from '../../data/reader.js';
import type { DatasetWriter } from '../../data/writer.js';
import type { StageContext } from '../context.js';
import { rowReader } from './rows.js';
import type { Selection } from './types.js';

export const LABEL_KINDS: ReadonlySet<string> = new Set(['classLabel', 'int64', 'int32']);

export interface Loaded {
  ids: IdList;
  /** Score columns by name. */
  columns: Record<string, Float64Array>;
  labels?: Int32Array;
}

/** Pass 1: ids, the named score columns and labels, block by block (sidecar ids are checked by the reader). */
export async function loadColumns(ctx: StageContext, ds: Dataset, n: number, names: string[]): Promise<Loaded> {
  const ids = new IdList(n);
  const columns: Record<string, Float64Array> = Object.fromEntries(names.map((c) => [c, new Float64Array(n)]));
  const labelSpec = ds.column('label');
  const labels = labelSpec && LABEL_KINDS.has(labelSpec.kind) ? new Int32Array(n) : undefined;
  const progress = ctx.progress('select: read scores', n);
  let rows = 0;
  try {
    for await (const b of ds.blocks()) {
      ctx.signal?.throwIfAborted();
      if (b.offset + b.length > n) throw new DataError(`the dataset has more rows than its metadata records (${n})`, { file: ds.dir, hint: 'Re-create the dataset' });
      if (b.offset !== rows) throw new DataError(`block at row ${b.offset} after ${rows} rows`, { file: ds.dir, hint: 'Re-create the dataset' });
      const idv = b.column('id');
      ids.push(Array.from({ length: b.length }, (_, i) => String(idv.get(i))));
      for (const name of names) {
        const v = b.column(name);
        const values = numericValues(v);
        if (v.nullCount > 0) for (let i = 0; i < b.length; i++) if (!v.isValid(i)) values[i] = NaN;
        columns[name].set(values, b.offset);
      }
      if (labels) labels.set(numericValues(b.column('label')), b.offset);
      rows += b.length;
      progress.tick(b.length);
    }
  } finally {
    progress.done();
  }
  if (rows !== n) throw new DataError(`read ${rows} rows but the metadata records ${n}`, { file: ds.dir, hint: 'Re-create the dataset' });
  for (const name of names) checkFinite(ds, name, columns[name], ids);
  return { ids, columns, labels };
}

function checkFinite(ds: Dataset, by: string, scores: Float64Array, ids: IdList): void {
  let first = -1;
  let count = 0;
  for (let i = 0; i < scores.length; i++) {
    if (Number.isNaN(scores[i])) {
      if (first < 0) first = i;
      count++;
    }
  }
  if (first >= 0) {
    throw new DataError(`score "${by}" is NaN or missing for id "${ids.get(first)}" and ${count - 1} more of ${scores.length} rows`, {
      file: ownerOf(ds, by).dir,
      row: first,
      hint: 'Rerun the score stage (NaN scores usually mean its training diverged: lower the learning rate), or select --by another column',
    });
  }
}

export function checkLabels(ds: Dataset, labels: Int32Array, ids: IdList): void {
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] < 0) {
      throw new DataError(`label ${labels[i]} of id "${ids.get(i)}" is negative`, { file: ds.dir, row: i, hint: 'Selection by class needs class indices 0…C−1; re-ingest the dataset' });
    }
  }
}

/** The rows a selection leaves out, ascending (no weights: each is kept once). */
export function complement(n: number, chosen: Selection): Selection {
  const isChosen = new Uint8Array(n);
  for (const i of chosen.indices) isChosen[i] = 1;
  const rest = new Uint32Array(n - chosen.indices.length);
  let j = 0;
  for (let i = 0; i < n; i++) if (!isChosen[i]) rest[j++] = i;
  return { indices: rest };
}

const SELECTION_COLUMNS: ColumnSpec[] = [
  { name: 'id', kind: 'string' },
  { name: 'index', kind: 'int64' },
  { name: 'weight', kind: 'float32' },
];

/** The selection's rows in `order` (a permutation of its indices), each with its own weight. */
export function reorder(selection: Selection, order: Uint32Array): Selection {
  if (!selection.weights) return { indices: order };
  const weightOf = new Map<number, number>();
  selection.indices.forEach((i, j) => weightOf.set(i, selection.weights![j]));
  return { indices: order, weights: Float32Array.from(order, (i) => weightOf.get(i)!) };
}

/** selection.arrow: one Arrow IPC stream, readable by pyarrow.ipc.open_stream / Polars read_ipc_stream. */
export function selectionBytes(ids: IdList, selection: Selection): Uint8Array {
  const { indices, weights } = selection;
  const values: Record<string, ArrayLike<unknown>> = {
    id: Array.from(indices, (i) => ids.get(i)),
    index: indices,
    weight: weights ?? new Float32Array(indices.length).fill(1),
  };
  const schema = makeSchema(SELECTION_COLUMNS);
  const children = SELECTION_COLUMNS.map((c) => columnData(c, values[c.name]));
  const batch = new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: indices.length, children }));
  return tableToIPC(new Table([batch]), 'stream');
}

export function scoreStats(scores: Float64Array, kept: Uint32Array) {
  const isKept = new Uint8Array(scores.length);
  for (const i of kept) isKept[i] = 1;
  // Running sums, not arrays of the values: a pool's worth of numbers would be most of select's memory.
  const inside = { sum: 0, count: 0, min: Infinity, max: -Infinity };
  const outside = { sum: 0, count: 0 };
  for (let i = 0; i < scores.length; i++) {
    const v = scores[i];
    if (isKept[i]) {
      inside.sum += v;
      inside.count++;
      if (v < inside.min) inside.min = v;
      if (v > inside.max) inside.max = v;
    } else {
      outside.sum += v;
      outside.count++;
    }
  }
  return {
    kept_mean: inside.count ? inside.sum / inside.count : null,
    dropped_mean: outside.count ? outside.sum / outside.count : null,
    kept_min: inside.count ? inside.min : null,
    kept_max: inside.count ? inside.max : null,
  };
}

export function perClass(ds: Dataset, labels: Int32Array, kept: Uint32Array): { before: Record<string, number>; after: Record<string, number> } {
  const names = ds.classNames ?? [];
  const name = (c: number) => names[c] ?? String(c);
  const count = (rows: Iterable<number>) => {
    const out = new Map<number, number>();
    for (const i of rows) out.set(labels[i], (out.get(labels[i]) ?? 0) + 1);
    return out;
  };
  const before = count(labels.keys());
  const after = count(kept);
  const classes = [...new Set([...names.keys(), ...before.keys()])].sort((a, b) => a - b);
  return {
    before: Object.fromEntries(classes.map((c) => [name(c), before.get(c) ?? 0])),
    after: Object.fromEntries(classes.map((c) => [name(c), after.get(c) ?? 0])),
  };
}

/** How many rows one pass of a score-ordered write holds in memory: about this many bytes of shards' worth. */
export const ORDER_WINDOW_BYTES = 256 * 1024 * 1024;

/** `kept` ranked by `scores`, highest first (ties by row index, so the order is deterministic). */
export function scoreOrder(kept: Uint32Array, scores: Float64Array): Uint32Array {
  return Uint32Array.from(kept).sort((a, b) => scores[b] - scores[a] || a - b);
}

/**
 * Pass 2: streams the parent and writes the rows of `order`, in that order. In the
 * parent's order (ascending, the default) that is one pass holding nothing; in any
 * other order (`--order score`) the rows go in windows of about ORDER_WINDOW_BYTES,
 * one pass per window, so memory stays bounded whatever the pool's size.
 */
export async function writeKept(
  ctx: StageContext,
  parentDir: string,
  writer: DatasetWriter,
  columns: ColumnSpec[],
  order: Uint32Array,
  ids: IdList,
  extra?: { name: string; values: Float64Array },
  /** Rows per pass out of order (default: from ORDER_WINDOW_BYTES and the shards' bytes per row). */
  windowRows?: number,
): Promise<void> {
  const parent = await openDataset(parentDir);
  const progress = ctx.progress('select: write', order.length);
  const ascending = order.every((v, i) => i === 0 || order[i - 1] < v);
  const n = ids.length || 1;
  const bytesPerRow = parent.shards.reduce((a, s) => a + s.bytes, 0) / n;
  const window = ascending ? Math.max(order.length, 1) : windowRows ?? Math.max(1024, Math.floor(ORDER_WINDOW_BYTES / Math.max(bytesPerRow, 1)));
  try {
    for (let w = 0; w < order.length; w += window) {
      const part = order.subarray(w, w + window);
      const rows = await readRows(ctx, parent, columns, ascending ? part : Uint32Array.from(part).sort(), ids, extra, ascending ? writer : undefined, progress);
      if (rows) {
        for (const i of part) await writer.writeRow(rows.get(i)!);
        progress.tick(part.length);
      }
    }
  } finally {
    progress.done();
  }
}

/**
 * One pass over the parent for the ascending rows `wanted`: written straight to
 * `writer` when given, else returned by row index. Checks every id against the
 * selection's, so a dataset changed under select is an error, not a wrong row.
 */
async function readRows(
  ctx: StageContext,
  parent: Dataset,
  columns: ColumnSpec[],
  wanted: Uint32Array,
  ids: IdList,
  extra: { name: string; values: Float64Array } | undefined,
  writer: DatasetWriter | undefined,
  progress: { tick(n: number): void },
): Promise<Map<number, Record<string, unknown>> | undefined> {
  const held = writer ? undefined : new Map<number, Record<string, unknown>>();
  let j = 0;
  for await (const b of parent.blocks()) {
    ctx.signal?.throwIfAborted();
    // Leaving early is safe: blocks() closes its shard readers.
    if (j >= wanted.length) break;
    const end = b.offset + b.length;
    if (wanted[j] >= end) continue;
    const read = rowReader(b, columns);
    const start = j;
    for (; j < wanted.length && wanted[j] < end; j++) {
      const row = read(wanted[j] - b.offset);
      if (row.id !== ids.get(wanted[j])) {
        throw new DataError(`row ${wanted[j]} has id "${row.id}" now but had "${ids.get(wanted[j])}" when the selection was made`, {
          file: parent.dir,
          hint: 'The dataset changed while select was reading it; rerun select',
        });
      }
      if (extra) row[extra.name] = extra.values[wanted[j]];
      if (writer) await writer.writeRow(row);
      else held!.set(wanted[j], row);
    }
    if (writer) progress.tick(j - start);
  }
  if (j !== wanted.length) {
    throw new DataError(`the dataset ended before row ${wanted[j]}`, { file: parent.dir, hint: 'The dataset changed while select was reading it; rerun select' });
  }
  return held;
}
