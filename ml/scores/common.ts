/**
 * What the scorers share: progress and cancellation (Work), batched passes over
 * the rows, training a run up to a step with hooks, and the baselines' training
 * defaults.
 */
import * as tf from '@tensorflow/tfjs';
import { DataError, UsageError } from '../../core/errors.js';
import { gatherPixels, gatherTargets, type Examples } from '../../data/batch.js';
import type { Model } from '../models.js';
import { addAll, perExampleCrossEntropy } from '../ops.js';
import { trainDataParallel } from '../data-parallel.js';
import { TrainingDivergedError, type BatchInputs, type Trainer } from '../train.js';
import type { TrainDefaults } from './types.js';

/**
 * The baselines' scored run: an MLP 256 with SGD (momentum 0.9), 2 epochs, batch
 * 128, and at least 60 steps: what 2 epochs give 4,000 rows. Below that a model
 * of a small pool has not learnt the classes yet, and its losses, margins and
 * out-of-sample labels flag more clean rows than wrong ones (on 1,000 Fashion-MNIST
 * images with 15% mislabelled, label-issues at 14 steps a fold flagged 385 rows,
 * 40% of them mislabelled; at 56, 239 rows, 59%).
 */
export const BASELINE_TRAIN_DEFAULTS: TrainDefaults = {
  model: { kind: 'mlp', hidden: [256] },
  optimizer: { kind: 'sgd', lr: 0.05, momentum: 0.9 },
  epochs: 2,
  batchSize: 128,
  minSteps: 60,
};

/** Progress, cancellation and yielding to the event loop during long loops. */
export class Work {
  done = 0;
  /** Threads the run's training used (more than 1 when its batch slices were spread, ml/data-parallel.ts). */
  threads = 1;
  private lastYield = Date.now();
  constructor(
    public total: number,
    private readonly onProgress?: (done: number, total: number) => void,
    private readonly signal?: AbortSignal,
  ) {}

  async tick(): Promise<void> {
    this.done++;
    this.onProgress?.(this.done, this.total);
    this.signal?.throwIfAborted();
    if (Date.now() - this.lastYield > 200) {
      await new Promise((res) => setImmediate(res));
      this.lastYield = Date.now();
    }
  }

  /** For work that reports its own progress: jump to `done` units (no yield). */
  advanceTo(done: number): void {
    this.done = done;
    this.onProgress?.(this.done, this.total);
    this.signal?.throwIfAborted();
  }
}

export function batchCount(n: number, batchSize: number): number {
  return Math.ceil(n / batchSize);
}

/** Builds the pixels and targets of rows [s, s + m) as tensors. */
function rowsInputs(ex: Examples, s: number, m: number): BatchInputs {
  const idx = new Int32Array(m);
  for (let r = 0; r < m; r++) idx[r] = s + r;
  const [H, W, C] = ex.shape;
  return {
    x: tf.tensor4d(gatherPixels(ex, idx), [m, H, W, C]),
    y: tf.tensor2d(gatherTargets(ex, idx), [m, ex.numClasses]),
  };
}

/** f over every row of `ex` in fixed-order batches: one value per row. */
export async function mapRows(ex: Examples, batchSize: number, work: Work, f: (x: tf.Tensor4D, y: tf.Tensor2D) => tf.Tensor1D): Promise<Float32Array> {
  const n = ex.ids.length;
  const out = new Float32Array(n);
  for (let s = 0; s < n; s += batchSize) {
    const m = Math.min(batchSize, n - s);
    const v = tf.tidy(() => {
      const { x, y } = rowsInputs(ex, s, m);
      return f(x, y);
    });
    out.set(v.dataSync(), s);
    v.dispose();
    await work.tick();
  }
  return out;
}

/** Like mapRows, for functions giving several values per row ([B, d]): a row-major [n, d] array. */
export async function mapRowsMatrix(ex: Examples, batchSize: number, work: Work, f: (x: tf.Tensor4D, y: tf.Tensor2D) => tf.Tensor2D): Promise<Float32Array> {
  const n = ex.ids.length;
  let out: Float32Array | undefined;
  for (let s = 0; s < n; s += batchSize) {
    const m = Math.min(batchSize, n - s);
    const v = tf.tidy(() => {
      const { x, y } = rowsInputs(ex, s, m);
      return f(x, y);
    });
    const d = v.shape[1];
    out ??= new Float32Array(n * d);
    out.set(v.dataSync(), s * d);
    v.dispose();
    await work.tick();
  }
  return out ?? new Float32Array(0);
}

/** ∇θ of the mean cross-entropy over all rows of `ex` (one tensor per parameter). */
export async function meanLossGradient(model: Model, params: readonly tf.Tensor[], ex: Examples, batchSize: number, work: Work): Promise<tf.Tensor[]> {
  const n = ex.ids.length;
  let acc: tf.Tensor[] = params.map((p) => tf.zerosLike(p));
  try {
    for (let s = 0; s < n; s += batchSize) {
      const m = Math.min(batchSize, n - s);
      const next = tf.tidy(() => {
        const { x, y } = rowsInputs(ex, s, m);
        const g = tf.grads((...p: tf.Tensor[]) => tf.sum(perExampleCrossEntropy(model.apply(p, x, { training: true }), y)) as tf.Scalar)(
          params as tf.Tensor[],
        );
        return acc.map((a, j) => tf.add(a, g[j]));
      });
      tf.dispose(acc);
      acc = next;
      await work.tick();
    }
    return tf.tidy(() => acc.map((a) => tf.div(a, n)));
  } finally {
    tf.dispose(acc);
  }
}

function checkFinite(trainer: Trainer, params: readonly tf.Tensor[], t: number): void {
  const total = tf.tidy(() => addAll(params.map((p) => tf.sum(p))).dataSync()[0]);
  if (!Number.isFinite(total)) throw new TrainingDivergedError(t - 1, trainer.lr(Math.max(0, t - 1)), 'the parameters are not finite');
}

export interface TrainHooks {
  /** Before step t, with the parameters θ_t the step starts from and its batch. */
  beforeStep?: (t: number, params: readonly tf.Tensor[], inputs: BatchInputs) => void;
  /** Called with θ_t after t steps, for each t in `at`. */
  at?: ReadonlySet<number>;
  reached?: (t: number, params: readonly tf.Tensor[]) => Promise<void>;
}

/**
 * Runs the first `stop` steps of `trainer`; returns θ_stop (the caller disposes it).
 * A run without hooks spreads its batch slices over threads when the trainer may
 * (the same θ either way).
 */
export async function trainTo(trainer: Trainer, stop: number, work: Work, hooks: TrainHooks = {}): Promise<tf.Tensor[]> {
  if (trainer.spread && trainer.config.slices > 1 && stop > 0 && !hooks.beforeStep && !hooks.at) {
    const { train, threads, backend } = trainer.spread;
    try {
      const r = await trainDataParallel(trainer.config, train, { threads, backend, stop, checkLoss: false, onStep: () => work.advanceTo(work.done + 1) });
      work.threads = r.threads;
      return r.params.map((p, i) => tf.tensor(p, r.shapes[i]));
    } catch (err) {
      // Both check the final parameters only; reported as the loop below reports it, whatever the thread count.
      if (err instanceof TrainingDivergedError) throw new TrainingDivergedError(stop - 1, trainer.lr(stop - 1), 'the parameters are not finite');
      throw err;
    }
  }
  const P = trainer.numParams;
  let state = trainer.initState();
  try {
    for (let t = 0; t < stop; t++) {
      const inputs = trainer.batchInputs(t);
      let next: tf.Tensor[];
      try {
        hooks.beforeStep?.(t, state.slice(0, P), inputs);
        next = tf.tidy(() => trainer.step(state, trainer.batchWeights(t), t, inputs));
      } finally {
        tf.dispose([inputs.x, inputs.y]);
      }
      tf.dispose(state);
      state = next;
      if (hooks.at?.has(t + 1)) {
        checkFinite(trainer, state.slice(0, P), t + 1);
        await hooks.reached?.(t + 1, state.slice(0, P));
      }
      await work.tick();
    }
    tf.dispose(state.slice(P));
    state = state.slice(0, P);
    checkFinite(trainer, state, stop);
    return state;
  } catch (err) {
    tf.dispose(state);
    throw err;
  }
}

/** Trains `stop` steps, hands θ to `use`, and always frees it. */
export async function withTrained<T>(trainer: Trainer, stop: number, work: Work, use: (params: tf.Tensor[]) => Promise<T>, hooks?: TrainHooks): Promise<T> {
  const params = await trainTo(trainer, stop, work, hooks);
  try {
    return await use(params);
  } finally {
    tf.dispose(params);
  }
}

/** Epochs trained before an "early" score (EL2N, GraNd): `epochsForScore`, by default 10% of the run, at least 1. */
export function earlySteps(trainer: Trainer, epochsForScore: number | undefined): { epochs: number; steps: number } {
  const total = trainer.config.epochs;
  const e = epochsForScore ?? Math.min(total, Math.max(1, Math.round(total / 10)));
  if (!(e >= 0 && e <= total)) throw new UsageError(`epochsForScore must be within 0…${total} (the training epochs), got ${e}`);
  return { epochs: e, steps: Math.round((e * trainer.steps) / total) };
}

export function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new UsageError(`${name} must be a positive integer, got ${v}`);
  return v;
}

/** The target set a target-aware scorer needs, checked against the training set. */
export function requireTarget(method: string, train: Examples, target: Examples | undefined): Examples {
  if (!target) {
    throw new UsageError(`${method} needs a target (validation) set`, { hint: 'Pass the target dataset (e.g. a held-out validation split) as `target`' });
  }
  if (target.ids.length === 0) throw new DataError('the target set is empty', { hint: 'Use a target set with at least one row' });
  if (target.shape.join('×') !== train.shape.join('×') || target.numClasses !== train.numClasses) {
    throw new DataError(
      `the target set has ${target.shape.join('×')} images and ${target.numClasses} classes; the training set ${train.shape.join('×')} and ${train.numClasses}`,
      { hint: 'Ingest the target set at the same working resolution and with the same label names' },
    );
  }
  if (!target.labels && !target.softLabels) throw new DataError('the target set has no labels', { hint: `${method} needs a labelled target set` });
  return target;
}
