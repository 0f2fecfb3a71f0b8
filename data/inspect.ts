/**
 * A dataset's summary for people and scripts (`metacurate inspect`): schema,
 * shards, class histogram, lineage, sample rows and rejected inputs.
 */
import { createReadStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { REJECTED_FILE, type ColumnSpec, type CurationInfo, type PixelShape } from './format.js';
import { numericValues, fixedListValues } from './columns.js';
import { checkScoreColumn, openDataset, readCuration, type Dataset, type OpenOptions } from './reader.js';
import { TopK } from './top.js';

export interface ColumnSummary {
  name: string;
  kind: ColumnSpec['kind'];
  /** Kind details: vector length, class count. */
  detail?: string;
  nullable: boolean;
  /** The directory the column comes from (the dataset itself or a sidecar). */
  source: string;
}

export interface LineageNode {
  /** 0 for the dataset itself, 1 for its parents, ... */
  depth: number;
  stage: string;
  stage_version: string;
  fingerprint: string;
  options: Record<string, unknown>;
  seed?: number;
  code_version: string;
  created_at: string;
  path?: string;
  parents: { fingerprint: string; path?: string; role?: string }[];
}

export interface SampleRow {
  row: number;
  id: string;
  label?: number;
  class_name?: string;
  caption?: string | null;
  /** Pixels are summarised, not listed. */
  pixels?: { min: number; max: number; mean: number };
  /** The value of the --sort-by column, when rows are shown in its order. */
  value?: number;
}

export interface DatasetInspection {
  dir: string;
  fingerprint: string;
  rows: number;
  /** True when every shard's sha256 was checked (--verify). */
  verified: boolean;
  columns: ColumnSummary[];
  pixel_shape?: PixelShape;
  shards: { file: string; rows?: number; bytes: number }[];
  bytes: number;
  /** Rows per class, for datasets with a label column. */
  classes?: { label: number; name?: string; count: number }[];
  /** This dataset first, then its ancestors as far as their directories are found. */
  lineage: LineageNode[];
  sidecars: { dir: string; fingerprint: string; stage?: string }[];
  samples: SampleRow[];
  /** Set when `samples` are the top rows by a column rather than the first rows. */
  sorted_by?: { column: string; ascending: boolean };
  /** Inputs refused at ingest (rejected.jsonl), with counts per reason. */
  rejected?: { count: number; reasons: Record<string, number> };
  summary?: Record<string, unknown>;
}

export interface InspectOptions extends OpenOptions {
  /** Sample rows to show (default 5). */
  samples?: number;
  /** Show the rows with the highest values of this numeric column (a sidecar's score, say) instead of the first rows. */
  sortBy?: string;
  /** With sortBy: the lowest values first (the worst rows, for scores where higher = keep). */
  ascending?: boolean;
}

export async function inspectDataset(dir: string, opts: InspectOptions = {}): Promise<DatasetInspection> {
  const ds = await openDataset(dir, { verify: opts.verify, sidecars: opts.sidecars });
  const sampleCount = opts.samples ?? 5;
  if (opts.sortBy !== undefined) checkScoreColumn(ds, opts.sortBy, { attach: '--sidecar <dir>', pick: '--sort-by' });
  const { rows, classes, samples } = await scanRows(ds, sampleCount, opts.sortBy === undefined ? undefined : { column: opts.sortBy, ascending: opts.ascending ?? false });
  const columns: ColumnSummary[] = [];
  for (const d of [ds, ...ds.sidecars]) {
    for (const c of d.ownColumns) {
      if (columns.some((x) => x.name === c.name)) continue;
      columns.push({ name: c.name, kind: c.kind, detail: columnDetail(c), nullable: c.nullable ?? false, source: d.dir });
    }
  }
  return {
    dir: ds.dir,
    fingerprint: ds.fingerprint,
    rows,
    verified: opts.verify ?? false,
    columns,
    pixel_shape: ds.pixelShape,
    shards: ds.shards.map((s) => ({ file: s.file, rows: s.rows, bytes: s.bytes })),
    bytes: ds.shards.reduce((a, s) => a + s.bytes, 0),
    classes,
    lineage: await lineage(ds),
    sidecars: ds.sidecars.map((s) => ({ dir: s.dir, fingerprint: s.fingerprint, stage: s.curation?.stage })),
    samples,
    ...(opts.sortBy !== undefined ? { sorted_by: { column: opts.sortBy, ascending: opts.ascending ?? false } } : {}),
    rejected: await readRejected(path.join(ds.dir, REJECTED_FILE)),
    summary: ds.curation?.summary,
  };
}

function columnDetail(c: ColumnSpec): string | undefined {
  switch (c.kind) {
    case 'classLabel': return `${c.names.length} classes`;
    case 'uint8Vector':
    case 'float32Vector': return `length ${c.length}`;
    default: return undefined;
  }
}

/**
 * One pass over the rows: the row count, the class histogram and the sample
 * rows, either the first ones or, with `order`, the top of that column (ties by
 * row order); only the current top is kept, so memory does not grow with rows.
 */
async function scanRows(ds: Dataset, sampleCount: number, order?: { column: string; ascending: boolean }) {
  const names = ds.classNames;
  const hasLabel = ds.column('label') !== undefined;
  const counts = new Map<number, number>();
  const samples: SampleRow[] = [];
  const top = order ? new TopK<SampleRow>(sampleCount, order.ascending) : undefined;
  const shape = ds.pixelShape;
  const len = shape ? shape[0] * shape[1] * shape[2] : 0;
  let rows = 0;
  for await (const b of ds.blocks()) {
    const labels = hasLabel ? numericValues(b.column('label')) : undefined;
    if (labels) for (const l of labels) counts.set(l, (counts.get(l) ?? 0) + 1);
    const values = order ? numericValues(b.column(order.column)) : undefined;
    for (let i = 0; i < b.length; i++) {
      if (!top && samples.length >= sampleCount) break;
      const sample = (): SampleRow => {
        const s: SampleRow = { row: b.offset + i, id: String(b.column('id').get(i)) };
        if (values) s.value = values[i];
        if (labels) {
          s.label = labels[i];
          if (names?.[labels[i]] !== undefined) s.class_name = names[labels[i]];
        }
        if (b.has('caption')) s.caption = b.column('caption').get(i) as string | null;
        if (b.has('pixels') && len > 0) s.pixels = pixelStats(fixedListValues<Uint8Array>(b.column('pixels')).subarray(i * len, (i + 1) * len));
        return s;
      };
      if (top) top.offer(values![i], sample);
      else samples.push(sample());
    }
    rows += b.length;
  }
  let classes: DatasetInspection['classes'];
  if (hasLabel) {
    const labels = new Set<number>(counts.keys());
    names?.forEach((_, i) => labels.add(i));
    classes = [...labels].sort((a, b) => a - b).map((label) => ({ label, name: names?.[label], count: counts.get(label) ?? 0 }));
  }
  return { rows, classes, samples: top ? top.items : samples };
}

function pixelStats(px: Uint8Array): { min: number; max: number; mean: number } {
  let min = 255;
  let max = 0;
  let sum = 0;
  for (const v of px) {
    if (v < min) min = v;
    if (v > max) max = v;
    sum += v;
  }
  return { min, max, mean: Math.round((sum / Math.max(1, px.length)) * 10) / 10 };
}

/** Follows recorded parent paths while their curation.json matches the recorded fingerprint. */
async function lineage(ds: Dataset): Promise<LineageNode[]> {
  const out: LineageNode[] = [];
  const seen = new Set<string>();
  let frontier: { cur: CurationInfo; dir: string; depth: number }[] = ds.curation ? [{ cur: ds.curation, dir: ds.dir, depth: 0 }] : [];
  while (frontier.length > 0 && out.length < 50) {
    const next: typeof frontier = [];
    for (const { cur, dir, depth } of frontier) {
      if (seen.has(cur.fingerprint)) continue;
      seen.add(cur.fingerprint);
      out.push({
        depth,
        stage: cur.stage,
        stage_version: cur.stage_version,
        fingerprint: cur.fingerprint,
        options: cur.options,
        seed: cur.seed,
        code_version: cur.code_version,
        created_at: cur.created_at,
        path: dir,
        parents: cur.parents,
      });
      for (const p of cur.parents) {
        if (!p.path) continue;
        for (const candidate of [path.resolve(p.path), path.resolve(dir, p.path)]) {
          const parent = await readCuration(candidate).catch(() => undefined);
          if (parent?.fingerprint === p.fingerprint) {
            next.push({ cur: parent, dir: candidate, depth: depth + 1 });
            break;
          }
        }
      }
    }
    frontier = next;
  }
  return out;
}

async function readRejected(file: string): Promise<DatasetInspection['rejected']> {
  const exists = await fsp.stat(file).catch(() => undefined);
  if (!exists) return undefined;
  const reasons: Record<string, number> = {};
  let count = 0;
  const lines = createInterface({ input: createReadStream(file), crlfDelay: Infinity });
  for await (const line of lines) {
    if (!line.trim()) continue;
    count++;
    let reason = 'unknown';
    try {
      const rec = JSON.parse(line);
      if (typeof rec.reason === 'string') reason = rec.reason.split(':')[0].slice(0, 80);
    } catch {
      reason = 'unparsable line';
    }
    reasons[reason] = (reasons[reason] ?? 0) + 1;
  }
  return { count, reasons };
}
