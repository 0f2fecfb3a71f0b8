// The evaluate stage end to end on tiny datasets written with data/writer.ts:
// seeds in worker threads (the compiled dist/ml/worker.js: `npm test` builds
// first), baselines, the report on disk, soft labels, and the errors for sets
// that do not fit together.
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataError, ExitCode } from '../../core/errors.js';
import { readCuration } from '../../data/reader.js';
import { TrainingDivergedError } from '../../ml/train.js';
import { PRESETS, REPORT_FILE, defaultEpochs, evaluate, presetOf, evaluateStage, stratifiedSubset, type EvaluateOptions, type EvaluateReport } from '../../stages/evaluate.js';
import { quietContext } from '../../stages/context.js';
import { Rng } from '../../core/rng.js';
import { writeToySet } from '../helpers/toy.js';

let tmp: string;

let train: string;
let test: string;
let full: string;

// A quick protocol: tiny MLP, few epochs, wasm in each worker.
const quick: EvaluateOptions = { preset: 'fast', model: { kind: 'mlp', hidden: [16] }, lr: 0.01, epochs: 10, batchSize: 16, backend: 'wasm' };

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'metacurate-evaluate-'));
  train = await writeToySet(tmp, 'train', 30, 1);
  test = await writeToySet(tmp, 'test', 60, 2);
  full = await writeToySet(tmp, 'full', 150, 3);
});

afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('evaluate stage', () => {
  let report: EvaluateReport;
  let out: string;

  beforeAll(async () => {
    out = path.join(tmp, 'eval-out');
    const ticks: number[] = [];
    const ctx = { ...quietContext(), progress: () => ({ tick: (n = 1) => void ticks.push(n), setTotal: () => undefined, done: () => undefined }) };
    report = await evaluate(train, { ...quick, test, fullTrain: full, fullEpochs: 6, seeds: 2, out }, ctx);
    // Progress counts training steps: every job's steps, once.
    expect(ticks.reduce((a, b) => a + b, 0)).toBe(2 * report.steps + 2 * report.baselines!.random!.steps + 2 * report.baselines!.full!.steps);
  });

  it('trains one model per seed in workers and reports mean ± std', () => {
    expect(report.accuracy.perSeed).toHaveLength(2);
    const [a, b] = report.accuracy.perSeed;
    expect(report.accuracy.mean).toBeCloseTo((a + b) / 2, 12);
    expect(report.accuracy.std).toBeCloseTo(Math.abs(a - b) / 2, 12);
    expect(report.accuracy.mean).toBeGreaterThan(0.9);
    expect(report.numTrain).toBe(30);
    expect(report.numTest).toBe(60);
    expect(report.epochs).toBe(10);
    expect(report.steps).toBe(10 * 2);
    expect(report.config.seeds).toEqual([0, 1]);
    expect(report.config.backend).toBe('wasm');
    expect(report.config.protocol).toMatch(/MLP hidden 16; Adam lr 0.01, batch 16, constant lr, 10 epochs; hard labels/);
    // Inputs are normalised with the full pool's statistics.
    const norm = (report.config.model as { inputNorm?: { mean: number[]; std: number[] } }).inputNorm!;
    expect(norm.mean[0]).toBeGreaterThan(0.3);
    expect(norm.mean[0]).toBeLessThan(0.7);
  });

  it('records per-class accuracy and the confusion matrix, mean over seeds, for every arm', async () => {
    // 60 test rows, 20 per class: each confusion row holds a class's test rows, whatever the predictions.
    expect(report.classes).toEqual(['c0', 'c1', 'c2']);
    expect(report.confusion).toHaveLength(3);
    for (const row of report.confusion) expect(row.reduce((a, b) => a + b, 0)).toBeCloseTo(20, 9);
    report.perClass.forEach((acc, c) => expect(acc).toBeCloseTo(report.confusion[c][c] / 20, 9));
    // With equal class sizes, overall accuracy is the mean of the per-class ones.
    expect(report.perClass.reduce<number>((a, b) => a + b!, 0) / 3).toBeCloseTo(report.accuracy.mean, 9);
    const full = report.baselines!.full!;
    expect(full.perClass.reduce<number>((a, b) => a + b!, 0) / 3).toBeCloseTo(full.accuracy.mean, 9);
    // The summary names the classes; evaluation.json holds the matrices.
    const cur = await readCuration(out);
    expect(cur?.summary?.perClass).toEqual({ c0: report.perClass[0], c1: report.perClass[1], c2: report.perClass[2] });
    const onDisk = JSON.parse(await fsp.readFile(path.join(out, REPORT_FILE), 'utf8'));
    expect(onDisk.confusion).toEqual(report.confusion);
  });

  it('adds a random subset of the full pool of the same size, and the full pool', () => {
    const { random, full: all } = report.baselines!;
    expect(random!.numTrain).toBe(30);
    expect(random!.accuracy.perSeed).toHaveLength(2);
    expect(all!.numTrain).toBe(150);
    expect(all!.epochs).toBe(6);
    expect(all!.steps).toBe(6 * 10);
  });

  it('writes the report and a curation.json whose fingerprint the stage predicts', async () => {
    const onDisk = JSON.parse(await fsp.readFile(path.join(out, REPORT_FILE), 'utf8'));
    expect(onDisk.accuracy).toEqual(report.accuracy);
    const cur = await readCuration(out);
    expect(cur?.stage).toBe('evaluate');
    expect(cur?.fingerprint).toBe(report.fingerprint);
    const options = evaluateStage.options.parse({ ...quick, test, fullTrain: full, fullEpochs: 6, seeds: 2, out });
    expect((await evaluateStage.prepare([train], options)).fingerprint).toBe(report.fingerprint);
    // Test and full pool may also come as the stage's 2nd and 3rd inputs.
    const viaInputs = evaluateStage.options.parse({ ...quick, fullEpochs: 6, seeds: 2, out });
    expect((await evaluateStage.prepare([train, test, full], viaInputs)).fingerprint).toBe(report.fingerprint);
    // Another seed count is another result.
    expect((await evaluateStage.prepare([train], { ...options, seeds: 3 })).fingerprint).not.toBe(report.fingerprint);
    // The output is not replaced without overwrite.
    await expect(evaluate(train, { ...quick, test, seeds: 1, baselines: false, out })).rejects.toMatchObject({ exitCode: ExitCode.cannotCreate });
  });
});

describe('evaluate: other inputs and errors', () => {
  it('honours soft labels', async () => {
    const soft = await writeToySet(tmp, 'soft', 30, 4, { labels: 'soft' });
    const r = await evaluate(soft, { ...quick, test, seeds: 1, baselines: false });
    expect(r.accuracy.mean).toBeGreaterThan(0.9);
    expect(r.config.protocol).toMatch(/soft labels/);
    expect(r.baselines).toBeUndefined();
  });

  it('with steps, trains every arm for the same number of steps (equal compute across budgets)', async () => {
    const r = await evaluate(train, { ...quick, epochs: undefined, test, fullTrain: full, seeds: 1, steps: 7 });
    expect([r.steps, r.baselines!.random!.steps, r.baselines!.full!.steps]).toEqual([7, 7, 7]);
    // 150 rows in batches of 16 take 10 steps an epoch: 7 steps is one epoch cut short; 30 rows, 2 a batch: 4 epochs.
    expect(r.baselines!.full!.epochs).toBe(1);
    expect(r.epochs).toBe(4);
    expect(r.config.protocol).toMatch(/7 steps \(every arm\)/);
  });

  it('with slices, trains one model on the spare threads and gets what one thread gets', async () => {
    // One job on 2 threads: its 2 slices run in 2 worker threads; with parallelism 1, in one.
    const opts: EvaluateOptions = { ...quick, test, seeds: 1, baselines: false, slices: 2 };
    const [one, two] = [await evaluate(train, { ...opts, parallelism: 1 }), await evaluate(train, { ...opts, parallelism: 2 })];
    expect(two.accuracy).toEqual(one.accuracy);
    expect(two.loss).toEqual(one.loss);
    expect(two.fingerprint).toBe(one.fingerprint);
    expect(one.config.slices).toBe(2);
    // The second run's training went through the two threads; the first ran its slices in one.
    expect(two.threads).toBe(2);
    expect(one.threads).toBeUndefined();
    const unsliced = (await evaluateStage.prepare([train], { ...opts, slices: undefined })).fingerprint;
    expect(unsliced).not.toBe(one.fingerprint);
    // One slice is whole batches: the same run as no slices.
    expect((await evaluateStage.prepare([train], { ...opts, slices: 1 })).fingerprint).toBe(unsliced);
  });

  it('refuses a test set with another class count or pixel shape, naming both', async () => {
    const four = await writeToySet(tmp, 'four-classes', 8, 5, { classes: 4 });
    const err = await evaluate(train, { ...quick, test: four, baselines: false }).catch((e) => e);
    expect(err).toBeInstanceOf(DataError);
    expect(err.exitCode).toBe(ExitCode.dataError);
    expect(err.message).toContain(four);
    expect(err.message).toContain(train);
    expect(err.message).toMatch(/4 classes .* has 3/);
    const rgb = await writeToySet(tmp, 'rgb', 8, 6, { channels: 3 });
    await expect(evaluate(train, { ...quick, test: rgb, baselines: false })).rejects.toThrow(/6×6×3 but the training set's .* are 6×6×1/);
    await expect(evaluate(train, { ...quick, test, fullTrain: rgb })).rejects.toThrow(DataError);
  });

  it('refuses unlabelled data and a missing test set', async () => {
    const bare = await writeToySet(tmp, 'unlabelled', 8, 7, { labels: 'none' });
    await expect(evaluate(bare, { ...quick, test, baselines: false })).rejects.toThrow(/training set has no labels/);
    await expect(evaluate(train, { ...quick, test: bare, baselines: false })).rejects.toThrow(/test set has no labels/);
    await expect(evaluate(train, { ...quick, baselines: false })).rejects.toMatchObject({ exitCode: ExitCode.usage });
  });

  it('refuses a model the images are too small for before training', async () => {
    await expect(evaluate(train, { ...quick, model: 'convnet', test, baselines: false })).rejects.toMatchObject({ exitCode: ExitCode.config });
  });

  it('stops the workers when the context is aborted', async () => {
    const controller = new AbortController();
    const ctx = { ...quietContext(), signal: controller.signal };
    const t0 = Date.now();
    setTimeout(() => controller.abort(), 300);
    const err = await evaluate(train, { ...quick, test, epochs: 1_000_000, seeds: 2, baselines: false }, ctx).catch((e) => e);
    expect(err?.name).toBe('AbortError');
    expect(Date.now() - t0).toBeLessThan(20_000);
  });

  it('a diverging run in a worker comes back as TrainingDivergedError', async () => {
    const err = await evaluate(train, { ...quick, test, seeds: 1, baselines: false, optimizer: 'sgd', lr: 1e12 }).catch((e) => e);
    expect(err).toBeInstanceOf(TrainingDivergedError);
    expect(err.exitCode).toBe(ExitCode.dataError);
    expect(err.message).toMatch(/training diverged at step \d+/);
  });
});

describe('presetOf', () => {
  it('is the one asked for, else dc-bench on the native backend and fast elsewhere, with fingerprints as when fast was the default', async () => {
    expect(presetOf({ backend: 'tensorflow' })).toBe('dc-bench');
    expect(presetOf({ backend: 'wasm' })).toBe('fast');
    expect(presetOf({ backend: 'webgpu' })).toBe('fast');
    expect(presetOf({ preset: 'fast', backend: 'tensorflow' })).toBe('fast');
    expect(presetOf({ preset: 'dc-bench', backend: 'wasm' })).toBe('dc-bench');
    // Fingerprints of the default preset are as they were when fast was the default.
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'metacurate-preset-'));
    try {
      const [tr, te] = [await writeToySet(dir, 'tr', 20, 1), await writeToySet(dir, 'te', 20, 2)];
      const fp = async (o: Record<string, unknown>) => (await evaluateStage.prepare([tr, te], { backend: 'wasm', ...o })).fingerprint;
      expect(await fp({})).toBe(await fp({ preset: 'fast' }));
      expect(await fp({ backend: 'tensorflow' })).toBe(await fp({ backend: 'tensorflow', preset: 'dc-bench' }));
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});

describe('defaultEpochs', () => {
  it("gives DC-bench's 1000 epochs to sets of up to two batches, about 2000 steps beyond", () => {
    const dc = PRESETS['dc-bench'];
    expect(defaultEpochs(10, 256, dc)).toBe(1000);
    expect(defaultEpochs(500, 256, dc)).toBe(1000);
    expect(defaultEpochs(1000, 256, dc)).toBe(500);
    expect(defaultEpochs(60000, 256, dc)).toBe(10);
    expect(defaultEpochs(150, 16, PRESETS.fast)).toBe(50);
  });
});

describe('stratifiedSubset', () => {
  it('keeps the class counts and fills short classes at random', () => {
    const labels = Int32Array.from([0, 0, 0, 1, 1, 2, 0, 1, 2, 2]);
    const a = stratifiedSubset(labels, [2, 1, 1], new Rng(1));
    expect(a).toHaveLength(4);
    expect(Array.from(a).map((i) => labels[i]).sort()).toEqual([0, 0, 1, 2]);
    expect(stratifiedSubset(labels, [2, 1, 1], new Rng(1))).toEqual(a);
    // Class 1 has 3 rows; asking for 5 takes them all plus 2 others.
    const b = stratifiedSubset(labels, [0, 5, 0], new Rng(2));
    expect(b).toHaveLength(5);
    expect(new Set(b).size).toBe(5);
    expect(Array.from(b).filter((i) => labels[i] === 1)).toHaveLength(3);
  });
});
