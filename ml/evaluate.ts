/**
 * Predictions, accuracy and loss of trained parameters on a dataset, in fixed-order
 * batches (deterministic; batch norm sees whole batches, see ml/models.ts).
 */
import * as tf from '@tensorflow/tfjs';
import { DataError } from '../core/errors.js';
import { gatherPixels, gatherTargets, type Examples } from '../data/batch.js';
import type { Model } from './models.js';
import { perExampleCrossEntropy } from './ops.js';

/** Default evaluation batch: large, so batch statistics are stable. */
export const EVAL_BATCH_SIZE = 500;

function rangeIdx(start: number, end: number): Int32Array {
  const idx = new Int32Array(end - start);
  for (let i = 0; i < idx.length; i++) idx[i] = start + i;
  return idx;
}

function checkCompatible(model: Model, ex: Examples): void {
  const [h, w, c] = model.io.inputShape;
  const [eh, ew, ec] = ex.shape;
  if (h !== eh || w !== ew || c !== ec) {
    throw new DataError(`images are ${eh}×${ew}×${ec} but the model takes ${h}×${w}×${c}`);
  }
}

/** Logits for every row, n × numClasses, row-major. */
export function predict(model: Model, params: readonly tf.Tensor[], ex: Examples, batchSize = EVAL_BATCH_SIZE): Float32Array {
  checkCompatible(model, ex);
  const n = ex.ids.length;
  const k = model.io.numClasses;
  const out = new Float32Array(n * k);
  const [H, W, C] = ex.shape;
  for (let s = 0; s < n; s += batchSize) {
    const idx = rangeIdx(s, Math.min(n, s + batchSize));
    const logits = tf.tidy(() => model.apply(params, tf.tensor4d(gatherPixels(ex, idx), [idx.length, H, W, C]), { training: false }));
    out.set(logits.dataSync(), s * k);
    logits.dispose();
  }
  return out;
}

/** The class index per row: the label, or the argmax of the soft label. */
export function hardLabels(ex: Examples): Int32Array {
  if (ex.labels) return ex.labels;
  if (!ex.softLabels) throw new DataError('the dataset has no labels', { hint: 'Evaluation needs a label (or soft_label) column' });
  const n = ex.ids.length;
  const k = ex.numClasses;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = argmax(ex.softLabels, i * k, k);
  return out;
}

function argmax(v: ArrayLike<number>, offset: number, k: number): number {
  let best = 0;
  for (let j = 1; j < k; j++) if (v[offset + j] > v[offset + best]) best = j;
  return best;
}

export interface EvalResult {
  /** Fraction of rows whose argmax logit is the (hard) label. */
  accuracy: number;
  /** Mean cross-entropy against the one-hot (or soft) targets. */
  loss: number;
  n: number;
  /** Row counts by (hard) label and prediction, k × k row-major: confusion[label * k + predicted]. */
  confusion: Int32Array;
}

/** Accuracy, mean cross-entropy and the confusion matrix of `params` on `ex`. */
export function evaluateModel(model: Model, params: readonly tf.Tensor[], ex: Examples, batchSize = EVAL_BATCH_SIZE): EvalResult {
  checkCompatible(model, ex);
  const n = ex.ids.length;
  if (n === 0) throw new DataError('the evaluation set is empty');
  if (ex.numClasses !== model.io.numClasses) {
    throw new DataError(`the evaluation set has ${ex.numClasses} classes but the model predicts ${model.io.numClasses}`);
  }
  const labels = hardLabels(ex);
  const k = model.io.numClasses;
  const [H, W, C] = ex.shape;
  let correct = 0;
  let lossSum = 0;
  const confusion = new Int32Array(k * k);
  for (let s = 0; s < n; s += batchSize) {
    const idx = rangeIdx(s, Math.min(n, s + batchSize));
    const [logits, losses] = tf.tidy(() => {
      const z = model.apply(params, tf.tensor4d(gatherPixels(ex, idx), [idx.length, H, W, C]), { training: false });
      return [z, perExampleCrossEntropy(z, tf.tensor2d(gatherTargets(ex, idx), [idx.length, k]))];
    });
    const z = logits.dataSync();
    const l = losses.dataSync();
    tf.dispose([logits, losses]);
    for (let r = 0; r < idx.length; r++) {
      const predicted = argmax(z, r * k, k);
      if (predicted === labels[s + r]) correct++;
      confusion[labels[s + r] * k + predicted]++;
      lossSum += l[r];
    }
  }
  return { accuracy: correct / n, loss: lossSum / n, n, confusion };
}

/** Fraction of rows classified correctly. */
export function accuracy(model: Model, params: readonly tf.Tensor[], ex: Examples, batchSize = EVAL_BATCH_SIZE): number {
  return evaluateModel(model, params, ex, batchSize).accuracy;
}
