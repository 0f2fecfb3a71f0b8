// The score stage end to end on tiny datasets: sidecar layout and alignment, seeds
// averaged in worker threads (compiled dist/: `npm test` builds first), and the
// refusals for inputs that cannot be scored.
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataError, OutputError, UsageError } from '../../core/errors.js';
import { numericValues } from '../../data/columns.js';
import { openDataset, readCuration } from '../../data/reader.js';
import { TrainingDivergedError } from '../../ml/train.js';
import { score, scoreOptions, scoreStage, trainSteps, trainingLength, type ScoreOptions } from '../../stages/score.js';
import { quietContext } from '../../stages/context.js';
import { writeToySet } from '../helpers/toy.js';
import { cli } from '../pipeline/helpers.js';

let tmp: string;
let train: string;
let target: string;
const quick: Partial<ScoreOptions> = { model: { kind: 'mlp', hidden: [8] }, epochs: 2, batchSize: 10, backend: 'wasm', lr: 0.1 };

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'metacurate-score-'));
  train = await writeToySet(tmp, 'train', 40, 1);
  target = await writeToySet(tmp, 'target', 30, 2);
});

afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('score stage', () => {
  it('writes metagrad scores as a sidecar aligned with the training set, mean and std over seeds', async () => {
    const out = path.join(tmp, 'mg');
    const logged: string[] = [];
    const ctx = { ...quietContext(), log: { ...quietContext().log, info: (_f: unknown, msg?: string) => void logged.push(msg ?? '') } };
    const res = await score(train, { ...quick, out, target, method: 'metagrad', seeds: 2 }, ctx);
    expect(res.numRows).toBe(40);
    // The memory plan is printed: 8 steps of a tiny MLP fit the budget, so every state is stored.
    expect(logged.some((m) => /every state of steps \d+–8 stored/.test(m)), logged.join('\n')).toBe(true);
    expect(res.summary.columns).toEqual(['metagrad', 'metagrad_std', 'metagrad_helpful']);
    const ds = await openDataset(train, { sidecars: [out] });
    const sc = await openDataset(out);
    expect(sc.curation?.sidecar_of).toBe(ds.fingerprint);
    expect(sc.curation?.stage).toBe('score');
    expect((await scoreStage.prepare([train], scoreOptions.parse({ ...quick, out, target, method: 'metagrad', seeds: 2 }))).fingerprint).toBe(res.fingerprint);
    let rows = 0;
    let spread = 0;
    for await (const b of ds.blocks()) {
      const s = numericValues(b.column('metagrad'));
      const sd = numericValues(b.column('metagrad_std'));
      for (let i = 0; i < b.length; i++) {
        expect(Number.isFinite(s[i])).toBe(true);
        expect(sd[i]).toBeGreaterThanOrEqual(0);
        spread += sd[i];
      }
      rows += b.length;
    }
    expect(rows).toBe(40);
    // Two seeds train different models, so the per-row std is not all zero.
    expect(spread).toBeGreaterThan(0);
    // Metagradient runs combine as the mean of their percentile ranks; the two halves' agreement is recorded.
    expect(res.summary.combine).toBe('rank');
    const agreement = res.summary.agreement!;
    const r = agreement.split_half_spearman;
    expect(Number.isFinite(r)).toBe(true);
    // The full-ensemble figure is the Spearman-Brown step-up of the split-half one.
    expect(agreement.full_ensemble_estimate).toBeCloseTo((2 * r) / (1 + r), 5);
    let sum = 0;
    const helpful: number[] = [];
    for await (const b of ds.blocks()) {
      for (const v of numericValues(b.column('metagrad'))) {
        expect(v > 0 && v < 1).toBe(true);
        sum += v;
      }
      // Each run says helpful (1), harmful (0) or unseen (0.5); two runs average to quarters.
      for (const v of numericValues(b.column('metagrad_helpful'))) {
        expect([0, 0.25, 0.5, 0.75, 1]).toContain(v);
        helpful.push(v);
      }
    }
    // Mean percentile ranks average to one half; and the runs do tell rows apart.
    expect(sum / 40).toBeCloseTo(0.5, 6);
    expect(helpful.some((v) => v !== 0.5)).toBe(true);
  });

  it('a run of a single step still differentiates that step: metagrad scores are not all the same', async () => {
    const out = path.join(tmp, 'one-step');
    // 40 rows in one batch, one epoch: one step, which late entry at 0.5 would otherwise skip.
    await score(train, { ...quick, out, target, method: 'metagrad', seeds: 1, epochs: 1, batchSize: 64 });
    const values: number[] = [];
    for await (const b of (await openDataset(out)).blocks()) values.push(...numericValues(b.column('metagrad')));
    expect(new Set(values).size).toBeGreaterThan(1);
  });

  it('is deterministic: the same options give the same scores', async () => {
    const a = await score(train, { ...quick, out: path.join(tmp, 'a'), target, method: 'metagrad' });
    const b = await score(train, { ...quick, out: path.join(tmp, 'b'), target, method: 'metagrad', parallelism: 1 });
    expect(a.fingerprint).toBe(b.fingerprint);
    const read = async (d: string) => { const out: number[] = []; for await (const bl of (await openDataset(d)).blocks()) out.push(...numericValues(bl.column('metagrad'))); return out; };
    expect(await read(a.dir)).toEqual(await read(b.dir));
  });

  it('with slices, one seed\'s run shares the spare threads and scores as in one thread (loss; el2n stops early)', async () => {
    const read = async (d: string, col: string) => { const out: number[] = []; for await (const bl of (await openDataset(d)).blocks()) out.push(...numericValues(bl.column(col))); return out; };
    for (const method of ['loss', 'el2n']) {
      const opts = { ...quick, target, method, seeds: 1, slices: 3, epochs: 4 };
      const one = await score(train, { ...opts, out: path.join(tmp, `${method}-sliced-1`), parallelism: 1 });
      const two = await score(train, { ...opts, out: path.join(tmp, `${method}-sliced-2`), parallelism: 2 });
      expect(two.fingerprint).toBe(one.fingerprint);
      expect(await read(two.dir, method)).toEqual(await read(one.dir, method));
      expect(one.summary.protocol.slices).toBe(3);
      // The two-thread run's training went through the threads.
      expect(two.summary.details[0].threads).toBe(2);
      expect(one.summary.details[0].threads).toBeUndefined();
    }
    // A diverging run fails alike on one thread and on two.
    const diverging = { ...quick, method: 'loss', seeds: 1, slices: 2, lr: 1e12, optimizer: { kind: 'sgd' as const, lr: 1e12, momentum: 0.9 } };
    const errs = await Promise.all([1, 2].map((p) => score(train, { ...diverging, out: path.join(tmp, `diverging-${p}`), parallelism: p }).catch((e: unknown) => e)));
    for (const e of errs) expect(e).toBeInstanceOf(TrainingDivergedError);
    expect((errs[1] as TrainingDivergedError).step).toBe((errs[0] as TrainingDivergedError).step);
    expect((errs[1] as Error).message).toBe((errs[0] as Error).message);
  });

  it('runs a baseline without a target', async () => {
    const res = await score(train, { ...quick, out: path.join(tmp, 'loss'), method: 'loss' });
    expect(res.summary.columns).toEqual(['loss']);
    expect(res.summary.max).toBeLessThanOrEqual(0); // −loss
    // 40 rows in batches of 10 for the 2 epochs asked for: 8 steps, said in the summary.
    expect(res.summary.warnings).toEqual([expect.stringMatching(/trains only 8 optimizer steps .*more epochs \(--epochs; 2 now\)/)]);
  });

  it('takes a JSON model spec from the command line, as the library does', async () => {
    const r = await cli(['--json', 'score', train, '--method', 'loss', '--model', '{"kind":"mlp","hidden":[4]}', '--epochs', '1', '--backend', 'wasm', '--out', path.join(tmp, 'json-model')]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).summary.protocol.model).toMatchObject({ kind: 'mlp', hidden: [4] });
  });

  it('trains a small pool for more epochs when the epochs are the method\'s, in the fingerprint', async () => {
    const { epochs: _e, ...noEpochs } = quick;
    const res = await score(train, { ...noEpochs, out: path.join(tmp, 'scaled'), method: 'loss' });
    // The method's 2 epochs give 8 steps; the baselines want 60 (15 epochs).
    expect(res.summary.protocol.epochs).toBe(15);
    expect(res.summary.warnings).toBeUndefined();
    expect((await readCuration(res.dir))!.options).toMatchObject({ epochs: 15 });
    const big = trainingLength({ method: 'loss', batchSize: 10 }, 400);
    expect(big).toEqual({ epochs: 2, scaled: false, steps: 80 });
    expect(trainSteps(41, 2, 10)).toBe(10);
    // Even a one-row pool reaches it (one step an epoch); metagrad, costlier, asks for MIN_TRAIN_STEPS (20).
    expect(trainingLength({ method: 'loss' }, 1)).toEqual({ epochs: 60, scaled: true, steps: 60 });
    expect(trainingLength({ method: 'metagrad' }, 1000)).toEqual({ epochs: 10, scaled: true, steps: 20 });
    expect(trainingLength({ method: 'metagrad' }, 5000)).toEqual({ epochs: 2, scaled: false, steps: 20 });
    // Epochs the user set are kept, with the warning below 20.
    expect(trainingLength({ method: 'loss', epochs: 3 }, 1)).toMatchObject({ epochs: 3, scaled: false, steps: 3, warning: expect.stringMatching(/only 3 optimizer steps/) });
  });

  it('refuses what cannot be scored', async () => {
    await expect(score(train, { ...quick, out: path.join(tmp, 'x1'), method: 'metagrad' })).rejects.toBeInstanceOf(UsageError);
    const fourClasses = await writeToySet(tmp, 'four', 20, 3, { classes: 4 });
    await expect(score(train, { ...quick, out: path.join(tmp, 'x2'), target: fourClasses, method: 'metagrad' })).rejects.toThrow(/4 classes/);
    const unlabelled = await writeToySet(tmp, 'nolabel', 20, 4, { labels: 'none' });
    await expect(score(unlabelled, { ...quick, out: path.join(tmp, 'x3'), method: 'loss' })).rejects.toBeInstanceOf(DataError);
    await expect(score(train, { ...quick, out: path.join(tmp, 'a'), target, method: 'metagrad' })).rejects.toBeInstanceOf(OutputError);
    await expect(score(train, { ...quick, out: path.join(tmp, 'x4'), target, method: 'metagrad', maxMemoryMiB: 1, model: { kind: 'mlp', hidden: [4096] } })).rejects.toThrow(/stored states/);
    // A learning rate that blows training up stops with the step, never NaN scores.
    const err = await score(train, { ...quick, out: path.join(tmp, 'x5'), target, method: 'metagrad', lr: 1e20 }).catch((e) => e);
    expect(err).toBeInstanceOf(TrainingDivergedError);
    expect(String(err.message)).toMatch(/step \d+/);
    for (const d of ['x1', 'x2', 'x3', 'x4', 'x5']) await expect(fsp.access(path.join(tmp, d))).rejects.toThrow();
  });
});
