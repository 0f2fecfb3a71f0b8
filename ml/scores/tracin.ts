/**
 * TracIn (Pruthi et al. 2020, the checkpoint form): Σ over checkpoints of
 * lr_c · ⟨∇ℓ_target(θ_c), ∇ℓ(x, y; θ_c)⟩, with plain loss gradients whatever the
 * optimizer (as TracInCP does). Positive = its gradient step lowers the target
 * loss, so the raw value is already "higher = keep".
 */
import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../../core/errors.js';
import type { Trainer } from '../train.js';
import { BASELINE_TRAIN_DEFAULTS, batchCount, mapRows, meanLossGradient, positiveInt, requireTarget, withTrained } from './common.js';
import { perExampleGradDots } from './pergrad.js';
import type { Scorer, ScorerSettings } from './types.js';

/** The checkpoints (steps) and each one's learning-rate weight: the mean lr since the previous one. */
function checkpointsOf(trainer: Trainer, settings: ScorerSettings): { steps: number[]; lrs: number[] } {
  const T = trainer.steps;
  const perEpoch = T / trainer.config.epochs;
  const steps = settings.checkpoints ? [...settings.checkpoints] : Array.from({ length: trainer.config.epochs }, (_, e) => Math.round((e + 1) * perEpoch));
  steps.forEach((c, j) => {
    if (!Number.isInteger(c) || c < 1 || c > T || (j > 0 && c <= steps[j - 1])) {
      throw new UsageError(`checkpoints must be increasing step counts within 1…${T}, got [${steps.join(', ')}]`);
    }
  });
  if (steps.length === 0) throw new UsageError('tracin needs at least one checkpoint');
  const lrs = steps.map((c, j) => {
    const from = j === 0 ? 0 : steps[j - 1];
    let sum = 0;
    for (let t = from; t < c; t++) sum += trainer.lr(t);
    return sum / (c - from);
  });
  return { steps, lrs };
}

export const tracinScorer: Scorer = {
  name: 'tracin',
  description: 'Σ over checkpoints of lr ⟨∇ target loss, ∇ loss of the row⟩',
  needsTarget: true,
  defaultSeeds: 1,
  orientation: 1,
  trainDefaults: BASELINE_TRAIN_DEFAULTS,
  work({ trainer, train, target, settings }) {
    const target_ = requireTarget('tracin', train, target);
    const { steps } = checkpointsOf(trainer, settings);
    const bs = settings.scoreBatchSize ?? trainer.config.batchSize;
    return steps[steps.length - 1] + steps.length * (batchCount(target_.ids.length, bs) + batchCount(train.ids.length, bs));
  },
  async score({ trainer, train, target, settings, work }) {
    const tgt = requireTarget('tracin', train, target);
    const { steps, lrs } = checkpointsOf(trainer, settings);
    const bs = positiveInt('scoreBatchSize', settings.scoreBatchSize ?? trainer.config.batchSize);
    const model = trainer.model;
    const raw = new Float32Array(train.ids.length);
    await withTrained(trainer, steps[steps.length - 1], work, async () => undefined, {
      at: new Set(steps),
      reached: async (t, p) => {
        const lr = lrs[steps.indexOf(t)];
        const g = await meanLossGradient(model, p, tgt, bs, work);
        try {
          const dots = await mapRows(train, bs, work, (x, y) => perExampleGradDots(model, p, x, y, g));
          for (let i = 0; i < raw.length; i++) raw[i] += Math.fround(dots[i] * lr);
        } finally {
          tf.dispose(g);
        }
      },
    });
    return { raw, details: { stepsTrained: steps[steps.length - 1], totalSteps: trainer.steps, checkpoints: steps, checkpointLrs: lrs } };
  },
};
