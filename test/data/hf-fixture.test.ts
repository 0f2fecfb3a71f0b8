/**
 * A dataset as Python `datasets` `Dataset.save_to_disk` writes it, built by hand with
 * apache-arrow (not our writer): state.json, dataset_info.json, one Arrow IPC stream
 * shard whose schema metadata carries the features under "huggingface", an Image
 * column stored as struct {bytes: binary, path: string}, a ClassLabel stored as int64,
 * every field nullable (pyarrow's default), and no curation.json.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import {
  Binary, Field, Int64, RecordBatch, RecordBatchStreamWriter, Schema, Struct, Utf8, makeData, vectorFromArray, type Vector,
} from 'apache-arrow';
import { DataError } from '../../core/errors.js';
import { loadExamples } from '../../data/batch.js';
import { openDataset } from '../../data/reader.js';
import { useTmpDir } from '../helpers/tmp.js';

const tmp = useTmpDir('metacurate-hf-');

const NAMES = ['airplane', 'automobile', 'bird'];
const N = 150; // two record batches of 100 and 50, as datasets writes image columns
const W = 6;
const H = 5;
const SHARD = 'data-00000-of-00001.arrow';
const FEATURES = {
  image: { _type: 'Image' },
  label: { names: NAMES, _type: 'ClassLabel' },
  caption: { dtype: 'string', _type: 'Value' },
};

/** Raw RGB pixels of image i: a pattern that differs between images. */
function rawPixels(i: number): Uint8Array {
  const px = new Uint8Array(W * H * 3);
  for (let j = 0; j < px.length; j++) px[j] = (i * 37 + j * 11 + (j % 3) * 80) & 255;
  return px;
}

/** Row i's image: null for every 10th, else a PNG; every 7th also has a path. */
const hasImage = (i: number) => i % 10 !== 3;
const imagePath = (i: number) => (i % 7 === 0 ? `cifar/train/${i}.png` : null);

async function buildFixture(dir: string): Promise<Uint8Array[]> {
  await fsp.mkdir(dir, { recursive: true });
  const pngs = await Promise.all(Array.from({ length: N }, async (_, i) =>
    new Uint8Array(await sharp(rawPixels(i), { raw: { width: W, height: H, channels: 3 } }).png().toBuffer())));

  const imageType = new Struct([new Field('bytes', new Binary(), true), new Field('path', new Utf8(), true)]);
  const schema = new Schema(
    [new Field('image', imageType, true), new Field('label', new Int64(), true), new Field('caption', new Utf8(), true)],
    new Map([['huggingface', JSON.stringify({ info: { features: FEATURES } })]]),
  );
  const batch = (from: number, to: number): RecordBatch => {
    const rows = Array.from({ length: to - from }, (_, k) => from + k);
    const columns: Vector[] = [
      vectorFromArray(rows.map((i) => (hasImage(i) ? { bytes: pngs[i], path: imagePath(i) } : null)), imageType),
      vectorFromArray(rows.map((i) => BigInt(i % NAMES.length)), new Int64()),
      vectorFromArray(rows.map((i) => `a photo of a ${NAMES[i % NAMES.length]}`), new Utf8()),
    ];
    const data = makeData({ type: new Struct(schema.fields), length: rows.length, children: columns.map((c) => c.data[0]) });
    return new RecordBatch(schema, data);
  };
  const writer = new RecordBatchStreamWriter();
  writer.reset(undefined, schema);
  writer.write(batch(0, 100));
  writer.write(batch(100, N));
  writer.close();
  await fsp.writeFile(path.join(dir, SHARD), writer.toUint8Array(true));

  const json = (v: unknown) => JSON.stringify(v, null, 2);
  await fsp.writeFile(path.join(dir, 'state.json'), json({
    _data_files: [{ filename: SHARD }],
    _fingerprint: 'd3b07384d113edec',
    _format_columns: null,
    _format_kwargs: {},
    _format_type: null,
    _output_all_columns: false,
    _split: 'train',
  }));
  await fsp.writeFile(path.join(dir, 'dataset_info.json'), json({
    builder_name: 'parquet',
    citation: '',
    config_name: 'plain_text',
    dataset_name: 'tiny-cifar',
    dataset_size: 12345,
    description: '',
    download_size: 6789,
    features: FEATURES,
    homepage: '',
    license: '',
    size_in_bytes: 19134,
    splits: { train: { name: 'train', num_bytes: 12345, num_examples: N, dataset_name: 'tiny-cifar' } },
    version: { version_str: '0.0.0', major: 0, minor: 0, patch: 0 },
  }));
  return pngs;
}

describe('a dataset written by Python datasets.save_to_disk', () => {
  let dir: string;
  let pngs: Uint8Array[];
  beforeAll(async () => {
    dir = path.join(tmp(), 'hf');
    pngs = await buildFixture(dir);
  });

  test('opens: rows, column kinds, class names, HF fingerprint', async () => {
    const ds = await openDataset(dir, { verify: true });
    expect(ds.curation).toBeUndefined();
    expect(ds.shards.map((s) => s.file)).toEqual([SHARD]);
    expect(ds.numRows).toBeUndefined(); // state.json does not record rows
    expect(await ds.countRows()).toBe(N);
    expect(ds.columns).toEqual([
      { name: 'image', kind: 'image' },
      { name: 'label', kind: 'classLabel', names: NAMES },
      { name: 'caption', kind: 'string' },
    ]);
    expect(ds.classNames).toEqual(NAMES);
    expect(ds.pixelShape).toBeUndefined();
    expect(ds.fingerprint).toBe('d3b07384d113edec');
  });

  test('image bytes and paths round trip; the PNGs decode to the original pixels', async () => {
    const ds = await openDataset(dir);
    let row = 0;
    for await (const b of ds.blocks()) {
      const images = b.column('image');
      for (let r = 0; r < b.length; r++, row++) {
        expect(Number(b.column('label').get(r))).toBe(row % NAMES.length);
        expect(b.column('caption').get(r)).toBe(`a photo of a ${NAMES[row % NAMES.length]}`);
        if (!hasImage(row)) {
          expect(images.isValid(r)).toBe(false);
          continue;
        }
        const img = images.get(r);
        expect(img.path).toBe(imagePath(row));
        expect(Buffer.from(img.bytes).equals(Buffer.from(pngs[row]))).toBe(true);
        if (row % 25 === 1) {
          const raw = await sharp(img.bytes).raw().toBuffer();
          expect(raw.equals(Buffer.from(rawPixels(row)))).toBe(true);
        }
      }
    }
    expect(row).toBe(N);
  });

  test('without pixels, loadExamples says to ingest first', async () => {
    const err = await loadExamples(await openDataset(dir)).catch((e) => e);
    expect(err).toBeInstanceOf(DataError);
    expect(err.message).toMatch(/no pixels column.*metacurate ingest/);
  });

  test('a truncated HF shard (no recorded sizes) fails while reading, naming the shard', async () => {
    const copy = path.join(tmp(), 'hf-truncated');
    await fsp.cp(dir, copy, { recursive: true });
    const shard = path.join(copy, SHARD);
    const size = (await fsp.stat(shard)).size;
    await fsp.truncate(shard, size - 300);
    const ds = await openDataset(copy); // nothing to compare sizes with
    const err = await ds.countRows().catch((e) => e);
    expect(err).toBeInstanceOf(DataError);
    expect(err.file).toBe(shard);
    expect(err.message).toMatch(/after row 100.*truncated or corrupt/);
  });
});
