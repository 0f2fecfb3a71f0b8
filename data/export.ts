/**
 * Exports for people and other tools. `writeContactSheet`: a PNG grid with one
 * row per class and a seeded sample of that class's images, drawn from the
 * `pixels` column (nearest-neighbour upscaled, so pixels stay visible).
 * `rankPerClass`, `rowsAt` and `thumbnailPng`: the rows and small images the
 * HTML report shows.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { Rng } from '../core/rng.js';
import { pathExists, writeDirAtomic, writeFileAtomic } from '../core/atomic.js';
import { DataError, OutputError, UsageError } from '../core/errors.js';
import { escapeXml } from '../core/text.js';
import { Field, RecordBatch, Schema, Struct, Table, makeData, tableToIPC } from 'apache-arrow';
import { columnData, fixedListValues, numericValues } from './columns.js';
import { HF_METADATA_KEY, PIXEL_SHAPE_KEY, arrowType, hfFeature, hfMetadata, type ColumnSpec, type PixelShape } from './format.js';
import { checkScoreColumn, openDataset, ownerOf, readShard, type Block, type Dataset, type ShardInfo } from './reader.js';
import { TopK } from './top.js';

export interface ContactSheetOptions {
  /** Images per class row (default 10). */
  perClass?: number;
  /** Seed of the sample (default 0). */
  seed?: number;
  /** Upscaling factor per image (default 2). */
  scale?: number;
  /** Pixels between cells (default 2). */
  gap?: number;
  /** Show each class's rows ranked by this numeric column (a score sidecar's, say) instead of a random sample. */
  by?: string;
  /** With `by`: the lowest values (`worst`, the default: for scores, the rows most worth dropping) or the highest. */
  order?: 'worst' | 'best';
  /** Write each cell's id, class and `by` value under it and the class names beside the rows (default: with `by`). */
  annotate?: boolean;
  overwrite?: boolean;
}

export interface ContactSheetResult {
  file: string;
  width: number;
  height: number;
  channels: number;
  perClass: number;
  /** One entry per row: the class, how many images it shows and their ids, left to right. */
  rows: { label: number; name?: string; shown: number; ids: string[] }[];
}

// Mid grey: cells stay distinct against the black backgrounds of MNIST-like images.
const BACKGROUND = 96;

/** A contact sheet's largest side: PNG viewers and memory both give out well before PNG's own limit. */
export const MAX_SHEET_SIDE = 16384;

export async function writeContactSheet(
  dataset: Dataset | string,
  file: string,
  opts: ContactSheetOptions = {},
): Promise<ContactSheetResult> {
  const perClass = positiveInt(opts.perClass ?? 10, 'perClass');
  const scale = positiveInt(opts.scale ?? 2, 'scale');
  const gap = opts.gap ?? 2;
  if (!file.toLowerCase().endsWith('.png')) throw new UsageError('the contact sheet is a PNG', { file, hint: 'Name the output file *.png' });
  if (!opts.overwrite && (await pathExists(file))) {
    throw new OutputError('output already exists', { file, hint: 'Choose another file, or pass --overwrite to replace it' });
  }
  const ds = typeof dataset === 'string' ? await openDataset(dataset) : dataset;
  const shape = ds.pixelShape;
  if (!shape || !ds.column('pixels')) {
    throw new DataError('dataset has no pixels column to draw', { file: ds.dir, hint: 'Export a dataset written by ingest (or another stage that keeps pixels)' });
  }
  const [h, w, c] = shape;
  const tooBig = (width: number, height: number) => {
    if (width <= MAX_SHEET_SIDE && height <= MAX_SHEET_SIDE) return;
    throw new UsageError(`the contact sheet would be ${width} x ${height} px, above ${MAX_SHEET_SIDE} px a side`, { file, hint: 'Lower --per-class or --scale' });
  };
  if (opts.by !== undefined) checkScoreColumn(ds, opts.by, { attach: '--sidecar <dir>', pick: '--by' });
  const annotate = opts.annotate ?? opts.by !== undefined;
  const names = ds.classNames;
  // Annotated cells are wide enough for a short caption, with the class names in a margin on the left.
  const cellW = annotate ? Math.max(w * scale, CAPTION_MIN_WIDTH) : w * scale;
  const cellH = h * scale;
  const capH = annotate ? CAPTION_LINE * (opts.by !== undefined ? 3 : 2) + 2 : 0;
  const left = annotate ? Math.min(160, 10 + 7 * Math.max(4, ...(names ?? []).map((n) => n.length))) : 0;
  // Checked before sampling too: the width is known from the options alone.
  tooBig(left + perClass * (cellW + gap) + gap, cellH + capH + 2 * gap);
  const picked = opts.by !== undefined
    ? (await rankPerClass(ds, perClass, opts.by, [opts.order ?? 'worst']))[opts.order ?? 'worst']
    : await samplePerClass(ds, perClass, opts.seed ?? 0);
  const labels = [...new Set([...(names ?? []).map((_, i) => i), ...picked.keys()])].sort((a, b) => a - b);
  const width = left + perClass * cellW + (perClass + 1) * gap;
  const height = labels.length * (cellH + capH) + (labels.length + 1) * gap;
  tooBig(width, height);
  const canvas = Buffer.alloc(width * height * c, BACKGROUND);
  const cellAt = (r: number, k: number) => ({ x0: left + gap + k * (cellW + gap), y0: gap + r * (cellH + capH + gap) });
  labels.forEach((label, r) => {
    const samples = picked.get(label) ?? [];
    samples.forEach((s, k) => {
      const { x0, y0 } = cellAt(r, k);
      // The image is centred in its cell (wider than the image when annotated).
      const left0 = x0 + Math.floor((cellW - w * scale) / 2);
      for (let y = 0; y < cellH; y++) {
        const srcRow = Math.floor(y / scale) * w;
        const dst = ((y0 + y) * width + left0) * c;
        for (let x = 0; x < w * scale; x++) {
          const src = (srcRow + Math.floor(x / scale)) * c;
          for (let ch = 0; ch < c; ch++) canvas[dst + x * c + ch] = s.pixels[src + ch];
        }
      }
    });
  });
  let image = sharp(canvas, { raw: { width, height, channels: c as 1 | 2 | 3 | 4 } });
  if (annotate) {
    const text: string[] = [];
    const line = (x: number, y: number, t: string, maxChars: number) =>
      text.push(`<text x="${x}" y="${y}">${escapeXml(t.length > maxChars ? `${t.slice(0, maxChars - 1)}…` : t)}</text>`);
    const chars = Math.floor(cellW / 5.6);
    labels.forEach((label, r) => {
      const { y0 } = cellAt(r, 0);
      line(4, y0 + cellH / 2, names?.[label] ?? String(label), Math.floor((left - 6) / 6.5));
      (picked.get(label) ?? []).forEach((s, k) => {
        const { x0 } = cellAt(r, k);
        const y = y0 + cellH + CAPTION_LINE;
        line(x0, y, s.id, chars);
        line(x0, y + CAPTION_LINE, names?.[s.label] ?? String(s.label), chars);
        if (s.value !== undefined) line(x0, y + 2 * CAPTION_LINE, `${opts.by} ${formatValue(s.value)}`, chars);
      });
    });
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">` +
      `<g font-family="DejaVu Sans, sans-serif" font-size="9" fill="#fff">${text.join('')}</g></svg>`;
    image = sharp(await image.png().toBuffer()).composite([{ input: Buffer.from(svg), top: 0, left: 0 }]);
  }
  // sharp writes sRGB unless told; keep grey data grey (a third of the bytes).
  if (c === 1) image = image.toColourspace('b-w');
  const png = await image.png().toBuffer();
  await fsp.mkdir(path.dirname(path.resolve(file)), { recursive: true });
  await writeFileAtomic(file, png);
  return {
    file,
    width,
    height,
    channels: c,
    perClass,
    rows: labels.map((label) => ({ label, name: names?.[label], shown: picked.get(label)?.length ?? 0, ids: (picked.get(label) ?? []).map((p) => p.id) })),
  };
}

const CAPTION_LINE = 11;
const CAPTION_MIN_WIDTH = 84;

/** A score as a caption shows it: three significant digits, exponents outside [0.001, 1000). */
export function formatValue(v: number): string {
  return Math.abs(v) >= 1000 || (v !== 0 && Math.abs(v) < 0.001) ? v.toExponential(2) : String(Number(v.toPrecision(3)));
}

/** A row as the contact sheet and the HTML report show it. */
export interface ShownRow {
  row: number;
  id: string;
  label: number;
  pixels: Uint8Array;
  /** The ranking column's value. */
  value?: number;
  /** The asked-for string columns (e.g. the planted kind), by name. */
  extra: Record<string, string>;
}

/** Every row of a dataset with its class (one class for unlabelled data), block by block; `cell()` copies out its pixels. */
async function* labelledRows(ds: Dataset, by?: string, extras: readonly string[] = []) {
  const shape = ds.pixelShape;
  if (!shape || !ds.column('pixels')) {
    throw new DataError('dataset has no pixels column to draw', { file: ds.dir, hint: 'Use a dataset written by ingest (or another stage that keeps pixels)' });
  }
  const len = shape[0] * shape[1] * shape[2];
  const hasLabel = ds.column('label') !== undefined;
  const wanted = extras.filter((c) => ds.column(c) !== undefined);
  for await (const b of ds.blocks()) {
    const labels = hasLabel ? numericValues(b.column('label')) : undefined;
    const values = by === undefined ? undefined : numericValues(b.column(by));
    const px = fixedListValues<Uint8Array>(b.column('pixels'));
    for (let i = 0; i < b.length; i++) {
      yield {
        row: b.offset + i,
        label: labels ? labels[i] : 0,
        value: values?.[i],
        cell: (): ShownRow => ({
          row: b.offset + i, id: String(b.column('id').get(i)), label: labels ? labels[i] : 0, pixels: px.slice(i * len, (i + 1) * len), value: values?.[i],
          extra: Object.fromEntries(wanted.map((c) => [c, String(b.column(c).get(i))])),
        }),
      };
    }
  }
}

/**
 * A uniform sample of up to `k` rows per class in one streaming pass (reservoir
 * sampling with a seeded Rng), shown in row order.
 */
async function samplePerClass(ds: Dataset, k: number, seed: number) {
  const rng = Rng.derive(seed, 'contact-sheet');
  const seen = new Map<number, number>();
  const kept = new Map<number, ShownRow[]>();
  for await (const r of labelledRows(ds)) {
    const n = (seen.get(r.label) ?? 0) + 1;
    seen.set(r.label, n);
    const list = kept.get(r.label) ?? [];
    kept.set(r.label, list);
    const slot = n <= k ? list.length : rng.int(n);
    if (slot < k) list[slot] = r.cell();
  }
  for (const list of kept.values()) list.sort((a, b) => a.row - b.row);
  return kept;
}

export type RankOrder = 'worst' | 'best';

/**
 * The `k` lowest (worst) and/or highest (best) rows per class by a column, in
 * that order (ties by row), for each order asked, in one streaming pass; NaN rows
 * are skipped. `extras`: string columns to carry along (those the dataset has);
 * `classes`: only these classes (memory stays k rows a class shown).
 */
export async function rankPerClass<O extends RankOrder>(
  ds: Dataset, k: number, by: string, orders: readonly O[], opts: { extras?: readonly string[]; classes?: (label: number) => boolean } = {},
): Promise<Record<O, Map<number, ShownRow[]>>> {
  const tops = orders.map(() => new Map<number, TopK<ShownRow>>());
  for await (const r of labelledRows(ds, by, opts.extras)) {
    if (opts.classes && !opts.classes(r.label)) continue;
    orders.forEach((order, j) => {
      let top = tops[j].get(r.label);
      if (!top) tops[j].set(r.label, (top = new TopK<ShownRow>(k, order === 'worst')));
      top.offer(r.value!, r.cell);
    });
  }
  return Object.fromEntries(orders.map((order, j) => [order, new Map([...tops[j]].map(([label, top]) => [label, top.items]))])) as Record<O, Map<number, ShownRow[]>>;
}

/** The rows at these indices (a streaming pass that stops after the last). */
export async function rowsAt(ds: Dataset, rows: Iterable<number>, extras: readonly string[] = []): Promise<Map<number, ShownRow>> {
  const wanted = new Set(rows);
  const last = Math.max(-1, ...wanted);
  const out = new Map<number, ShownRow>();
  for await (const r of labelledRows(ds, undefined, extras)) {
    if (r.row > last) break;
    if (wanted.has(r.row)) out.set(r.row, r.cell());
  }
  return out;
}

/** A small PNG of one row's pixels: as it is when no side exceeds `maxSide`, else shrunk to fit. */
export async function thumbnailPng(pixels: Uint8Array, shape: PixelShape, maxSide = 64): Promise<Buffer> {
  const [h, w, c] = shape;
  let image = sharp(pixels, { raw: { width: w, height: h, channels: c as 1 | 2 | 3 | 4 } });
  if (Math.max(h, w) > maxSide) image = image.resize({ width: maxSide, height: maxSide, fit: 'inside' });
  if (c === 1) image = image.toColourspace('b-w');
  return image.png({ compressionLevel: 9 }).toBuffer();
}

function positiveInt(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 1) throw new UsageError(`${name} must be a positive integer, got ${v}`);
  return v;
}

export interface ParquetExportResult {
  dir: string;
  files: { file: string; rows: number; bytes: number }[];
  /** The columns written, sidecars' and `label_name` included. */
  columns: string[];
}

export interface ParquetExportOptions {
  overwrite?: boolean;
  /** Sidecar dataset directories whose columns join the dataset's (when it is given as a path). */
  sidecars?: string[];
}

/** The class-name column the export adds beside `label`: readable without the schema metadata. */
export const LABEL_NAME_COLUMN = 'label_name';

/**
 * Writes one Parquet file per shard (ZSTD) into `outDir`, atomically: a
 * partitioned Parquet dataset that pyarrow, Polars, DuckDB and Spark open as one
 * table. Sidecar columns (scores, ratings) are joined row by row, a
 * `label_name` column spells out each label, and the schema metadata carries
 * HF's features (ClassLabel names included), so HF `datasets` and ingest read
 * the class names back. A shard is converted in memory at a time (shards are
 * at most ~256 MiB), through parquet-wasm, which reads Arrow IPC streams.
 */
export async function writeParquet(datasetOrDir: Dataset | string, outDir: string, opts: ParquetExportOptions = {}): Promise<ParquetExportResult> {
  const ds = typeof datasetOrDir === 'string' ? await openDataset(datasetOrDir, { sidecars: opts.sidecars }) : datasetOrDir;
  const layout = parquetLayout(ds);
  // Blocks never span two of the dataset's shards, so the shard a block belongs to follows from its offset.
  const ends: number[] = [];
  for (const s of ds.shards) ends.push((ends.at(-1) ?? 0) + (s.rows ?? (await countShardRows(s))));
  const pq = await import('parquet-wasm');
  const props = () => new pq.WriterPropertiesBuilder().setCompression(pq.Compression.ZSTD).setKeyValueMetadata(layout.schema.metadata).build();
  return writeDirAtomic(outDir, { overwrite: opts.overwrite }, async (tmp) => {
    const files: ParquetExportResult['files'] = [];
    let batches: RecordBatch[] = [];
    const flush = async () => {
      const shard = ds.shards[files.length];
      const rows = batches.reduce((a, b) => a + b.numRows, 0);
      // The pyarrow family reads schema metadata from the file's key-value metadata, so it goes there too.
      const bytes = pq.writeParquet(pq.Table.fromIPCStream(tableToIPC(new Table(layout.schema, batches), 'stream')), props()); // frees the table
      batches = [];
      const file = shard.file.replace(/\.arrow$/, '.parquet');
      // Shard names were checked to stay inside the dataset when it was opened, so this stays inside tmp.
      await fsp.mkdir(path.dirname(path.join(tmp, file)), { recursive: true });
      await fsp.writeFile(path.join(tmp, file), bytes);
      files.push({ file, rows, bytes: bytes.byteLength });
    };
    for await (const b of ds.blocks()) {
      while (b.offset >= ends[files.length]) await flush();
      batches.push(layout.batch(b));
    }
    while (files.length < ds.shards.length) await flush();
    return { dir: path.resolve(outDir), files, columns: layout.schema.fields.map((f) => f.name) };
  });
}

async function countShardRows(shard: ShardInfo): Promise<number> {
  let n = 0;
  for await (const b of readShard(shard)) n += b.numRows;
  return n;
}

/**
 * The exported schema (the dataset's columns, then its sidecars', then
 * `label_name` when the labels have names) and how a block becomes a record
 * batch of it. HF features are the ones each column's dataset records, else
 * derived from its kind.
 */
function parquetLayout(ds: Dataset): { schema: Schema; batch(b: Block): RecordBatch } {
  const names = ds.classNames;
  const labelled = names !== undefined && ds.column(LABEL_NAME_COLUMN) === undefined;
  const specs: ColumnSpec[] = [...ds.columns, ...(labelled ? [{ name: LABEL_NAME_COLUMN, kind: 'string', nullable: true } as ColumnSpec] : [])];
  const fields = specs.map((c) => ownerOf(ds, c.name).schema.fields.find((f) => f.name === c.name) ?? new Field(c.name, arrowType(c), c.nullable ?? false));
  const features = Object.fromEntries(specs.map((c) => [c.name, ownerOf(ds, c.name).info?.features?.[c.name] ?? hfFeature(c)]));
  const metadata = new Map(ds.schema.metadata);
  metadata.set(HF_METADATA_KEY, hfMetadata(features));
  if (ds.pixelShape) metadata.set(PIXEL_SHAPE_KEY, JSON.stringify(ds.pixelShape));
  const schema = new Schema(fields, metadata);
  const type = new Struct(fields);
  return {
    schema,
    batch(b) {
      const children = fields.map((f) => {
        if (!labelled || f.name !== LABEL_NAME_COLUMN) return b.column(f.name).data[0];
        const vec = b.column('label');
        const labels = numericValues(vec);
        return columnData(specs.at(-1)!, Array.from(labels, (l, i) => (vec.isValid(i) ? names[l] ?? null : null)));
      });
      return new RecordBatch(schema, makeData({ type, length: b.length, nullCount: 0, children }));
    },
  };
}
