/**
 * Reading a run of rows of one shard without loading the dataset: a worker that
 * handles rows [start, end) of shard k streams that shard's record batches and
 * keeps only the range (memory: the range's pixels at most).
 */
import { DataError, UsageError } from '../core/errors.js';
import { featureLength } from './batch.js';
import { fixedListValues, numericValues } from './columns.js';
import type { PixelShape } from './format.js';
import { openDataset, readShard } from './reader.js';

export interface ShardRangeOptions {
  /** The pixel shape every row must have. */
  shape: PixelShape;
  /** The dataset row index of `start`: the id of a row when the shard has no id column, and the row errors name. */
  offset: number;
  /**
   * Read the labels as well: `label` (class indices, each checked to be below
   * numClasses) or else `soft_label` (numClasses floats a row). A shard with
   * neither is an error.
   */
  labels?: { numClasses: number };
  /** The errors to throw instead of the generic ones, worded for the caller. */
  errors?: {
    /** The rows hold `valuesPerRow` pixel values, not `shape`'s (`file`: the shard). */
    pixelShape?: (valuesPerRow: number, file: string) => DataError;
    /** Labels were asked for but the shard has no label column. */
    noLabels?: () => DataError;
    /** Row `row` of the dataset (`offset` based) has a label outside [0, numClasses). */
    labelOutOfRange?: (label: number, row: number) => DataError;
  };
}

/** Rows of a shard range, row-major as in data/batch.ts Examples. */
export interface ShardRows {
  ids: string[];
  /** uint8 pixels, rows × H·W·C. */
  pixels: Uint8Array;
  /** Class index per row, when asked for and the shard has `label`. */
  labels?: Int32Array;
  /** rows × numClasses, when asked for and the shard has `soft_label` only. */
  softLabels?: Float32Array;
}

/**
 * Rows [start, end) of shard `shard` of the dataset at `dir`: ids, pixels and,
 * when `opts.labels` asks for them, hard or soft labels. Errors (DataError; a
 * missing shard is a UsageError) name the dataset or shard file, and the
 * dataset row where one row is at fault.
 */
export async function readShardRange(dir: string, shard: number, start: number, end: number, opts: ShardRangeOptions): Promise<ShardRows> {
  const ds = await openDataset(dir);
  const info = ds.shards[shard];
  if (!info) throw new UsageError(`the dataset has no shard ${shard}`, { file: dir });
  const { shape, offset } = opts;
  const len = featureLength(shape);
  const m = end - start;
  const pixels = new Uint8Array(m * len);
  const K = opts.labels?.numClasses ?? 0;
  const labels = opts.labels ? new Int32Array(m) : undefined;
  let soft: Float32Array | undefined;
  const ids: string[] = new Array(m);
  let pos = 0;
  for await (const batch of readShard(info)) {
    const from = Math.max(start, pos);
    const to = Math.min(end, pos + batch.numRows);
    if (from < to) {
      const part = from === pos && to === pos + batch.numRows ? batch : batch.slice(from - pos, to - pos);
      const at = from - start;
      const px = part.getChild('pixels');
      if (!px) throw new DataError('the dataset has no pixels column', { file: dir });
      const values = fixedListValues<Uint8Array>(px);
      if (values.length !== part.numRows * len) {
        const perRow = values.length / part.numRows;
        throw opts.errors?.pixelShape?.(perRow, info.path)
          ?? new DataError(`pixels hold ${perRow} values per row, expected ${shape.join('×')}`, { file: info.path });
      }
      pixels.set(values, at * len);
      const idv = part.getChild('id');
      for (let i = 0; i < part.numRows; i++) ids[at + i] = idv ? String(idv.get(i)) : String(offset + at + i);
      if (labels) {
        const lab = part.getChild('label');
        const sl = part.getChild('soft_label');
        if (lab) labels.set(Int32Array.from(numericValues(lab)), at);
        else if (sl) {
          soft ??= new Float32Array(m * K);
          soft.set(fixedListValues<Float32Array>(sl), at * K);
        } else {
          throw opts.errors?.noLabels?.() ?? new DataError('the dataset has no label column', { file: dir });
        }
      }
    }
    pos += batch.numRows;
    if (pos >= end) break;
  }
  if (pos < end) throw new DataError(`shard ${shard} has ${pos} rows, fewer than ${end}`, { file: info.path });
  if (labels && !soft) {
    for (let i = 0; i < m; i++) {
      if (labels[i] < 0 || labels[i] >= K) {
        throw opts.errors?.labelOutOfRange?.(labels[i], offset + i)
          ?? new DataError(`label ${labels[i]} is outside the ${K} classes`, { file: dir, row: offset + i });
      }
    }
  }
  return { ids, pixels, labels: soft ? undefined : labels, softLabels: soft };
}
