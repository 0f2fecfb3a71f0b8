/**
 * Regress mode: the instance logit regresses (MSE) onto rank-normalised scores
 * from a score sidecar, so a rater can carry an expensive score (e.g. metagrad)
 * to data it was never computed on. A seeded holdout measures how well it does.
 */
import * as tf from '@tensorflow/tfjs';
import { averageRanks, spearman } from '../../core/metrics.js';
import { DataError, UsageError } from '../../core/errors.js';
import { Rng } from '../../core/rng.js';
import { batchSchedule, type Examples } from '../../data/batch.js';
import { makeOptimizer } from '../optim.js';
import { batchTensors, checkFiniteParams, throttled, toWeights, type ParsedSettings, type RaterTrainOutput } from './common.js';
import type { Rater } from './model.js';
import { rateExamples } from './rate.js';

/** The regression target of each row: 4·(p − ½) for its percentile p = (rank − ½)/n, ties averaged. */
export function rankTargets(scores: ArrayLike<number>): Float32Array {
  const ranks = averageRanks(scores);
  const n = scores.length;
  return Float32Array.from(ranks, (r) => 4 * ((r - 0.5) / n - 0.5));
}

/** Trains `rater`'s instance logit onto `scores` (one per row of `train`, higher = more valuable). */
export async function trainRegress(
  rater: Rater,
  train: Examples,
  scores: Float32Array,
  s: ParsedSettings,
  onProgress?: (done: number, total: number) => void,
): Promise<RaterTrainOutput> {
  const n = train.ids.length;
  if (scores.length !== n) throw new UsageError(`${scores.length} scores for ${n} training rows`);
  const bad = scores.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new DataError(`the score of row ${bad} (id ${train.ids[bad]}) is ${scores[bad]}`, { row: bad, hint: 'Rescore the data; ratings cannot learn from NaN scores' });
  const targets = rankTargets(scores);
  // Held-out rows: a seeded sample, never trained on.
  const perm = Rng.derive(s.seed, 'holdout').permutation(n);
  const nHeld = Math.min(n - 1, Math.floor(s.holdout * n));
  const held = Int32Array.from(perm.subarray(0, nHeld)).sort();
  const fit = Int32Array.from(perm.subarray(nHeld)).sort();
  const conditioned = rater.arch.labelConditioned;
  const opt = makeOptimizer({ kind: 'adamw', lr: s.lr, weightDecay: s.weightDecay });
  const batches = batchSchedule(fit.length, s.batchSize, s.epochs, s.seed);
  const stepsPerEpoch = Math.ceil(fit.length / s.batchSize);
  const progress = throttled(batches.length, onProgress);
  // Only the parameters the ratings depend on are trained; the group head keeps its initial values.
  const all = rater.init(s.seed);
  const ni = rater.numInstanceParams;
  const group = all.slice(ni);
  let phi = all.slice(0, ni);
  let slots = opt.initSlots(phi);
  const epochLosses: number[] = [];
  let acc = 0;
  let accSteps = 0;
  try {
    for (let t = 0; t < batches.length; t++) {
      const rows = Int32Array.from(batches[t], (j) => fit[j]);
      const out = tf.tidy(() => {
        const { x, y } = batchTensors(train, rows, conditioned);
        const want = tf.tensor1d(Float32Array.from(rows, (r) => targets[r]));
        const { value, grads } = tf.valueAndGrads((...p: tf.Tensor[]) =>
          tf.mean(tf.square(tf.sub(rater.rate([...p, ...group], x, y), want))) as tf.Scalar)(phi);
        return { next: opt.update(phi, grads, slots, s.lr, t), loss: value.dataSync()[0] };
      });
      tf.dispose([...phi, ...slots]);
      phi = out.next.params;
      slots = out.next.slots;
      if (!Number.isFinite(out.loss)) {
        throw new DataError(`rater training diverged at step ${t} (loss ${out.loss})`, { hint: 'Lower the learning rate (--lr)' });
      }
      acc += out.loss;
      accSteps++;
      if ((t + 1) % stepsPerEpoch === 0 || t === batches.length - 1) {
        epochLosses.push(acc / accSteps);
        acc = 0;
        accSteps = 0;
      }
      await progress(t + 1);
    }
    phi = [...phi, ...group];
    checkFiniteParams(phi, 'the rater', batches.length);
    let heldOutSpearman: number | undefined;
    if (held.length >= 2) {
      const r = rateExamples(rater, phi, train, held);
      heldOutSpearman = spearman(r, Float32Array.from(held, (i) => scores[i]));
    }
    return {
      arch: rater.arch,
      weights: toWeights(rater, phi),
      details: { mode: 'regress', steps: batches.length, trainRows: fit.length, heldOutRows: held.length, heldOutSpearman, epochLosses },
    };
  } finally {
    tf.dispose([...new Set([...phi, ...group, ...slots])]);
  }
}
