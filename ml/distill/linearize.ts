/**
 * The DC ConvNet without normalisation (models.ts `convnet` with norm 'none':
 * depth × [conv 3×3 + bias → ReLU → avg-pool 2×2], then a dense layer),
 * linearised around fixed parameters θ₀ by explicit forward-mode
 * differentiation: for a parameter offset Δ,
 *   f_lin(x; Δ) = f(x; θ₀) + J_θ f(x; θ₀) Δ.
 * tfjs has no forward mode; writing the tangent pass out layer by layer costs
 * two convolutions per layer and keeps everything a plain, reverse-mode
 * differentiable tfjs expression (in x, θ₀'s activations and Δ), which is what
 * RCIG's direct and implicit gradients need.
 *
 * Δ covers every parameter but the final dense layer's weight (RCIG solves that
 * layer by kernel ridge regression on θ₀'s features instead): the convolutions'
 * weights and biases and the final bias, in parameter order.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../../core/errors.js';
import type { Model } from '../models.js';
import { avgPool2x2, conv2dSame, flatten, stopGradient } from '../ops.js';

/** θ₀'s forward pass, kept for the tangent passes. */
export interface Primal {
  /** Layer inputs a_0 = x, a_1, ..., a_{L-1} (each the previous block's pooled output). */
  inputs: tf.Tensor4D[];
  /** ReLU masks 1[z_l > 0], constants of the linearisation. */
  masks: tf.Tensor4D[];
  /** Penultimate features φ₀(x) [B, D]. */
  features: tf.Tensor2D;
  /** Logits f(x; θ₀) [B, K]. */
  out: tf.Tensor2D;
}

/** Checks that `model` is a ConvNet without normalisation; returns its depth. */
export function linearisableDepth(model: Model): number {
  const spec = model.spec;
  if (spec.kind !== 'convnet' || spec.norm !== 'none' || spec.inputNorm || spec.outputScale !== 1) {
    throw new ConfigError(`the linearised model must be a convnet with norm 'none' (no input norm or output scale), got ${model.name}`);
  }
  return spec.depth;
}

/** Indices into the parameter list of the parameters Δ offsets (all but the final weight). */
export function tangentIndices(model: Model): number[] {
  const depth = linearisableDepth(model);
  return [...Array.from({ length: 2 * depth }, (_, i) => i), 2 * depth + 1];
}

/** Zero offsets, one per tangent parameter. */
export function zeroTangents(model: Model, params: readonly tf.Tensor[]): tf.Tensor[] {
  return tangentIndices(model).map((i) => tf.zerosLike(params[i]));
}

/** f(x; θ₀), recording what the tangent passes need. Same arithmetic as model.apply. */
export function primalPass(model: Model, params: readonly tf.Tensor[], x: tf.Tensor4D): Primal {
  const depth = linearisableDepth(model);
  const inputs: tf.Tensor4D[] = [];
  const masks: tf.Tensor4D[] = [];
  let a = x;
  for (let l = 0; l < depth; l++) {
    inputs.push(a);
    const z = conv2dSame(a, params[2 * l] as tf.Tensor4D, params[2 * l + 1]);
    masks.push(stopGradient(tf.step(z)) as tf.Tensor4D);
    a = avgPool2x2(tf.relu(z));
  }
  const features = flatten(a);
  const out = tf.add(tf.matMul(features, params[2 * depth] as tf.Tensor2D), params[2 * depth + 1]) as tf.Tensor2D;
  return { inputs, masks, features, out };
}

/** J_θ f(x; θ₀) Δ [B, K] (the tangent of the logits), from θ₀'s primal pass on x. */
export function tangentOut(model: Model, params: readonly tf.Tensor[], primal: Primal, delta: readonly tf.Tensor[]): tf.Tensor2D {
  const depth = linearisableDepth(model);
  if (delta.length !== 2 * depth + 1) throw new ConfigError(`expected ${2 * depth + 1} tangent tensors, got ${delta.length}`);
  let da: tf.Tensor4D | null = null;
  for (let l = 0; l < depth; l++) {
    // ż = W ⊛ ȧ + ΔW ⊛ a + Δb; ReLU's tangent is the mask; pooling is linear.
    let dz = conv2dSame(primal.inputs[l], delta[2 * l] as tf.Tensor4D, delta[2 * l + 1]);
    if (da) dz = tf.add(dz, conv2dSame(da, params[2 * l] as tf.Tensor4D));
    da = avgPool2x2(tf.mul(dz, primal.masks[l]));
  }
  return tf.add(tf.matMul(flatten(da!), params[2 * depth] as tf.Tensor2D), delta[2 * depth]) as tf.Tensor2D;
}

export function disposePrimal(p: Primal): void {
  // inputs[0] is the caller's x.
  tf.dispose([...p.inputs.slice(1), ...p.masks, p.features, p.out]);
}
