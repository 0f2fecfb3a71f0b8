/**
 * Exports for people and other tools. `writeContactSheet`: a PNG grid with one
 * row per class and a seeded sample of that class's images, drawn from the
 * `pixels` column (nearest-neighbour upscaled, so pixels stay visible).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { Rng } from '../core/rng.js';
import { pathExists, writeDirAtomic, writeFileAtomic } from '../core/atomic.js';
import { DataError, OutputError, UsageError } from '../core/errors.js';
import { fixedListValues, numericValues } from './columns.js';
import { openDataset, type Dataset } from './reader.js';

export interface ContactSheetOptions {
  /** Images per class row (default 10). */
  perClass?: number;
  /** Seed of the sample (default 0). */
  seed?: number;
  /** Upscaling factor per image (default 2). */
  scale?: number;
  /** Pixels between cells (default 2). */
  gap?: number;
  overwrite?: boolean;
}

export interface ContactSheetResult {
  file: string;
  width: number;
  height: number;
  channels: number;
  perClass: number;
  /** One entry per row: the class and how many images it shows. */
  rows: { label: number; name?: string; shown: number }[];
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
  const len = h * w * c;
  const tooBig = (width: number, height: number) => {
    if (width <= MAX_SHEET_SIDE && height <= MAX_SHEET_SIDE) return;
    throw new UsageError(`the contact sheet would be ${width} x ${height} px, above ${MAX_SHEET_SIDE} px a side`, { file, hint: 'Lower --per-class or --scale' });
  };
  // Checked before sampling too: the width is known from the options alone.
  tooBig(perClass * (w * scale + gap) + gap, h * scale + 2 * gap);
  const picked = await samplePerClass(ds, perClass, opts.seed ?? 0, len);
  const names = ds.classNames;
  const labels = [...new Set([...(names ?? []).map((_, i) => i), ...picked.keys()])].sort((a, b) => a - b);
  const cellW = w * scale;
  const cellH = h * scale;
  const width = perClass * cellW + (perClass + 1) * gap;
  const height = labels.length * cellH + (labels.length + 1) * gap;
  tooBig(width, height);
  const canvas = Buffer.alloc(width * height * c, BACKGROUND);
  labels.forEach((label, r) => {
    const samples = picked.get(label) ?? [];
    samples.forEach((s, k) => {
      const x0 = gap + k * (cellW + gap);
      const y0 = gap + r * (cellH + gap);
      for (let y = 0; y < cellH; y++) {
        const srcRow = Math.floor(y / scale) * w;
        const dst = ((y0 + y) * width + x0) * c;
        for (let x = 0; x < cellW; x++) {
          const src = (srcRow + Math.floor(x / scale)) * c;
          for (let ch = 0; ch < c; ch++) canvas[dst + x * c + ch] = s.pixels[src + ch];
        }
      }
    });
  });
  let image = sharp(canvas, { raw: { width, height, channels: c as 1 | 2 | 3 | 4 } });
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
    rows: labels.map((label) => ({ label, name: names?.[label], shown: picked.get(label)?.length ?? 0 })),
  };
}

/**
 * A uniform sample of up to `k` rows per class in one streaming pass (reservoir
 * sampling with a seeded Rng), shown in row order. Unlabelled data is one class.
 */
async function samplePerClass(ds: Dataset, k: number, seed: number, len: number) {
  const rng = Rng.derive(seed, 'contact-sheet');
  const seen = new Map<number, number>();
  const kept = new Map<number, { row: number; pixels: Uint8Array }[]>();
  const hasLabel = ds.column('label') !== undefined;
  for await (const b of ds.blocks()) {
    const labels = hasLabel ? numericValues(b.column('label')) : undefined;
    const px = fixedListValues<Uint8Array>(b.column('pixels'));
    for (let i = 0; i < b.length; i++) {
      const label = labels ? labels[i] : 0;
      const n = (seen.get(label) ?? 0) + 1;
      seen.set(label, n);
      const list = kept.get(label) ?? [];
      kept.set(label, list);
      const slot = n <= k ? list.length : rng.int(n);
      if (slot < k) list[slot] = { row: b.offset + i, pixels: px.slice(i * len, (i + 1) * len) };
    }
  }
  for (const list of kept.values()) list.sort((a, b) => a.row - b.row);
  return kept;
}

function positiveInt(v: number, name: string): number {
  if (!Number.isInteger(v) || v < 1) throw new UsageError(`${name} must be a positive integer, got ${v}`);
  return v;
}

export interface ParquetExportResult {
  dir: string;
  files: { file: string; rows: number; bytes: number }[];
}

/**
 * Writes one Parquet file per shard (ZSTD) into `outDir`, atomically: a
 * partitioned Parquet dataset that pyarrow, Polars, DuckDB and Spark open as one
 * table. A shard is converted in memory at a time (shards are at most ~256 MiB),
 * through parquet-wasm, which reads Arrow IPC streams directly.
 */
export async function writeParquet(datasetOrDir: Dataset | string, outDir: string, opts: { overwrite?: boolean } = {}): Promise<ParquetExportResult> {
  const ds = typeof datasetOrDir === 'string' ? await openDataset(datasetOrDir) : datasetOrDir;
  if (ds.sidecars.length > 0) {
    throw new UsageError('Parquet export writes one dataset at a time', { hint: 'Export the dataset and each sidecar separately; they share the id column' });
  }
  const pq = await import('parquet-wasm');
  return writeDirAtomic(outDir, { overwrite: opts.overwrite }, async (tmp) => {
    const files: ParquetExportResult['files'] = [];
    for (const shard of ds.shards) {
      const table = pq.Table.fromIPCStream(await fsp.readFile(shard.path));
      const rows = table.recordBatches().reduce((a, b) => a + b.numRows, 0);
      const props = new pq.WriterPropertiesBuilder().setCompression(pq.Compression.ZSTD).build();
      const bytes = pq.writeParquet(table, props); // consumes (frees) the table
      const file = shard.file.replace(/\.arrow$/, '.parquet');
      // Shard names were checked to stay inside the dataset when it was opened, so this stays inside tmp.
      await fsp.mkdir(path.dirname(path.join(tmp, file)), { recursive: true });
      await fsp.writeFile(path.join(tmp, file), bytes);
      files.push({ file, rows, bytes: bytes.byteLength });
    }
    return { dir: path.resolve(outDir), files };
  });
}
