/**
 * Meta mode: the rater learns, alongside a proxy classifier, to weight each
 * training batch so that the proxy's step lowers the loss on a clean target set
 * (first-order bilevel; each row's signal is the alignment of its gradient with
 * the target gradient). Why the loss looks as it does: docs/methods/rater.md.
 */
import * as tf from '@tensorflow/tfjs';
import { DataError } from '../../core/errors.js';
import { Rng } from '../../core/rng.js';
import { batchSchedule, type Examples } from '../../data/batch.js';
import { makeModel } from '../models.js';
import { perExampleCrossEntropy } from '../ops.js';
import { makeOptimizer } from '../optim.js';
import { perExampleGradDots } from '../scores/pergrad.js';
import { batchTensors, checkFiniteParams, throttled, toWeights, type ParsedSettings, type RaterTrainOutput } from './common.js';
import type { Rater } from './model.js';

function checkTrainLabelled(ex: Examples, role: string): void {
  if (!ex.labels && !ex.softLabels) throw new DataError(`the ${role} set has no labels`, { hint: 'Meta-training trains a proxy classifier; ingest with labels' });
  if (ex.ids.length === 0) throw new DataError(`the ${role} set is empty`);
}

/** Meta-trains `rater` on `train` against the target set `target`. */
export async function trainMeta(
  rater: Rater,
  train: Examples,
  target: Examples,
  s: ParsedSettings,
  onProgress?: (done: number, total: number) => void,
): Promise<RaterTrainOutput> {
  checkTrainLabelled(train, 'training');
  checkTrainLabelled(target, 'target');
  if (target.shape.join() !== train.shape.join() || target.numClasses !== train.numClasses) {
    throw new DataError(`the target set (${target.shape.join('×')}, ${target.numClasses} classes) does not match the training set (${train.shape.join('×')}, ${train.numClasses} classes)`);
  }
  const K = train.numClasses;
  const proxy = makeModel(s.proxy, { inputShape: train.shape, numClasses: K });
  const proxyOpt = makeOptimizer(s.proxyOptimizer);
  const raterOpt = makeOptimizer({ kind: 'adamw', lr: s.lr, weightDecay: s.weightDecay });
  const n = train.ids.length;
  const batches = batchSchedule(n, s.batchSize, s.epochs, s.seed);
  const warmEpochs = Math.max(1, Math.ceil((s.warmupSteps * s.batchSize) / n));
  const warm = batchSchedule(n, s.batchSize, warmEpochs, Rng.derive(s.seed, 'warmup').nextUint32()).slice(0, s.warmupSteps);
  const T = batches.length;
  const nt = target.ids.length;
  const tb = Math.min(s.targetBatchSize, nt);
  const targetBatches = batchSchedule(nt, tb, Math.max(1, Math.ceil((T * tb) / nt)), Rng.derive(s.seed, 'target').nextUint32(), true);
  const stepsPerEpoch = Math.ceil(n / s.batchSize);
  const mixSteps = s.valMixSteps ?? stepsPerEpoch;
  const conditioned = rater.arch.labelConditioned;

  let phi = rater.init(s.seed);
  let phiSlots = raterOpt.initSlots(phi);
  let theta = proxy.init(Rng.derive(s.seed, 'proxy').nextUint32());
  let thetaSlots = proxyOpt.initSlots(theta);
  const proxyLr = s.proxyOptimizer.lr;
  const meanCe = (p: readonly tf.Tensor[], x: tf.Tensor, y: tf.Tensor) => tf.mean(perExampleCrossEntropy(proxy.apply(p, x, { training: true }), y)) as tf.Scalar;
  const progress = throttled(warm.length + T, onProgress);

  try {
    for (let t = 0; t < warm.length; t++) {
      const next = tf.tidy(() => {
        const { x, y } = batchTensors(train, warm[t], true);
        const grads = tf.grads((...p: tf.Tensor[]) => meanCe(p, x, y!))(theta);
        return proxyOpt.update(theta, grads, thetaSlots, proxyLr, t);
      });
      tf.dispose([...theta, ...thetaSlots]);
      theta = next.params;
      thetaSlots = next.slots;
      await progress(t + 1);
    }
    checkFiniteParams(theta, 'the proxy model', warm.length);

    // Running mean of a² for the scale s of the rater loss (EMA, bias-corrected).
    const beta = 0.9;
    let meanSq = 0;
    const epochs: { raterLoss: number; alignment: number; proxyLoss: number; targetLoss: number; group: number }[] = [];
    let acc = { raterLoss: 0, alignment: 0, proxyLoss: 0, targetLoss: 0, group: 0, steps: 0 };
    for (let t = 0; t < T; t++) {
      const lambda = mixSteps > 0 ? s.valMix * Math.max(0, 1 - t / mixSteps) : 0;
      const out = tf.tidy(() => {
        const { x, y } = batchTensors(train, batches[t], true);
        const v = batchTensors(target, targetBatches[t % targetBatches.length], true);
        // 1. Alignment of each row's gradient with the target gradient, at θ:
        //    a_i > 0 marks a row whose gradient step raises the target loss.
        const { value: targetLoss, grads: gTarget } = tf.valueAndGrads((...p: tf.Tensor[]) => meanCe(p, v.x, v.y!))(theta);
        const a = tf.neg(perExampleGradDots(proxy, theta, x, y!, gTarget));
        const aValues = a.dataSync();
        let sq = 0;
        let sum = 0;
        for (const ai of aValues) {
          sq += ai * ai;
          sum += ai;
        }
        meanSq = beta * meanSq + (1 - beta) * (sq / aValues.length);
        const scale = Math.sqrt(meanSq / (1 - beta ** (t + 1)));
        const aHat = scale > 0 && Number.isFinite(scale) ? tf.div(a, scale) : tf.zerosLike(a);
        // 2. The rater's step on Σ w_i â_i + ρ·mean z²; the weights at φ_t also drive the proxy's step.
        const yr = conditioned ? y : undefined;
        const { weights, group } = rater.batchWeights(phi, x, yr);
        const { value: raterLoss, grads: gPhi } = tf.valueAndGrads((...p: tf.Tensor[]) => {
          const bw = rater.batchWeights(p, x, yr);
          return tf.add(tf.sum(tf.mul(bw.weights, aHat)), tf.mul(tf.mean(tf.square(bw.instance)), s.logitPenalty)) as tf.Scalar;
        })(phi);
        const phiNext = raterOpt.update(phi, gPhi, phiSlots, s.lr, t);
        // 3. The proxy's step on the rater-weighted loss, the target loss mixed in early.
        // The weights depend on φ only: constants for the proxy's gradient.
        const { value: proxyLoss, grads: gTheta } = tf.valueAndGrads((...p: tf.Tensor[]) => {
          const weighted = tf.sum(tf.mul(perExampleCrossEntropy(proxy.apply(p, x, { training: true }), y!), weights));
          return (lambda > 0 ? tf.add(tf.mul(weighted, 1 - lambda), tf.mul(meanCe(p, v.x, v.y!), lambda)) : weighted) as tf.Scalar;
        })(theta);
        const thetaNext = proxyOpt.update(theta, gTheta, thetaSlots, proxyLr, warm.length + t);
        return {
          phiNext,
          thetaNext,
          stats: [raterLoss, proxyLoss, targetLoss, group].map((q) => q.dataSync()[0]),
          alignment: sum / aValues.length,
        };
      });
      tf.dispose([...phi, ...phiSlots, ...theta, ...thetaSlots]);
      phi = out.phiNext.params;
      phiSlots = out.phiNext.slots;
      theta = out.thetaNext.params;
      thetaSlots = out.thetaNext.slots;
      const [raterLoss, proxyLoss, targetLoss, group] = out.stats;
      if (![raterLoss, proxyLoss, targetLoss].every(Number.isFinite)) {
        throw new DataError(`meta-training diverged at step ${t}: rater loss ${raterLoss}, proxy loss ${proxyLoss}, target loss ${targetLoss}`, {
          hint: 'Lower the proxy\'s learning rate (--proxy-lr) or the rater\'s (--lr)',
        });
      }
      acc = {
        raterLoss: acc.raterLoss + raterLoss, alignment: acc.alignment + out.alignment, proxyLoss: acc.proxyLoss + proxyLoss,
        targetLoss: acc.targetLoss + targetLoss, group: acc.group + group, steps: acc.steps + 1,
      };
      if ((t + 1) % stepsPerEpoch === 0 || t === T - 1) {
        const k = acc.steps;
        epochs.push({ raterLoss: acc.raterLoss / k, alignment: acc.alignment / k, proxyLoss: acc.proxyLoss / k, targetLoss: acc.targetLoss / k, group: acc.group / k });
        acc = { raterLoss: 0, alignment: 0, proxyLoss: 0, targetLoss: 0, group: 0, steps: 0 };
      }
      await progress(warm.length + t + 1);
    }
    checkFiniteParams(phi, 'the rater', T);
    return {
      arch: rater.arch,
      weights: toWeights(rater, phi),
      details: {
        mode: 'meta',
        steps: T,
        warmupSteps: warm.length,
        targetRows: nt,
        /** Per epoch means: rater loss Σ w â, mean alignment score a, proxy loss, target loss, group weight. */
        epochs,
      },
    };
  } finally {
    tf.dispose([...phi, ...phiSlots, ...theta, ...thetaSlots]);
  }
}
