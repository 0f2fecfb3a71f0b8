// A curation job run again as images arrive: ingest appends, rating with the saved rater rates only the new
// shards, and stages over the whole pool are kept under their refresh rule until enough rows have come.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { parsePipelineConfig } from '../../pipeline/config.js';
import { runPipeline } from '../../pipeline/runner.js';
import { numericValues } from '../../data/columns.js';
import { openDataset, readStrings } from '../../data/reader.js';
import { assertBuilt, tempDir } from './helpers.js';

let dir: string;
let made = 0;

/** `n` new 8×8 grey PNGs, half "dark" (dark images), half "light". */
async function arrive(n: number): Promise<void> {
  for (let i = 0; i < n; i++, made++) {
    const cls = made % 2 ? 'light' : 'dark';
    const px = Buffer.alloc(64, cls === 'light' ? 180 : 40);
    px[made % 64] = 255 - px[0];
    px[(made * 7) % 64] = (made * 37) % 256;
    await fsp.mkdir(path.join(dir, 'inbox', cls), { recursive: true });
    await sharp(px, { raw: { width: 8, height: 8, channels: 1 } }).png().toFile(path.join(dir, 'inbox', cls, `${made}.png`));
  }
}

beforeAll(async () => {
  assertBuilt();
  dir = await tempDir();
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

test('append, rate the new shards, keep whole-pool stages until their refresh rule says rerun; the report says why', async () => {
  const config = parsePipelineConfig({
    version: 1,
    workdir: 'work',
    stages: [
      { id: 'pool', stage: 'ingest', inputs: ['inbox'], options: { append: true, size: '8x8', channels: 1 } },
      { id: 'loss', stage: 'score', inputs: ['${pool}'], options: { method: 'loss', epochs: 2, batchSize: 8, backend: 'wasm' }, refresh: { rows: 5 } },
      {
        id: 'rater', stage: 'rate', inputs: { dataset: '${pool}', scores: '${loss}' },
        options: { trainRater: true, mode: 'regress', by: 'loss', epochs: 2, batchSize: 8, backend: 'wasm' }, refresh: { rows: 5 },
      },
      { id: 'ratings', stage: 'rate', inputs: { dataset: '${pool}', rater: '${rater}' }, options: { backend: 'wasm' } },
      { id: 'keep', stage: 'select', inputs: { dataset: '${pool}', scores: ['${ratings}'] }, options: { strategy: 'threshold', by: 'rating', threshold: 0 } },
    ],
  }, { baseDir: dir });
  const byId = (r: Awaited<ReturnType<typeof runPipeline>>) => Object.fromEntries(r.stages.map((s) => [s.id, s]));

  await arrive(12);
  const first = byId(await runPipeline(config));
  expect(Object.values(first).map((s) => [s.status, s.reason])).toEqual(Array(5).fill(['ran', 'new']));
  /** The ids a threshold of 0 on the ratings keeps, in pool order, and the ids the selection holds. */
  const kept = async () => {
    const pool = await openDataset(path.join(dir, 'work', 'pool'), { sidecars: [path.join(dir, 'work', 'ratings')] });
    const ids = await readStrings(pool, 'id');
    const ratings: number[] = [];
    for await (const b of pool.blocks()) ratings.push(...numericValues(b.column('rating')));
    return { want: ids.filter((_, i) => ratings[i] >= 0), got: await readStrings(await openDataset(path.join(dir, 'work', 'keep'), { verify: true }), 'id') };
  };

  // Two images arrive: appended and rated; the whole-pool stages wait for 5.
  await arrive(2);
  const second = byId(await runPipeline(config));
  expect(second.pool).toMatchObject({ status: 'ran', numRows: 14, summary: { rows: 2, append: { rows_before: 12, already_present: 12 } } });
  expect(second.loss).toMatchObject({ status: 'skipped', reason: 'kept', why: 'train grew by 2 rows (appended); kept until 5 new rows (0.0 days old)' });
  expect(second.rater).toMatchObject({ status: 'skipped', reason: 'kept' });
  expect(second.ratings).toMatchObject({ status: 'ran', numRows: 14, why: 'data grew by 2 rows (appended)' });
  expect((second.ratings.summary.appended as { rows: number }).rows).toBe(2);
  // The threshold selection decides the two new rows alone and appends the kept ones.
  expect(second.keep).toMatchObject({ status: 'ran', why: 'dataset grew by 2 rows (appended), scores grew (appended)' });
  expect((second.keep.summary.appended as { rows_before: number }).rows_before).toBe(12);
  const afterTwo = await kept();
  // Not vacuous: the threshold splits the rows (7 of 14 kept when written).
  expect(afterTwo.want.length).toBeGreaterThan(0);
  expect(afterTwo.want.length).toBeLessThan(14);
  expect(afterTwo.got).toEqual(afterTwo.want);
  const md = await fsp.readFile(path.join(dir, 'work', 'report.md'), 'utf8');
  expect(md).toContain('kept: train grew by 2 rows (appended); kept until 5 new rows');
  expect(md).toContain('- stages: 3 ran, 0 skipped (current), 2 kept by their refresh rule');

  // Four more: 6 since the scores were made, so they and the rater are made again, over all 18 rows.
  await arrive(4);
  const third = byId(await runPipeline(config));
  expect(third.loss).toMatchObject({ status: 'ran', reason: 'stale', numRows: 18, why: 'train grew by 6 rows (appended)' });
  expect(third.rater).toMatchObject({ status: 'ran', reason: 'stale' });
  // A new rater: its ratings of every row are made again, not appended.
  expect(third.ratings).toMatchObject({ status: 'ran', numRows: 18 });
  expect(third.ratings.summary.appended).toBeUndefined();
  expect((await openDataset(path.join(dir, 'work', 'ratings'))).curation!.sidecar_shards).toHaveLength(3);

  // Nothing new: ingest looks and adds nothing, everything after it is current.
  const fourth = byId(await runPipeline(config));
  expect(fourth.pool).toMatchObject({ status: 'ran', why: 'nothing new to add', fingerprint: third.pool.fingerprint });
  expect([fourth.loss.status, fourth.rater.status, fourth.ratings.status, fourth.keep.status]).toEqual(['skipped', 'skipped', 'skipped', 'skipped']);
  const atEnd = await kept();
  expect(atEnd.got).toEqual(atEnd.want);

}, 120_000);

test('a forced run rebuilds ratings and a selection whole, where a plain run adds to them', async () => {
  const pool = { id: 'pool', stage: 'ingest', inputs: ['inbox'], options: { append: true, size: '8x8', channels: 1 } };
  const quick = { epochs: 2, batchSize: 8, backend: 'wasm' };
  // A rater trained once, then used as a fixed input: what per-row stages append with.
  await runPipeline(parsePipelineConfig({
    version: 1, workdir: 'work-force',
    stages: [
      pool,
      { id: 'loss', stage: 'score', inputs: ['${pool}'], options: { method: 'loss', ...quick } },
      { id: 'rater', stage: 'rate', inputs: { dataset: '${pool}', scores: '${loss}' }, options: { trainRater: true, mode: 'regress', by: 'loss', ...quick } },
    ],
  }, { baseDir: dir }));
  const config = parsePipelineConfig({
    version: 1, workdir: 'work-force',
    stages: [
      pool,
      { id: 'ratings', stage: 'rate', inputs: { dataset: '${pool}', rater: path.join(dir, 'work-force', 'rater') }, options: { backend: 'wasm' } },
      { id: 'keep', stage: 'select', inputs: { dataset: '${pool}', scores: ['${ratings}'] }, options: { strategy: 'threshold', by: 'rating', threshold: 0 } },
    ],
  }, { baseDir: dir });
  const run = async (force = false) => Object.fromEntries((await runPipeline(config, { force })).stages.map((s) => [s.id, s]));
  await run();
  await arrive(2);
  // Not vacuous: with only appended rows, a plain run adds to both.
  const plain = await run();
  expect(plain.ratings.summary.appended).toBeDefined();
  expect(plain.keep.summary.appended).toBeDefined();
  await arrive(2);
  const forced = await run(true);
  expect([forced.ratings.reason, forced.keep.reason]).toEqual(['forced', 'forced']);
  expect(forced.ratings.summary.appended).toBeUndefined();
  expect(forced.keep.summary.appended).toBeUndefined();
}, 120_000);
