// Data-parallel training (ml/data-parallel.ts): the slices of each batch spread
// over worker threads give the parameters and losses of the one-thread sliced run,
// bit for bit, for any thread count; slicing itself changes only float rounding;
// divergence is reported at the same step. Workers run the compiled dist/.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../core/errors.js';
import { loadExamples, type Examples } from '../../data/batch.js';
import { openDataset } from '../../data/reader.js';
import { initBackend } from '../../ml/backend.js';
import { trainDataParallel } from '../../ml/data-parallel.js';
import type { ModelSpec } from '../../ml/models.js';
import { withSpareThreads, type TrainJob } from '../../ml/pool.js';
import { TrainingDivergedError, createTrainer, type TrainConfig } from '../../ml/train.js';
import { useTmpDir } from '../helpers/tmp.js';
import { writeToySet } from '../helpers/toy.js';

const tmp = useTmpDir('metacurate-dp-');
let dir: string;
let train: Examples;

beforeAll(async () => {
  await initBackend('wasm');
  dir = await writeToySet(tmp(), 'pool', 70, 3);
  train = await loadExamples(await openDataset(dir));
});

const config = (model: ModelSpec, slices: number, over: Partial<TrainConfig> = {}): TrainConfig => ({
  model,
  optimizer: { kind: 'adam', lr: 0.01 },
  schedule: { kind: 'cosine' },
  // 70 rows in batches of 16: the last batch of each epoch has 6 rows, so with 8 slices two are empty.
  epochs: 2,
  batchSize: 16,
  seed: 5,
  slices,
  ...over,
});

/** The one-thread run's parameters and losses, as plain arrays. */
async function inProcess(cfg: TrainConfig, weights?: Float32Array) {
  const { params, losses } = await createTrainer(cfg, train, { weights, weightsFrom: 3 }).run();
  const out = params.map((p) => (p.dataSync() as Float32Array).slice());
  tf.dispose(params);
  return { params: out, losses };
}

describe('data-parallel training', () => {
  const mlp: ModelSpec = { kind: 'mlp', hidden: [12] };
  const convnet: ModelSpec = { kind: 'convnet', width: 4, depth: 1, norm: 'instance' };

  it('gives the one-thread parameters and losses bit for bit, for 1 and 2 threads (MLP, with example weights)', async () => {
    const weights = Float32Array.from({ length: train.ids.length }, (_, i) => (i % 5) / 2);
    const cfg = config(mlp, 3);
    const ref = await inProcess(cfg, weights);
    // 3 slices on 2 threads: one thread owns two of them.
    for (const threads of [1, 2]) {
      const dp = await trainDataParallel(cfg, { dir }, { threads, backend: 'wasm', weights, weightsFrom: 3 });
      expect(dp.threads).toBe(threads);
      expect(dp.losses).toEqual(ref.losses);
      expect(dp.params).toEqual(ref.params);
    }
  });

  it('does so for a ConvNet with empty slices in the short last batch', async () => {
    const cfg = config(convnet, 8, { epochs: 1 });
    const ref = await inProcess(cfg);
    const steps: number[] = [];
    const dp = await trainDataParallel(cfg, { dir }, { threads: 2, backend: 'wasm', onStep: (t) => steps.push(t) });
    expect(steps).toEqual([0, 1, 2, 3, 4]);
    expect(dp.losses).toEqual(ref.losses);
    expect(dp.params).toEqual(ref.params);
  });

  it('slicing a batch changes only the rounding of its gradient', async () => {
    const whole = await inProcess(config(mlp, 1));
    const sliced = await inProcess(config(mlp, 4));
    expect(sliced.losses[0]).toBeCloseTo(whole.losses[0], 5);
    for (let i = 0; i < whole.params.length; i++) {
      let worst = 0;
      for (let j = 0; j < whole.params[i].length; j++) worst = Math.max(worst, Math.abs(whole.params[i][j] - sliced.params[i][j]));
      expect(worst).toBeLessThan(1e-3);
    }
  });

  it('reports divergence at the step the one-thread run does', async () => {
    const cfg = config(mlp, 2, { optimizer: { kind: 'sgd', lr: 1e12, momentum: 0.9, weightDecay: 5e-4 } });
    const err = await inProcess(cfg).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TrainingDivergedError);
    const dpErr = await trainDataParallel(cfg, { dir }, { threads: 2, backend: 'wasm' }).catch((e: unknown) => e);
    expect(dpErr).toBeInstanceOf(TrainingDivergedError);
    expect((dpErr as TrainingDivergedError).step).toBe((err as TrainingDivergedError).step);
  });

  it('refuses slices with batch norm (each slice would normalise on its own rows) and a spread trainer with example weights', () => {
    expect(() => createTrainer(config({ kind: 'convnet', width: 4, depth: 1, norm: 'batch' }, 2), train)).toThrow(/batch norm/);
    expect(() => createTrainer(config({ kind: 'convnet', width: 4, depth: 1, norm: 'batch' }, 1), train)).not.toThrow();
    const spread = { train: { dir }, threads: 2, backend: 'wasm' as const };
    expect(() => createTrainer(config(mlp, 2), train, { spread, weights: new Float32Array(train.ids.length) })).toThrow(/example weights/);
  });

  it('fails with the data error a replica meets, and stops when aborted', async () => {
    await expect(trainDataParallel(config(mlp, 2), { dir: `${dir}-missing` }, { threads: 2, backend: 'wasm' })).rejects.toMatchObject({ exitCode: ExitCode.noInput });
    const ctl = new AbortController();
    const run = trainDataParallel(config(mlp, 2, { epochs: 50 }), { dir }, {
      threads: 2, backend: 'wasm', signal: ctl.signal, onStep: (t) => { if (t === 3) ctl.abort(new Error('stop here')); },
    });
    await expect(run).rejects.toThrow('stop here');
  });
});

describe('threads for slices', () => {
  const job = (slices?: number): TrainJob => ({ kind: 'train', train: { dir: 'd' }, config: { ...config({ kind: 'logreg' }, 1), slices } });

  it('go to sliced training jobs when there are at least two threads per job', () => {
    expect(withSpareThreads([job(4), job(1), job()], 8).map((j) => j.threads)).toEqual([2, undefined, undefined]);
    expect(withSpareThreads([job(4)], 8).map((j) => j.threads)).toEqual([8]);
    expect(withSpareThreads([job(4), job(4), job(4), job(4), job(4)], 8).map((j) => j.threads)).toEqual([undefined, undefined, undefined, undefined, undefined]);
  });
});
