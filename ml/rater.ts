/**
 * The Alchemist-style rater (ANCHORS.md, "Alchemist"): a small network that rates
 * each training example, meta-trained so that its weights help a target loss.
 *
 * Architecture (explicit parameters, like ml/models.ts):
 * - body: a model of ml/models.ts whose output layer maps to C = `featureDim`
 *   features f_i: an MLP (default, hidden [128]) or the DC ConvNet at small
 *   width (`BODY_DEFAULTS.convnet`: width 16, depth 2, instance norm). On the
 *   built-in 28×28 data with 20% flipped labels the ConvNet body meta-trained 9×
 *   slower on wasm for the same separation of flipped rows (AUROC 0.84 vs 0.86,
 *   4 epochs), hence the MLP default. No batch norm: a row's rating must not
 *   depend on the rows batched with it.
 * - instance head: z_i = Linear(64,1)(GELU(Linear(C,64)(f_i))), plus, when the
 *   rater is label-conditioned, the projection term ⟨E[y_i], f_i⟩ (E: a learned
 *   K×C label embedding, zero at init; Miyato & Koyama's projection critic). The
 *   label is what lets a rater see that an image does not look like its label:
 *   without it, a flipped label is invisible.
 * - group head: one scalar per batch, G = sigmoid(Linear(64,1)(GELU(Linear(2C,64)(
 *   [mean_i f_i ‖ var_i f_i])))).
 * - batch weights: w_i = softmax_i(sigmoid(z)) · G.
 *
 * The rating of a row is z_i, the instance logit before the sigmoid: it needs no
 * batch, so ratings are comparable across batches and datasets; the sigmoid,
 * softmax and group factor only rescale weights within a batch (monotone in z_i).
 * Higher = more valuable to keep, as the score stage orients its scores.
 *
 * Training (`mode`):
 * - `meta`: first-order bilevel. A proxy model (ml/models) is warmed up for
 *   `warmupSteps` plain steps; then for each training batch B and target batch V:
 *   1. a_i = −⟨∇θ ℓ_i(θ), ∇θ L_V(θ)⟩ for every i in B (exact, vectorised double
 *      backward, ml/scores/pergrad.ts). To first order, a proxy SGD step
 *      θ' = θ − η Σ_i w_i ∇ℓ_i changes the target loss by η Σ_i w_i a_i, so a_i > 0
 *      marks a row whose gradient hurts the target.
 *   2. rater step (AdamW) on
 *         L_R(φ) = Σ_i w_i(φ) · â_i + ρ · mean_i z_i(φ)²,
 *      â_i = a_i / s with s the running RMS of a (EMA 0.9, bias-corrected;
 *      constant w.r.t. φ), ρ = `logitPenalty`. The instance head moves weight
 *      onto rows with low a (its softmax gradient is centred per batch), the
 *      group head lowers G for batches whose weighted a is positive. This is
 *      Alchemist's simplified rater loss Σ softmax_i · ℓ_i with ℓ_i replaced by
 *      the alignment score, whose sign rewards rows that reduce the target loss.
 *      The penalty keeps z in the sigmoid's responsive range: the first term is
 *      linear in the weights, and without the penalty Adam drives every z into
 *      saturation, where all gradients vanish (measured on the built-in data
 *      with 20% flipped labels: AUROC of the ratings for clean vs flipped rows
 *      0.53 without, 0.86 with ρ = 0.1). With it, z_i settles where
 *      σ'(z_i)·â_i balances 2ρ·z_i, so z tracks −E[â | x, y]: in effect a
 *      regression on the alignment scores of the whole run, which averages out
 *      the noise of any one proxy state.
 *   3. proxy step on (1 − λ_t) Σ_i w_i ℓ_i + λ_t L_V, weights detached, with
 *      λ_t = valMix · max(0, 1 − t / valMixSteps) (the target loss mixed in early).
 * - `regress`: the instance logit regresses (MSE) onto rank-normalised scores
 *   from a score sidecar, target 4·(p_i − ½) for the percentile p_i = (rank_i −
 *   ½)/n; a `holdout` fraction of rows is left out of training and the Spearman
 *   correlation of their ratings with their scores is reported. The group head
 *   is not trained in this mode (there is no batch-level target).
 *
 * On disk (see writeRaterFiles): `model.json` + `weights.bin` in the tfjs
 * weights-manifest layout (float32 little-endian, tensors concatenated in
 * manifest order: `tf.io.decodeWeights` reads them), and `rater.json` with the
 * architecture, input shape, classes, normalisation and training provenance.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import { averageRanks, spearman } from '../core/metrics.js';
import { ConfigError, DataError, MissingInputError, UsageError } from '../core/errors.js';
import { sha256Hex } from '../core/hash.js';
import { Rng } from '../core/rng.js';
import { CODE_VERSION } from '../core/version.js';
import { batchSchedule, featureLength, gatherPixels, gatherTargets, type Examples } from '../data/batch.js';
import { fixedListValues, numericValues } from '../data/columns.js';
import type { PixelShape } from '../data/format.js';
import { openDataset, readShard } from '../data/reader.js';
import { initParams, sizeOf, type ParamSpec } from './init.js';
import { makeModel, modelSpecSchema, type Model, type ModelSpec, type ParsedModelSpec } from './models.js';
import { dense, gelu, perExampleCrossEntropy, sigmoid, softmax } from './ops.js';
import { makeOptimizer, optimizerSpecSchema } from './optim.js';
import { perExampleGradDots } from './scores/pergrad.js';

export const RATER_FORMAT = 'metacurate-rater';
/** Bumped whenever the files or the forward pass change meaning; older raters are refused. */
export const RATER_FORMAT_VERSION = 1;
export const RATER_META_FILE = 'rater.json';
export const RATER_MODEL_FILE = 'model.json';
export const RATER_WEIGHTS_FILE = 'weights.bin';
/** Head widths (ANCHORS.md: Linear(C,64) → GELU → Linear(64,1)). */
export const HEAD_HIDDEN = 64;

export const RATER_MODES = ['meta', 'regress'] as const;
export type RaterMode = (typeof RATER_MODES)[number];

// ---------------------------------------------------------------------------
// The model

export interface RaterArch {
  inputShape: PixelShape;
  /** Classes of the labels the rater is conditioned on (the training data's). */
  numClasses: number;
  classNames: string[];
  labelConditioned: boolean;
  /** The body's model spec, input normalisation included. */
  body: ParsedModelSpec;
  featureDim: number;
  instanceHidden: number;
  groupHidden: number;
}

export interface Rater {
  arch: RaterArch;
  body: Model;
  paramShapes: { name: string; shape: number[] }[];
  /** The leading parameters the ratings depend on (body, label embedding, instance head); the group head's follow. */
  numInstanceParams: number;
  init(seed: number): tf.Tensor[];
  /** Features f [B, C] of pixels x [B, H, W, C] in [0, 1]. */
  features(params: readonly tf.Tensor[], x: tf.Tensor): tf.Tensor2D;
  /** Instance logits z [B] (the ratings); `y` [B, K] one-hot or soft labels, required when label-conditioned. */
  instanceLogits(params: readonly tf.Tensor[], f: tf.Tensor2D, y?: tf.Tensor): tf.Tensor1D;
  /** The group head's logit (a scalar) for the batch's features. */
  groupLogit(params: readonly tf.Tensor[], f: tf.Tensor2D): tf.Scalar;
  /**
   * The batch weights w_i = softmax_i(sigmoid(z)) · G, with the instance logits z
   * and the group weight G = sigmoid(group logit).
   */
  batchWeights(params: readonly tf.Tensor[], x: tf.Tensor, y?: tf.Tensor): { weights: tf.Tensor1D; instance: tf.Tensor1D; group: tf.Scalar };
  /** Ratings (instance logits) of a batch. */
  rate(params: readonly tf.Tensor[], x: tf.Tensor, y?: tf.Tensor): tf.Tensor1D;
}

function denseSpecs(name: string, fanIn: number, fanOut: number): ParamSpec[] {
  return [
    { name: `${name}.w`, shape: [fanIn, fanOut], init: { kind: 'uniformFanIn', fanIn } },
    { name: `${name}.b`, shape: [fanOut], init: { kind: 'uniformFanIn', fanIn } },
  ];
}

/** Builds the rater of `arch` (no tensors are created until init/apply). */
export function makeRater(arch: RaterArch): Rater {
  const body = arch.body;
  if (body.kind === 'convnet' && body.norm === 'batch') {
    throw new ConfigError('a rater body cannot use batch norm: a row\'s rating would depend on the rows batched with it', {
      hint: 'Use norm "instance" or "none"',
    });
  }
  const C = arch.featureDim;
  const K = arch.numClasses;
  if (arch.labelConditioned && !(K >= 2)) {
    throw new ConfigError(`a label-conditioned rater needs at least 2 classes, got ${K}`);
  }
  const bodyModel = makeModel(body, { inputShape: arch.inputShape, numClasses: C });
  const heads: ParamSpec[] = [
    ...(arch.labelConditioned ? [{ name: 'label.embed', shape: [K, C], init: { kind: 'zeros' } } as ParamSpec] : []),
    ...denseSpecs('instance.fc1', C, arch.instanceHidden),
    ...denseSpecs('instance.fc2', arch.instanceHidden, 1),
    ...denseSpecs('group.fc1', 2 * C, arch.groupHidden),
    ...denseSpecs('group.fc2', arch.groupHidden, 1),
  ];
  const nb = bodyModel.paramShapes.length;
  const embed = arch.labelConditioned ? nb : -1;
  const inst = nb + (arch.labelConditioned ? 1 : 0);
  const grp = inst + 4;
  const total = grp + 4;
  const check = (params: readonly tf.Tensor[]) => {
    if (params.length !== total) throw new UsageError(`the rater takes ${total} parameter tensors, got ${params.length}`);
  };

  const features = (params: readonly tf.Tensor[], x: tf.Tensor) => {
    check(params);
    return bodyModel.apply(params.slice(0, nb), x);
  };
  const instanceLogits = (params: readonly tf.Tensor[], f: tf.Tensor2D, y?: tf.Tensor) =>
    tf.tidy(() => {
      const h = gelu(dense(f, params[inst], params[inst + 1]));
      let z = tf.reshape(dense(h, params[inst + 2], params[inst + 3]), [-1]) as tf.Tensor1D;
      if (arch.labelConditioned) {
        if (!y) throw new UsageError('this rater is conditioned on labels: pass the rows\' labels');
        if (y.rank !== 2 || y.shape[0] !== f.shape[0] || y.shape[1] !== K) {
          throw new UsageError(`labels [${y.shape.join(', ')}] do not match [${f.shape[0]}, ${K}]`);
        }
        z = tf.add(z, tf.sum(tf.mul(f, tf.matMul(y as tf.Tensor2D, params[embed] as tf.Tensor2D)), 1)) as tf.Tensor1D;
      }
      return z;
    });
  const groupLogit = (params: readonly tf.Tensor[], f: tf.Tensor2D) =>
    tf.tidy(() => {
      const mean = tf.mean(f, 0, true);
      const variance = tf.mean(tf.square(tf.sub(f, mean)), 0, true);
      const h = gelu(dense(tf.concat([mean, variance], 1), params[grp], params[grp + 1]));
      return tf.reshape(dense(h, params[grp + 2], params[grp + 3]), []) as tf.Scalar;
    });
  const batchWeights = (params: readonly tf.Tensor[], x: tf.Tensor, y?: tf.Tensor) => {
    const [weights, instance, group] = tf.tidy(() => {
      const f = features(params, x);
      const z = instanceLogits(params, f, y);
      const g = sigmoid(groupLogit(params, f));
      return [tf.mul(softmax(sigmoid(z)), g) as tf.Tensor1D, z, g];
    });
    return { weights: weights as tf.Tensor1D, instance: instance as tf.Tensor1D, group: group as tf.Scalar };
  };
  return {
    arch,
    body: bodyModel,
    paramShapes: [...bodyModel.paramShapes.map((p) => ({ name: `body.${p.name}`, shape: p.shape })), ...heads.map((h) => ({ name: h.name, shape: h.shape }))],
    numInstanceParams: grp,
    init: (seed) => [...bodyModel.init(seed), ...initParams(heads, seed)],
    features,
    instanceLogits,
    groupLogit,
    batchWeights,
    rate: (params, x, y) => tf.tidy(() => instanceLogits(params, features(params, x), y)),
  };
}

// ---------------------------------------------------------------------------
// Training

/** The rater body's default specs by kind (`body: 'convnet' | 'mlp'`). */
export const BODY_DEFAULTS: Readonly<Record<'convnet' | 'mlp', ModelSpec>> = {
  convnet: { kind: 'convnet', width: 16, depth: 2, norm: 'instance' },
  mlp: { kind: 'mlp', hidden: [128] },
};

/** The proxy model's default specs by kind (meta mode). */
export const PROXY_DEFAULTS: Readonly<Record<'logreg' | 'mlp' | 'convnet', ModelSpec>> = {
  logreg: { kind: 'logreg' },
  mlp: { kind: 'mlp', hidden: [64] },
  convnet: { kind: 'convnet', width: 32, depth: 3, norm: 'instance' },
};

const positiveInt = z.number().int().positive();

export const raterTrainSchema = z.object({
  mode: z.enum(RATER_MODES).default('meta'),
  /** The body's model spec (input normalisation is computed from the training data). */
  body: modelSpecSchema.prefault(BODY_DEFAULTS.mlp),
  featureDim: positiveInt.default(32),
  /** Condition on labels (default: when the training data has them). */
  labelConditioned: z.boolean().optional(),
  epochs: positiveInt.default(10),
  batchSize: positiveInt.default(128),
  /** The rater's AdamW learning rate and decoupled weight decay. */
  lr: z.number().positive().default(1e-3),
  weightDecay: z.number().min(0).default(0.01),
  seed: z.number().int().min(0).default(0),
  /** meta: the proxy model, its optimizer, plain warm-up steps before meta-training. */
  proxy: modelSpecSchema.prefault(PROXY_DEFAULTS.mlp),
  proxyOptimizer: optimizerSpecSchema.prefault({ kind: 'sgd', lr: 0.05, momentum: 0.9 }),
  warmupSteps: z.number().int().min(0).default(50),
  /** meta: weight of the target loss in the proxy's loss at the start, decaying linearly to 0 over `valMixSteps`. */
  valMix: z.number().min(0).max(1).default(0.5),
  /** meta: steps over which the target-loss mix decays (default: one epoch). */
  valMixSteps: z.number().int().min(0).optional(),
  /** meta: ρ, the weight of mean z² in the rater's loss (see the top of the file). */
  logitPenalty: z.number().min(0).default(0.1),
  /** meta: target rows per rater step. */
  targetBatchSize: positiveInt.default(256),
  /** regress: fraction of rows held out of training to measure the rank correlation. */
  holdout: z.number().min(0).lt(1).default(0.1),
}).strict();

export type RaterTrainSettings = z.input<typeof raterTrainSchema>;
type ParsedSettings = z.output<typeof raterTrainSchema>;

export interface NamedWeights {
  name: string;
  shape: number[];
  values: Float32Array;
}

export interface RaterTrainOutput {
  arch: RaterArch;
  weights: NamedWeights[];
  /** Mode-specific numbers: losses per epoch, held-out correlation, ... */
  details: Record<string, unknown>;
}

/** Per-channel mean and std of the pixels in [0, 1] (std 1 for a constant channel). */
export function pixelStats(ex: Pick<Examples, 'pixels' | 'shape'>): { mean: number[]; std: number[] } {
  const ch = ex.shape[2];
  const sum = new Float64Array(ch);
  const sq = new Float64Array(ch);
  for (let j = 0; j < ex.pixels.length; j++) {
    const v = ex.pixels[j] / 255;
    sum[j % ch] += v;
    sq[j % ch] += v * v;
  }
  const count = ex.pixels.length / ch;
  const mean: number[] = [];
  const std: number[] = [];
  for (let c = 0; c < ch; c++) {
    const m = count > 0 ? sum[c] / count : 0;
    const sd = count > 0 ? Math.sqrt(Math.max(0, sq[c] / count - m * m)) : 0;
    mean.push(Math.fround(m));
    std.push(sd > 1e-6 ? Math.fround(sd) : 1);
  }
  return { mean, std };
}

function archFor(train: Examples, s: ParsedSettings): RaterArch {
  const hasLabels = Boolean(train.labels || train.softLabels);
  const labelConditioned = s.labelConditioned ?? (hasLabels && train.numClasses >= 2);
  if (labelConditioned && !hasLabels) {
    throw new DataError('a label-conditioned rater needs a labelled training set', { hint: 'Ingest with labels, or train an unconditioned rater (--no-labels)' });
  }
  const body = modelSpecSchema.parse({ ...s.body, inputNorm: pixelStats(train) });
  return {
    inputShape: train.shape,
    numClasses: train.numClasses,
    classNames: train.classNames,
    labelConditioned,
    body,
    featureDim: s.featureDim,
    instanceHidden: HEAD_HIDDEN,
    groupHidden: HEAD_HIDDEN,
  };
}

/** Batch inputs: pixels and (for conditioned raters or the proxy) targets. */
function batchTensors(ex: Examples, idx: ArrayLike<number>, withTargets: boolean): { x: tf.Tensor4D; y?: tf.Tensor2D } {
  const x = tf.tensor4d(gatherPixels(ex, idx), [idx.length, ...ex.shape]);
  return withTargets ? { x, y: tf.tensor2d(gatherTargets(ex, idx), [idx.length, ex.numClasses]) } : { x };
}

function toWeights(rater: Rater, params: readonly tf.Tensor[]): NamedWeights[] {
  return params.map((p, i) => ({ name: rater.paramShapes[i].name, shape: p.shape, values: (p.dataSync() as Float32Array).slice() }));
}

function checkFiniteParams(params: readonly tf.Tensor[], what: string, step: number): void {
  const total = tf.tidy(() => tf.addN(params.map((p) => tf.sum(p))).dataSync()[0]);
  if (!Number.isFinite(total)) {
    throw new DataError(`${what} diverged at step ${step}: its parameters are not finite`, { hint: 'Lower the learning rate (--lr, or the proxy\'s)' });
  }
}

/** Reports progress at most every 500 ms, and always at the end. */
function throttled(total: number, onProgress?: (done: number, total: number) => void): (done: number) => Promise<void> {
  let last = 0;
  return async (done) => {
    const now = performance.now();
    if (now - last > 500 || done === total) {
      last = now;
      onProgress?.(done, total);
      // Let messages and timers through during long runs.
      await new Promise((r) => setImmediate(r));
    }
  };
}

/**
 * Trains a rater on `train`: against `target` (meta mode) or onto `scores`, one per
 * training row, higher = more valuable (regress mode).
 */
export async function trainRater(
  train: Examples,
  inputs: { target?: Examples; scores?: Float32Array },
  settings: RaterTrainSettings,
  onProgress?: (done: number, total: number) => void,
): Promise<RaterTrainOutput> {
  const s = raterTrainSchema.parse(settings);
  if (train.ids.length === 0) throw new DataError('the training set is empty');
  const arch = archFor(train, s);
  const rater = makeRater(arch);
  if (s.mode === 'meta') {
    if (!inputs.target) throw new UsageError('meta-training a rater needs a target set', { hint: 'Pass --target <dataset>: a clean set held out from the training pool' });
    return trainMeta(rater, train, inputs.target, s, onProgress);
  }
  if (!inputs.scores) throw new UsageError('regress mode needs scores to regress onto', { hint: 'Pass --scores <sidecar> --by <column>' });
  return trainRegress(rater, train, inputs.scores, s, onProgress);
}

function checkTrainLabelled(ex: Examples, role: string): void {
  if (!ex.labels && !ex.softLabels) throw new DataError(`the ${role} set has no labels`, { hint: 'Meta-training trains a proxy classifier; ingest with labels' });
  if (ex.ids.length === 0) throw new DataError(`the ${role} set is empty`);
}

async function trainMeta(
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
        // 1. Alignment of each row's gradient with the target gradient, at θ.
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
        // 2. The rater's step on Σ w_i â_i; the weights at φ_t also drive the proxy's step.
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

/** The regression target of each row: 4·(p − ½) for its percentile p = (rank − ½)/n, ties averaged. */
export function rankTargets(scores: ArrayLike<number>): Float32Array {
  const ranks = averageRanks(scores);
  const n = scores.length;
  return Float32Array.from(ranks, (r) => 4 * ((r - 0.5) / n - 0.5));
}

async function trainRegress(
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

// ---------------------------------------------------------------------------
// Rating

/** Default rows per rating batch. */
export const RATE_BATCH_SIZE = 256;

/** Ratings of rows `idx` (default all) of an in-memory dataset. Throws on a non-finite rating. */
export function rateExamples(
  rater: Rater,
  params: readonly tf.Tensor[],
  ex: Pick<Examples, 'pixels' | 'shape' | 'labels' | 'softLabels' | 'numClasses' | 'ids'>,
  idx?: ArrayLike<number>,
  batchSize = RATE_BATCH_SIZE,
): Float32Array {
  const rows = idx ?? Int32Array.from({ length: ex.ids.length }, (_, i) => i);
  const out = new Float32Array(rows.length);
  const conditioned = rater.arch.labelConditioned;
  for (let s = 0; s < rows.length; s += batchSize) {
    const part = Array.prototype.slice.call(rows, s, Math.min(rows.length, s + batchSize)) as number[];
    const z = tf.tidy(() => {
      const x = tf.tensor4d(gatherPixels(ex, part), [part.length, ...ex.shape]);
      const y = conditioned ? tf.tensor2d(gatherTargets(ex, part), [part.length, ex.numClasses]) : undefined;
      return rater.rate(params, x, y);
    });
    out.set(z.dataSync(), s);
    z.dispose();
  }
  const bad = out.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) throw new DataError(`the rating of row ${rows[bad]} (id ${ex.ids[rows[bad]]}) is ${out[bad]}`, { hint: 'The rater\'s weights or the pixels are corrupt' });
  return out;
}

/** A run of rows within one shard of a dataset: rows [start, end) of shard `shard`. */
export interface RateRange {
  dir: string;
  shard: number;
  start: number;
  end: number;
  /** The row's index in the whole dataset of `start` (for messages). */
  offset: number;
  batchSize?: number;
}

/**
 * Rates rows [start, end) of one shard with a saved rater, streaming the shard's
 * record batches (memory: the range's pixels at most). Used by the worker's
 * `rate` job; the ids come back with the ratings so the caller writes them as is.
 */
export async function rateRange(raterDir: string, range: RateRange): Promise<{ ids: string[]; ratings: Float32Array }> {
  const { rater, params } = await loadRater(raterDir);
  const ds = await openDataset(range.dir);
  const shard = ds.shards[range.shard];
  if (!shard) throw new UsageError(`the dataset has no shard ${range.shard}`, { file: range.dir });
  const shape = rater.arch.inputShape;
  const len = featureLength(shape);
  const m = range.end - range.start;
  const pixels = new Uint8Array(m * len);
  const K = rater.arch.numClasses;
  const conditioned = rater.arch.labelConditioned;
  const labels = conditioned ? new Int32Array(m) : undefined;
  let soft: Float32Array | undefined;
  const ids: string[] = new Array(m);
  let pos = 0;
  for await (const batch of readShard(shard)) {
    const from = Math.max(range.start, pos);
    const to = Math.min(range.end, pos + batch.numRows);
    if (from < to) {
      const part = from === pos && to === pos + batch.numRows ? batch : batch.slice(from - pos, to - pos);
      const at = from - range.start;
      const px = part.getChild('pixels');
      if (!px) throw new DataError('the dataset has no pixels column', { file: range.dir });
      const values = fixedListValues<Uint8Array>(px);
      if (values.length !== part.numRows * len) {
        throw new DataError(`pixels hold ${values.length / part.numRows} values per row but the rater (${raterDir}) takes ${shape.join('×')}`, { file: shard.path });
      }
      pixels.set(values, at * len);
      const idv = part.getChild('id');
      for (let i = 0; i < part.numRows; i++) ids[at + i] = idv ? String(idv.get(i)) : String(range.offset + at + i);
      if (conditioned) {
        const lab = part.getChild('label');
        const sl = part.getChild('soft_label');
        if (lab) labels!.set(Int32Array.from(numericValues(lab)), at);
        else if (sl) {
          soft ??= new Float32Array(m * K);
          soft.set(fixedListValues<Float32Array>(sl), at * K);
        } else {
          throw new DataError(`the rater ${raterDir} is conditioned on labels but the dataset has no label column`, { file: range.dir, hint: 'Rate a labelled dataset, or train an unconditioned rater (--no-labels)' });
        }
      }
    }
    pos += batch.numRows;
    if (pos >= range.end) break;
  }
  if (pos < range.end) throw new DataError(`shard ${range.shard} has ${pos} rows, fewer than ${range.end}`, { file: shard.path });
  if (labels) {
    for (let i = 0; i < m; i++) {
      if (labels[i] < 0 || labels[i] >= K) {
        throw new DataError(`label ${labels[i]} is outside the rater's ${K} classes`, { file: range.dir, row: range.offset + i, hint: `The rater (${raterDir}) was trained on other classes` });
      }
    }
  }
  const ex = {
    ids, pixels, shape, numClasses: K,
    labels: soft ? undefined : labels,
    softLabels: soft,
  };
  try {
    return { ids, ratings: rateExamples(rater, params, ex, undefined, range.batchSize ?? RATE_BATCH_SIZE) };
  } catch (err) {
    if (err instanceof DataError) throw new DataError(`${err.message} (rater ${raterDir}, shard ${range.shard} from row ${range.offset})`, { file: range.dir });
    throw err;
  }
}

// ---------------------------------------------------------------------------
// Files

const pixelShapeSchema = z.tuple([positiveInt, positiveInt, positiveInt]);

/** rater.json. */
export const raterMetaSchema = z.object({
  format: z.literal(RATER_FORMAT),
  format_version: z.number().int(),
  fingerprint: z.string(),
  code_version: z.string(),
  created_at: z.string(),
  input: z.object({
    pixel_shape: pixelShapeSchema,
    channels: positiveInt,
    num_classes: z.number().int().min(0),
    class_names: z.array(z.string()),
    label_conditioned: z.boolean(),
  }),
  /** x = (pixel · pixel_scale − mean[c]) / std[c], per channel c. */
  normalisation: z.object({ pixel_scale: z.number(), mean: z.array(z.number()), std: z.array(z.number()) }),
  body: modelSpecSchema,
  heads: z.object({ feature_dim: positiveInt, instance_hidden: positiveInt, group_hidden: positiveInt }),
  rating: z.object({ column: z.string(), definition: z.string() }),
  training: z.object({
    mode: z.enum(RATER_MODES),
    settings: z.record(z.string(), z.unknown()),
    parents: z.array(z.object({ role: z.string(), fingerprint: z.string(), path: z.string().optional(), rows: z.number().optional() })),
    seconds: z.number().optional(),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
  weights: z.object({ manifest: z.string(), file: z.string(), bytes: z.number().int(), sha256: z.string() }),
});
export type RaterMeta = z.output<typeof raterMetaSchema>;

export const RATING_DEFINITION =
  'instance-head logit z (before the sigmoid); higher = more valuable to keep; in a batch the weight is softmax(sigmoid(z)) x group';

/** What training adds to the metadata. */
export interface RaterProvenance {
  fingerprint: string;
  mode: RaterMode;
  settings: Record<string, unknown>;
  parents: { role: string; fingerprint: string; path?: string; rows?: number }[];
  seconds?: number;
  details?: Record<string, unknown>;
}

function metaOf(arch: RaterArch, prov: RaterProvenance, weights: { bytes: number; sha256: string }): RaterMeta {
  const { inputNorm, ...body } = arch.body;
  return {
    format: RATER_FORMAT,
    format_version: RATER_FORMAT_VERSION,
    fingerprint: prov.fingerprint,
    code_version: CODE_VERSION,
    created_at: new Date().toISOString(),
    input: {
      pixel_shape: arch.inputShape,
      channels: arch.inputShape[2],
      num_classes: arch.numClasses,
      class_names: arch.classNames,
      label_conditioned: arch.labelConditioned,
    },
    normalisation: { pixel_scale: 1 / 255, mean: inputNorm?.mean ?? [0], std: inputNorm?.std ?? [1] },
    body: body as RaterMeta['body'],
    heads: { feature_dim: arch.featureDim, instance_hidden: arch.instanceHidden, group_hidden: arch.groupHidden },
    rating: { column: 'rating', definition: RATING_DEFINITION },
    training: { mode: prov.mode, settings: prov.settings, parents: prov.parents, seconds: prov.seconds, details: prov.details },
    weights: { manifest: RATER_MODEL_FILE, file: RATER_WEIGHTS_FILE, ...weights },
  };
}

/** The architecture a rater.json describes. */
export function archOf(meta: RaterMeta): RaterArch {
  const { mean, std } = meta.normalisation;
  return {
    inputShape: meta.input.pixel_shape as PixelShape,
    numClasses: meta.input.num_classes,
    classNames: meta.input.class_names,
    labelConditioned: meta.input.label_conditioned,
    body: modelSpecSchema.parse({ ...meta.body, inputNorm: { mean, std } }),
    featureDim: meta.heads.feature_dim,
    instanceHidden: meta.heads.instance_hidden,
    groupHidden: meta.heads.group_hidden,
  };
}

/**
 * Writes a rater's three files into `dir` (an existing, empty directory: the
 * caller makes the write atomic, see saveRater). The weights go in manifest
 * order as float32 little-endian, which is tfjs's layout.
 */
export async function writeRaterFiles(dir: string, arch: RaterArch, weights: readonly NamedWeights[], prov: RaterProvenance): Promise<RaterMeta> {
  const expected = makeRater(arch).paramShapes;
  if (weights.length !== expected.length || weights.some((w, i) => w.name !== expected[i].name || w.shape.join() !== expected[i].shape.join() || w.values.length !== sizeOf(w.shape))) {
    throw new UsageError('the weights do not match the rater\'s parameters');
  }
  const total = weights.reduce((a, w) => a + w.values.length, 0);
  const bin = new Float32Array(total);
  let o = 0;
  for (const w of weights) {
    bin.set(w.values, o);
    o += w.values.length;
  }
  const bytes = new Uint8Array(bin.buffer);
  const manifest = {
    format: RATER_FORMAT,
    generatedBy: `metacurate ${CODE_VERSION}`,
    convertedBy: null,
    modelTopology: null,
    weightsManifest: [{ paths: [RATER_WEIGHTS_FILE], weights: weights.map((w) => ({ name: w.name, shape: w.shape, dtype: 'float32' })) }],
    userDefinedMetadata: { architecture: RATER_META_FILE },
  };
  const meta = metaOf(arch, prov, { bytes: bytes.length, sha256: sha256Hex(bytes) });
  const json = (v: unknown) => JSON.stringify(v, null, 2) + '\n';
  await fsp.writeFile(path.join(dir, RATER_WEIGHTS_FILE), bytes);
  await fsp.writeFile(path.join(dir, RATER_MODEL_FILE), json(manifest));
  // rater.json last: its presence marks a complete rater.
  await fsp.writeFile(path.join(dir, RATER_META_FILE), json(meta));
  return meta;
}

async function exists(p: string): Promise<boolean> {
  return fsp.access(p).then(() => true, () => false);
}

/**
 * The rater directory `dir` names: `dir` itself when it holds rater.json, or its
 * `rater/` subdirectory (a ratings sidecar written by training keeps its rater there).
 */
export async function resolveRaterDir(dir: string): Promise<string> {
  if (await exists(path.join(dir, RATER_META_FILE))) return dir;
  const nested = path.join(dir, 'rater');
  if (await exists(path.join(nested, RATER_META_FILE))) return nested;
  const st = await fsp.stat(dir).catch(() => undefined);
  throw new MissingInputError(st?.isDirectory() ? `no ${RATER_META_FILE} here: not a rater directory` : 'no rater directory here', {
    file: dir,
    hint: 'Train a rater first: metacurate rate <train> --train-rater --target <dir> --out <dir>',
  });
}

export interface SavedRater {
  dir: string;
  meta: RaterMeta;
  arch: RaterArch;
  weights: NamedWeights[];
}

/**
 * Reads and checks a rater directory (or a ratings sidecar holding one): format
 * and version, the manifest against the architecture, and the weights' size and
 * sha256. Missing files are a MissingInputError; wrong content a DataError.
 */
export async function readRater(dirOrSidecar: string): Promise<SavedRater> {
  const dir = await resolveRaterDir(dirOrSidecar);
  const metaFile = path.join(dir, RATER_META_FILE);
  const raw = await readJsonFile(metaFile, dir);
  if (raw?.format !== RATER_FORMAT) {
    throw new DataError(`not a metacurate rater (format ${JSON.stringify(raw?.format)}, expected "${RATER_FORMAT}")`, { file: metaFile });
  }
  if (raw.format_version !== RATER_FORMAT_VERSION) {
    throw new DataError(`the rater has format version ${raw.format_version}, but this metacurate (${CODE_VERSION}) reads version ${RATER_FORMAT_VERSION}`, {
      file: dir,
      hint: 'Retrain the rater with this version: metacurate rate <train> --train-rater ...',
    });
  }
  const parsed = raterMetaSchema.safeParse(raw);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new DataError(`${RATER_META_FILE} is invalid at ${i.path.join('.') || '(top level)'}: ${i.message}`, { file: metaFile, hint: 'The rater is corrupt; retrain it' });
  }
  const meta = parsed.data;
  if (meta.input.channels !== meta.input.pixel_shape[2]) {
    throw new DataError(`${RATER_META_FILE} says ${meta.input.channels} channels but its pixel shape is ${meta.input.pixel_shape.join('×')}`, { file: metaFile });
  }
  let arch: RaterArch;
  let expected: { name: string; shape: number[] }[];
  try {
    arch = archOf(meta);
    expected = makeRater(arch).paramShapes;
  } catch (err) {
    throw new DataError(`${RATER_META_FILE} describes no valid rater: ${(err as Error).message}`, { file: metaFile, hint: 'The rater is corrupt; retrain it' });
  }
  const manifestFile = path.join(dir, meta.weights.manifest);
  const manifest = await readJsonFile(manifestFile, dir);
  const entries: { name: string; shape: number[]; dtype: string }[] = manifest?.weightsManifest?.[0]?.weights ?? [];
  const mismatch = expected.findIndex((e, i) => entries[i]?.name !== e.name || (entries[i]?.shape ?? []).join() !== e.shape.join() || entries[i]?.dtype !== 'float32');
  if (entries.length !== expected.length || mismatch >= 0) {
    const at = mismatch >= 0 ? mismatch : Math.min(entries.length, expected.length);
    throw new DataError(`${meta.weights.manifest} does not match the architecture in ${RATER_META_FILE} (tensor ${at}: ${JSON.stringify(entries[at] ?? null)}, expected ${JSON.stringify(expected[at] ?? null)})`, {
      file: manifestFile,
      hint: 'The rater is corrupt or its files come from different raters; retrain it',
    });
  }
  const binFile = path.join(dir, meta.weights.file);
  let bytes: Buffer;
  try {
    bytes = await fsp.readFile(binFile);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new MissingInputError('the rater\'s weights file is missing', { file: binFile, hint: 'Copy the whole rater directory, or retrain it' });
    throw err;
  }
  const total = expected.reduce((a, e) => a + sizeOf(e.shape), 0);
  if (bytes.length !== total * 4 || bytes.length !== meta.weights.bytes) {
    throw new DataError(`the weights file has ${bytes.length} bytes, expected ${total * 4}`, { file: binFile, hint: 'It was truncated or replaced; retrain the rater' });
  }
  if (sha256Hex(bytes) !== meta.weights.sha256) {
    throw new DataError('the weights file\'s sha256 does not match rater.json', { file: binFile, hint: 'It was edited or corrupted; retrain the rater' });
  }
  // Copy into an aligned buffer (a Buffer may sit at any offset of a shared pool).
  const all = new Float32Array(new Uint8Array(bytes).buffer);
  const weights: NamedWeights[] = [];
  let o = 0;
  for (const e of expected) {
    const size = sizeOf(e.shape);
    weights.push({ name: e.name, shape: e.shape, values: all.slice(o, o + size) });
    o += size;
  }
  return { dir, meta, arch, weights };
}

async function readJsonFile(file: string, dir: string): Promise<any> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new MissingInputError(`the rater's ${path.basename(file)} is missing`, { file, hint: `Copy the whole rater directory (${dir}), or retrain it` });
    }
    throw err;
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new DataError(`cannot parse ${path.basename(file)}: ${(err as Error).message}`, { file, hint: 'The rater is corrupt; retrain it' });
  }
}

export interface LoadedRater extends SavedRater {
  rater: Rater;
  params: tf.Tensor[];
}

const loaded = new Map<string, LoadedRater>();

/**
 * A rater ready to rate: read, checked and turned into tensors. Cached per
 * directory and weights hash for the life of the thread (a worker rates many
 * ranges with one rater); call after initBackend.
 */
export async function loadRater(dir: string): Promise<LoadedRater> {
  const saved = await readRater(dir);
  const key = `${path.resolve(saved.dir)}#${saved.meta.weights.sha256}`;
  const hit = loaded.get(key);
  if (hit) return hit;
  const rater = makeRater(saved.arch);
  const params = saved.weights.map((w) => tf.tensor(w.values, w.shape, 'float32'));
  const out = { ...saved, rater, params };
  loaded.set(key, out);
  return out;
}

/** Where a dataset does not fit a rater: the first mismatch, naming both (DataError). */
export function checkRaterFits(
  rater: { dir: string; meta: RaterMeta },
  data: { dir: string; shape: PixelShape; numClasses: number; classNames: string[]; hasLabels: boolean; hasSoftLabels: boolean },
): void {
  const want = rater.meta.input;
  if (want.pixel_shape.join() !== data.shape.join()) {
    throw new DataError(`the rater ${rater.dir} takes ${want.pixel_shape.join('×')} images but this dataset's are ${data.shape.join('×')}`, {
      file: data.dir,
      hint: 'Ingest the data at the rater\'s working resolution and channels (ingest --size/--channels), or train a rater for this shape',
    });
  }
  if (!want.label_conditioned) return;
  if (!data.hasLabels && !data.hasSoftLabels) {
    throw new DataError(`the rater ${rater.dir} is conditioned on labels but this dataset has none`, {
      file: data.dir,
      hint: 'Rate labelled data, or train an unconditioned rater (--no-labels)',
    });
  }
  if (data.numClasses !== want.num_classes) {
    throw new DataError(`the rater ${rater.dir} was trained on ${want.num_classes} classes but this dataset has ${data.numClasses}`, {
      file: data.dir,
      hint: 'Rate data with the same class list, or train a rater on it',
    });
  }
  const a = want.class_names;
  const b = data.classNames;
  const differs = a.length > 0 && b.length > 0 && a.findIndex((name, i) => name !== b[i]);
  if (typeof differs === 'number' && differs >= 0) {
    throw new DataError(`class ${differs} is "${b[differs]}" here but "${a[differs]}" for the rater ${rater.dir}`, {
      file: data.dir,
      hint: 'Ingest with the rater\'s class list (ingest --class-names)',
    });
  }
}
