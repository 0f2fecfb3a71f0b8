/**
 * The distill stage on tiny toy sets (6×6, 3 classes): the output dataset and
 * contact sheet, resume after an interruption (same result as an uninterrupted
 * run), refusals (mismatched resume, IPC above the smallest class, unlabelled
 * input), divergence stopping before anything is written, and the CLI.
 */
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { DataError, ExitCode, UsageError } from '../../core/errors.js';
import { fixedListValues, numericValues } from '../../data/columns.js';
import { openDataset } from '../../data/reader.js';
import { checkpointDirOf, CONTACT_SHEET_FILE, distill, distillStage, resolveSettings, type DistillOptions } from '../../stages/distill.js';
import { makeRealSet } from '../../ml/distill/common.js';
import { startFeatureFeed } from '../../ml/distill/feature-feed.js';
import type { MethodSettings } from '../../ml/distill/index.js';
import { localJobs } from '../../ml/pool.js';
import { quietContext, type StageContext } from '../../stages/context.js';
import { writeToySet } from '../helpers/toy.js';
import { useTmpDir } from '../helpers/tmp.js';
import { assertBuilt, cli } from '../pipeline/helpers.js';

const tmp = useTmpDir('metacurate-distill-');

/** Small, fast settings: depth 1 nets of width 4. */
const FAST: Partial<DistillOptions> = { width: 4, depth: 1, batchSize: 12, nets: 2 };

/** A context whose signal aborts after `n` progress ticks past the start (an interruption mid-run). */
function abortingContext(n: number): StageContext {
  const ctrl = new AbortController();
  const base = quietContext();
  let ticks = 0;
  let started = false;
  return {
    ...base,
    signal: ctrl.signal,
    progress: () => ({
      tick: (k = 1) => {
        if (!started) { started = true; return; } // the first tick reports the resumed start
        ticks += k;
        if (ticks >= n) ctrl.abort(new Error('interrupted by the test'));
      },
      setTotal: () => undefined,
      done: () => undefined,
    }),
  };
}

async function readOutput(dir: string) {
  const ds = await openDataset(dir);
  const pixels: number[] = [];
  const soft: number[] = [];
  const labels: number[] = [];
  const ids: string[] = [];
  for await (const b of ds.blocks()) {
    pixels.push(...fixedListValues<Uint8Array>(b.column('pixels')));
    soft.push(...fixedListValues<Float32Array>(b.column('soft_label')));
    labels.push(...numericValues(b.column('label')));
    for (let i = 0; i < b.length; i++) ids.push(String(b.column('id').get(i)));
  }
  return { ds, pixels, soft, labels, ids };
}

describe('distill stage', () => {
  it('writes a full synthetic dataset with soft labels, uint8 pixels and a contact sheet', async () => {
    const train = await writeToySet(tmp(), 'train-a', 30, 1);
    const out = path.join(tmp(), 'out-a');
    const options: DistillOptions = { ...FAST, method: 'krr', ipc: 2, steps: 4, out };
    const predicted = (await distillStage.prepare([train], distillStage.options.parse(options))).fingerprint;
    const r = await distill(train, options);
    expect(r.fingerprint).toBe(predicted);
    expect(r.summary).toMatchObject({ method: 'krr', ipc: 2, rows: 6, stepsDone: 4, stoppedBy: 'steps', resumedFrom: null });
    const { ds, pixels, soft, labels, ids } = await readOutput(out);
    expect(ds.pixelShape).toEqual([6, 6, 1]);
    expect(ds.classNames).toEqual(['c0', 'c1', 'c2']);
    expect(ds.column('soft_label')).toMatchObject({ kind: 'float32Vector', length: 3 });
    expect(labels).toEqual([0, 0, 1, 1, 2, 2]);
    expect(new Set(ids).size).toBe(6);
    expect(pixels).toHaveLength(6 * 36);
    expect(pixels.every((v) => Number.isInteger(v) && v >= 0 && v <= 255)).toBe(true);
    for (let r = 0; r < 6; r++) expect(soft.slice(3 * r, 3 * r + 3).reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
    const sheet = await sharp(path.join(out, CONTACT_SHEET_FILE)).metadata();
    expect(sheet.format).toBe('png');
    expect(sheet.width).toBeGreaterThan(2 * 12);
    expect(existsSync(checkpointDirOf(out))).toBe(false);
  });

  it('resumes after an interruption and matches an uninterrupted run', async () => {
    const train = await writeToySet(tmp(), 'train-b', 30, 2);
    for (const method of ['krr', 'rcig'] as const) {
      const base: DistillOptions = { ...FAST, method, ipc: 2, steps: 6, checkpointEvery: 2, innerSteps: 3, hinvSteps: 3, out: '' };
      const whole = path.join(tmp(), `whole-${method}`);
      await distill(train, { ...base, out: whole });

      const parts = path.join(tmp(), `parts-${method}`);
      await expect(distill(train, { ...base, out: parts }, abortingContext(3))).rejects.toThrow(/interrupted by the test/);
      expect(existsSync(parts)).toBe(false);
      const ckpt = JSON.parse(await fsp.readFile(path.join(checkpointDirOf(parts), 'checkpoint.json'), 'utf8'));
      expect(ckpt.step).toBe(3);
      const r = await distill(train, { ...base, out: parts });
      expect(r.summary.resumedFrom).toBe(3);
      expect(r.summary.stepsDone).toBe(6);
      const a = await readOutput(whole);
      const b = await readOutput(parts);
      expect(b.pixels).toEqual(a.pixels);
      expect(b.soft).toEqual(a.soft);
      expect(existsSync(checkpointDirOf(parts))).toBe(false);
    }
  });

  it('krr with its real-batch features from a second thread writes what one thread writes, and reports the thread\'s failure', async () => {
    assertBuilt();
    const train = await writeToySet(tmp(), 'train-feed', 30, 5);
    const base: DistillOptions = { ...FAST, method: 'krr', ipc: 2, steps: 5, backend: 'wasm', out: '' };
    const one = await distill(train, { ...base, out: path.join(tmp(), 'feed-1'), parallelism: 1 });
    const two = await distill(train, { ...base, out: path.join(tmp(), 'feed-2'), parallelism: 2 });
    expect(two.fingerprint).toBe(one.fingerprint);
    expect(two.summary.featureThread).toBe(true);
    expect(one.summary.featureThread).toBeUndefined();
    const [a, b] = [await readOutput(one.dir), await readOutput(two.dir)];
    expect(b.pixels).toEqual(a.pixels);
    expect(b.soft).toEqual(a.soft);
    // A feed whose thread cannot load the data: the distilling thread gets that error, not a hang.
    const real = makeRealSet(new Uint8Array(30 * 36).fill(7), [6, 6, 1], Int32Array.from({ length: 30 }, (_, i) => i % 3), 3);
    const settings = resolveSettings(distillStage.options.parse({ ...base, out: 'x' })) as Extract<MethodSettings, { method: 'krr' }>;
    const feed = startFeatureFeed(real, settings, { dir: path.join(tmp(), 'no-such-dataset') }, 0, 5, 'wasm');
    try {
      await expect(feed.ready(0)).rejects.toMatchObject({ exitCode: ExitCode.noInput });
    } finally {
      await feed.close();
    }
  });

  it('runs restarts as jobs and keeps the one with the lowest final objective, as a single run of its seed gives it', async () => {
    assertBuilt();
    const train = await writeToySet(tmp(), 'train-r', 30, 4);
    const base: DistillOptions = { ...FAST, method: 'krr', ipc: 2, steps: 4, seed: 3, backend: 'wasm', out: '' };
    const kinds: string[] = [];
    const ctx: StageContext = {
      ...quietContext(),
      jobRunner: { run: (jobs, o) => (kinds.push(...jobs.map((j) => j.kind)), localJobs.run(jobs, o)) },
    };
    const r = await distill(train, { ...base, restarts: 3, out: path.join(tmp(), 'restarts') }, ctx);
    expect(kinds).toEqual(['distill', 'distill', 'distill']);
    const restarts = r.summary.restarts!;
    expect(restarts.map((x) => x.seed)).toEqual([3, 4, 5]);
    const best = restarts.reduce((b, x) => (x.finalLoss < b.finalLoss ? x : b));
    expect(r.summary.settings.seed).toBe(best.seed);
    expect(new Set(restarts.map((x) => x.finalLoss)).size).toBe(3); // the seeds really differ
    // The kept set is exactly what one run from that seed makes.
    const single = await distill(train, { ...base, seed: best.seed, out: path.join(tmp(), `single-${best.seed}`) });
    const [a, b] = [await readOutput(r.dir), await readOutput(single.dir)];
    expect(a.pixels).toEqual(b.pixels);
    expect(a.soft).toEqual(b.soft);
    // One restart is the plain run: `restarts` joins its options (and fingerprint) only above 1.
    const prepared = async (o: DistillOptions) => distillStage.prepare([train], distillStage.options.parse({ ...o, out: 'x' }));
    const fp = async (o: DistillOptions) => (await prepared(o)).fingerprint;
    expect((await prepared({ ...base, restarts: 1 })).options).not.toHaveProperty('restarts');
    expect((await prepared({ ...base, restarts: 2 })).options).toHaveProperty('restarts', 2);
    expect(await fp({ ...base, restarts: 2 })).not.toBe(await fp(base));
  });

  it('refuses to resume a checkpoint made with other options, naming them', async () => {
    const train = await writeToySet(tmp(), 'train-c', 30, 3);
    const out = path.join(tmp(), 'out-c');
    const base: DistillOptions = { ...FAST, method: 'krr', ipc: 2, steps: 6, checkpointEvery: 2, out };
    await expect(distill(train, base, abortingContext(2))).rejects.toThrow(/interrupted/);
    const err = await distill(train, { ...base, lr: 0.5, ipc: 3 }).catch((e) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toMatch(/different options: ipc \(checkpoint 2, now 3\), lr \(checkpoint 0\.01, now 0\.5\)/);
    expect(err.message).toContain(checkpointDirOf(out));
    // More steps is not a different run: it continues.
    const r = await distill(train, { ...base, steps: 8 });
    expect(r.summary).toMatchObject({ resumedFrom: 2, stepsDone: 8 });
  });

  it('refuses an IPC above the smallest class, naming the class', async () => {
    // 10 rows over 3 classes: c0 has 4, c1 and c2 have 3.
    const train = await writeToySet(tmp(), 'train-d', 10, 4);
    const out = path.join(tmp(), 'out-d');
    const err = await distill(train, { ...FAST, method: 'dm', ipc: 4, steps: 2, out }).catch((e) => e);
    expect(err).toBeInstanceOf(DataError);
    expect(err.message).toMatch(/class 'c1' \(1\) has 3 images, fewer than --ipc 4.*at most 3/);
    expect(existsSync(out)).toBe(false);
  });

  it('refuses unlabelled data', async () => {
    const none = await writeToySet(tmp(), 'train-e', 12, 5, { labels: 'none' });
    const soft = await writeToySet(tmp(), 'train-f', 12, 5, { labels: 'soft' });
    await expect(distill(none, { method: 'dm', out: path.join(tmp(), 'x') })).rejects.toThrow(/has no labels/);
    await expect(distill(soft, { method: 'dm', out: path.join(tmp(), 'x') })).rejects.toThrow(/has only soft labels/);
  });

  it('stops with a clear error when optimisation diverges, writing nothing', async () => {
    const train = await writeToySet(tmp(), 'train-g', 30, 6);
    const out = path.join(tmp(), 'out-g');
    const err = await distill(train, { ...FAST, method: 'krr', ipc: 2, steps: 30, lr: 1e37, out }).catch((e) => e);
    expect(err).toBeInstanceOf(DataError);
    expect(err.message).toMatch(/distillation diverged at step \d+: .*not finite.*Lower the learning rate/);
    expect(existsSync(out)).toBe(false);
  });

  it('runs from the CLI; bad input exits 65', async () => {
    assertBuilt();
    const train = await writeToySet(tmp(), 'train-h', 30, 7);
    const out = path.join(tmp(), 'out-h');
    const ok = await cli(['distill', train, '--method', 'dm', '--ipc', '1', '--steps', '3', '--width', '4', '--depth', '1', '--out', out, '--json']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).summary).toMatchObject({ method: 'dm', rows: 3, stepsDone: 3 });
    expect(existsSync(path.join(out, CONTACT_SHEET_FILE))).toBe(true);
    const bad = await cli(['distill', train, '--method', 'dm', '--ipc', '11', '--out', path.join(tmp(), 'out-i')]);
    expect(bad.code).toBe(65);
    expect(bad.stderr).toMatch(/class 'c\d' \(\d\) has 10 images, fewer than --ipc 11/);
  });
});
