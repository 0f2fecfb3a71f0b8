/**
 * The DC ConvNet (models.ts `convnet`, norm 'none' or 'instance', norm before
 * ReLU: depth × [conv 3×3 (+ bias) → (instance norm) → ReLU → avg-pool 2×2],
 * then a dense layer), linearised around fixed parameters θ₀ by explicit
 * forward-mode differentiation: for a parameter offset Δ,
 *   f_lin(x; Δ) = f(x; θ₀) + J_θ f(x; θ₀) Δ.
 * tfjs has no forward mode; writing the tangent pass out layer by layer costs
 * two convolutions per layer and keeps everything a plain, reverse-mode
 * differentiable tfjs expression (in x, θ₀'s activations and Δ), which is what
 * RCIG's direct and implicit gradients need.
 *
 * Δ covers every parameter but the final dense layer's weight (RCIG solves that
 * layer by kernel ridge regression on θ₀'s features instead), in parameter
 * order: per layer the conv weight and then its bias (no norm) or the norm's
 * scale and shift (instance norm), and last the final bias.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError } from '../../core/errors.js';
import type { Model } from '../models.js';
import { avgPool2x2, conv2dSame, flatten, stopGradient } from '../ops.js';

/** Must match ml/ops.ts instanceNorm's default. */
const NORM_EPS = 1e-5;

/** One block of θ₀'s forward pass, kept for the tangent passes. */
interface PrimalLayer {
  /** The block's input a_{l} (x for the first). */
  input: tf.Tensor4D;
  /** ReLU mask 1[pre-activation > 0], a constant of the linearisation. */
  mask: tf.Tensor4D;
  /** Instance norm only: the normalised conv output and its per-example, per-channel std. */
  xhat?: tf.Tensor4D;
  std?: tf.Tensor4D;
}

/** θ₀'s forward pass. */
export interface Primal {
  layers: PrimalLayer[];
  /** Penultimate features φ₀(x) [B, D]. */
  features: tf.Tensor2D;
  /** Logits f(x; θ₀) [B, K]. */
  out: tf.Tensor2D;
}

interface Layout {
  depth: number;
  norm: boolean;
  /** Parameters per block: 2 (weight, bias) or 3 (weight, scale, shift). */
  perLayer: number;
}

/** Checks that `model` is a ConvNet this module linearises; returns its parameter layout. */
function layoutOf(model: Model): Layout {
  const spec = model.spec;
  if (spec.kind !== 'convnet' || spec.norm === 'batch' || !spec.normBeforeActivation || spec.inputNorm || spec.outputScale !== 1) {
    throw new ConfigError(`the linearised model must be a convnet with norm 'none' or 'instance' before the ReLU (no input norm or output scale), got ${model.name}`);
  }
  const norm = spec.norm === 'instance';
  return { depth: spec.depth, norm, perLayer: norm ? 3 : 2 };
}

/** Indices into the parameter list of the parameters Δ offsets (all but the final weight). */
export function tangentIndices(model: Model): number[] {
  const { depth, perLayer } = layoutOf(model);
  return [...Array.from({ length: perLayer * depth }, (_, i) => i), perLayer * depth + 1];
}

/** Zero offsets, one per tangent parameter. */
export function zeroTangents(model: Model, params: readonly tf.Tensor[]): tf.Tensor[] {
  return tangentIndices(model).map((i) => tf.zerosLike(params[i]));
}

/** f(x; θ₀), recording what the tangent passes need. Same arithmetic as model.apply. */
export function primalPass(model: Model, params: readonly tf.Tensor[], x: tf.Tensor4D): Primal {
  const { depth, norm, perLayer } = layoutOf(model);
  const layers: PrimalLayer[] = [];
  let a = x;
  for (let l = 0; l < depth; l++) {
    const p = l * perLayer;
    let pre: tf.Tensor4D;
    let xhat: tf.Tensor4D | undefined;
    let std: tf.Tensor4D | undefined;
    if (norm) {
      const z = conv2dSame(a, params[p] as tf.Tensor4D);
      const centred = tf.sub(z, tf.mean(z, [1, 2], true));
      std = tf.sqrt(tf.add(tf.mean(tf.square(centred), [1, 2], true), NORM_EPS)) as tf.Tensor4D;
      xhat = tf.div(centred, std) as tf.Tensor4D;
      pre = tf.add(tf.mul(xhat, params[p + 1]), params[p + 2]) as tf.Tensor4D;
    } else {
      pre = conv2dSame(a, params[p] as tf.Tensor4D, params[p + 1]);
    }
    layers.push({ input: a, mask: stopGradient(tf.step(pre)) as tf.Tensor4D, xhat, std });
    a = avgPool2x2(tf.relu(pre));
  }
  const features = flatten(a);
  const fc = perLayer * depth;
  const out = tf.add(tf.matMul(features, params[fc] as tf.Tensor2D), params[fc + 1]) as tf.Tensor2D;
  return { layers, features, out };
}

/** J_θ f(x; θ₀) Δ [B, K] (the tangent of the logits), from θ₀'s primal pass on x. */
export function tangentOut(model: Model, params: readonly tf.Tensor[], primal: Primal, delta: readonly tf.Tensor[]): tf.Tensor2D {
  const { depth, norm, perLayer } = layoutOf(model);
  if (delta.length !== perLayer * depth + 1) throw new ConfigError(`expected ${perLayer * depth + 1} tangent tensors, got ${delta.length}`);
  let da: tf.Tensor4D | null = null;
  for (let l = 0; l < depth; l++) {
    const p = l * perLayer;
    const layer = primal.layers[l];
    // ż = W ⊛ ȧ + ΔW ⊛ a (+ Δb); pooling is linear; ReLU's tangent is the mask.
    let dz = conv2dSame(layer.input, delta[p] as tf.Tensor4D, norm ? undefined : delta[p + 1]);
    if (da) dz = tf.add(dz, conv2dSame(da, params[p] as tf.Tensor4D));
    let dpre = dz;
    if (norm) {
      // x̂ = (z − μ)/s: dx̂ = (ż − mean ż − x̂·mean(x̂ ż)) / s; then γ dx̂ + Δγ x̂ + Δβ.
      const xhat = layer.xhat!;
      const centred = tf.sub(dz, tf.mean(dz, [1, 2], true));
      const dxhat = tf.div(tf.sub(centred, tf.mul(xhat, tf.mean(tf.mul(xhat, dz), [1, 2], true))), layer.std!);
      dpre = tf.add(tf.add(tf.mul(dxhat, params[p + 1]), tf.mul(xhat, delta[p + 1])), delta[p + 2]) as tf.Tensor4D;
    }
    da = avgPool2x2(tf.mul(dpre, layer.mask));
  }
  return tf.add(tf.matMul(flatten(da!), params[perLayer * depth] as tf.Tensor2D), delta[perLayer * depth]) as tf.Tensor2D;
}

/** Disposes what primalPass made (not x itself). */
export function disposePrimal(p: Primal): void {
  tf.dispose([
    ...p.layers.slice(1).map((l) => l.input),
    ...p.layers.flatMap((l) => [l.mask, ...(l.xhat ? [l.xhat, l.std!] : [])]),
    p.features,
    p.out,
  ]);
}
