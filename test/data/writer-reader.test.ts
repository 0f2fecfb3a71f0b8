import { describe, expect, test } from 'vitest';
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import { createHash } from 'node:crypto';
import { DataError, InternalError, MetacurateError, MissingInputError, OutputError, UsageError } from '../../core/errors.js';
import { TEMP_PREFIX } from '../../core/atomic.js';
import { fixedListValues } from '../../data/columns.js';
import { HF_METADATA_KEY, PIXEL_SHAPE_KEY, hfFeatures, type ColumnSpec } from '../../data/format.js';
import { openDataset } from '../../data/reader.js';
import { DatasetWriter, writeDataset } from '../../data/writer.js';
import { useTmpDir } from '../helpers/tmp.js';
import {
  TEST_META, classNames, columnValues, readJsonFile, rowId, rowPixels, shardFiles, writeImageDataset,
} from '../helpers/datasets.js';

const tmp = useTmpDir('metacurate-writer-reader-');
const out = (name: string) => path.join(tmp(), name);
const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');
const packageVersion = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;

/** Awaits a rejection and checks its class, exit code, file and message. */
async function expectFailure(
  p: Promise<unknown>,
  cls: new (...args: any[]) => MetacurateError,
  expected: { exitCode: number; file?: string; message?: RegExp },
): Promise<MetacurateError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err, 'expected a rejection').toBeInstanceOf(cls);
  const e = err as MetacurateError;
  expect(e.exitCode).toBe(expected.exitCode);
  if (expected.file) {
    expect(e.file).toBe(expected.file);
    expect(e.message).toContain(expected.file);
  }
  if (expected.message) expect(e.message).toMatch(expected.message);
  return e;
}

// ---------------------------------------------------------------- every column kind

const ALL_KINDS: ColumnSpec[] = [
  { name: 'id', kind: 'string' },
  { name: 'caption', kind: 'string', nullable: true },
  { name: 'count', kind: 'int64' },
  { name: 'label', kind: 'classLabel', names: ['ant', 'bee', 'cat'] },
  { name: 'small', kind: 'int32' },
  { name: 'score', kind: 'float32' },
  { name: 'weight', kind: 'float64' },
  { name: 'keep', kind: 'bool' },
  { name: 'image', kind: 'image', nullable: true },
  { name: 'pixels', kind: 'uint8Vector', length: 12 },
  { name: 'emb', kind: 'float32Vector', length: 3 },
];
const ALL_N = 2345;

function imageBytes(i: number): Uint8Array {
  const b = new Uint8Array(i % 7 === 1 ? 0 : 5 + (i % 40)); // some empty (but present) byte strings
  for (let j = 0; j < b.length; j++) b[j] = (i * 13 + j * 101) & 255;
  return b;
}

function allKindsRow(i: number): Record<string, unknown> {
  return {
    id: rowId(i),
    caption: i % 4 === 0 ? null : `caption ${i} — ünïcødé 猫`,
    count: i === 5 ? 2n ** 62n + 1n : i * 1_000_003 - 7_000,
    label: i % 3,
    small: -(17 * i) | 0, // | 0: no -0 in an int32 column
    score: i / 7,
    weight: i / 7 + 1e-12,
    keep: i % 3 === 1,
    image: i % 5 === 0 ? null : { bytes: i % 9 === 2 ? null : imageBytes(i), path: i % 2 ? `img/${i}.png` : null },
    pixels: rowPixels(i, 12),
    emb: [i * 0.5, -i, 1 / (i + 1)],
  };
}

function* allKindsRows(n = ALL_N): Generator<Record<string, unknown>> {
  for (let i = 0; i < n; i++) yield allKindsRow(i);
}

describe('round trip', () => {
  test('every column kind comes back identical, across shards and record batches', async () => {
    const dir = out('all-kinds');
    const res = await writeDataset(dir, allKindsRows(), {
      columns: ALL_KINDS, meta: TEST_META, shardRows: 1000, batchRows: 300, pixelShape: [2, 2, 3],
    });
    expect(res.shards.map((s) => s.rows)).toEqual([1000, 1000, 345]);
    const ds = await openDataset(dir, { verify: true });
    expect(ds.columns).toEqual(ALL_KINDS);
    expect(ds.numRows).toBe(ALL_N);
    expect(ds.classNames).toEqual(['ant', 'bee', 'cat']);
    expect(ds.pixelShape).toEqual([2, 2, 3]);

    let seen = 0;
    for await (const b of ds.blocks()) {
      expect(b.offset).toBe(seen);
      // A block never spans record batches, so blocks follow batchRows within each shard.
      expect(b.length).toBeLessThanOrEqual(300);
      const px = fixedListValues<Uint8Array>(b.column('pixels'));
      const emb = fixedListValues<Float32Array>(b.column('emb'));
      for (let r = 0; r < b.length; r++) {
        const i = b.offset + r;
        const want = allKindsRow(i);
        expect(b.column('id').get(r)).toBe(want.id);
        expect(b.column('caption').get(r)).toBe(want.caption);
        expect(b.column('count').get(r)).toBe(BigInt(want.count as number | bigint));
        expect(b.column('label').get(r)).toBe(BigInt(want.label as number));
        expect(b.column('small').get(r)).toBe(want.small);
        expect(b.column('score').get(r)).toBe(Math.fround(want.score as number));
        expect(b.column('weight').get(r)).toBe(want.weight);
        expect(b.column('keep').get(r)).toBe(want.keep);
        const img = b.column('image').get(r);
        const wantImg = want.image as { bytes: Uint8Array | null; path: string | null } | null;
        if (wantImg === null) expect(img).toBeNull();
        else {
          expect(img.path).toBe(wantImg.path);
          if (wantImg.bytes === null) expect(img.bytes).toBeNull();
          else expect(Buffer.from(img.bytes).equals(Buffer.from(wantImg.bytes))).toBe(true);
        }
        // Per-row access and the flat buffer agree, byte for byte.
        expect(Array.from(b.column('pixels').get(r).toArray())).toEqual(Array.from(want.pixels as Uint8Array));
        expect(Buffer.from(px.subarray(r * 12, r * 12 + 12)).equals(Buffer.from(want.pixels as Uint8Array))).toBe(true);
        expect(Array.from(emb.subarray(r * 3, r * 3 + 3))).toEqual((want.emb as number[]).map(Math.fround));
      }
      seen += b.length;
    }
    expect(seen).toBe(ALL_N);
  });

  test('writeColumns writes the same bytes as writeRow', async () => {
    const rows = [...allKindsRows(700)];
    const cols = Object.fromEntries(ALL_KINDS.map((c) => [c.name, rows.map((r) => r[c.name])]));
    const opts = { columns: ALL_KINDS, meta: TEST_META, batchRows: 256 };
    const a = await writeDataset(out('by-rows'), rows, opts);
    const w = await DatasetWriter.create(out('by-columns'), opts);
    await w.writeColumns(cols);
    const b = await w.finish();
    expect(b.shards).toEqual(a.shards);
  });

  test('an empty dataset still has its columns', async () => {
    const dir = out('empty');
    const res = await writeDataset(dir, [], { columns: ALL_KINDS, meta: TEST_META });
    expect(res.numRows).toBe(0);
    expect(res.shards).toHaveLength(1);
    const ds = await openDataset(dir, { verify: true });
    expect(ds.columns).toEqual(ALL_KINDS);
    expect(await ds.countRows()).toBe(0);
    let blocks = 0;
    for await (const _ of ds.blocks()) blocks++;
    expect(blocks).toBe(0);
  });

  test('bad writer input is refused before anything is created', async () => {
    const dir = out('bad-input');
    await expectFailure(
      writeDataset(dir, [], { columns: [{ name: 'id', kind: 'string' }, { name: 'id', kind: 'int64' }], meta: TEST_META }),
      UsageError, { exitCode: 64, message: /duplicate column "id"/ },
    );
    const w = await DatasetWriter.create(dir, { columns: ALL_KINDS, meta: TEST_META });
    await expectFailure(w.writeColumns({ id: ['a'] }), UsageError, { exitCode: 64, message: /missing column "count"/ });
    await w.abort();
    expect((await fsp.readdir(tmp())).filter((f) => f.startsWith(TEMP_PREFIX))).toEqual([]);
  });
});

// ---------------------------------------------------------------- layout and metadata

describe('layout', () => {
  test('shards by rows, with HF state.json / dataset_info.json and our curation.json', async () => {
    const dir = out('by-rows-layout');
    const meta = {
      stage: 'ingest', stageVersion: '3', options: { size: [4, 4], channels: 1 }, seed: 7,
      parents: [{ fingerprint: '0123456789abcdef', path: '/somewhere/source', role: 'source' }],
    };
    const res = await writeImageDataset(dir, 2500, { shape: [4, 4, 1], classes: 4, shardRows: 1000, meta, summary: { rows: 2500, note: 'x' } });
    const files = ['data-00000-of-00003.arrow', 'data-00001-of-00003.arrow', 'data-00002-of-00003.arrow'];
    expect((await fsp.readdir(dir)).sort()).toEqual([...files, 'curation.json', 'dataset_info.json', 'state.json'].sort());

    const state = await readJsonFile(path.join(dir, 'state.json'));
    expect(state._data_files).toEqual(files.map((filename) => ({ filename })));
    expect(state._fingerprint).toBe(res.fingerprint);
    expect(state).toMatchObject({ _format_columns: null, _format_kwargs: {}, _format_type: null, _output_all_columns: false, _split: null });

    const info = await readJsonFile(path.join(dir, 'dataset_info.json'));
    expect(info.features).toEqual({
      id: { dtype: 'string', _type: 'Value' },
      label: { names: classNames(4), _type: 'ClassLabel' },
      pixels: { feature: { dtype: 'uint8', _type: 'Value' }, length: 16, _type: 'Sequence' },
    });

    const cur = await readJsonFile(path.join(dir, 'curation.json'));
    expect(cur).toMatchObject({
      format_version: 1,
      stage: 'ingest',
      stage_version: '3',
      fingerprint: res.fingerprint,
      options: meta.options,
      seed: 7,
      parents: meta.parents,
      code_version: packageVersion,
      pixel_shape: [4, 4, 1],
      num_rows: 2500,
    });
    expect(cur.fingerprint).toMatch(/^[0-9a-f]{16}$/);
    expect(Number.isNaN(Date.parse(cur.created_at))).toBe(false);
    expect(cur.shards).toEqual(await Promise.all(files.map(async (file, i) => ({
      file, rows: [1000, 1000, 500][i], bytes: (await fsp.stat(path.join(dir, file))).size, sha256: sha256(path.join(dir, file)),
    }))));
    expect(res.shards).toEqual(cur.shards);

    // Each shard carries the HF features and the pixel shape in its Arrow schema.
    const ds = await openDataset(dir);
    expect(JSON.parse(ds.schema.metadata.get(HF_METADATA_KEY)!)).toEqual({ info: { features: info.features } });
    expect(JSON.parse(ds.schema.metadata.get(PIXEL_SHAPE_KEY)!)).toEqual([4, 4, 1]);
  });

  test('the summary is recorded in curation.json', async () => {
    const dir = out('summary');
    await writeDataset(dir, [{ id: 'a' }], { columns: [{ name: 'id', kind: 'string' }], meta: TEST_META, summary: { rows: 1, per_class: { a: 1 } } });
    expect((await readJsonFile(path.join(dir, 'curation.json'))).summary).toEqual({ rows: 1, per_class: { a: 1 } });
  });

  test('shards by bytes: cut after the batch that reaches shardBytes', async () => {
    const dir = out('by-bytes');
    const shardBytes = 30_000;
    const batchRows = 100;
    const res = await writeImageDataset(dir, 2000, { shape: [8, 8, 1], shardBytes, batchRows });
    const rows = res.shards.map((s) => s.rows);
    expect(rows.length).toBeGreaterThan(2);
    expect(rows.reduce((a, b) => a + b)).toBe(2000);
    const full = res.shards.slice(0, -1);
    for (const s of full) {
      expect(s.rows).toBe(full[0].rows); // equal-size rows → equal shards
      expect(s.rows % batchRows).toBe(0);
      expect(s.bytes).toBeGreaterThanOrEqual(shardBytes);
      // One batch fewer would not have reached the limit.
      expect((s.bytes * (s.rows - batchRows)) / s.rows).toBeLessThan(shardBytes);
    }
    expect(await shardFiles(dir)).toEqual(res.shards.map((s) => s.file));
    expect(res.shards[0].file).toBe(`data-00000-of-${String(rows.length).padStart(5, '0')}.arrow`);
  });
});

// ---------------------------------------------------------------- determinism

describe('determinism', () => {
  test('the same rows and options give byte-identical shards and the same fingerprint', async () => {
    const opts = { columns: ALL_KINDS, meta: { ...TEST_META, seed: 3 }, shardBytes: 40_000, batchRows: 128 };
    const a = await writeDataset(out('det-a'), allKindsRows(1500), opts);
    const b = await writeDataset(out('det-b'), allKindsRows(1500), opts);
    expect(a.shards.length).toBeGreaterThan(1);
    expect(b.shards).toEqual(a.shards);
    for (const s of a.shards) {
      expect(readFileSync(path.join(out('det-b'), s.file)).equals(readFileSync(path.join(out('det-a'), s.file)))).toBe(true);
    }
    expect(b.fingerprint).toBe(a.fingerprint);
    const { created_at: _a, ...curA } = a.curation;
    const { created_at: _b, ...curB } = b.curation;
    expect(curB).toEqual(curA);

    // The fingerprint follows the seed and options; the shards follow the rows only.
    const c = await writeDataset(out('det-c'), allKindsRows(1500), { ...opts, meta: { ...TEST_META, seed: 4 } });
    expect(c.fingerprint).not.toBe(a.fingerprint);
    expect(c.shards).toEqual(a.shards);
  });
});

// ---------------------------------------------------------------- overwrite and damage

describe('overwrite', () => {
  test('an existing dataset is not replaced without overwrite; with it, it is', async () => {
    const dir = out('existing');
    const first = await writeImageDataset(dir, 50);
    const err = await expectFailure(writeImageDataset(dir, 80), OutputError, { exitCode: 73, file: dir, message: /already exists.*--overwrite/ });
    expect(err.hint).toMatch(/--overwrite/);
    // Untouched, and nothing left behind.
    expect(sha256(path.join(dir, first.shards[0].file))).toBe(first.shards[0].sha256);
    expect((await openDataset(dir, { verify: true })).numRows).toBe(50);

    const second = await writeImageDataset(dir, 80, { overwrite: true });
    const ds = await openDataset(dir, { verify: true });
    expect(ds.numRows).toBe(80);
    expect(ds.shards.map((s) => s.sha256)).toEqual(second.shards.map((s) => s.sha256));
    expect((await fsp.readdir(tmp())).filter((f) => f.startsWith(TEMP_PREFIX))).toEqual([]);
  });
});

describe('damaged datasets', () => {
  async function damaged(name: string): Promise<{ dir: string; shard: string }> {
    const dir = out(name);
    const res = await writeImageDataset(dir, 3000, { shape: [8, 8, 1], shardRows: 1500 });
    return { dir, shard: path.join(dir, res.shards[1].file) };
  }

  test('a truncated shard is refused on open, naming the shard', async () => {
    const { dir, shard } = await damaged('truncated');
    const size = (await fsp.stat(shard)).size;
    await fsp.truncate(shard, size - 100);
    await expectFailure(openDataset(dir), DataError, { exitCode: 65, file: shard, message: /truncated or edited/ });
  });

  test('a shard edited in place (same size) fails verify(), naming the shard', async () => {
    const { dir, shard } = await damaged('edited');
    const buf = readFileSync(shard);
    buf[buf.length - 200] ^= 0xff; // inside the last batch's pixel data: Arrow itself cannot tell
    await fsp.writeFile(shard, buf);
    const ds = await openDataset(dir); // sizes match
    await expectFailure(ds.verify(), DataError, { exitCode: 65, file: shard, message: /checksum mismatch/ });
    await expectFailure(openDataset(dir, { verify: true }), DataError, { exitCode: 65, file: shard });
  });

  test('a corrupt stream fails while reading, naming the shard (and does not hang)', async () => {
    const { dir, shard } = await damaged('corrupt-stream');
    const buf = readFileSync(shard);
    // Stream layout: [0xFFFFFFFF, metadata length, metadata, body] per message; the schema
    // message has no body. Corrupt the first record batch's metadata length.
    const firstBatch = 8 + buf.readInt32LE(4);
    expect(buf.readInt32LE(firstBatch)).toBe(-1);
    buf.writeInt32LE(-100_000, firstBatch + 4);
    await fsp.writeFile(shard, buf);
    const ds = await openDataset(dir);
    const read = (async () => {
      for await (const _ of ds.blocks()) { /* drain */ }
    })();
    await expectFailure(read, DataError, { exitCode: 65, file: shard, message: /truncated or corrupt|truncated or edited/ });
  }, 20_000);

  test('a corrupt schema message is refused on open', async () => {
    const { dir } = await damaged('corrupt-schema');
    const first = path.join(dir, 'data-00000-of-00002.arrow');
    const buf = readFileSync(first);
    buf.writeInt32LE(-1_414_812_757, 4);
    await fsp.writeFile(first, buf);
    await expectFailure(openDataset(dir), DataError, { exitCode: 65, file: first, message: /Arrow schema/ });
  }, 20_000);

  test('a missing shard, a missing directory, a directory that is not a dataset', async () => {
    const { dir, shard } = await damaged('missing-shard');
    await fsp.rm(shard);
    await expectFailure(openDataset(dir), DataError, { exitCode: 65, file: shard, message: /missing/ });
    await expectFailure(openDataset(out('nope')), MissingInputError, { exitCode: 66, file: out('nope') });
    const plain = out('plain-dir');
    await fsp.mkdir(plain);
    await expectFailure(openDataset(plain), MissingInputError, { exitCode: 66, file: plain, message: /not a dataset/ });
  });
});

// ---------------------------------------------------------------- sidecars

describe('sidecars', () => {
  const N = 2500;
  const scoreOf = (i: number) => Math.fround(Math.sin(i));
  const SIDECAR_COLUMNS: ColumnSpec[] = [{ name: 'id', kind: 'string' }, { name: 'score', kind: 'float32' }, { name: 'flag', kind: 'bool' }];

  function* sidecarRows(ids: (i: number) => string = rowId): Generator<Record<string, unknown>> {
    for (let i = 0; i < N; i++) yield { id: ids(i), score: scoreOf(i), flag: i % 4 === 0 };
  }

  async function parent(name: string) {
    return writeImageDataset(out(name), N, { shape: [4, 4, 1], shardRows: 1000 });
  }

  function sidecarOptions(p: { fingerprint: string; shards: { rows: number }[] }, shardSizes = p.shards.map((s) => s.rows)) {
    return {
      columns: SIDECAR_COLUMNS,
      shardSizes,
      batchRows: 300, // batches that do not line up with the parent's: blocks must slice
      meta: { ...TEST_META, stage: 'score', parents: [{ fingerprint: p.fingerprint, role: 'dataset' }], sidecarOf: p.fingerprint },
    };
  }

  test('an aligned sidecar opens joined: blocks give both datasets\' columns', async () => {
    const p = await parent('sc-parent');
    const sc = await writeDataset(out('sc-aligned'), sidecarRows(), sidecarOptions(p));
    expect(sc.shards.map((s) => s.rows)).toEqual([1000, 1000, 500]);
    expect(sc.shards.map((s) => s.file)).toEqual(p.shards.map((s) => s.file));
    expect(sc.curation.sidecar_of).toBe(p.fingerprint);

    const ds = await openDataset(out('sc-parent'), { sidecars: [out('sc-aligned')], verify: true });
    expect(ds.columns.map((c) => c.name)).toEqual(['id', 'label', 'pixels', 'score', 'flag']);
    expect(ds.pixelShape).toEqual([4, 4, 1]);
    let seen = 0;
    for await (const b of ds.blocks()) {
      expect(b.offset).toBe(seen);
      expect(b.has('score') && b.has('pixels')).toBe(true);
      const px = fixedListValues<Uint8Array>(b.column('pixels'));
      expect(px.length).toBe(b.length * 16);
      for (let r = 0; r < b.length; r++) {
        const i = b.offset + r;
        expect(b.column('id').get(r)).toBe(rowId(i));
        expect(b.column('label').get(r)).toBe(BigInt(i % 3));
        expect(b.column('score').get(r)).toBe(scoreOf(i));
        expect(b.column('flag').get(r)).toBe(i % 4 === 0);
        expect(Buffer.from(px.subarray(r * 16, r * 16 + 16)).equals(Buffer.from(rowPixels(i, 16)))).toBe(true);
      }
      seen += b.length;
    }
    expect(seen).toBe(N);
    expect(await columnValues(ds, 'score')).toHaveLength(N);
  });

  test('misaligned ids are refused, naming the first mismatching row', async () => {
    const p = await parent('sc-parent-2');
    // Rows 1234 and 1235 swapped in the sidecar.
    const swapped = (i: number) => rowId(i === 1234 ? 1235 : i === 1235 ? 1234 : i);
    await writeDataset(out('sc-swapped'), sidecarRows(swapped), sidecarOptions(p));
    const ds = await openDataset(out('sc-parent-2'), { sidecars: [out('sc-swapped')] });
    const read = (async () => {
      for await (const _ of ds.blocks()) { /* drain */ }
    })();
    const err = await expectFailure(read, DataError, { exitCode: 65, file: out('sc-swapped'), message: /row 1234 has id "img001235" in the sidecar but "img001234"/ });
    expect(err.hint).toContain(out('sc-parent-2'));
  });

  test('a sidecar with other shard sizes is refused on open', async () => {
    const p = await parent('sc-parent-3');
    await writeDataset(out('sc-resharded'), sidecarRows(), sidecarOptions(p, [1250, 1250]));
    await expectFailure(openDataset(out('sc-parent-3'), { sidecars: [out('sc-resharded')] }), DataError, {
      exitCode: 65, file: out('sc-resharded'), message: /\[1250, 1250\] do not line up with the dataset's \[1000, 1000, 500\]/,
    });
  });

  test('a sidecar writer whose rows do not fill the parent\'s shards fails and writes nothing', async () => {
    const p = await parent('sc-parent-4');
    const short = (function* () {
      let i = 0;
      for (const r of sidecarRows()) if (i++ < N - 1) yield r;
    })();
    await expectFailure(writeDataset(out('sc-short'), short, sidecarOptions(p)), InternalError, { exitCode: 70, message: /do not match/ });
    await expect(fsp.access(out('sc-short'))).rejects.toThrow();
  });
});

// ---------------------------------------------------------------- memory

describe('bounded memory', () => {
  test('streaming blocks() holds about a batch, not the dataset', async () => {
    const n = 200_000;
    const len = 784;
    const dir = out('big');
    // Rows made on the fly: the test process never holds the dataset either.
    await writeDataset(dir, (function* () {
      for (let i = 0; i < n; i++) yield { id: rowId(i), label: i % 10, pixels: new Uint8Array(len).fill(i & 255) };
    })(), { columns: [{ name: 'id', kind: 'string' }, { name: 'label', kind: 'int64' }, { name: 'pixels', kind: 'uint8Vector', length: len }], meta: TEST_META });
    const dataBytes = n * len;

    // Freed Arrow buffers are external memory, which V8 collects lazily (tens of MiB
    // late, whatever the data size). Collecting every few blocks makes RSS show what
    // the reader *retains*, which is what this test is about.
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    gc();
    const before = process.memoryUsage().rss;
    let peak = before;
    let rows = 0;
    let checksum = 0;
    const ds = await openDataset(dir);
    let k = 0;
    for await (const b of ds.blocks()) {
      const px = fixedListValues<Uint8Array>(b.column('pixels'));
      checksum += px[0] + px[px.length - 1];
      rows += b.length;
      if (++k % 16 === 0) gc();
      peak = Math.max(peak, process.memoryUsage().rss);
    }
    expect(rows).toBe(n);
    expect(checksum).toBeGreaterThan(0);
    const growth = peak - before;
    expect(growth, `RSS grew by ${(growth / 2 ** 20).toFixed(1)} MiB while streaming ${(dataBytes / 2 ** 20).toFixed(0)} MiB`).toBeLessThan(dataBytes / 3);
  }, 60_000);
});
