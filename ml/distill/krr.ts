/**
 * `krr`: KIP with RFAD's random-feature kernel (docs/methods/distillation.md).
 * The synthetic images X_s and labels Y_s are the support set of a kernel ridge
 * regression; each step predicts a real batch with it,
 *   ŷ_t = K(X_t, X_s) (K(X_s, X_s) + λ̃I)⁻¹ Y_s,   K = ΦΦᵀ,
 * where Φ are the penultimate features of a few freshly initialised ConvNets, and
 * takes an Adam step on X_s and Y_s against the loss of ŷ_t: cross-entropy of
 * ŷ_t·τ with a learned temperature τ (RFAD's Platt scaling), or MSE against the
 * centred one-hot targets. One linear solve per step, no unrolling; new random
 * nets every `renewEvery` steps.
 *
 * Labels start at one-hot − 1/K (regression targets). The soft_label written is
 * softmax(τ·Y_s) for cross-entropy (the same map the loss applies to
 * predictions), and max(Y_s + 1/K, 0) renormalised for MSE.
 */
import * as tf from '@tensorflow/tfjs';
import { hashString, Rng } from '../../core/rng.js';
import { disposeNets, krrPredict, randomFeatureNets, randomFeatures, type FeatureNet } from '../krr.js';
import type { ModelSpec } from '../models.js';
import { makeOptimizer } from '../optim.js';
import { mse, softmaxCrossEntropy } from '../ops.js';
import {
  allFinite, clampPixels, DistillDivergedError, initialRows, loadTensor, oneHotRows, oneHotTargets,
  realBatch, sampleRows, saveTensor, softmaxRows, type Distiller, type RealSet, type SavedState, type StepReport,
} from './common.js';
import type { FeatureFeed } from './feature-feed.js';

export interface KrrSettings {
  ipc: number;
  seed: number;
  /** Adam learning rate of the images and labels. */
  lr: number;
  /** Real images per step. */
  batchSize: number;
  /** The random nets' architecture. */
  net: ModelSpec;
  /** Random nets per kernel. */
  nets: number;
  /** Steps between fresh random nets. */
  renewEvery: number;
  /** Ridge, relative to the mean diagonal of K(X_s, X_s). */
  ridge: number;
  learnLabels: boolean;
  loss: 'ce' | 'mse';
}

const TEMP_LR = 0.03;

/** The nets of step t (new ones every `renewEvery` steps, from the seed): one home for krr and the feed. */
export function krrNetsSeed(s: KrrSettings, t: number): { epoch: number; seed: number } {
  const epoch = Math.floor(t / s.renewEvery);
  return { epoch, seed: hashString(`${s.seed}/krr/nets/${epoch}`) };
}

/** The real rows of step t's batch. */
export function krrBatchRows(real: RealSet, s: KrrSettings, t: number): Int32Array {
  return sampleRows(real, Rng.derive(s.seed, `krr/batch/${t}`), s.batchSize);
}

/** Step t's real-batch features Φ(X_t) with `nets` (the caller disposes them). */
export function krrRealFeatures(real: RealSet, s: KrrSettings, t: number, nets: readonly FeatureNet[]): tf.Tensor2D {
  return tf.tidy(() => randomFeatures(nets, realBatch(real, krrBatchRows(real, s, t))));
}

/**
 * A krr distiller; with `feed`, step t's real-batch features come from a worker
 * thread (ml/distill/feature-feed.ts), the same values as computed here.
 */
export function createKrrDistiller(real: RealSet, s: KrrSettings, saved?: SavedState, feed?: FeatureFeed): Distiller {
  const k = real.numClasses;
  const { rows, classes } = initialRows(real, s.ipc, s.seed);
  const n = rows.length;
  let xs: tf.Tensor = saved ? loadTensor(saved, 'xs') : realBatch(real, rows);
  let ys: tf.Tensor = saved ? loadTensor(saved, 'ys') : tf.tensor2d(oneHotRows(classes, k, 1 / k), [n, k]);
  let logTemp: tf.Tensor = saved ? loadTensor(saved, 'logTemp') : tf.scalar(0);
  const opt = makeOptimizer({ kind: 'adam', lr: s.lr });
  const tempOpt = makeOptimizer({ kind: 'adam', lr: TEMP_LR });
  const trainable = (): tf.Tensor[] => (s.learnLabels ? [xs, ys] : [xs]);
  // Optimizer slots in the optimizer's own layout (all first moments, then all second).
  let slots: tf.Tensor[] = saved
    ? Array.from({ length: 2 * trainable().length }, (_, j) => loadTensor(saved, `slot${j}`))
    : opt.initSlots(trainable());
  let tempSlots: tf.Tensor[] = saved ? [loadTensor(saved, 'tempSlot0'), loadTensor(saved, 'tempSlot1')] : tempOpt.initSlots([logTemp]);
  let adamStep = saved ? saved.scalars.adamStep ?? 0 : 0;
  let nets: FeatureNet[] = [];
  let netsEpoch = -1;

  const netsFor = (t: number): FeatureNet[] => {
    const { epoch, seed } = krrNetsSeed(s, t);
    if (epoch !== netsEpoch) {
      disposeNets(nets);
      nets = randomFeatureNets(s.net, { inputShape: real.shape, numClasses: k }, s.nets, seed);
      netsEpoch = epoch;
    }
    return nets;
  };

  const objective = (x: tf.Tensor, y: tf.Tensor, lt: tf.Tensor, phiT: tf.Tensor2D, targets: tf.Tensor2D, fnets: FeatureNet[]): tf.Scalar => {
    const phiS = randomFeatures(fnets, x as tf.Tensor4D);
    const pred = krrPredict(phiS, phiT, y as tf.Tensor2D, s.ridge);
    if (s.loss === 'mse') return mse(pred, tf.sub(targets, 1 / k));
    return softmaxCrossEntropy(tf.mul(pred, tf.exp(lt)), targets);
  };

  const batchFor = (rng: Rng, fnets: FeatureNet[]) => {
    const idx = sampleRows(real, rng, s.batchSize);
    return tf.tidy(() => {
      const xt = realBatch(real, idx);
      return { phiT: randomFeatures(fnets, xt), targets: oneHotTargets(real, idx) };
    });
  };

  return {
    ...(feed ? { prepare: (t: number) => feed.ready(t) } : {}),

    step(t: number): StepReport {
      const fnets = netsFor(t);
      const rows = krrBatchRows(real, s, t);
      const phiT = feed ? feed.take(t) : krrRealFeatures(real, s, t, fnets);
      const targets = oneHotTargets(real, rows);
      try {
        const learned = trainable();
        // The temperature is a parameter of the cross-entropy only (tfjs refuses gradients for unused inputs).
        const withTemp = s.loss === 'ce';
        const all = withTemp ? [...learned, logTemp] : learned;
        const { value, grads } = tf.valueAndGrads((...p: tf.Tensor[]) =>
          objective(p[0], s.learnLabels ? p[1] : ys, withTemp ? p[p.length - 1] : logTemp, phiT, targets, fnets))(all);
        const loss = value.dataSync()[0];
        if (!Number.isFinite(loss) || !allFinite(grads)) {
          tf.dispose([value, ...grads]);
          throw new DistillDivergedError(t, `the loss or its gradient is not finite (loss ${loss})`);
        }
        const gLearned = grads.slice(0, learned.length);
        const next = tf.tidy(() => opt.update(learned, gLearned, slots, s.lr, adamStep));
        const nextTemp = withTemp
          ? tf.tidy(() => tempOpt.update([logTemp], [grads[learned.length]], tempSlots, TEMP_LR, adamStep))
          : { params: [tf.clone(logTemp)], slots: tempSlots.map((x) => tf.clone(x)) };
        tf.dispose([value, ...grads, ...slots, ...tempSlots, logTemp]);
        const newX = clampPixels(real, next.params[0] as tf.Tensor4D);
        tf.dispose(next.params[0]);
        tf.dispose(xs);
        xs = newX;
        if (s.learnLabels) {
          tf.dispose(ys);
          ys = next.params[1];
        }
        slots = next.slots;
        logTemp = nextTemp.params[0];
        tempSlots = nextTemp.slots;
        adamStep++;
        return { loss, details: { temperature: Math.exp(logTemp.dataSync()[0]) } };
      } finally {
        tf.dispose([phiT, targets]);
      }
    },

    save(): SavedState {
      const tensors: SavedState['tensors'] = { xs: saveTensor(xs), ys: saveTensor(ys), logTemp: saveTensor(logTemp) };
      slots.forEach((t, j) => { tensors[`slot${j}`] = saveTensor(t); });
      tempSlots.forEach((t, j) => { tensors[`tempSlot${j}`] = saveTensor(t); });
      return { scalars: { adamStep }, tensors };
    },

    result() {
      const x = Float32Array.from(xs.dataSync() as Float32Array);
      const y = ys.dataSync() as Float32Array;
      let soft: Float32Array;
      if (s.loss === 'ce') soft = softmaxRows(y, k, Math.exp(logTemp.dataSync()[0]));
      else {
        soft = new Float32Array(y.length);
        for (let r = 0; r < n; r++) {
          let sum = 0;
          for (let j = 0; j < k; j++) sum += (soft[r * k + j] = Math.max(0, y[r * k + j] + 1 / k));
          for (let j = 0; j < k; j++) soft[r * k + j] = sum > 0 ? soft[r * k + j] / sum : j === classes[r] ? 1 : 0;
        }
      }
      return { x, softLabels: soft, classes };
    },

    evalLoss(seed: number): number {
      const fnets = randomFeatureNets(s.net, { inputShape: real.shape, numClasses: k }, s.nets, hashString(`${seed}/krr/eval-nets`));
      const { phiT, targets } = batchFor(Rng.derive(seed, 'krr/eval-batch'), fnets);
      try {
        return tf.tidy(() => objective(xs, ys, logTemp, phiT, targets, fnets).dataSync()[0]);
      } finally {
        tf.dispose([phiT, targets]);
        disposeNets(fnets);
      }
    },

    dispose() {
      tf.dispose([xs, ys, logTemp, ...slots, ...tempSlots]);
      disposeNets(nets);
      nets = [];
    },
  };
}
