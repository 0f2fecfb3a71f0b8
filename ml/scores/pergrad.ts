/**
 * Per-example gradient quantities for a whole batch at once, never one example
 * at a time (a loop would cost one backward pass per row).
 *
 * - Norms ‖∇θ ℓ_i‖₂: one backward pass of the summed loss gives δ_i, the gradient
 *   of ℓ_i with respect to each layer's output, for every row (rows are
 *   independent). Each layer's per-example parameter gradient is then a small
 *   closed form of (layer input, δ): a dense layer's is x_i δ_iᵀ, so its squared
 *   norm is ‖x_i‖²‖δ_i‖² ("ghost norm"); a conv layer's is the correlation of
 *   its padded input with δ_i, formed for all rows by one depthwise convolution;
 *   a norm layer's γ and β gradients are Σ_pixels δ_i ⊙ x̂_i and Σ_pixels δ_i.
 *   The layer inputs and outputs come from Model.applyWithTaps, the models' own
 *   forward pass with every layer exposed (tests check the norms against a loop
 *   of single-example gradients).
 * - Dot products ⟨∇θ ℓ_i, g⟩: with h(u) = Σ_i u_i ℓ_i(θ), ⟨∇θ h(u), g⟩ is linear in
 *   u and its gradient with respect to u is [⟨∇θ ℓ_i, g⟩]_i: one tf.grads over a
 *   function that calls tf.grads (exact, works for any model, Model.apply as is).
 *
 * Batch norm couples the rows of a batch, so "the gradient of one example" has
 * no single meaning there. The norms treat the batch statistics as constants (as
 * a model in eval mode would), the dot products differentiate ℓ_i as the trainer
 * computes it (statistics included).
 */
import * as tf from '@tensorflow/tfjs';
import { InternalError, UsageError } from '../../core/errors.js';
import type { Model, TappedLayer } from '../models.js';
import { addAll, perExampleCrossEntropy } from '../ops.js';

/** Default floats per sub-batch for one tensor of a conv layer's per-example gradients (16 MiB). */
export const CONV_BUDGET = 1 << 22;

/** A parametric layer as the tapped forward pass records it. */
export type { TappedLayer };

/** The shapes of the taps `forwardWithTaps` adds, in order, for a batch of `batch` rows. */
export function tapShapes(model: Model, batch: number): number[][] {
  return model.tapShapes(batch);
}

/**
 * Model.apply with every parametric layer's output exposed (Model.applyWithTaps):
 * `taps[k]` (zeros, same shape) is added to the k-th layer output, so the
 * gradient with respect to a tap is δ for that layer. When `layers` is given,
 * each layer's input (or x̂) is recorded there with tf.keep (the caller disposes
 * them, see disposeLayers). Batch norm uses the batch's statistics held
 * constant (see the top of the file); the values are the same.
 */
export function forwardWithTaps(
  model: Model,
  params: readonly tf.Tensor[],
  x: tf.Tensor,
  taps?: readonly tf.Tensor[],
  layers?: TappedLayer[],
): tf.Tensor2D {
  if (params.length !== model.paramShapes.length) {
    throw new UsageError(`${model.name} takes ${model.paramShapes.length} parameter tensors, got ${params.length}`);
  }
  return model.applyWithTaps(params, x, taps, layers);
}

/** Disposes what forwardWithTaps recorded, except the caller's input `x`. */
function disposeLayers(layers: readonly TappedLayer[], x: tf.Tensor): void {
  for (const l of layers) {
    const t = l.kind === 'affine' ? l.xhat : l.input;
    if (t !== x) t.dispose();
  }
}

function checkBatch(model: Model, x: tf.Tensor, y: tf.Tensor): number {
  const [H, W, C] = model.io.inputShape;
  const b = x.shape[0]!;
  if (x.rank !== 4 || x.shape[1] !== H || x.shape[2] !== W || x.shape[3] !== C) {
    throw new UsageError(`inputs [${x.shape.join(', ')}] do not match ${model.name}'s [batch, ${H}, ${W}, ${C}]`);
  }
  if (y.shape[0] !== b) throw new UsageError(`${y.shape[0]} targets for ${b} inputs`);
  return b;
}

/**
 * The squared norm of a 3×3 'same' conv's per-example weight gradient,
 * G_i[ky,kx,c,o] = Σ_p a_i[p + (ky,kx), c] δ_i[p, o] (a zero-padded), for every row.
 * One depthwise convolution computes all of them: channels = rows, the padded
 * input transposed to [cin, H+2, W+2, rows] is the image and δ transposed to
 * [H, W, rows, cout] the filter (channel multiplier cout), so the output
 * [cin, 3, 3, rows·cout] holds every G_i. On wasm this runs at conv speed, 5–40×
 * faster than batched matmuls of explicit patches.
 */
function convWeightSqNorms(input: tf.Tensor4D, delta: tf.Tensor4D, budget: number): tf.Tensor1D {
  const [b, h, w, cin] = input.shape;
  const cout = delta.shape[3];
  const perRow = Math.max((h + 2) * (w + 2) * cin, 9 * cin * cout, h * w * cout);
  const chunk = Math.max(1, Math.floor(budget / perRow));
  const parts: tf.Tensor1D[] = [];
  for (let s = 0; s < b; s += chunk) {
    const m = Math.min(chunk, b - s);
    parts.push(tf.tidy(() => {
      const a = tf.pad(tf.slice(input, [s, 0, 0, 0], [m, h, w, cin]), [[0, 0], [1, 1], [1, 1], [0, 0]]);
      const d = tf.slice(delta, [s, 0, 0, 0], [m, h, w, cout]);
      const g = tf.depthwiseConv2d(tf.transpose(a, [3, 1, 2, 0]) as tf.Tensor4D, tf.transpose(d, [1, 2, 0, 3]) as tf.Tensor4D, 1, 'valid');
      return tf.sum(tf.square(tf.reshape(g, [9 * cin, m, cout])), [0, 2]) as tf.Tensor1D;
    }));
  }
  const out = parts.length === 1 ? parts[0] : (tf.concat(parts) as tf.Tensor1D);
  if (parts.length > 1) tf.dispose(parts);
  return out;
}

/** Squared per-example gradient norm of one layer's parameters, from its record and δ. */
function layerSqNorms(layer: TappedLayer, delta: tf.Tensor, convBudget: number): tf.Tensor1D {
  return tf.tidy(() => {
    switch (layer.kind) {
      case 'dense': {
        const dd = tf.sum(tf.square(delta), 1);
        return tf.add(tf.mul(tf.sum(tf.square(layer.input), 1), dd), dd) as tf.Tensor1D;
      }
      case 'conv': {
        const w = convWeightSqNorms(layer.input, delta as tf.Tensor4D, convBudget);
        return layer.bias ? (tf.add(w, tf.sum(tf.square(tf.sum(delta, [1, 2])), 1)) as tf.Tensor1D) : w;
      }
      case 'affine': {
        const gamma = tf.sum(tf.square(tf.sum(tf.mul(delta, layer.xhat), [1, 2])), 1);
        const beta = tf.sum(tf.square(tf.sum(delta, [1, 2])), 1);
        return tf.add(gamma, beta) as tf.Tensor1D;
      }
    }
  });
}

/**
 * ‖∇θ ℓ_i‖₂ over all parameters for every row of a batch, ℓ_i the cross-entropy
 * of row i: x [B, H, W, C] in [0, 1], y [B, K] one-hot or soft targets. Batch
 * norm: batch statistics held constant (top of the file). Conv layers form
 * per-example gradients in sub-batches of at most `convBudget` floats per tensor.
 */
export function perExampleGradNorms(
  model: Model,
  params: readonly tf.Tensor[],
  x: tf.Tensor,
  y: tf.Tensor,
  convBudget = CONV_BUDGET,
): tf.Tensor1D {
  const b = checkBatch(model, x, y);
  const layers: TappedLayer[] = [];
  const taps = tapShapes(model, b).map((s) => tf.zeros(s));
  let deltas: tf.Tensor[] = [];
  try {
    deltas = tf.grads((...t: tf.Tensor[]) => {
      disposeLayers(layers.splice(0), x);
      return tf.sum(perExampleCrossEntropy(forwardWithTaps(model, params, x, t, layers), y)) as tf.Scalar;
    })(taps);
    if (layers.length !== deltas.length) throw new InternalError(`${layers.length} layers recorded for ${deltas.length} taps`);
    return tf.tidy(() => tf.sqrt(addAll(layers.map((l, i) => layerSqNorms(l, deltas[i], convBudget)))) as tf.Tensor1D);
  } finally {
    disposeLayers(layers, x);
    tf.dispose([...taps, ...deltas]);
  }
}

/**
 * ⟨∇θ ℓ_i, g⟩ for every row of a batch, exactly, by double backward (top of the
 * file): `g` has one tensor per parameter, shaped like it. ℓ_i is row i's
 * cross-entropy as Model.apply computes it on this batch.
 */
export function perExampleGradDots(
  model: Model,
  params: readonly tf.Tensor[],
  x: tf.Tensor,
  y: tf.Tensor,
  g: readonly tf.Tensor[],
): tf.Tensor1D {
  const b = checkBatch(model, x, y);
  if (g.length !== params.length || g.some((t, j) => t.size !== params[j].size)) {
    throw new UsageError(`the reference gradient has ${g.length} tensors; ${model.name} has ${params.length} parameters of other sizes`);
  }
  return tf.tidy(() => {
    const dots = (u: tf.Tensor): tf.Scalar => {
      const grads = tf.grads((...p: tf.Tensor[]) =>
        tf.sum(tf.mul(perExampleCrossEntropy(model.apply(p, x, { training: true }), y), u)) as tf.Scalar,
      )(params as tf.Tensor[]);
      return addAll(grads.map((gp, j) => tf.sum(tf.mul(gp, g[j])))) as tf.Scalar;
    };
    // The value of u does not matter (linear); ones keep every row in the graph.
    return tf.grads(dots)([tf.ones([b])])[0] as tf.Tensor1D;
  });
}
