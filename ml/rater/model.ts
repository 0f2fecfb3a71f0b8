/**
 * The rater network: a body from ml/models.ts that maps pixels to features, an
 * instance head (one logit per row: the rating) and a group head (one weight per
 * batch). Parameters are explicit tensors, as in ml/models.ts, so training can
 * differentiate the batch weights directly. The method: docs/methods/rater.md.
 */
import * as tf from '@tensorflow/tfjs';
import { ConfigError, UsageError } from '../../core/errors.js';
import type { PixelShape } from '../../data/format.js';
import { initParams, type ParamSpec } from '../init.js';
import { makeModel, type Model, type ModelSpec, type ParsedModelSpec } from '../models.js';
import { dense, gelu, sigmoid, softmax } from '../ops.js';

/** Hidden width of both heads (Linear(C,64) → GELU → Linear(64,1)). */
export const HEAD_HIDDEN = 64;

/**
 * The rater body's default specs by kind (`body: 'convnet' | 'mlp'`). The MLP is
 * the default: the ConvNet separated flipped labels no better and trained 9×
 * slower on wasm (docs/methods/rater.md).
 */
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
  // Parameter order: body, label embedding (K×C, zero at init), instance head, group head.
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
        // The projection term ⟨E[y_i], f_i⟩: lets the rating see an image that does not look like its label.
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
