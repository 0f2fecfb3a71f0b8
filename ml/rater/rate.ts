/**
 * Rating: a row's rating is its instance logit, which needs no batch, so ratings
 * are comparable across batches and datasets. Rows are rated in fixed-size
 * batches; a saved rater rates one shard range at a time (the worker's job).
 */
import * as tf from '@tensorflow/tfjs';
import { DataError } from '../../core/errors.js';
import { gatherPixels, gatherTargets, type Examples } from '../../data/batch.js';
import { readShardRange } from '../../data/ranges.js';
import { loadRater } from './files.js';
import type { Rater } from './model.js';

/** Default rows per rating batch. */
export const RATE_BATCH_SIZE = 256;

/** Ratings of rows `idx` (default all) of an in-memory dataset. Throws on a non-finite rating. */
export function rateExamples(
  rater: Rater,
  params: readonly tf.Tensor[],
  ex: Pick<Examples, 'pixels' | 'shape' | 'labels' | 'softLabels' | 'numClasses' | 'ids'>,
  idx?: ArrayLike<number>,
  batchSize = RATE_BATCH_SIZE,
): Float32Array {
  const rows = idx ?? Int32Array.from({ length: ex.ids.length }, (_, i) => i);
  const out = new Float32Array(rows.length);
  const conditioned = rater.arch.labelConditioned;
  for (let s = 0; s < rows.length; s += batchSize) {
    const part = Array.prototype.slice.call(rows, s, Math.min(rows.length, s + batchSize)) as number[];
    const z = tf.tidy(() => {
      const x = tf.tensor4d(gatherPixels(ex, part), [part.length, ...ex.shape]);
      const y = conditioned ? tf.tensor2d(gatherTargets(ex, part), [part.length, ex.numClasses]) : undefined;
      return rater.rate(params, x, y);
    });
    out.set(z.dataSync(), s);
    z.dispose();
  }
  const bad = out.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new DataError(`the rating of row ${rows[bad]} (id ${ex.ids[rows[bad]]}) is ${out[bad]}`, { hint: 'The rater\'s weights or the pixels are corrupt' });
  return out;
}

/** A run of rows within one shard of a dataset: rows [start, end) of shard `shard`. */
export interface RateRange {
  dir: string;
  shard: number;
  start: number;
  end: number;
  /** The row's index in the whole dataset of `start` (for messages). */
  offset: number;
  batchSize?: number;
}

/**
 * Rates rows [start, end) of one shard with a saved rater, streaming the shard's
 * record batches (memory: the range's pixels at most). Used by the worker's
 * `rate` job; the ids come back with the ratings so the caller writes them as is.
 */
export async function rateRange(raterDir: string, range: RateRange): Promise<{ ids: string[]; ratings: Float32Array }> {
  const { rater, params } = await loadRater(raterDir);
  const shape = rater.arch.inputShape;
  const K = rater.arch.numClasses;
  const rows = await readShardRange(range.dir, range.shard, range.start, range.end, {
    shape,
    offset: range.offset,
    labels: rater.arch.labelConditioned ? { numClasses: K } : undefined,
    errors: {
      pixelShape: (perRow, file) => new DataError(`pixels hold ${perRow} values per row but the rater (${raterDir}) takes ${shape.join('×')}`, { file }),
      noLabels: () => new DataError(`the rater ${raterDir} is conditioned on labels but the dataset has no label column`, {
        file: range.dir,
        hint: 'Rate a labelled dataset, or train an unconditioned rater (--no-labels)',
      }),
      labelOutOfRange: (label, row) => new DataError(`label ${label} is outside the rater's ${K} classes`, {
        file: range.dir,
        row,
        hint: `The rater (${raterDir}) was trained on other classes`,
      }),
    },
  });
  const ex = { ...rows, shape, numClasses: K };
  try {
    return { ids: rows.ids, ratings: rateExamples(rater, params, ex, undefined, range.batchSize ?? RATE_BATCH_SIZE) };
  } catch (err) {
    if (err instanceof DataError) throw new DataError(`${err.message} (rater ${raterDir}, shard ${range.shard} from row ${range.offset})`, { file: range.dir });
    throw err;
  }
}
