// ingest --append: new items become new shards of the dataset already there; the old shards stay the same files;
// the metadata is replaced whole; sidecars written before the append are refused until rerun.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import pl from 'nodejs-polars';
import sharp from 'sharp';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { DataError } from '../../core/errors.js';
import { REJECTED_FILE, STATE_FILE } from '../../data/format.js';
import { openDataset, readCuration, readStrings } from '../../data/reader.js';
import { ingest } from '../../stages/ingest.js';
import { score } from '../../stages/score.js';
import { select } from '../../stages/select/index.js';
import { assertBuilt, cli, tempDir } from '../pipeline/helpers.js';

let dir: string;
const src = () => path.join(dir, 'src');
const out = () => path.join(dir, 'pool');

/** A grey 8×8 PNG of one value in class folder `cls`. */
async function image(cls: string, name: string, value: number): Promise<void> {
  await fsp.mkdir(path.join(src(), cls), { recursive: true });
  const px = Buffer.alloc(64, value);
  px[value % 64] = 255 - value; // no two images alike
  await sharp(px, { raw: { width: 8, height: 8, channels: 1 } }).png().toFile(path.join(src(), cls, name));
}

beforeAll(async () => {
  assertBuilt();
  dir = await tempDir();
  for (let i = 0; i < 12; i++) await image(i % 2 ? 'cat' : 'dog', `${i}.png`, i * 7);
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

test('appends only the new items as new shards; old shards, HF state and Polars all agree', async () => {
  const opts = { out: out(), append: true, size: [8, 8] as [number, number], channels: 1 as const };
  const first = await ingest(src(), opts);
  expect(first.numRows).toBe(12);
  const before = await readCuration(out());
  const oldShard = path.join(out(), before!.shards[0].file);
  const oldStat = await fsp.stat(oldShard);
  const oldBytes = await fsp.readFile(oldShard);
  // A fresh score sidecar of the 12 rows, to see it refused after the append.
  const scores = await score(out(), { method: 'loss', epochs: 1, out: path.join(dir, 'loss') });

  // Nothing new: the dataset is left exactly as it was.
  const again = await ingest(src(), opts);
  expect(again.fingerprint).toBe(first.fingerprint);
  expect(again.summary).toMatchObject({ rows: 0, append: { to: first.fingerprint, rows_before: 12, already_present: 12 } });
  expect(await readCuration(out())).toEqual(before);

  // Two new files, and a copy of an old image under a new name.
  await image('cat', 'new-1.png', 100);
  await image('dog', 'new-2.png', 101);
  await fsp.copyFile(path.join(src(), 'dog', '0.png'), path.join(src(), 'dog', 'copy-of-0.png'));
  const more = await ingest(src(), opts);
  expect(more.fingerprint).not.toBe(first.fingerprint);
  expect(more.numRows).toBe(14);
  expect(more.summary).toMatchObject({ rows: 2, rejected: 0, append: { to: first.fingerprint, rows_before: 12, already_present: 13 } });
  const after = (await readCuration(out()))!;
  expect(after.shards.slice(0, before!.shards.length)).toEqual(before!.shards);
  expect(after.shards).toHaveLength(before!.shards.length + 1);
  expect(after.parents.map((p) => p.role)).toEqual(['source', 'appended-to']);
  // The old shard is the same file, byte for byte (hard-linked through the swap, never rewritten).
  const nowStat = await fsp.stat(oldShard);
  expect(nowStat.ino).toBe(oldStat.ino);
  expect(await fsp.readFile(oldShard)).toEqual(oldBytes);

  const ds = await openDataset(out(), { verify: true });
  const ids = await readStrings(ds, 'id');
  expect(ids.slice(12).sort()).toEqual(['cat/new-1.png', 'dog/new-2.png']);
  const state = JSON.parse(await fsp.readFile(path.join(out(), STATE_FILE), 'utf8'));
  expect(state._data_files.map((f: { filename: string }) => f.filename)).toEqual(after.shards.map((s) => s.file));
  expect(state._fingerprint).toBe(more.fingerprint);
  // An independent Arrow reader sees every row: the old shard's and the appended one's.
  const frames = await Promise.all(after.shards.map(async (s) => pl.readIPCStream(await fsp.readFile(path.join(out(), s.file)))));
  expect(frames.reduce((n, f) => n + f.height, 0)).toBe(14);
  const rejected = await fsp.readFile(path.join(out(), REJECTED_FILE), 'utf8');
  expect(rejected).toMatch(/"id":"dog\/copy-of-0.png".*already present as dog\/0.png/);

  // Scores of the 12 rows say which shards they cover, and are refused for the 14.
  expect((await readCuration(scores.dir))!.sidecar_shards).toEqual(before!.shards.map((s) => s.file));
  const err = await select(out(), { scores: [scores.dir], strategy: 'topk', by: 'loss', budget: 0.5, out: path.join(dir, 'sel') }).catch((e) => e);
  expect(err).toBeInstanceOf(DataError);
  expect(err.message).toMatch(/covers the dataset's first 1 of 2 shards: rows were appended after it was written/);

  // Nothing new again, but the copy is still in the source: still nothing to add, and nothing logged twice.
  const third = await ingest(src(), opts);
  expect(third.fingerprint).toBe(more.fingerprint);
  expect(third.summary).toMatchObject({ rows: 0, append: { rows_before: 14, already_present: 15 } });
  expect(await readCuration(out())).toEqual(after);
  expect(await fsp.readFile(path.join(out(), REJECTED_FILE), 'utf8')).toBe(rejected);

  // A new image with the copy still there: the row is added, the copy counted again but logged once.
  await image('cat', 'new-3.png', 102);
  const fourth = await ingest(src(), opts);
  expect(fourth.summary).toMatchObject({ rows: 1, append: { rows_before: 14, already_present: 15 } });
  const log = await fsp.readFile(path.join(out(), REJECTED_FILE), 'utf8');
  expect(log).toBe(rejected);
  expect(log.split('\n').filter((l) => l.includes('copy-of-0.png'))).toHaveLength(1);
});

test('refuses rows that do not fit: another class list or size; from the CLI too', async () => {
  await image('bird', 'b.png', 33);
  const err = await ingest(src(), { out: out(), append: true, size: [8, 8], channels: 1 }).catch((e) => e);
  expect(err).toBeInstanceOf(DataError);
  expect(err.message).toMatch(/do not fit the dataset: its columns are .*label:classLabel\[cat\|dog\].*the new ones .*\[bird\|cat\|dog\]/);
  await fsp.rm(path.join(src(), 'bird'), { recursive: true });
  const r = await cli(['ingest', src(), '--out', out(), '--append', '--size', '16x16', '--channels', '1']);
  expect(r.code).toBe(65);
  expect(r.stderr).toMatch(/pixels 8x8x1.*16x16x1/);
  // Nothing was left behind by the refusals: the dataset is whole and no temporary remains.
  await openDataset(out(), { verify: true });
  expect((await fsp.readdir(dir)).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
});
