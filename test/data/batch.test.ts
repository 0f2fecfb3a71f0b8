import { describe, expect, test } from 'vitest';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { DataError, UsageError } from '../../core/errors.js';
import {
  batchSchedule, featureLength, gatherLabels, gatherPixelBytes, gatherPixels, gatherTargets, loadExamples, subsetExamples, type Examples,
} from '../../data/batch.js';
import { PIXEL_MEMORY_ENV, ShardPixels, channelSums, pixelRowCount } from '../../data/pixel-rows.js';
import { openDataset } from '../../data/reader.js';
import { writeDataset } from '../../data/writer.js';
import { useTmpDir } from '../helpers/tmp.js';
import { TEST_META, classNames, rowId, rowPixels, writeImageDataset } from '../helpers/datasets.js';

const tmp = useTmpDir('metacurate-batch-');
const out = (name: string) => path.join(tmp(), name);

describe('loadExamples', () => {
  test('reads ids, pixels, labels and class names across shards', async () => {
    await writeImageDataset(out('ds'), 1100, { shape: [3, 2, 2], classes: 4, shardRows: 400, batchRows: 150 });
    const ex = await loadExamples(await openDataset(out('ds')));
    expect(ex.shape).toEqual([3, 2, 2]);
    expect(featureLength(ex.shape)).toBe(12);
    expect(ex.numClasses).toBe(4);
    expect(ex.classNames).toEqual(classNames(4));
    expect(ex.ids).toHaveLength(1100);
    expect(ex.pixels).toHaveLength(1100 * 12);
    expect(ex.softLabels).toBeUndefined();
    for (const i of [0, 1, 399, 400, 401, 799, 800, 1099]) {
      expect(ex.ids[i]).toBe(rowId(i));
      expect(ex.labels![i]).toBe(i % 4);
      expect(Array.from(gatherPixelBytes(ex, [i]))).toEqual(Array.from(rowPixels(i, 12)));
    }
  });

  test('above the in-memory limit, pixels stay in the shards and read back as the same bytes', async () => {
    await writeImageDataset(out('big'), 1100, { shape: [3, 2, 2], classes: 4, shardRows: 400, batchRows: 150 });
    const ds = await openDataset(out('big'));
    const mem = await loadExamples(ds);
    const disk = await loadExamples(ds, { inMemoryBytes: 0 });
    expect(mem.pixels).toBeInstanceOf(Uint8Array);
    expect(disk.pixels).toBeInstanceOf(ShardPixels);
    expect(pixelRowCount(disk.pixels, 12)).toBe(1100);
    expect(disk.ids).toEqual(mem.ids);
    expect(disk.labels).toEqual(mem.labels);
    // rows across record batches and shards, repeated, out of order
    const idx = [1099, 0, 149, 150, 399, 400, 401, 401, 799, 800, 5, 6, 7, 8];
    expect(gatherPixelBytes(disk, idx)).toEqual(gatherPixelBytes(mem, idx));
    expect(gatherPixels(disk, idx)).toEqual(gatherPixels(mem, idx));
    const all = Int32Array.from({ length: 1100 }, (_, i) => i);
    expect(gatherPixelBytes(disk, all)).toEqual(mem.pixels);
    expect(channelSums(disk.pixels, disk.shape)).toEqual(channelSums(mem.pixels, mem.shape));
    expect(channelSums(mem.pixels, mem.shape).count).toBe(1100 * 6); // 3×2 pixels of 2 channels a row
    const sub = subsetExamples(disk, [800, 3, 399]);
    expect(sub.pixels).toBeInstanceOf(ShardPixels);
    expect(gatherPixelBytes(sub, [0, 1, 2])).toEqual(gatherPixelBytes(mem, [800, 3, 399]));
    expect(() => gatherPixelBytes(sub, [3])).toThrow(RangeError);
    (disk.pixels as ShardPixels).close();
  });

  test('a shard replaced while its rows are read is an error, not other rows', async () => {
    await writeImageDataset(out('swap'), 50, { shape: [2, 2, 1], classes: 2 });
    const ds = await openDataset(out('swap'));
    const disk = await loadExamples(ds, { inMemoryBytes: 0 });
    (disk.pixels as ShardPixels).close();
    const shard = ds.shards[0].path;
    const bytes = await fsp.readFile(shard);
    await fsp.writeFile(`${shard}.new`, bytes);
    await fsp.rename(`${shard}.new`, shard); // a new inode: the old one is still linked when this one is made
    expect(() => gatherPixelBytes(disk, [0])).toThrow(/replaced while its rows were being read/);
  });

  test('METACURATE_PIXEL_MEMORY sets the limit; a bad value is a usage error naming it', async () => {
    await writeImageDataset(out('env'), 30, { shape: [2, 2, 1], classes: 2 });
    const ds = await openDataset(out('env'));
    try {
      process.env[PIXEL_MEMORY_ENV] = '0';
      expect((await loadExamples(ds)).pixels).toBeInstanceOf(ShardPixels);
      process.env[PIXEL_MEMORY_ENV] = '1KiB';
      expect((await loadExamples(ds)).pixels).toBeInstanceOf(Uint8Array);
      process.env[PIXEL_MEMORY_ENV] = 'lots';
      const err = await loadExamples(ds).catch((e) => e);
      expect(err).toBeInstanceOf(UsageError);
      expect(err.message).toMatch(/METACURATE_PIXEL_MEMORY=lots/);
    } finally {
      delete process.env[PIXEL_MEMORY_ENV];
    }
  });

  test('a file the index cannot address is not indexed (it loads into memory)', async () => {
    await fsp.writeFile(out('not-ipc'), Buffer.from('ARROW1\0\0 and not a stream'));
    expect(ShardPixels.index([out('not-ipc')], 'pixels', 4)).toBeUndefined();
  });

  test('reads soft labels from a float32Vector soft_label column', async () => {
    const k = 3;
    const soft = (i: number) => [i % 3 === 0 ? 0.5 : 0.25, 0.25, i % 3 === 0 ? 0.25 : 0.5];
    await writeDataset(out('soft'), Array.from({ length: 20 }, (_, i) => ({ id: rowId(i), pixels: rowPixels(i, 4), soft_label: soft(i) })), {
      columns: [{ name: 'id', kind: 'string' }, { name: 'pixels', kind: 'uint8Vector', length: 4 }, { name: 'soft_label', kind: 'float32Vector', length: k }],
      pixelShape: [2, 2, 1], meta: TEST_META, batchRows: 7,
    });
    const ex = await loadExamples(await openDataset(out('soft')));
    expect(ex.labels).toBeUndefined();
    expect(ex.numClasses).toBe(k);
    expect(Array.from(ex.softLabels!.subarray(3 * k, 4 * k))).toEqual(soft(3));
    expect(Array.from(gatherTargets(ex, [4, 3]))).toEqual([...soft(4), ...soft(3)]);
  });

  test('refuses a dataset without pixels, and labels outside the classes (naming the row)', async () => {
    await writeDataset(out('no-pixels'), [{ id: 'a' }], { columns: [{ name: 'id', kind: 'string' }], meta: TEST_META });
    const e1 = await loadExamples(await openDataset(out('no-pixels'))).catch((e) => e);
    expect(e1).toBeInstanceOf(DataError);
    expect(e1.message).toMatch(/no pixels column.*metacurate ingest/);

    await writeDataset(out('bad-label'), [0, 1, 5, 1].map((label, i) => ({ id: rowId(i), label, pixels: [i] })), {
      columns: [{ name: 'id', kind: 'string' }, { name: 'label', kind: 'classLabel', names: ['a', 'b'] }, { name: 'pixels', kind: 'uint8Vector', length: 1 }],
      pixelShape: [1, 1, 1], meta: TEST_META,
    });
    const e2 = await loadExamples(await openDataset(out('bad-label'))).catch((e) => e);
    expect(e2).toBeInstanceOf(DataError);
    expect(e2.row).toBe(2);
    expect(e2.message).toMatch(/label 5 is outside the 2 classes/);
  });
});

describe('gathering batches', () => {
  const ex: Examples = {
    ids: ['a', 'b', 'c', 'd'],
    pixels: Uint8Array.from([0, 255, 1, 2, 3, 4, 51, 102, 153, 204, 10, 20]),
    shape: [1, 3, 1],
    labels: Int32Array.from([2, 0, 1, 2]),
    numClasses: 3,
    classNames: ['x', 'y', 'z'],
  };

  test('gatherPixels scales to [0, 1] in the order asked', () => {
    const px = gatherPixels(ex, [2, 0]);
    expect(px).toBeInstanceOf(Float32Array);
    expect(Array.from(px)).toEqual([51, 102, 153, 0, 255, 1].map((v) => Math.fround(v / 255)));
    expect(Math.min(...gatherPixels(ex, [0, 1, 2, 3]))).toBe(0);
    expect(Math.max(...gatherPixels(ex, [0, 1, 2, 3]))).toBe(1);
  });

  test('gatherTargets gives one-hot rows; gatherLabels the indices', () => {
    expect(Array.from(gatherTargets(ex, [0, 1, 3]))).toEqual([0, 0, 1, 1, 0, 0, 0, 0, 1]);
    expect(Array.from(gatherLabels(ex, [3, 2]))).toEqual([2, 1]);
    const unlabelled = { ...ex, labels: undefined };
    expect(() => gatherTargets(unlabelled, [0])).toThrow(DataError);
    expect(() => gatherLabels(unlabelled, [0])).toThrow(DataError);
  });

  test('subsetExamples keeps the rows asked, in that order', () => {
    const sub = subsetExamples(ex, [3, 1]);
    expect(sub.ids).toEqual(['d', 'b']);
    expect(Array.from(gatherPixelBytes(sub, [0, 1]))).toEqual([204, 10, 20, 2, 3, 4]);
    expect(Array.from(sub.labels!)).toEqual([2, 0]);
    expect(sub.classNames).toEqual(ex.classNames);
  });
});

describe('batchSchedule', () => {
  const flat = (batches: Int32Array[]) => batches.flatMap((b) => Array.from(b));

  test('each epoch is a permutation, cut into batches of the given size', () => {
    const n = 103;
    const s = batchSchedule(n, 10, 3, 42);
    expect(s).toHaveLength(3 * 11);
    expect(s.map((b) => b.length)).toEqual(Array.from({ length: 3 }, () => [...Array(10).fill(10), 3]).flat());
    const ordered = Array.from({ length: n }, (_, i) => i);
    for (let e = 0; e < 3; e++) {
      const epoch = flat(s.slice(e * 11, e * 11 + 11));
      expect([...epoch].sort((a, b) => a - b)).toEqual(ordered);
      expect(epoch).not.toEqual(ordered); // shuffled
    }
    // A fresh order each epoch.
    expect(flat(s.slice(0, 11))).not.toEqual(flat(s.slice(11, 22)));
  });

  test('is a pure function of the seed', () => {
    expect(flat(batchSchedule(500, 32, 2, 7))).toEqual(flat(batchSchedule(500, 32, 2, 7)));
    expect(flat(batchSchedule(500, 32, 2, 7))).not.toEqual(flat(batchSchedule(500, 32, 2, 8)));
  });

  test('dropLast drops the short batch', () => {
    const s = batchSchedule(103, 10, 2, 1, true);
    expect(s).toHaveLength(20);
    expect(s.every((b) => b.length === 10)).toBe(true);
    expect(new Set(flat(s.slice(0, 10))).size).toBe(100);
  });
});
