/**
 * Models as plain functions of explicit parameter tensors: `apply(params, x)`.
 * There are no tf.layers objects and no hidden variables, so a training step is a
 * pure function of (params, batch) that the metagradient engine can differentiate
 * twice. Models are described by a JSON spec (`modelSpecSchema`), which is how
 * stages and worker threads pass them around.
 *
 * Batch norm, eval time: always normalises with the statistics of the batch it is
 * given (no running averages). Running averages would be state outside the pure
 * step; instead ml/evaluate.ts predicts in large fixed-order batches, so results
 * are deterministic and the statistics are those of hundreds of rows.
 */
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import { ConfigError, InternalError } from '../core/errors.js';
import type { PixelShape } from '../data/format.js';
import { initParams, sizeOf, type ParamSpec } from './init.js';
import { avgPool2x2, batchNorm, conv2dSame, dense, flatten, instanceNorm, stopGradient } from './ops.js';

/** Per-channel input normalisation (x − mean) / std, applied inside the model. */
const inputNormSchema = z.object({
  mean: z.array(z.number()).min(1),
  std: z.array(z.number().positive()).min(1),
}).strict();

/** Metasmoothness options shared by all models (MGD's smoother metagradients). */
const common = {
  /** Multiplies the logits (MGD uses 0.1 for smoother metagradients). */
  outputScale: z.number().positive().default(1),
  inputNorm: inputNormSchema.optional(),
};

export const logregSpecSchema = z.object({ kind: z.literal('logreg'), ...common }).strict();

export const mlpSpecSchema = z.object({
  kind: z.literal('mlp'),
  hidden: z.array(z.number().int().positive()).default([256]),
  ...common,
}).strict();

/** The DC-bench ConvNet: depth × [conv 3×3 → norm → ReLU → avg-pool 2×2], then a dense layer. */
export const convnetSpecSchema = z.object({
  kind: z.literal('convnet'),
  width: z.number().int().positive().default(128),
  depth: z.number().int().positive().default(3),
  norm: z.enum(['none', 'instance', 'batch']).default('instance'),
  /** conv → norm → ReLU (true, the DC-bench order) or conv → ReLU → norm. */
  normBeforeActivation: z.boolean().default(true),
  ...common,
}).strict();

export const modelSpecSchema = z.discriminatedUnion('kind', [logregSpecSchema, mlpSpecSchema, convnetSpecSchema]);
export type ModelSpec = z.input<typeof modelSpecSchema>;
export type ParsedModelSpec = z.output<typeof modelSpecSchema>;
export type ModelKind = ParsedModelSpec['kind'];

/** What a model needs to know about the data: pixel shape and class count. */
export interface ModelIO {
  inputShape: PixelShape;
  numClasses: number;
}

export interface ApplyOptions {
  /** Training mode; the models here behave the same either way (see batch norm above). */
  training?: boolean;
}

/** A parametric layer as the tapped forward pass records it (see Model.applyWithTaps). */
export type TappedLayer =
  /** x @ W + b: input [B, din]. */
  | { kind: 'dense'; input: tf.Tensor2D }
  /** 3×3 'same' conv (W [3,3,cin,cout], bias if `bias`): input [B, H, W, cin]. */
  | { kind: 'conv'; input: tf.Tensor4D; bias: boolean }
  /** x̂ ⊙ γ + β after a normalisation: xhat [B, H, W, C]. */
  | { kind: 'affine'; xhat: tf.Tensor4D };

export interface Model {
  name: string;
  spec: ParsedModelSpec;
  io: ModelIO;
  paramShapes: { name: string; shape: number[] }[];
  /** Number of scalar parameters. */
  size: number;
  /** Seeded initial parameters, identical on every backend. */
  init(seed: number): tf.Tensor[];
  /** Logits [B, numClasses] for inputs x [B, H, W, C] in [0, 1]. */
  apply(params: readonly tf.Tensor[], x: tf.Tensor, opts?: ApplyOptions): tf.Tensor2D;
  /**
   * The logits of `apply` with every parametric layer's output exposed, for
   * per-example gradients (ml/scores/pergrad.ts): `taps[k]` (same shape as the
   * k-th layer output, see tapShapes) is added to that output, so the gradient
   * with respect to a zero tap is the layer's δ. When `layers` is given, each
   * layer's input (or x̂) is pushed there with tf.keep, except `x` itself (the
   * caller disposes them). Batch norm holds the batch statistics constant here
   * (their gradient is cut); the values are those of `apply`.
   */
  applyWithTaps(params: readonly tf.Tensor[], x: tf.Tensor, taps?: readonly tf.Tensor[], layers?: TappedLayer[]): tf.Tensor2D;
  /** The shapes of the taps applyWithTaps adds, in order, for a batch of `batch` rows. */
  tapShapes(batch: number): number[][];
  /**
   * Penultimate features [B, D]: the input of the final dense layer (whose two
   * parameters, the last two, are not used). Random-feature kernels and
   * embeddings (distillation) are built on these.
   */
  features(params: readonly tf.Tensor[], x: tf.Tensor): tf.Tensor2D;
}

/** The parametric layers a body is built of; each takes its parameters in order. */
interface LayerOps {
  /** x @ W + b. */
  dense(x: tf.Tensor2D): tf.Tensor2D;
  /** 3×3 'same' convolution (W, then b when `bias`). */
  conv(x: tf.Tensor4D, bias: boolean): tf.Tensor4D;
  /** Instance or batch norm with γ, β. */
  norm(x: tf.Tensor4D, kind: 'instance' | 'batch'): tf.Tensor4D;
}

/** Everything but the final dense layer; returns [B, D]. Written once, run plain or tapped. */
type Body = (layers: LayerOps, x: tf.Tensor) => tf.Tensor;

/** ml/ops normalisation epsilon (instanceNorm / batchNorm default). */
const NORM_EPS = 1e-5;

/**
 * Assembles a Model from parameter specs, a body and the shapes of its layer
 * outputs (for taps); the last two parameters are the final dense layer.
 */
function buildModel(name: string, spec: ParsedModelSpec, io: ModelIO, params: ParamSpec[], body: Body, tapShapes: (batch: number) => number[][]): Model {
  const [, , channels] = io.inputShape;
  if (spec.inputNorm) {
    const { mean, std } = spec.inputNorm;
    if ((mean.length !== 1 && mean.length !== channels) || mean.length !== std.length) {
      throw new ConfigError(`inputNorm has ${mean.length} means and ${std.length} stds for ${channels}-channel images`, {
        hint: `Give one value or ${channels} values for each`,
      });
    }
  }
  return {
    name,
    spec,
    io,
    paramShapes: params.map((p) => ({ name: p.name, shape: p.shape })),
    size: params.reduce((a, p) => a + sizeOf(p.shape), 0),
    init: (seed) => initParams(params, seed),
    apply(values, x) {
      const ops = plainOps(reader(values).next);
      return scaled(ops.dense(runBody(ops, x) as tf.Tensor2D));
    },
    applyWithTaps(values, x, taps, layers) {
      const { next, used } = reader(values);
      const ops = tappedOps(next, x, taps, layers);
      const logits = ops.dense(runBody(ops, x) as tf.Tensor2D);
      if (taps && ops.tapsUsed() !== taps.length) throw new InternalError(`${name} used ${ops.tapsUsed()} of ${taps.length} taps`);
      if (used() !== values.length) throw new InternalError(`${name} used ${used()} of ${values.length} parameters`);
      return scaled(logits);
    },
    tapShapes,
    features(values, x) {
      return runBody(plainOps(reader(values).next), x) as tf.Tensor2D;
    },
  };

  function reader(values: readonly tf.Tensor[]): { next: () => tf.Tensor; used: () => number } {
    if (values.length !== params.length) {
      throw new ConfigError(`${name} takes ${params.length} parameter tensors, got ${values.length}`);
    }
    let i = 0;
    return { next: () => values[i++], used: () => i };
  }

  function runBody(ops: LayerOps, x: tf.Tensor): tf.Tensor {
    let h = x;
    if (spec.inputNorm) h = tf.div(tf.sub(h, tf.tensor1d(spec.inputNorm.mean)), tf.tensor1d(spec.inputNorm.std));
    return body(ops, h);
  }

  function scaled(logits: tf.Tensor2D): tf.Tensor2D {
    return spec.outputScale !== 1 ? (tf.mul(logits, spec.outputScale) as tf.Tensor2D) : logits;
  }
}

/** The layers as `apply` runs them. */
function plainOps(p: () => tf.Tensor): LayerOps {
  return {
    dense(x) {
      const w = p();
      return dense(x, w, p());
    },
    conv(x, bias) {
      const w = p() as tf.Tensor4D;
      return bias ? conv2dSame(x, w, p()) : conv2dSame(x, w);
    },
    norm(x, kind) {
      const gamma = p();
      const beta = p();
      return kind === 'instance' ? instanceNorm(x, { gamma, beta }) : batchNorm(x, { gamma, beta });
    },
  };
}

/**
 * The layers with taps and records (applyWithTaps). The same ops give the same
 * values as plainOps; a norm layer is split into x̂ and the affine γ, β, whose
 * per-example gradients have a closed form in x̂.
 */
function tappedOps(p: () => tf.Tensor, x: tf.Tensor, taps?: readonly tf.Tensor[], layers?: TappedLayer[]): LayerOps & { tapsUsed(): number } {
  let k = 0;
  const tap = <T extends tf.Tensor>(z: T): T => (taps ? (tf.add(z, taps[k++]) as T) : z);
  // tf.keep on the caller's own x would leak it from the caller's tidy: record it as is.
  const keep = <T extends tf.Tensor>(t: T): T => (layers && t !== x ? tf.keep(t) : t);
  return {
    dense(input) {
      const w = p();
      const b = p();
      layers?.push({ kind: 'dense', input: keep(input) });
      return tap(dense(input, w, b));
    },
    conv(input, bias) {
      const w = p() as tf.Tensor4D;
      layers?.push({ kind: 'conv', input: keep(input), bias });
      return tap(bias ? conv2dSame(input, w, p()) : conv2dSame(input, w));
    },
    norm(v, kind) {
      const gamma = p();
      const beta = p();
      const xhat = keep(normaliseFrozen(v, kind));
      layers?.push({ kind: 'affine', xhat });
      return tap(tf.add(tf.mul(xhat, gamma), beta) as tf.Tensor4D);
    },
    tapsUsed: () => k,
  };
}

/**
 * x̂ as ml/ops normalises: per example and channel (instance) or per channel
 * over the batch (batch), the batch statistics held constant (a row's gradient
 * then does not flow through the other rows).
 */
function normaliseFrozen(v: tf.Tensor4D, norm: 'instance' | 'batch'): tf.Tensor4D {
  const axes = norm === 'batch' ? [0, 1, 2] : [1, 2];
  const frozen = <T extends tf.Tensor>(t: T): T => (norm === 'batch' ? stopGradient(t) : t);
  const mean = frozen(tf.mean(v, axes, true));
  const centred = tf.sub(v, mean);
  const variance = frozen(tf.mean(tf.square(centred), axes, true));
  return tf.div(centred, tf.sqrt(tf.add(variance, NORM_EPS))) as tf.Tensor4D;
}

function denseParams(name: string, fanIn: number, fanOut: number): ParamSpec[] {
  return [
    { name: `${name}.w`, shape: [fanIn, fanOut], init: { kind: 'uniformFanIn', fanIn } },
    { name: `${name}.b`, shape: [fanOut], init: { kind: 'uniformFanIn', fanIn } },
  ];
}

/** Multinomial logistic regression on the flattened pixels. */
export function logreg(io: ModelIO, opts: Omit<z.input<typeof logregSpecSchema>, 'kind'> = {}): Model {
  const spec = logregSpecSchema.parse({ ...opts, kind: 'logreg' });
  const d = sizeOf(io.inputShape);
  return buildModel('logreg', spec, io, denseParams('fc', d, io.numClasses), (_l, x) => flatten(x), (b) => [[b, io.numClasses]]);
}

/** Fully connected ReLU network on the flattened pixels. */
export function mlp(io: ModelIO, opts: Omit<z.input<typeof mlpSpecSchema>, 'kind'> = {}): Model {
  const spec = mlpSpecSchema.parse({ ...opts, kind: 'mlp' });
  const widths = [sizeOf(io.inputShape), ...spec.hidden];
  const params: ParamSpec[] = [];
  for (let l = 0; l < spec.hidden.length; l++) params.push(...denseParams(`fc${l}`, widths[l], widths[l + 1]));
  params.push(...denseParams('out', widths[widths.length - 1], io.numClasses));
  const name = `mlp-${widths.join('-')}-${io.numClasses}`;
  const body: Body = (layers, x) => {
    let h = flatten(x);
    for (let l = 0; l < spec.hidden.length; l++) h = tf.relu(layers.dense(h));
    return h;
  };
  return buildModel(name, spec, io, params, body, (b) => [...spec.hidden.map((w) => [b, w]), [b, io.numClasses]]);
}

/**
 * The DC-bench ConvNet. Differences from the PyTorch original, on purpose: the
 * conv bias is left out when a norm layer follows (the norm cancels it exactly,
 * and a parameter with an identically zero gradient only costs time), and batch
 * norm always uses batch statistics (see the top of this file).
 */
export function convnet(io: ModelIO, opts: Omit<z.input<typeof convnetSpecSchema>, 'kind'> = {}): Model {
  const spec = convnetSpecSchema.parse({ ...opts, kind: 'convnet' });
  let [h, w, c] = io.inputShape;
  const params: ParamSpec[] = [];
  for (let l = 0; l < spec.depth; l++) {
    if (h < 2 || w < 2) {
      throw new ConfigError(`convnet depth ${spec.depth} is too deep for ${io.inputShape[0]}×${io.inputShape[1]} images: layer ${l} would pool a ${h}×${w} map`, {
        hint: `Use depth ≤ ${l}`,
      });
    }
    const fanIn = 9 * c;
    params.push({ name: `conv${l}.w`, shape: [3, 3, c, spec.width], init: { kind: 'uniformFanIn', fanIn } });
    if (spec.norm === 'none') params.push({ name: `conv${l}.b`, shape: [spec.width], init: { kind: 'uniformFanIn', fanIn } });
    else {
      params.push({ name: `norm${l}.gamma`, shape: [spec.width], init: { kind: 'ones' } });
      params.push({ name: `norm${l}.beta`, shape: [spec.width], init: { kind: 'zeros' } });
    }
    c = spec.width;
    h = Math.floor(h / 2);
    w = Math.floor(w / 2);
  }
  params.push(...denseParams('fc', h * w * c, io.numClasses));
  const norm = spec.norm;
  const body: Body = (layers, x) => {
    let a = x as tf.Tensor4D;
    for (let l = 0; l < spec.depth; l++) {
      let z: tf.Tensor4D;
      if (norm === 'none') z = tf.relu(layers.conv(a, true));
      else if (spec.normBeforeActivation) z = tf.relu(layers.norm(layers.conv(a, false), norm));
      else z = layers.norm(tf.relu(layers.conv(a, false)), norm);
      a = avgPool2x2(z);
    }
    return flatten(a);
  };
  // One tap per conv output and per norm output, then the final dense layer's.
  const tapShapes = (b: number) => {
    const shapes: number[][] = [];
    let [th, tw] = io.inputShape;
    for (let l = 0; l < spec.depth; l++) {
      shapes.push([b, th, tw, spec.width]);
      if (norm !== 'none') shapes.push([b, th, tw, spec.width]);
      th = Math.floor(th / 2);
      tw = Math.floor(tw / 2);
    }
    shapes.push([b, io.numClasses]);
    return shapes;
  };
  const name = `convnet-w${spec.width}-d${spec.depth}-${spec.norm}`;
  return buildModel(name, spec, io, params, body, tapShapes);
}

/** A model from its JSON spec and the data's shape and class count. */
export function makeModel(spec: ModelSpec, io: ModelIO): Model {
  const s = modelSpecSchema.parse(spec);
  const { kind, ...opts } = s;
  switch (kind) {
    case 'logreg': return logreg(io, opts);
    case 'mlp': return mlp(io, opts as Omit<z.input<typeof mlpSpecSchema>, 'kind'>);
    case 'convnet': return convnet(io, opts as Omit<z.input<typeof convnetSpecSchema>, 'kind'>);
  }
}
