/**
 * `dm`: distribution matching (Zhao & Bilen 2023; docs/methods/distillation.md).
 * Each step draws a freshly initialised ConvNet and, for every class, moves the
 * mean embedding (penultimate features) of the synthetic images towards that of
 * a batch of real images of the class:
 *   L = Σ_c ‖ mean φ(X_real,c) − mean φ(X_syn,c) ‖².
 * Single level and first order; SGD with momentum 0.5 on the pixels, as the
 * paper does. Labels stay one-hot. No differentiable augmentation (DSA), which
 * the paper uses and which is worth a few points.
 */
import * as tf from '@tensorflow/tfjs';
import { hashString, Rng } from '../../core/rng.js';
import { makeModel, type ModelSpec } from '../models.js';
import { makeOptimizer } from '../optim.js';
import {
  allFinite, clampPixels, DistillDivergedError, initialRows, loadTensor, oneHotRows, realBatch,
  sampleClassRows, saveTensor, type Distiller, type RealSet, type SavedState, type StepReport,
} from './common.js';

export interface DmSettings {
  ipc: number;
  seed: number;
  /** SGD learning rate of the pixels. */
  lr: number;
  /** Real images per class per step. */
  batchSize: number;
  /** The random embedding net. */
  net: ModelSpec;
}

const MOMENTUM = 0.5;

export function createDmDistiller(real: RealSet, s: DmSettings, saved?: SavedState): Distiller {
  const k = real.numClasses;
  const { rows, classes } = initialRows(real, s.ipc, s.seed);
  const model = makeModel(s.net, { inputShape: real.shape, numClasses: k });
  const opt = makeOptimizer({ kind: 'sgd', lr: s.lr, momentum: MOMENTUM });
  let xs: tf.Tensor = saved ? loadTensor(saved, 'xs') : realBatch(real, rows);
  let slots: tf.Tensor[] = saved ? [loadTensor(saved, 'slot0')] : opt.initSlots([xs]);
  // Synthetic rows are grouped by class (initialRows): class j is rows j·ipc .. (j+1)·ipc.
  const classMeans = (emb: tf.Tensor2D, per: number): tf.Tensor2D =>
    tf.mean(tf.reshape(emb, [k, per, emb.shape[1]!]), 1) as tf.Tensor2D;

  /** The objective for one net and one real batch per class; real means are constants. */
  const objectiveParts = (rng: Rng, netSeed: number) => {
    const params = model.init(netSeed);
    const idx = Int32Array.from(Array.from({ length: k }, (_, j) => Array.from(sampleClassRows(real, j, rng, s.batchSize))).flat());
    const per = idx.length / k;
    const realMeans = tf.tidy(() => classMeans(model.features(params, realBatch(real, idx)), per));
    const objective = (x: tf.Tensor): tf.Scalar =>
      tf.sum(tf.square(tf.sub(realMeans, classMeans(model.features(params, x), s.ipc)))) as tf.Scalar;
    return { objective, dispose: () => tf.dispose([realMeans, ...params]) };
  };

  return {
    step(t: number): StepReport {
      const parts = objectiveParts(Rng.derive(s.seed, `dm/batch/${t}`), hashString(`${s.seed}/dm/net/${t}`));
      try {
        const { value, grads } = tf.valueAndGrads((x: tf.Tensor) => parts.objective(x))([xs]);
        const loss = value.dataSync()[0];
        if (!Number.isFinite(loss) || !allFinite(grads)) {
          tf.dispose([value, ...grads]);
          throw new DistillDivergedError(t, `the loss or its gradient is not finite (loss ${loss})`);
        }
        const next = tf.tidy(() => opt.update([xs], grads, slots, s.lr, t));
        tf.dispose([value, ...grads, ...slots, xs]);
        xs = clampPixels(real, next.params[0] as tf.Tensor4D);
        tf.dispose(next.params[0]);
        slots = next.slots;
        return { loss };
      } finally {
        parts.dispose();
      }
    },

    save: (): SavedState => ({ scalars: {}, tensors: { xs: saveTensor(xs), slot0: saveTensor(slots[0]) } }),

    result: () => ({ x: Float32Array.from(xs.dataSync() as Float32Array), softLabels: oneHotRows(classes, k), classes }),

    evalLoss(seed: number): number {
      const parts = objectiveParts(Rng.derive(seed, 'dm/eval-batch'), hashString(`${seed}/dm/eval-net`));
      try {
        return tf.tidy(() => parts.objective(xs).dataSync()[0]);
      } finally {
        parts.dispose();
      }
    },

    dispose: () => tf.dispose([xs, ...slots]),
  };
}
