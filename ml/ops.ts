// Second-order-safe building blocks for models and losses: every op here has
// exact nested gradients (checked against finite differences in
// test/ml/gradients.test.ts). Avoid tf.logSoftmax, tf.losses.* and tf.fused.*
// in anything that is differentiated twice: they use customGrad, whose saved
// tensors an outer gradient cannot see.
import * as tf from '@tensorflow/tfjs';
import { registerCustomKernels, registerGradientPatches, STOP_GRADIENT } from './patches/index.js';

// Importing ops is enough to make the gradients below exact.
registerGradientPatches();

type Tensor = tf.Tensor;

function normAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new Error(`metacurate: axis ${axis} out of range for rank ${rank}`);
  return a;
}

/** Identity forward, zero gradient. */
export function stopGradient<T extends Tensor>(x: T): T {
  registerCustomKernels(tf.getBackend()); // a registry lookup after the first call per backend
  return tf.engine().runKernel(STOP_GRADIENT, { x }) as T;
}

/**
 * log(sum(exp(z))) along `axis`, stabilised by subtracting the max. The max is
 * held constant (stopGradient): the result is shift invariant, so this is exact.
 */
export function logSumExp(z: Tensor, axis = -1, keepDims = false): Tensor {
  return tf.tidy(() => {
    const ax = normAxis(axis, z.rank);
    const m = stopGradient(tf.max(z, ax, true));
    const out = tf.add(tf.log(tf.sum(tf.exp(tf.sub(z, m)), ax, true)), m);
    return keepDims ? out : tf.squeeze(out, [ax]);
  });
}

export function logSoftmax(z: Tensor, axis = -1): Tensor {
  return tf.tidy(() => tf.sub(z, logSumExp(z, axis, true)));
}

export function softmax(z: Tensor, axis = -1): Tensor {
  return tf.tidy(() => tf.exp(logSoftmax(z, axis)));
}

function labelsFor(logits: Tensor, labels: Tensor): Tensor {
  const [b, c] = logits.shape;
  if (logits.rank !== 2) throw new Error(`metacurate: logits must be [batch, classes], got [${logits.shape.join(', ')}]`);
  if (labels.rank === 1) {
    if (labels.shape[0] !== b) throw new Error(`metacurate: ${labels.shape[0]} labels for ${b} logits`);
    return tf.cast(tf.oneHot(tf.cast(labels, 'int32'), c!), 'float32');
  }
  if (labels.rank !== 2 || labels.shape[0] !== b || labels.shape[1] !== c) {
    throw new Error(`metacurate: labels [${labels.shape.join(', ')}] do not match logits [${logits.shape.join(', ')}]`);
  }
  return labels;
}

/**
 * Cross-entropy per example: sum(y) * logSumExp(z) - sum(y * z), i.e.
 * -sum(y * logSoftmax(z)) for any label rows (one-hot, soft, or not summing to 1).
 * `labels`: [batch, classes] (one-hot or soft) or [batch] class indices.
 */
export function perExampleCrossEntropy(logits: Tensor, labels: Tensor): tf.Tensor1D {
  return tf.tidy(() => {
    const y = labelsFor(logits, labels);
    const lse = logSumExp(logits, -1);
    return tf.sub(tf.mul(tf.sum(y, -1), lse), tf.sum(tf.mul(y, logits), -1)) as tf.Tensor1D;
  });
}

/** Mean cross-entropy; with `weights`, sum_i w_i * l_i / n (per-example loss weights). */
export function softmaxCrossEntropy(logits: Tensor, labels: Tensor, weights?: Tensor): tf.Scalar {
  return tf.tidy(() => {
    const l = perExampleCrossEntropy(logits, labels);
    return (weights == null ? tf.mean(l) : tf.div(tf.sum(tf.mul(l, weights)), l.shape[0]!)) as tf.Scalar;
  });
}

/** Mean squared error per example (mean over all but the first axis). */
export function perExampleMse(pred: Tensor, target: Tensor): tf.Tensor1D {
  return tf.tidy(() => {
    const d = tf.squaredDifference(pred, target);
    const axes = Array.from({ length: d.rank - 1 }, (_, i) => i + 1);
    return (axes.length > 0 ? tf.mean(d, axes) : d) as tf.Tensor1D;
  });
}

/** Mean squared error over all elements. */
export function mse(pred: Tensor, target: Tensor): tf.Scalar {
  return tf.tidy(() => tf.mean(tf.squaredDifference(pred, target)) as tf.Scalar);
}

export function relu<T extends Tensor>(x: T): T {
  return tf.relu(x);
}

export function sigmoid<T extends Tensor>(x: T): T {
  return tf.sigmoid(x);
}

export function tanh<T extends Tensor>(x: T): T {
  return tf.tanh(x);
}

/** Exact GELU: x * Phi(x). */
export function gelu<T extends Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))) as T);
}

/**
 * The sum of same-shape tensors, by chained adds. Not tf.addN: on webgpu it binds
 * every input to one shader, and past 7 inputs (WebGPU's default limit is 8 storage
 * buffers a stage) the pipeline fails validation and the result is silently stale.
 */
export function addAll(ts: readonly Tensor[]): Tensor {
  if (ts.length === 0) throw new Error('metacurate: addAll of no tensors');
  return tf.tidy(() => (ts.length === 1 ? tf.clone(ts[0]) : ts.slice(1).reduce((a, t) => tf.add(a, t), ts[0])));
}

/** x @ w (+ b). Plain matMul + add: tf.fused.matMul's customGrad is first-order only. */
export function dense(x: Tensor, w: Tensor, b?: Tensor): tf.Tensor2D {
  return tf.tidy(() => {
    const y = tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D);
    return (b == null ? y : tf.add(y, b)) as tf.Tensor2D;
  });
}

/** Stride-1 'same' convolution (NHWC, filter [kh, kw, in, out]) plus optional bias. */
export function conv2dSame(x: tf.Tensor4D, w: tf.Tensor4D, b?: Tensor): tf.Tensor4D {
  return tf.tidy(() => {
    const y = tf.conv2d(x, w, 1, 'same');
    return (b == null ? y : tf.add(y, b)) as tf.Tensor4D;
  });
}

/** 2x2 average pooling, stride 2, 'valid' (smooth, unlike max pooling). */
export function avgPool2x2(x: tf.Tensor4D): tf.Tensor4D {
  return tf.avgPool(x, 2, 2, 'valid');
}

export function flatten(x: Tensor): tf.Tensor2D {
  return tf.reshape(x, [x.shape[0]!, -1]) as tf.Tensor2D;
}

export interface NormOptions {
  eps?: number;
  /** Per-channel scale, shape [C]. */
  gamma?: Tensor;
  /** Per-channel shift, shape [C]. */
  beta?: Tensor;
}

function normalize(x: Tensor, axes: number[], { eps = 1e-5, gamma, beta }: NormOptions): Tensor {
  return tf.tidy(() => {
    const mean = tf.mean(x, axes, true);
    const centred = tf.sub(x, mean);
    const variance = tf.mean(tf.square(centred), axes, true);
    let y = tf.div(centred, tf.sqrt(tf.add(variance, eps)));
    if (gamma != null) y = tf.mul(y, gamma);
    if (beta != null) y = tf.add(y, beta);
    return y;
  });
}

/** Instance norm for NHWC: statistics per example and channel over H, W. */
export function instanceNorm(x: tf.Tensor4D, opts: NormOptions = {}): tf.Tensor4D {
  if (x.rank !== 4) throw new Error(`metacurate: instanceNorm expects NHWC, got rank ${x.rank}`);
  return normalize(x, [1, 2], opts) as tf.Tensor4D;
}

/** Batch norm with the batch's own statistics (over every axis but the last); no running averages. */
export function batchNorm<T extends Tensor>(x: T, opts: NormOptions = {}): T {
  const axes = Array.from({ length: x.rank - 1 }, (_, i) => i);
  return normalize(x, axes, opts) as T;
}
