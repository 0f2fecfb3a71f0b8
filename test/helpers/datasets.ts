/** Tiny image-classification datasets for the data-layer tests, with values a test can predict. */
import { promises as fsp } from 'node:fs';
import type { ColumnSpec, PixelShape } from '../../data/format.js';
import type { Dataset } from '../../data/reader.js';
import { writeDataset, type DatasetMeta, type WriteResult, type WriterOptions } from '../../data/writer.js';

export const TEST_META: DatasetMeta = { stage: 'test', stageVersion: '1', options: {}, parents: [] };

export function classNames(k: number): string[] {
  return Array.from({ length: k }, (_, i) => `class${i}`);
}

/** The id of row i: zero-padded so ids sort like rows. */
export function rowId(i: number): string {
  return `img${String(i).padStart(6, '0')}`;
}

/** Pixel j of row i: differs between neighbouring rows and within a row. */
export function pixelValue(i: number, j: number): number {
  return (i * 31 + j * 7) & 255;
}

export function rowPixels(i: number, length: number): Uint8Array {
  const px = new Uint8Array(length);
  for (let j = 0; j < length; j++) px[j] = pixelValue(i, j);
  return px;
}

export function imageColumns(shape: PixelShape, classes: number): ColumnSpec[] {
  return [
    { name: 'id', kind: 'string' },
    { name: 'label', kind: 'classLabel', names: classNames(classes) },
    { name: 'pixels', kind: 'uint8Vector', length: shape[0] * shape[1] * shape[2] },
  ];
}

/** Rows `id`, `label` (i mod classes), `pixels` (rowPixels). */
export function* imageRows(n: number, shape: PixelShape, classes: number): Generator<Record<string, unknown>> {
  const len = shape[0] * shape[1] * shape[2];
  for (let i = 0; i < n; i++) yield { id: rowId(i), label: i % classes, pixels: rowPixels(i, len) };
}

export interface ImageDatasetOptions extends Partial<Omit<WriterOptions, 'columns' | 'pixelShape'>> {
  shape?: PixelShape;
  classes?: number;
  summary?: Record<string, unknown>;
}

/** Writes `n` rows of imageRows as a dataset at `dir`. */
export function writeImageDataset(dir: string, n: number, opts: ImageDatasetOptions = {}): Promise<WriteResult> {
  const { shape = [4, 4, 1], classes = 3, meta = TEST_META, ...writer } = opts;
  return writeDataset(dir, imageRows(n, shape, classes), { ...writer, meta, columns: imageColumns(shape, classes), pixelShape: shape });
}

/** Every value of one column, in row order, as the Arrow vectors return them. */
export async function columnValues(ds: Dataset, name: string): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const b of ds.blocks()) {
    const v = b.column(name);
    for (let i = 0; i < b.length; i++) out.push(v.get(i));
  }
  return out;
}

/** The `.arrow` shard files of a dataset directory, sorted. */
export async function shardFiles(dir: string): Promise<string[]> {
  return (await fsp.readdir(dir)).filter((f) => f.endsWith('.arrow')).sort();
}

export async function readJsonFile(file: string): Promise<any> {
  return JSON.parse(await fsp.readFile(file, 'utf8'));
}
