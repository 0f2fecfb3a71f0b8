/** readShardRange: rows [start, end) of one shard across record batches, labels hard or soft, and its errors. */
import path from 'node:path';
import { describe, expect, test } from 'vitest';
import { DataError, UsageError } from '../../core/errors.js';
import { readShardRange } from '../../data/ranges.js';
import { writeDataset } from '../../data/writer.js';
import { TEST_META, rowId, rowPixels, writeImageDataset } from '../helpers/datasets.js';
import { useTmpDir } from '../helpers/tmp.js';

const tmp = useTmpDir('metacurate-ranges-');
const out = (name: string) => path.join(tmp(), name);

describe('readShardRange', () => {
  test('reads a range that spans record batches, in the second shard', async () => {
    // Shards of 40 rows, batches of 7: rows 45..74 are shard 1's rows 5..34.
    await writeImageDataset(out('hard'), 100, { shape: [2, 2, 1], classes: 3, shardRows: 40, batchRows: 7 });
    const r = await readShardRange(out('hard'), 1, 5, 35, { shape: [2, 2, 1], offset: 45, labels: { numClasses: 3 } });
    expect(r.ids).toEqual(Array.from({ length: 30 }, (_, i) => rowId(45 + i)));
    expect(Array.from(r.labels!)).toEqual(Array.from({ length: 30 }, (_, i) => (45 + i) % 3));
    expect(r.softLabels).toBeUndefined();
    expect(Array.from(r.pixels.subarray(0, 4))).toEqual(Array.from(rowPixels(45, 4)));
    expect(Array.from(r.pixels.subarray(29 * 4))).toEqual(Array.from(rowPixels(74, 4)));
    const unlabelled = await readShardRange(out('hard'), 0, 0, 3, { shape: [2, 2, 1], offset: 0 });
    expect(unlabelled.labels).toBeUndefined();
  });

  test('reads soft labels when the shard has no label column', async () => {
    await writeDataset(out('soft'), Array.from({ length: 12 }, (_, i) => ({ id: rowId(i), pixels: rowPixels(i, 4), soft_label: [i / 12, 1 - i / 12] })), {
      columns: [{ name: 'id', kind: 'string' }, { name: 'pixels', kind: 'uint8Vector', length: 4 }, { name: 'soft_label', kind: 'float32Vector', length: 2 }],
      pixelShape: [2, 2, 1], meta: TEST_META, batchRows: 5,
    });
    const r = await readShardRange(out('soft'), 0, 3, 9, { shape: [2, 2, 1], offset: 3, labels: { numClasses: 2 } });
    expect(r.labels).toBeUndefined();
    expect(Array.from(r.softLabels!)).toEqual(Array.from(Float32Array.from({ length: 12 }, (_, j) => (j % 2 === 0 ? (3 + (j >> 1)) / 12 : 1 - (3 + (j >> 1)) / 12))));
  });

  test('errors name the file and, for a bad label, the dataset row; callers can word them', async () => {
    await writeImageDataset(out('errs'), 20, { shape: [2, 2, 1], classes: 4, batchRows: 6 });
    const opts = { shape: [2, 2, 1] as [number, number, number], offset: 0 };
    await expect(readShardRange(out('errs'), 1, 0, 3, opts)).rejects.toThrow(UsageError);
    await expect(readShardRange(out('errs'), 0, 0, 30, opts)).rejects.toThrow(/shard 0 has 20 rows, fewer than 30/);
    await expect(readShardRange(out('errs'), 0, 0, 3, { ...opts, shape: [3, 3, 1] })).rejects.toThrow(/pixels hold 4 values per row, expected 3×3×1/);
    const bad = await readShardRange(out('errs'), 0, 0, 20, { ...opts, labels: { numClasses: 3 } }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(DataError);
    expect((bad as DataError).row).toBe(3);
    expect((bad as DataError).file).toBe(out('errs'));
    const worded = readShardRange(out('errs'), 0, 0, 20, {
      ...opts, offset: 100, labels: { numClasses: 3 },
      errors: { labelOutOfRange: (label, row) => new DataError(`label ${label} is not ours`, { row }) },
    });
    await expect(worded).rejects.toMatchObject({ message: 'label 3 is not ours', row: 103 });
  });
});
