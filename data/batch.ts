/**
 * Rows → typed arrays for training, without decoding images again: pixels come
 * straight from the uint8 `pixels` column, scaled to [0, 1]. Small datasets hold
 * their pixels in memory; large ones read each batch's rows from the shards
 * (data/pixel-rows.ts), in the same order, with the same values.
 */
import { Rng } from '../core/rng.js';
import { DataError } from '../core/errors.js';
import { fixedListValues, numericValues } from './columns.js';
import { ShardPixels, pixelMemoryLimit, readPixelRows, subsetPixels, type PixelSource } from './pixel-rows.js';
import type { Dataset } from './reader.js';
import type { PixelShape } from './format.js';

/**
 * A dataset ready for training: ids, labels and per-row metadata as flat typed
 * arrays (row i at i*featureLength), pixels in memory or read from the shards.
 */
export interface Examples {
  ids: string[];
  /** uint8 pixels, n × H·W·C, row-major, channels last: in memory, or read from the shards on demand. */
  pixels: PixelSource;
  shape: PixelShape;
  /** Class index per row (absent for unlabelled data). */
  labels?: Int32Array;
  /** Soft labels, n × numClasses (distilled datasets). */
  softLabels?: Float32Array;
  numClasses: number;
  classNames: string[];
}

export function featureLength(shape: PixelShape): number {
  return shape[0] * shape[1] * shape[2];
}

export interface LoadOptions {
  /**
   * Pixel bytes to hold in memory at most; above this the pixels stay in the
   * shards and batches read them there (default: pixelMemoryLimit()).
   */
  inMemoryBytes?: number;
}

/**
 * Reads a dataset's ids and labels into memory, and its pixels too when they fit
 * `inMemoryBytes`; otherwise indexes them in the shards. Either way every row's
 * pixels are the same bytes (checked against the streamed rows while loading).
 */
export async function loadExamples(ds: Dataset, opts: LoadOptions = {}): Promise<Examples> {
  const shape = ds.pixelShape;
  if (!shape || !ds.column('pixels')) {
    throw new DataError('dataset has no pixels column', { file: ds.dir, hint: 'Ingest the images first (metacurate ingest) so pixels are decoded at a working resolution' });
  }
  const len = featureLength(shape);
  const total = await ds.countRows();
  const limit = opts.inMemoryBytes ?? pixelMemoryLimit();
  const onDisk = total * len > limit ? ShardPixels.index(ds.shards.map((s) => s.path), 'pixels', len) : undefined;
  if (onDisk && onDisk.rows !== total) onDisk.close();
  const inShards = onDisk && onDisk.rows === total ? onDisk : undefined;
  const pixels: PixelSource = inShards ?? new Uint8Array(total * len);
  const ids: string[] = new Array(total);
  const hasLabel = ds.column('label') !== undefined;
  const soft = ds.column('soft_label');
  const labels = hasLabel ? new Int32Array(total) : undefined;
  const classNames = ds.classNames ?? [];
  const numClasses = soft?.kind === 'float32Vector' ? soft.length : classNames.length;
  const softLabels = soft?.kind === 'float32Vector' ? new Float32Array(total * numClasses) : undefined;
  let row = 0;
  for await (const b of ds.blocks()) {
    const values = fixedListValues<Uint8Array>(b.column('pixels'));
    if (inShards) {
      // The index must address exactly the bytes the reader decodes; otherwise hold them in memory.
      const read = inShards.read(Int32Array.from({ length: b.length }, (_, i) => b.offset + i));
      if (Buffer.compare(read, values.subarray(0, read.length)) !== 0) {
        inShards.close();
        return loadExamples(ds, { ...opts, inMemoryBytes: Infinity });
      }
    } else {
      (pixels as Uint8Array).set(values, b.offset * len);
    }
    const idv = b.column('id');
    for (let i = 0; i < b.length; i++) ids[b.offset + i] = String(idv.get(i));
    if (labels) labels.set(numericValues(b.column('label')), b.offset);
    if (softLabels) softLabels.set(fixedListValues<Float32Array>(b.column('soft_label')), b.offset * numClasses);
    row += b.length;
  }
  if (row !== total) throw new DataError(`read ${row} rows but the metadata records ${total}`, { file: ds.dir });
  if (labels) {
    for (let i = 0; i < total; i++) {
      if (labels[i] < 0 || (numClasses > 0 && labels[i] >= numClasses)) {
        throw new DataError(`label ${labels[i]} is outside the ${numClasses} classes`, { file: ds.dir, row: i });
      }
    }
  }
  return { ids, pixels, shape, labels, softLabels, numClasses, classNames };
}

/** Gathers rows `idx` as float32 pixels in [0, 1]. */
export function gatherPixels(ex: Pick<Examples, 'pixels' | 'shape'>, idx: ArrayLike<number>): Float32Array {
  const len = featureLength(ex.shape);
  const out = new Float32Array(idx.length * len);
  if (ex.pixels instanceof Uint8Array) {
    for (let r = 0; r < idx.length; r++) {
      const src = idx[r] * len;
      const dst = r * len;
      for (let j = 0; j < len; j++) out[dst + j] = ex.pixels[src + j] / 255;
    }
    return out;
  }
  const rows = ex.pixels.read(idx);
  for (let j = 0; j < rows.length; j++) out[j] = rows[j] / 255;
  return out;
}

/** Gathers rows `idx` as uint8 pixels, idx.length × featureLength. */
export function gatherPixelBytes(ex: Pick<Examples, 'pixels' | 'shape'>, idx: ArrayLike<number>): Uint8Array {
  return readPixelRows(ex.pixels, featureLength(ex.shape), idx);
}

/** Gathers rows `idx` as one-hot (or soft) label vectors. */
export function gatherTargets(ex: Pick<Examples, 'labels' | 'softLabels' | 'numClasses'>, idx: ArrayLike<number>): Float32Array {
  const k = ex.numClasses;
  const out = new Float32Array(idx.length * k);
  if (ex.softLabels) {
    for (let r = 0; r < idx.length; r++) out.set(ex.softLabels.subarray(idx[r] * k, idx[r] * k + k), r * k);
    return out;
  }
  if (!ex.labels) throw new DataError('dataset has no labels', { hint: 'This stage needs a label column (ingest with labels)' });
  for (let r = 0; r < idx.length; r++) out[r * k + ex.labels[idx[r]]] = 1;
  return out;
}

/** Gathers rows `idx` as integer class labels. */
export function gatherLabels(ex: Pick<Examples, 'labels'>, idx: ArrayLike<number>): Int32Array {
  if (!ex.labels) throw new DataError('dataset has no labels', { hint: 'This stage needs a label column (ingest with labels)' });
  const out = new Int32Array(idx.length);
  for (let r = 0; r < idx.length; r++) out[r] = ex.labels[idx[r]];
  return out;
}

/**
 * The row indices of each minibatch over `epochs` passes, in a seeded order: a fresh
 * permutation per epoch. The schedule is a pure function of (n, batchSize, epochs,
 * seed), which is what lets the metagradient engine replay training exactly.
 */
export function batchSchedule(n: number, batchSize: number, epochs: number, seed: number, dropLast = false): Int32Array[] {
  const rng = Rng.derive(seed, 'order');
  const out: Int32Array[] = [];
  for (let e = 0; e < epochs; e++) {
    const perm = rng.permutation(n);
    for (let s = 0; s < n; s += batchSize) {
      if (dropLast && s + batchSize > n) break;
      out.push(perm.subarray(s, Math.min(n, s + batchSize)));
    }
  }
  return out;
}

/** Keeps the rows `idx` of a dataset (pixels read from shards stay there: only the row index is kept). */
export function subsetExamples(ex: Examples, idx: ArrayLike<number>): Examples {
  const k = ex.numClasses;
  return {
    ...ex,
    ids: Array.from(idx, (i) => ex.ids[i]),
    pixels: subsetPixels(ex.pixels, featureLength(ex.shape), idx),
    labels: ex.labels ? Int32Array.from(idx, (i) => ex.labels![i]) : undefined,
    softLabels: ex.softLabels
      ? (() => {
          const s = new Float32Array(idx.length * k);
          for (let r = 0; r < idx.length; r++) s.set(ex.softLabels!.subarray(idx[r] * k, idx[r] * k + k), r * k);
          return s;
        })()
      : undefined,
  };
}
