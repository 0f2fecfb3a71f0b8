/** loss: each row's cross-entropy under the model trained for the whole run. Low score = hard or mislabelled. */
import { EVAL_BATCH_SIZE } from '../evaluate.js';
import { perExampleCrossEntropy } from '../ops.js';
import { BASELINE_TRAIN_DEFAULTS, batchCount, mapRows, withTrained } from './common.js';
import type { Scorer } from './types.js';

export const lossScorer: Scorer = {
  name: 'loss',
  description: 'minus the cross-entropy of each row under the trained model',
  needsTarget: false,
  defaultSeeds: 1,
  orientation: -1,
  trainDefaults: BASELINE_TRAIN_DEFAULTS,
  work: ({ trainer, train }) => trainer.steps + batchCount(train.ids.length, EVAL_BATCH_SIZE),
  async score({ trainer, train, work }) {
    const model = trainer.model;
    const raw = await withTrained(trainer, trainer.steps, work, (params) =>
      mapRows(train, EVAL_BATCH_SIZE, work, (x, y) => perExampleCrossEntropy(model.apply(params, x), y)));
    return { raw, details: { stepsTrained: trainer.steps, totalSteps: trainer.steps } };
  },
};
