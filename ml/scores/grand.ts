/**
 * GraNd (Paul et al. 2021): ‖∇θ ℓ(x, y)‖₂ early in training, from the vectorised
 * per-example gradient norms of pergrad.ts. Low score = hard or mislabelled.
 */
import { BASELINE_TRAIN_DEFAULTS, batchCount, earlySteps, mapRows, positiveInt, withTrained } from './common.js';
import { perExampleGradNorms } from './pergrad.js';
import type { Scorer } from './types.js';

export const grandScorer: Scorer = {
  name: 'grand',
  description: 'minus the per-example gradient norm early in training',
  needsTarget: false,
  defaultSeeds: 4,
  orientation: -1,
  trainDefaults: BASELINE_TRAIN_DEFAULTS,
  work: ({ trainer, train, settings }) =>
    earlySteps(trainer, settings.epochsForScore).steps + batchCount(train.ids.length, settings.scoreBatchSize ?? trainer.config.batchSize),
  async score({ trainer, train, settings, work }) {
    const { epochs, steps } = earlySteps(trainer, settings.epochsForScore);
    const bs = positiveInt('scoreBatchSize', settings.scoreBatchSize ?? trainer.config.batchSize);
    const raw = await withTrained(trainer, steps, work, (params) =>
      mapRows(train, bs, work, (x, y) => perExampleGradNorms(trainer.model, params, x, y)));
    return { raw, details: { epochsForScore: epochs, stepsTrained: steps, totalSteps: trainer.steps } };
  },
};
