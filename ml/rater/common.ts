/**
 * What both training modes share: the settings schema, the trained output, the
 * architecture a training set implies (input normalisation from its pixels) and
 * small helpers for batches, weights, divergence checks and progress.
 */
import * as tf from '@tensorflow/tfjs';
import { addAll } from '../ops.js';
import { z } from 'zod';
import { DataError } from '../../core/errors.js';
import { gatherPixels, gatherTargets, type Examples } from '../../data/batch.js';
import { channelSums } from '../../data/pixel-rows.js';
import { modelSpecSchema } from '../models.js';
import { optimizerSpecSchema } from '../optim.js';
import { BODY_DEFAULTS, HEAD_HIDDEN, PROXY_DEFAULTS, type Rater, type RaterArch } from './model.js';

export const RATER_MODES = ['meta', 'regress'] as const;
export type RaterMode = (typeof RATER_MODES)[number];

const positiveInt = z.number().int().positive();

export const raterTrainSchema = z.object({
  mode: z.enum(RATER_MODES).default('meta'),
  /** The body's model spec (input normalisation is computed from the training data). */
  body: modelSpecSchema.prefault(BODY_DEFAULTS.mlp),
  featureDim: positiveInt.default(32),
  /** Condition on labels (default: when the training data has them). */
  labelConditioned: z.boolean().optional(),
  epochs: positiveInt.default(10),
  batchSize: positiveInt.default(128),
  /** The rater's AdamW learning rate and decoupled weight decay. */
  lr: z.number().positive().default(1e-3),
  weightDecay: z.number().min(0).default(0.01),
  seed: z.number().int().min(0).default(0),
  /** meta: the proxy model, its optimizer, plain warm-up steps before meta-training. */
  proxy: modelSpecSchema.prefault(PROXY_DEFAULTS.mlp),
  proxyOptimizer: optimizerSpecSchema.prefault({ kind: 'sgd', lr: 0.05, momentum: 0.9 }),
  warmupSteps: z.number().int().min(0).default(50),
  /** meta: weight of the target loss in the proxy's loss at the start, decaying linearly to 0 over `valMixSteps`. */
  valMix: z.number().min(0).max(1).default(0.5),
  /** meta: steps over which the target-loss mix decays (default: one epoch). */
  valMixSteps: z.number().int().min(0).optional(),
  /** meta: ρ, the weight of mean z² in the rater's loss (docs/methods/rater.md: it keeps z out of saturation). */
  logitPenalty: z.number().min(0).default(0.1),
  /** meta: target rows per rater step. */
  targetBatchSize: positiveInt.default(256),
  /** regress: fraction of rows held out of training to measure the rank correlation. */
  holdout: z.number().min(0).lt(1).default(0.1),
}).strict();

export type RaterTrainSettings = z.input<typeof raterTrainSchema>;
export type ParsedSettings = z.output<typeof raterTrainSchema>;

export interface NamedWeights {
  name: string;
  shape: number[];
  values: Float32Array;
}

export interface RaterTrainOutput {
  arch: RaterArch;
  weights: NamedWeights[];
  /** Mode-specific numbers: losses per epoch, held-out correlation, ... */
  details: Record<string, unknown>;
}

/** Per-channel mean and std of the pixels in [0, 1] (std 1 for a constant channel). */
export function pixelStats(ex: Pick<Examples, 'pixels' | 'shape'>): { mean: number[]; std: number[] } {
  const ch = ex.shape[2];
  const { sum, sq, count } = channelSums(ex.pixels, ex.shape);
  const mean: number[] = [];
  const std: number[] = [];
  for (let c = 0; c < ch; c++) {
    const m = count > 0 ? sum[c] / count : 0;
    const sd = count > 0 ? Math.sqrt(Math.max(0, sq[c] / count - m * m)) : 0;
    mean.push(Math.fround(m));
    std.push(sd > 1e-6 ? Math.fround(sd) : 1);
  }
  return { mean, std };
}

/** The architecture the settings ask for on `train`: its shape and classes, its pixel statistics as the input normalisation. */
export function archFor(train: Examples, s: ParsedSettings): RaterArch {
  const hasLabels = Boolean(train.labels || train.softLabels);
  const labelConditioned = s.labelConditioned ?? (hasLabels && train.numClasses >= 2);
  if (labelConditioned && !hasLabels) {
    throw new DataError('a label-conditioned rater needs a labelled training set', { hint: 'Ingest with labels, or train an unconditioned rater (--no-labels)' });
  }
  const body = modelSpecSchema.parse({ ...s.body, inputNorm: pixelStats(train) });
  return {
    inputShape: train.shape,
    numClasses: train.numClasses,
    classNames: train.classNames,
    labelConditioned,
    body,
    featureDim: s.featureDim,
    instanceHidden: HEAD_HIDDEN,
    groupHidden: HEAD_HIDDEN,
  };
}

/** Batch inputs: pixels and (for conditioned raters or the proxy) targets. */
export function batchTensors(ex: Examples, idx: ArrayLike<number>, withTargets: boolean): { x: tf.Tensor4D; y?: tf.Tensor2D } {
  const x = tf.tensor4d(gatherPixels(ex, idx), [idx.length, ...ex.shape]);
  return withTargets ? { x, y: tf.tensor2d(gatherTargets(ex, idx), [idx.length, ex.numClasses]) } : { x };
}

/** The trained parameters as named plain arrays (what the worker sends back and the files hold). */
export function toWeights(rater: Rater, params: readonly tf.Tensor[]): NamedWeights[] {
  return params.map((p, i) => ({ name: rater.paramShapes[i].name, shape: p.shape, values: (p.dataSync() as Float32Array).slice() }));
}

export function checkFiniteParams(params: readonly tf.Tensor[], what: string, step: number): void {
  const total = tf.tidy(() => addAll(params.map((p) => tf.sum(p))).dataSync()[0]);
  if (!Number.isFinite(total)) {
    throw new DataError(`${what} diverged at step ${step}: its parameters are not finite`, { hint: 'Lower the learning rate (--lr, or the proxy\'s)' });
  }
}

/** Reports progress at most every 500 ms, and always at the end. */
export function throttled(total: number, onProgress?: (done: number, total: number) => void): (done: number) => Promise<void> {
  let last = 0;
  return async (done) => {
    const now = performance.now();
    if (now - last > 500 || done === total) {
      last = now;
      onProgress?.(done, total);
      // Let messages and timers through during long runs.
      await new Promise((r) => setImmediate(r));
    }
  };
}
