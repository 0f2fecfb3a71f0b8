/**
 * EL2N (Paul et al. 2021): ‖softmax(f(x)) − y‖₂ a few epochs into training,
 * averaged over several initialisations. Low score = hard or mislabelled; the
 * paper's "keep the hardest" is bottom-k of this score.
 */
import * as tf from '@tensorflow/tfjs';
import { EVAL_BATCH_SIZE } from '../evaluate.js';
import { softmax } from '../ops.js';
import { BASELINE_TRAIN_DEFAULTS, batchCount, earlySteps, mapRows, withTrained } from './common.js';
import type { Scorer } from './types.js';

/** EL2N per row: ‖softmax(logits) − targets‖₂, targets one-hot or soft [B, K]. */
export function el2n(logits: tf.Tensor2D, targets: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => tf.sqrt(tf.sum(tf.square(tf.sub(softmax(logits), targets)), 1)) as tf.Tensor1D);
}

export const el2nScorer: Scorer = {
  name: 'el2n',
  description: 'minus the EL2N norm ‖softmax − one-hot‖ early in training',
  needsTarget: false,
  defaultSeeds: 4,
  orientation: -1,
  trainDefaults: BASELINE_TRAIN_DEFAULTS,
  work: ({ trainer, train, settings }) => earlySteps(trainer, settings.epochsForScore).steps + batchCount(train.ids.length, EVAL_BATCH_SIZE),
  async score({ trainer, train, settings, work }) {
    const { epochs, steps } = earlySteps(trainer, settings.epochsForScore);
    const raw = await withTrained(trainer, steps, work, (params) =>
      mapRows(train, EVAL_BATCH_SIZE, work, (x, y) => el2n(trainer.model.apply(params, x), y)));
    return { raw, details: { epochsForScore: epochs, stepsTrained: steps, totalSteps: trainer.steps } };
  },
};
