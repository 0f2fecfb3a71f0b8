/**
 * Parquet both ways: ingest reads Parquet files and folders (HF hub layout,
 * `export --parquet` output, string labels), bad rows land in rejected.jsonl,
 * bad files stop with 65; export --parquet carries sidecar columns and class
 * names, and ingesting it again gives the same rows.
 */
import { describe, expect, test } from 'vitest';
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import {
  Binary, Field, Int64, RecordBatch, Schema, Struct, Table, Utf8, makeData, tableFromIPC, tableToIPC, vectorFromArray,
  type DataType,
} from 'apache-arrow';
import { DataError, MissingInputError, UsageError } from '../../core/errors.js';
import { fixedListValues, numericValues } from '../../data/columns.js';
import { openDataset, readStrings, type Dataset } from '../../data/reader.js';
import { writeDataset } from '../../data/writer.js';
import { detectSource, openSource, type SourceItem } from '../../data/sources/index.js';
import { ingest } from '../../stages/ingest.js';
import { useTmpDir } from '../helpers/tmp.js';
import { assertBuilt, cli } from '../pipeline/helpers.js';

const tmp = useTmpDir('metacurate-parquet-');
const at = (...p: string[]) => path.join(tmp(), ...p);

const NAMES = ['cat', 'dog', 'bird'];
const H = 4;
const W = 6;
const imageType = new Struct([new Field('bytes', new Binary(), true), new Field('path', new Utf8(), true)]);

/** Grey pixels of image i: a pattern that differs between images. */
function raw(i: number): Uint8Array {
  return Uint8Array.from({ length: H * W }, (_, p) => (i * 23 + p * 9) & 255);
}

async function png(i: number): Promise<Uint8Array> {
  return new Uint8Array(await sharp(raw(i), { raw: { width: W, height: H, channels: 1 } }).toColourspace('b-w').png().toBuffer());
}

/** Writes a Parquet file as HF `datasets` does: columns as given, the features under "huggingface", small row groups. */
async function writeParquetFile(file: string, columns: Record<string, { type: DataType; values: unknown[] }>, features?: unknown): Promise<string> {
  const pq = await import('parquet-wasm');
  const fields = Object.entries(columns).map(([name, c]) => new Field(name, c.type, true));
  const meta = features === undefined ? new Map<string, string>() : new Map([['huggingface', JSON.stringify(features)]]);
  const schema = new Schema(fields, meta);
  const length = Object.values(columns)[0].values.length;
  const children = Object.values(columns).map((c) => vectorFromArray(c.values, c.type).data[0]);
  const batch = new RecordBatch(schema, makeData({ type: new Struct(fields), length, children }));
  const props = new pq.WriterPropertiesBuilder().setMaxRowGroupSize(3).setKeyValueMetadata(meta).build();
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, pq.writeParquet(pq.Table.fromIPCStream(tableToIPC(new Table(schema, [batch]), 'stream')), props));
  return file;
}

/** An HF-style image file: rows `from..to-1`, image i labelled i % 3. */
async function hfFile(file: string, from: number, to: number, features: unknown): Promise<string> {
  const rows = Array.from({ length: to - from }, (_, k) => from + k);
  return writeParquetFile(file, {
    image: { type: imageType, values: await Promise.all(rows.map(async (i) => ({ bytes: await png(i), path: `img_${i}.png` }))) },
    label: { type: new Int64(), values: rows.map((i) => BigInt(i % NAMES.length)) },
  }, features);
}

const HF_FEATURES = { info: { features: { image: { _type: 'Image' }, label: { names: NAMES, _type: 'ClassLabel' } } } };

async function collect(items: AsyncIterable<SourceItem>): Promise<SourceItem[]> {
  const out: SourceItem[] = [];
  for await (const it of items) out.push(it);
  return out;
}

/** Every row's id, label and pixels. */
async function rowsOf(ds: Dataset): Promise<{ id: string; label: number; pixels: number[] }[]> {
  const out: { id: string; label: number; pixels: number[] }[] = [];
  const len = ds.pixelShape!.reduce((a, b) => a * b, 1);
  for await (const b of ds.blocks()) {
    const labels = numericValues(b.column('label'));
    const px = fixedListValues<Uint8Array>(b.column('pixels'));
    for (let i = 0; i < b.length; i++) out.push({ id: String(b.column('id').get(i)), label: labels[i], pixels: Array.from(px.subarray(i * len, (i + 1) * len)) });
  }
  return out;
}

async function hubFolder(): Promise<string> {
  const hub = at('hub');
  await hfFile(path.join(hub, 'data/train-00000-of-00002.parquet'), 0, 5, HF_FEATURES);
  await hfFile(path.join(hub, 'data/train-00001-of-00002.parquet'), 5, 10, HF_FEATURES);
  // The bare {features} form of the metadata, as some writers leave it.
  await hfFile(path.join(hub, 'data/test-00000-of-00001.parquet'), 10, 13, { features: HF_FEATURES.info.features });
  await fsp.writeFile(path.join(hub, 'README.md'), '---\nlicense: mit\n---\n');
  return hub;
}

describe('ingest reads Parquet', () => {
  test('an HF hub folder: a split by file name, ClassLabel names from the metadata, images decoded as other sources do', async () => {
    const hub = await hubFolder();
    expect(await detectSource(hub)).toBe('parquet');
    expect(await detectSource(path.join(hub, 'data/test-00000-of-00001.parquet'))).toBe('parquet');
    await expect(openSource(hub)).rejects.toBeInstanceOf(UsageError); // two splits: which one?
    await expect(openSource(hub, { split: 'validation' })).rejects.toBeInstanceOf(MissingInputError);
    const test = await openSource(hub, { split: 'test' });
    expect([test.count, test.classNames]).toEqual([3, NAMES]);

    const res = await ingest(hub, { out: at('hub-train'), split: 'train', channels: 1 });
    expect(res.summary).toMatchObject({ format: 'parquet', rows: 10, rejected: 0, pixel_shape: [32, 32, 1] });
    // Stopping early cancels the reads before the file closes.
    expect((await ingest(hub, { out: at('hub-few'), split: 'train', limit: 2 })).summary.rows).toBe(2);
    const native = await ingest(hub, { out: at('hub-native'), split: 'train', size: [H, W], channels: 1, shardRows: 4 });
    const ds = await openDataset(native.dir);
    expect(ds.classNames).toEqual(NAMES);
    const rows = await rowsOf(ds);
    expect(rows.map((r) => r.id)).toEqual(Array.from({ length: 10 }, (_, i) => `row-00000${i}`));
    expect(rows.map((r) => r.label)).toEqual(Array.from({ length: 10 }, (_, i) => i % 3));
    rows.forEach((r, i) => expect(r.pixels).toEqual(Array.from(raw(i))));
  });

  test('string labels: the classes are the sorted distinct names, as for a manifest', async () => {
    const file = await writeParquetFile(at('strings.parquet'), {
      image: { type: imageType, values: await Promise.all([0, 1, 2, 3].map(async (i) => ({ bytes: await png(i), path: null }))) },
      label: { type: new Utf8(), values: ['dog', 'cat', 'dog', 'ant'] },
    });
    const src = await openSource(file);
    expect(src.classNames).toEqual(['ant', 'cat', 'dog']);
    const items = await collect(src.items());
    expect(items.map((it) => [it.kind, it.kind === 'rejected' ? it.reason : it.label])).toEqual([['encoded', 2], ['encoded', 1], ['encoded', 2], ['encoded', 0]]);
  });

  test('bad rows are skipped and recorded in rejected.jsonl: corrupt image bytes, a null label, a label out of range', async () => {
    const labels: (bigint | null)[] = [0n, 1n, 2n, null, 9n, 1n];
    const file = await writeParquetFile(at('bad-rows', 'train.parquet'), {
      image: { type: imageType, values: await Promise.all(labels.map(async (_, i) => ({ bytes: i === 1 ? new TextEncoder().encode('not a png') : await png(i), path: `${i}.png` }))) },
      label: { type: new Int64(), values: labels },
    }, HF_FEATURES);
    const res = await ingest(file, { out: at('bad-rows-out') });
    expect(res.summary).toMatchObject({ items: 6, rows: 3, rejected: 3 });
    const rejected = readFileSync(path.join(res.dir, 'rejected.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(rejected).toEqual([
      { id: 'row-000001', path: '1.png', row: 1, reason: expect.stringMatching(/not an image|corrupt/) },
      { id: 'row-000003', row: 3, reason: 'missing label' },
      { id: 'row-000004', row: 4, reason: 'label 9 is out of range for the 3 classes' },
    ]);
  });

  test('bad files stop with a DataError naming the file: not Parquet (65 from the CLI), no label column, a link out of the folder', async () => {
    assertBuilt();
    const notParquet = at('bad', 'notes.parquet');
    await fsp.mkdir(path.dirname(notParquet), { recursive: true });
    await fsp.writeFile(notParquet, 'id,label\n1,cat\n');
    const run = await cli(['ingest', notParquet, '--out', at('bad-out')]);
    expect(run.code).toBe(65);
    expect(run.stderr).toContain(`${notParquet}: not a Parquet file`);

    const unlabelled = await writeParquetFile(at('unlabelled', 'x.parquet'), { image: { type: imageType, values: [{ bytes: await png(0), path: null }] } });
    const err = await openSource(unlabelled).catch((e) => e);
    expect(err).toBeInstanceOf(DataError);
    expect(err.message).toMatch(/x\.parquet: Parquet file has no label column \(columns: image\)\. metacurate needs a "label" column/);

    const linked = at('linked');
    await fsp.mkdir(linked);
    await fsp.symlink(await hfFile(at('outside.parquet'), 0, 2, HF_FEATURES), path.join(linked, 'train.parquet'));
    await expect(openSource(linked, { format: 'parquet' })).rejects.toThrow(/train\.parquet: cannot read the Parquet file: links to a file outside the source folder/);
    await expect(openSource(linked, { format: 'parquet', allowOutsideRoot: true })).resolves.toMatchObject({ count: 2 });
  });
});

describe('export --parquet', () => {
  test('carries sidecar columns and class names; ingesting it again gives the same ids, labels, pixels and classes', async () => {
    assertBuilt();
    const hub = await hubFolder();
    const src = await ingest(hub, { out: at('rt-src'), split: 'train', size: [H, W], channels: 1, shardRows: 4 });
    const base = await openDataset(src.dir);
    // A sidecar in smaller record batches than the dataset's, so the join slices batches.
    const sidecar = at('rt-scores');
    const ids = await readStrings(base, 'id');
    await writeDataset(sidecar, ids.map((id, i) => ({ id, score: i / 10 })), {
      columns: [{ name: 'id', kind: 'string' }, { name: 'score', kind: 'float32' }],
      shardSizes: base.shards.map((s) => s.rows!),
      batchRows: 3,
      meta: { stage: 'score', stageVersion: '1', options: {}, parents: [], sidecarOf: base.fingerprint },
    });

    const out = at('rt-parquet');
    const run = await cli(['--json', 'export', src.dir, '--sidecar', sidecar, '--parquet', out]);
    expect(run.code, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout);
    expect(result.columns).toEqual(['id', 'label', 'pixels', 'sha256', 'score', 'label_name']);
    expect(result.files.map((f: { file: string; rows: number }) => [f.file, f.rows])).toEqual([
      ['data-00000-of-00003.parquet', 4], ['data-00001-of-00003.parquet', 4], ['data-00002-of-00003.parquet', 2],
    ]);

    // What other tools see: the columns, and HF's features in the file's key-value metadata.
    const pq = await import('parquet-wasm');
    const bytes = new Uint8Array(readFileSync(path.join(out, 'data-00001-of-00003.parquet')));
    const kv = (await pq.ParquetFile.fromFile(new Blob([bytes]))).metadata().fileMetadata().keyValueMetadata();
    const features = JSON.parse(kv.get('huggingface')).info.features;
    expect(features.label).toEqual({ names: NAMES, _type: 'ClassLabel' });
    expect(features.label_name).toEqual({ dtype: 'string', _type: 'Value' });
    expect(features.score).toEqual({ dtype: 'float32', _type: 'Value' });
    const table = tableFromIPC(pq.readParquet(bytes).intoIPCStream());
    expect(Array.from(table.getChild('score')!.toArray() as Float32Array)).toEqual([4, 5, 6, 7].map((i) => Math.fround(i / 10)));
    expect(table.getChild('label_name')!.toArray()).toEqual([4, 5, 6, 7].map((i) => NAMES[i % 3]));
    expect(table.getChild('id')!.toArray()).toEqual(ids.slice(4, 8));

    expect(await detectSource(out)).toBe('parquet');
    const again = await ingest(out, { out: at('rt-again') });
    expect(again.summary).toMatchObject({ format: 'parquet', rows: 10, rejected: 0, pixel_shape: [H, W, 1] });
    const back = await openDataset(again.dir);
    expect(back.classNames).toEqual(NAMES);
    expect(await rowsOf(back)).toEqual(await rowsOf(base));
  });
});
