// The rate stage end to end on tiny datasets, through worker threads (compiled
// dist/: `npm test` builds first): train then rate, rating with a saved rater
// (deterministic, row-aligned, independent of the worker count), data ingested
// after training, regress mode from a score sidecar, the CLI, and the refusals.
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DataError, MissingInputError, OutputError, UsageError } from '../../core/errors.js';
import { auroc } from '../../core/metrics.js';
import { Rng } from '../../core/rng.js';
import { numericValues } from '../../data/columns.js';
import type { ColumnSpec } from '../../data/format.js';
import { openDataset } from '../../data/reader.js';
import { DatasetWriter, writeDataset } from '../../data/writer.js';
import { RATER_FORMAT_VERSION, RATER_META_FILE, RATER_WEIGHTS_FILE } from '../../ml/rater/index.js';
import { quietContext } from '../../stages/context.js';
import { planRanges, rate, rateOptions, rateStage, type RateOptions } from '../../stages/rate.js';
import { parsePipelineConfig } from '../../pipeline/config.js';
import { runPipeline } from '../../pipeline/runner.js';
import { assertBuilt, cli } from '../pipeline/helpers.js';
import { writeToySet } from '../helpers/toy.js';
import { useTmpDir } from '../helpers/tmp.js';

const tmp = useTmpDir('metacurate-rate-');
const S = 8;
const K = 4;
const columns: ColumnSpec[] = [
  { name: 'id', kind: 'string' },
  { name: 'label', kind: 'classLabel', names: ['c0', 'c1', 'c2', 'c3'] },
  { name: 'pixels', kind: 'uint8Vector', length: S * S },
];

interface ToyRow { id: string; label: number; pixels: Uint8Array; flipped: boolean; brightness: number }

/** Class c is bright in quadrant c; a fraction `noise` of the labels point at another class. */
function toyRows(n: number, seed: number, noise: number, prefix: string): ToyRow[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, (_, i) => {
    const c = rng.int(K);
    const pixels = new Uint8Array(S * S);
    let sum = 0;
    for (let j = 0; j < S * S; j++) {
      const quad = (Math.floor(j / S) < S / 2 ? 0 : 2) + (j % S < S / 2 ? 0 : 1);
      pixels[j] = Math.max(0, Math.min(255, Math.round(255 * ((quad === c ? 0.6 : 0.2) + 0.25 * rng.normal()))));
      sum += pixels[j];
    }
    const flipped = rng.next() < noise;
    return { id: `${prefix}${i}`, label: flipped ? (c + 1 + rng.int(K - 1)) % K : c, pixels, flipped, brightness: sum / (S * S) };
  });
}

async function writeRows(name: string, rows: ToyRow[], shardRows?: number): Promise<string> {
  const dir = path.join(tmp(), name);
  await writeDataset(dir, rows.map(({ id, label, pixels }) => ({ id, label, pixels })), {
    columns, pixelShape: [S, S, 1], shardRows, meta: { stage: 'test', stageVersion: '1', options: { name }, parents: [] },
  });
  return dir;
}

async function readColumn(dir: string, sidecar: string, column: string): Promise<{ ids: string[]; values: number[] }> {
  const ds = await openDataset(dir, { sidecars: [sidecar] });
  const ids: string[] = [];
  const values: number[] = [];
  for await (const b of ds.blocks()) {
    const idv = b.column('id');
    const v = numericValues(b.column(column));
    for (let i = 0; i < b.length; i++) {
      ids.push(String(idv.get(i)));
      values.push(v[i]);
    }
  }
  return { ids, values };
}

const quick: Partial<RateOptions> = { epochs: 6, batchSize: 32, seed: 3, backend: 'wasm' };
let trainRows: ToyRow[];
let train: string;
let target: string;
let trained: string;

beforeAll(async () => {
  assertBuilt();
  trainRows = toyRows(600, 11, 0.2, 'train-');
  train = await writeRows('train', trainRows, 250);
  target = await writeRows('target', toyRows(200, 12, 0, 'target-'));
  trained = path.join(tmp(), 'trained');
});

describe('rate stage', () => {
  it('cuts rating ranges within shards, in whole batches, bounded in bytes', () => {
    expect(planRanges([6000], 256, 784).map((r) => [r.start, r.end])).toEqual([[0, 1024], [1024, 2048], [2048, 3072], [3072, 4096], [4096, 5120], [5120, 6000]]);
    const two = planRanges([300, 50], 100, 784);
    expect(two).toEqual([
      { shard: 0, start: 0, end: 300, offset: 0 },
      { shard: 1, start: 0, end: 50, offset: 300 },
    ]);
    // 224×224×3 rows: 64 MiB of pixels hold 445 rows, so one 256-row batch per range.
    const big = planRanges([1000], 256, 224 * 224 * 3);
    expect(big.every((r) => r.end - r.start <= 256)).toBe(true);
    expect(big.at(-1)!.end).toBe(1000);
  });

  it('trains a meta rater, rates the training set with it, and keeps the rater in the sidecar', async () => {
    const res = await rate(train, { ...quick, trainRater: true, target, out: trained });
    expect(res.numRows).toBe(600);
    const sc = await openDataset(trained);
    expect(sc.shards.map((s) => s.rows)).toEqual([250, 250, 100]);
    expect(sc.curation?.sidecar_of).toBe((await openDataset(train)).fingerprint);
    expect(sc.curation?.parents.map((p) => p.role)).toEqual(['train', 'target']);
    const { ids, values } = await readColumn(train, trained, 'rating');
    expect(ids).toEqual(trainRows.map((r) => r.id));
    expect(values.every(Number.isFinite)).toBe(true);
    // The rater learned something real: rows with flipped labels rate low.
    expect(auroc(values, trainRows.map((r) => !r.flipped))).toBeGreaterThan(0.7);
    const meta = JSON.parse(await fsp.readFile(path.join(trained, 'rater', RATER_META_FILE), 'utf8'));
    expect(meta.format_version).toBe(RATER_FORMAT_VERSION);
    expect(meta.fingerprint).toBe(res.summary.rater.fingerprint);
    expect(meta.input.pixel_shape).toEqual([S, S, 1]);
    expect(meta.training.parents.map((p: { role: string }) => p.role)).toEqual(['train', 'target']);
    expect(res.summary.training?.details.mode).toBe('meta');
    expect(res.summary.rater.dir).toBe('rater');
    expect((await rateStage.prepare([train, target], rateOptions.parse({ ...quick, trainRater: true, out: trained }))).fingerprint).toBe(res.fingerprint);
  });

  it('rates with a saved rater: deterministic, row-aligned, the same with 1 or 2 workers', async () => {
    const one = await rate(train, { rater: trained, out: path.join(tmp(), 'one'), parallelism: 1, backend: 'wasm' });
    const two = await rate(train, { rater: path.join(trained, 'rater'), out: path.join(tmp(), 'two'), parallelism: 2, backend: 'wasm' });
    expect(one.fingerprint).toBe(two.fingerprint);
    expect(two.summary.rating.workers).toBe(2);
    for (const f of (await openDataset(one.dir)).shards.map((s) => s.file)) {
      expect(await fsp.readFile(path.join(one.dir, f))).toEqual(await fsp.readFile(path.join(two.dir, f)));
    }
    expect((await readColumn(train, one.dir, 'rating')).values).toEqual((await readColumn(train, trained, 'rating')).values);
    expect((await rateStage.prepare([train, trained], rateOptions.parse({ out: one.dir }))).fingerprint).toBe(one.fingerprint);
  });

  it('rates data ingested after the rater was trained', async () => {
    // New rows, another shard layout, and a few rows identical to training rows.
    const copies = trainRows.slice(0, 5).map((r) => ({ ...r, id: `copy-${r.id}` }));
    const later = await writeRows('later', [...toyRows(150, 99, 0, 'new-'), ...copies], 70);
    const out = path.join(tmp(), 'later-ratings');
    const res = await rate(later, { rater: trained, out, backend: 'wasm' });
    expect(res.numRows).toBe(155);
    expect((await openDataset(out)).shards.map((s) => s.rows)).toEqual([70, 70, 15]);
    const { ids, values } = await readColumn(later, out, 'rating');
    expect(ids.slice(150)).toEqual(copies.map((c) => c.id));
    const before = (await readColumn(train, trained, 'rating')).values;
    for (let i = 0; i < 5; i++) expect(values[150 + i]).toBeCloseTo(before[i], 4);
  });

  it('rates only the shards appended since: the same ratings as a full rerun, the sidecar covering every shard', async () => {
    const rows = toyRows(260, 5, 0, 'grow-');
    const dir = await writeRows('growing', rows.slice(0, 200), 100);
    const out = path.join(tmp(), 'growing-ratings');
    const first = await rate(dir, { rater: trained, out, backend: 'wasm' });
    expect(first.summary.appended).toBeUndefined();
    // New rows arrive as a new shard of the same dataset (what ingest --append writes).
    const more = await DatasetWriter.create(dir, {
      columns, pixelShape: [S, S, 1], append: true, meta: { stage: 'test', stageVersion: '1', options: { name: 'growing', more: 1 }, parents: [] },
    });
    for (const { id, label, pixels } of rows.slice(200)) await more.writeRow({ id, label, pixels });
    await more.finish();
    const shards = (await openDataset(dir)).shards.map((sh) => sh.file);
    expect(shards).toHaveLength(3);
    const again = await rate(dir, { rater: trained, out, backend: 'wasm' });
    expect(again.numRows).toBe(260);
    expect(again.summary.appended).toEqual({ shards: [shards[2]], rows: 60 });
    const full = await rate(dir, { rater: trained, out: path.join(tmp(), 'growing-full'), backend: 'wasm' });
    expect(again.fingerprint).toBe(full.fingerprint);
    expect((await readColumn(dir, out, 'rating')).values).toEqual((await readColumn(dir, full.dir, 'rating')).values);
    expect((await openDataset(out)).curation!.sidecar_shards).toEqual(shards);
    // Rated twice it is current: nothing to append, and an output that covers every shard is not appended to.
    await expect(rate(dir, { rater: trained, out, backend: 'wasm' })).rejects.toBeInstanceOf(OutputError);
  });

  it('regress mode: trains on a score sidecar, named by option or as a pipeline input', async () => {
    const scoresDir = path.join(tmp(), 'scores');
    const trainFp = (await openDataset(train)).fingerprint;
    const sizes = [250, 250, 100];
    const sidecar = (dir: string, value: (r: ToyRow, i: number) => number) => writeDataset(dir, trainRows.map((r, i) => ({ id: r.id, metagrad: value(r, i) })), {
      columns: [{ name: 'id', kind: 'string' }, { name: 'metagrad', kind: 'float32' }], shardSizes: sizes,
      meta: { stage: 'score', stageVersion: '1', options: {}, parents: [{ fingerprint: trainFp }], sidecarOf: trainFp },
    });
    await sidecar(scoresDir, (r) => r.brightness);
    const res = await rateStage.run(quietContext(), [train, scoresDir], rateOptions.parse({ trainRater: true, mode: 'regress', epochs: 15, batchSize: 50, backend: 'wasm', out: path.join(tmp(), 'regress') }));
    expect(res.summary.training).toMatchObject({ details: { mode: 'regress', heldOutRows: 60 } });
    expect((res.summary.training as { details: { heldOutSpearman: number } }).details.heldOutSpearman).toBeGreaterThan(0.8);

    await expect(rate(train, { trainRater: true, mode: 'regress', scores: scoresDir, by: 'el2n', out: path.join(tmp(), 'x-by') }))
      .rejects.toThrow(/no numeric column "el2n"; its numeric columns are: metagrad/);
    const nanDir = path.join(tmp(), 'nan-scores');
    await sidecar(nanDir, (r, i) => (i === 7 ? NaN : r.brightness));
    const err = await rate(train, { trainRater: true, mode: 'regress', scores: nanDir, out: path.join(tmp(), 'x-nan') }).catch((e) => e);
    expect(err).toBeInstanceOf(DataError);
    expect(err.message).toMatch(/row 7 \(id train-7\) is NaN/);
    await expect(fsp.access(path.join(tmp(), 'x-nan'))).rejects.toThrow();
  });

  it('refuses incompatible or broken raters and existing outputs, naming what is wrong', async () => {
    const small = await writeToySet(tmp(), 'six', 20, 1, { classes: K }); // 6×6 images
    const shape = await rate(small, { rater: trained, out: path.join(tmp(), 'x-shape') }).catch((e) => e);
    expect(shape).toBeInstanceOf(DataError);
    expect(shape.exitCode).toBe(65);
    expect(shape.message).toContain(path.join(trained, 'rater'));
    expect(shape.message).toMatch(/takes 8×8×1 images but this dataset's are 6×6×1/);

    const copy = path.join(tmp(), 'rater-copy');
    await fsp.cp(path.join(trained, 'rater'), copy, { recursive: true });
    const metaFile = path.join(copy, RATER_META_FILE);
    const meta = JSON.parse(await fsp.readFile(metaFile, 'utf8'));
    await fsp.writeFile(metaFile, JSON.stringify({ ...meta, format_version: 99 }));
    await expect(rate(train, { rater: copy, out: path.join(tmp(), 'x-version') })).rejects.toThrow(/format version 99/);
    await fsp.writeFile(metaFile, JSON.stringify(meta));
    await fsp.rm(path.join(copy, RATER_WEIGHTS_FILE));
    await expect(rate(train, { rater: copy, out: path.join(tmp(), 'x-missing') })).rejects.toBeInstanceOf(MissingInputError);
    await expect(rate(train, { rater: target, out: path.join(tmp(), 'x-notrater') })).rejects.toThrow(/not a rater directory/);

    await expect(rate(train, { out: path.join(tmp(), 'x-none') })).rejects.toBeInstanceOf(UsageError);
    await expect(rate(train, { trainRater: true, out: path.join(tmp(), 'x-notarget') })).rejects.toThrow(/needs a target set/);
    await expect(rate(train, { rater: trained, out: trained })).rejects.toBeInstanceOf(OutputError);
    // An existing --rater-out is refused before any training.
    const t0 = performance.now();
    await expect(rate(train, { trainRater: true, target, raterOut: copy, out: path.join(tmp(), 'x-raterout') })).rejects.toBeInstanceOf(OutputError);
    expect(performance.now() - t0).toBeLessThan(2000);
    for (const x of ['x-shape', 'x-version', 'x-missing', 'x-none', 'x-raterout']) await expect(fsp.access(path.join(tmp(), x))).rejects.toThrow();
  });

  it('runs in a pipeline: train, then rate new data with the rater by reference; a rerun skips both', async () => {
    const later = path.join(tmp(), 'later'); // written by an earlier test
    const config = parsePipelineConfig({
      version: 1,
      workdir: 'pipe',
      seed: 3,
      stages: [
        { id: 'ratings', stage: 'rate', inputs: [train, target], options: { trainRater: true, epochs: 2, batchSize: 64, backend: 'wasm' } },
        { id: 'later-ratings', stage: 'rate', inputs: [later, '${ratings}'], options: { backend: 'wasm' } },
      ],
    }, { baseDir: tmp() });
    const first = await runPipeline(config);
    expect(first.stages.map((s) => s.status)).toEqual(['ran', 'ran']);
    expect(first.stages[1].numRows).toBe(155);
    const second = await runPipeline(config);
    expect(second.stages.map((s) => s.status)).toEqual(['skipped', 'skipped']);
  });

  it('runs from the CLI, and refuses a bad rater with exit code 65', async () => {
    const out = path.join(tmp(), 'cli');
    const ok = await cli(['--json', '-q', 'rate', train, '--rater', trained, '--out', out, '--backend', 'wasm']);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout).numRows).toBe(600);
    const small = path.join(tmp(), 'six');
    const bad = await cli(['rate', small, '--rater', trained, '--out', path.join(tmp(), 'cli-bad')]);
    expect(bad.code).toBe(65);
    expect(bad.stderr).toMatch(/takes 8×8×1 images/);
    const help = await cli(['rate', '--help']);
    expect(help.stdout).toMatch(/--train-rater[\s\S]*--rater-out[\s\S]*--mode[\s\S]*Examples:/);
  });
});
