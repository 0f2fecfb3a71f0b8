/**
 * AUM, area under the margin (Pleiss et al. 2020): each time a row is in a
 * batch, its margin is the logit of its given class minus the largest other
 * logit, at the parameters the step starts from; AUM is the mean over the run.
 * A mislabelled row is pulled towards its true class every step and keeps a
 * negative margin; a hard but correct one climbs. Higher = keep.
 */
import * as tf from '@tensorflow/tfjs';
import { hardLabels } from '../evaluate.js';
import { BASELINE_TRAIN_DEFAULTS, withTrained } from './common.js';
import type { Scorer } from './types.js';

/** Margins of a batch: logit of the given class minus the largest other, one per row. */
export function margins(logits: Float32Array, k: number, labels: ArrayLike<number>, rows: ArrayLike<number>): Float32Array {
  const out = new Float32Array(rows.length);
  for (let r = 0; r < rows.length; r++) {
    const y = labels[rows[r]];
    let other = -Infinity;
    for (let j = 0; j < k; j++) if (j !== y && logits[r * k + j] > other) other = logits[r * k + j];
    out[r] = logits[r * k + y] - other;
  }
  return out;
}

export const aumScorer: Scorer = {
  name: 'aum',
  description: 'area under the margin: the given class\'s logit minus the largest other, averaged over training',
  needsTarget: false,
  defaultSeeds: 1,
  orientation: 1,
  trainDefaults: BASELINE_TRAIN_DEFAULTS,
  work: ({ trainer }) => trainer.steps,
  async score({ trainer, train, work }) {
    const labels = hardLabels(train);
    const k = train.numClasses;
    const sum = new Float64Array(train.ids.length);
    const seen = new Int32Array(train.ids.length);
    await withTrained(trainer, trainer.steps, work, async () => undefined, {
      beforeStep: (t, p, inputs) => {
        const rows = trainer.batches[t];
        const z = tf.tidy(() => trainer.model.apply(p, inputs.x, { training: true }));
        const m = margins(z.dataSync() as Float32Array, k, labels, rows);
        z.dispose();
        for (let r = 0; r < rows.length; r++) {
          sum[rows[r]] += m[r];
          seen[rows[r]]++;
        }
      },
    });
    // A row never in a batch (dropLast) has no margin: 0, undecided.
    const raw = Float32Array.from(sum, (s, i) => (seen[i] ? s / seen[i] : 0));
    return { raw, details: { stepsTrained: trainer.steps, totalSteps: trainer.steps } };
  },
};
