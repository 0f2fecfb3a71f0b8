/**
 * Confident learning (Northcutt et al. 2021), the label-issue finder:
 * out-of-sample predicted probabilities from k-fold training (each row is
 * predicted by a model that never saw it) and a per-class threshold t_j = the
 * mean probability of class j over the rows labelled j. The confident joint
 * counts, per given class, the rows whose most probable class among those they
 * clear the threshold of is another one: that many rows of the class are
 * flagged, the ones with the lowest margins (cleanlab's "prune by noise rate",
 * which finds more of the wrong labels than flagging the counted rows
 * themselves). The count follows from the data; no noise rate is assumed.
 *
 * Score: the normalised margin p_given − max_{j≠given} p_j (higher = keep).
 * Extra columns: `issue` (1 = flagged) and `suggested` (the most probable class).
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../../core/rng.js';
import { subsetExamples } from '../../data/batch.js';
import { EVAL_BATCH_SIZE, hardLabels, predict } from '../evaluate.js';
import { softmax } from '../ops.js';
import { createTrainer } from '../train.js';
import { BASELINE_TRAIN_DEFAULTS, batchCount, trainTo } from './common.js';
import type { Scorer } from './types.js';

export const DEFAULT_FOLDS = 5;

/** Row indices of each fold: a seeded permutation cut into near-equal parts. */
export function foldsOf(n: number, folds: number, seed: number): Int32Array[] {
  const perm = Rng.derive(seed, 'confident-folds').permutation(n);
  return Array.from({ length: folds }, (_, f) => Int32Array.from(perm.subarray(Math.round((f * n) / folds), Math.round(((f + 1) * n) / folds))).sort());
}

export interface LabelIssues {
  /** 1 where the row is flagged. */
  issue: Float32Array;
  /** The most probable class of each row. */
  suggested: Float32Array;
  /** p_given − max_{j≠given} p_j. */
  margin: Float32Array;
  thresholds: number[];
}

/** The confident-learning rule over out-of-sample probabilities (rows × k, row-major). */
export function findLabelIssues(probs: Float32Array, labels: ArrayLike<number>, k: number): LabelIssues {
  const n = labels.length;
  const sum = new Float64Array(k);
  const count = new Float64Array(k);
  for (let i = 0; i < n; i++) {
    sum[labels[i]] += probs[i * k + labels[i]];
    count[labels[i]]++;
  }
  const thresholds = Array.from(sum, (s, j) => (count[j] > 0 ? s / count[j] : 1));
  const issue = new Float32Array(n);
  const suggested = new Float32Array(n);
  const margin = new Float32Array(n);
  const offDiagonal = new Array<number>(k).fill(0);
  const byClass: number[][] = Array.from({ length: k }, () => []);
  for (let i = 0; i < n; i++) {
    const p = probs.subarray(i * k, (i + 1) * k);
    const y = labels[i];
    let best = 0;
    let confident = -1;
    let other = -Infinity;
    for (let j = 0; j < k; j++) {
      if (p[j] > p[best]) best = j;
      if (p[j] >= thresholds[j] && (confident < 0 || p[j] > p[confident])) confident = j;
      if (j !== y && p[j] > other) other = p[j];
    }
    suggested[i] = best;
    if (confident >= 0 && confident !== y) offDiagonal[y]++;
    margin[i] = p[y] - other;
    byClass[y].push(i);
  }
  // Per class, flag as many rows as the confident joint counts off its diagonal: the lowest margins (ties by row).
  byClass.forEach((rows, c) => {
    rows.sort((a, b) => margin[a] - margin[b] || a - b);
    for (const i of rows.slice(0, offDiagonal[c])) issue[i] = 1;
  });
  return { issue, suggested, margin, thresholds };
}

export const confidentScorer: Scorer = {
  name: 'confident',
  description: 'confident learning: out-of-sample (k-fold) probabilities, per-class thresholds; flags label issues',
  needsTarget: false,
  defaultSeeds: 1,
  orientation: 1,
  trainDefaults: { ...BASELINE_TRAIN_DEFAULTS, epochs: 3 },
  work({ trainer, train, settings }) {
    const folds = settings.folds ?? DEFAULT_FOLDS;
    const n = train.ids.length;
    const perFold = trainer.config.epochs * batchCount(n - Math.round(n / folds), trainer.config.batchSize);
    return folds * (perFold + 1);
  },
  async score({ trainer, train, settings, work }) {
    const folds = foldsOf(train.ids.length, settings.folds ?? DEFAULT_FOLDS, trainer.config.seed);
    const labels = hardLabels(train);
    const k = train.numClasses;
    const probs = new Float32Array(train.ids.length * k);
    for (const [f, held] of folds.entries()) {
      const isHeld = new Uint8Array(train.ids.length);
      for (const i of held) isHeld[i] = 1;
      const rest = Int32Array.from(labels.keys()).filter((i) => !isHeld[i]);
      const foldTrainer = createTrainer({ ...trainer.config, seed: trainer.config.seed + 1000 * (f + 1) }, subsetExamples(train, rest));
      const params = await trainTo(foldTrainer, foldTrainer.steps, work);
      try {
        const logits = predict(trainer.model, params, subsetExamples(train, held), EVAL_BATCH_SIZE);
        const p = tf.tidy(() => softmax(tf.tensor2d(logits, [held.length, k])).dataSync() as Float32Array);
        held.forEach((i, r) => probs.set(p.subarray(r * k, (r + 1) * k), i * k));
      } finally {
        tf.dispose(params);
      }
      await work.tick();
    }
    const found = findLabelIssues(probs, labels, k);
    const flagged = found.issue.reduce((a, v) => a + v, 0);
    return {
      raw: found.margin,
      details: { folds: folds.length, flagged, thresholds: found.thresholds },
      columns: { issue: { values: found.issue, combine: 'mean' }, suggested: { values: found.suggested, combine: 'mode' } },
    };
  },
};
