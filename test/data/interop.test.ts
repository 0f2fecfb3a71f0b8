/**
 * Our shards read by an independent Arrow implementation: Polars (Rust) through
 * nodejs-polars. A static import: if the native binding cannot load, this file
 * fails, it does not skip.
 */
import { describe, expect, test } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import pl from 'nodejs-polars';
import type { ColumnSpec } from '../../data/format.js';
import { writeDataset } from '../../data/writer.js';
import { useTmpDir } from '../helpers/tmp.js';
import { TEST_META, rowId, rowPixels } from '../helpers/datasets.js';

const tmp = useTmpDir('metacurate-interop-');

const COLUMNS: ColumnSpec[] = [
  { name: 'id', kind: 'string' },
  { name: 'label', kind: 'classLabel', names: ['a', 'b', 'c', 'd', 'e'] },
  { name: 'caption', kind: 'string', nullable: true },
  { name: 'score', kind: 'float32' },
  { name: 'weight', kind: 'float64' },
  { name: 'keep', kind: 'bool' },
  { name: 'image', kind: 'image', nullable: true },
  { name: 'pixels', kind: 'uint8Vector', length: 12 },
  { name: 'emb', kind: 'float32Vector', length: 2 },
];
const N = 2500;

// nodejs-polars cannot hand Binary values to JS, but can cast them to strings:
// image bytes here are ASCII so that the cast is exact.
const imageBytes = (i: number) => `img-bytes-${i}`;

function row(i: number): Record<string, unknown> {
  return {
    id: rowId(i),
    label: i % 5,
    caption: i % 3 === 0 ? null : `caption ${i}`,
    score: i / 9,
    weight: i / 9,
    keep: i % 2 === 0,
    image: i % 4 === 0 ? null : { bytes: new TextEncoder().encode(imageBytes(i)), path: i % 4 === 1 ? null : `d/${i}.png` },
    pixels: rowPixels(i, 12),
    emb: [i / 9, -i],
  };
}

describe('Polars reads our shards (readIPCStream)', () => {
  test('row counts, column names, types and values', async () => {
    const dir = path.join(tmp(), 'ds');
    const res = await writeDataset(dir, Array.from({ length: N }, (_, i) => row(i)), {
      columns: COLUMNS, pixelShape: [2, 2, 3], meta: TEST_META, shardRows: 1000, batchRows: 300,
    });
    expect(res.shards).toHaveLength(3);

    let offset = 0;
    for (const shard of res.shards) {
      // A Buffer, not the path: nodejs-polars takes a string without an .ipc extension as inline data.
      const df = pl.readIPCStream(readFileSync(path.join(dir, shard.file)));
      expect(df.height).toBe(shard.rows);
      expect(df.columns).toEqual(COLUMNS.map((c) => c.name));
      // dtypes of everything but the image struct (its Binary child has no JS conversion).
      expect(df.select(pl.exclude('image')).dtypes.map(String)).toEqual([
        'DataType(String)', 'DataType(Int64)', 'DataType(String)', 'DataType(Float32)', 'DataType(Float64)', 'DataType(Bool)',
        'DataType(FixedSizeList(DataType(UInt8),12))', 'DataType(FixedSizeList(DataType(Float32),2))',
      ]);

      const want = Array.from({ length: shard.rows }, (_, r) => row(offset + r));
      const col = (name: string) => df.getColumn(name).toArray() as unknown[];
      expect(col('id')).toEqual(want.map((w) => w.id));
      expect(col('label').map(Number)).toEqual(want.map((w) => w.label));
      expect(col('caption')).toEqual(want.map((w) => w.caption));
      expect(col('score')).toEqual(want.map((w) => Math.fround(w.score as number)));
      expect(col('weight')).toEqual(want.map((w) => w.weight));
      expect(col('keep')).toEqual(want.map((w) => w.keep));
      expect(col('pixels')).toEqual(want.map((w) => Array.from(w.pixels as Uint8Array)));
      expect(col('emb')).toEqual(want.map((w) => (w.emb as number[]).map(Math.fround)));

      const img = df.select(
        pl.col('image').isNull().alias('missing'),
        pl.col('image').struct.field('path').alias('path'),
        pl.col('image').struct.field('bytes').cast(pl.Utf8).alias('bytes'),
      );
      type Img = { bytes: Uint8Array; path: string | null } | null;
      expect(img.getColumn('missing').toArray()).toEqual(want.map((w) => w.image === null));
      expect(img.getColumn('path').toArray()).toEqual(want.map((w) => (w.image as Img)?.path ?? null));
      expect(img.getColumn('bytes').toArray()).toEqual(want.map((w, r) => (w.image ? imageBytes(offset + r) : null)));
      offset += shard.rows;
    }
    expect(offset).toBe(N);
  });
});
