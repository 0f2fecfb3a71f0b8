/**
 * Kernel ridge regression (KRR) on random-feature kernels (KIP/RFAD;
 * docs/methods/distillation.md): the features Φ(x) are the penultimate
 * activations of a few freshly initialised ConvNets, concatenated, and
 * K(a, b) = Φ(a)Φ(b)ᵀ — a random-feature approximation of the architecture's
 * infinite-width (NNGP) kernel, linear in the number of images. With instance norm in the nets (the
 * distill stage's default, matching the DC-bench evaluation ConvNet) it is the
 * kernel of that architecture at random init rather than a classical NNGP.
 *
 * The ridge is relative: λ · mean(diag K_ss), so it does not depend on the
 * scale of the features (the init scale, depth and width all change it). It is
 * part of the function: gradients flow through it too.
 */
import * as tf from '@tensorflow/tfjs';
import { solveSpd } from './linalg.js';
import { makeModel, type Model, type ModelIO, type ModelSpec } from './models.js';

/** A random feature map: a model with fixed parameters, of which only the body is used. */
export interface FeatureNet {
  model: Model;
  params: tf.Tensor[];
}

/** `count` nets of architecture `spec`, initialised from seeds seed, seed+1, ... (dispose with disposeNets). */
export function randomFeatureNets(spec: ModelSpec, io: ModelIO, count: number, seed: number): FeatureNet[] {
  const model = makeModel(spec, io);
  return Array.from({ length: count }, (_, i) => ({ model, params: model.init(seed + i) }));
}

export function disposeNets(nets: readonly FeatureNet[]): void {
  for (const n of nets) tf.dispose(n.params);
}

/** Φ(x) [B, D]: the nets' penultimate features side by side, scaled by 1/√D so K = ΦΦᵀ is an average. */
export function randomFeatures(nets: readonly FeatureNet[], x: tf.Tensor4D): tf.Tensor2D {
  return tf.tidy(() => {
    const parts = nets.map((n) => n.model.features(n.params, x));
    const phi = parts.length === 1 ? parts[0] : tf.concat(parts, 1);
    return tf.div(phi, Math.sqrt(phi.shape[1]!)) as tf.Tensor2D;
  });
}

/** K + λ·mean(diag K)·I. */
export function ridged(k: tf.Tensor2D, lambda: number): tf.Tensor2D {
  return tf.tidy(() => {
    const eye = tf.eye(k.shape[0]);
    const meanDiag = tf.div(tf.sum(tf.mul(k, eye)), k.shape[0]);
    return tf.add(k, tf.mul(eye, tf.mul(meanDiag, lambda))) as tf.Tensor2D;
  });
}

/**
 * KRR predictions at the targets: K_ts (K_ss + λ̃I)⁻¹ Y_s, from the support
 * features Φ_s [n, D], target features Φ_t [m, D] and support labels Y_s [n, C].
 * Differentiable (first order) in all three.
 */
export function krrPredict(phiS: tf.Tensor2D, phiT: tf.Tensor2D, yS: tf.Tensor2D, lambda: number): tf.Tensor2D {
  return tf.tidy(() => {
    const kss = tf.matMul(phiS, phiS, false, true);
    const kts = tf.matMul(phiT, phiS, false, true);
    return tf.matMul(kts, solveSpd(ridged(kss as tf.Tensor2D, lambda), yS));
  });
}
