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
import { ConfigError } from '../core/errors.js';
import type { PixelShape } from '../data/format.js';
import { initParams, sizeOf, type ParamSpec } from './init.js';
import { avgPool2x2, batchNorm, conv2dSame, dense, flatten, instanceNorm } from './ops.js';

/** Per-channel input normalisation (x − mean) / std, applied inside the model. */
const inputNormSchema = z.object({
  mean: z.array(z.number()).min(1),
  std: z.array(z.number().positive()).min(1),
}).strict();

/** Metasmoothness options shared by all models (ANCHORS.md, MGD). */
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
   * Penultimate features [B, D]: the input of the final dense layer (whose two
   * parameters, the last two, are not used). Random-feature kernels and
   * embeddings (distillation) are built on these.
   */
  features(params: readonly tf.Tensor[], x: tf.Tensor): tf.Tensor2D;
}

/** Everything but the final dense layer, taking parameters in order; returns [B, D]. */
type Body = (p: () => tf.Tensor, x: tf.Tensor) => tf.Tensor;

/** Assembles a Model from parameter specs and a body; the last two parameters are the final dense layer. */
function buildModel(name: string, spec: ParsedModelSpec, io: ModelIO, params: ParamSpec[], body: Body): Model {
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
      const next = reader(values);
      let logits: tf.Tensor = affine(next, runBody(next, x));
      if (spec.outputScale !== 1) logits = tf.mul(logits, spec.outputScale);
      return logits as tf.Tensor2D;
    },
    features(values, x) {
      return runBody(reader(values), x) as tf.Tensor2D;
    },
  };

  function reader(values: readonly tf.Tensor[]): () => tf.Tensor {
    if (values.length !== params.length) {
      throw new ConfigError(`${name} takes ${params.length} parameter tensors, got ${values.length}`);
    }
    let i = 0;
    return () => values[i++];
  }

  function runBody(next: () => tf.Tensor, x: tf.Tensor): tf.Tensor {
    let h = x;
    if (spec.inputNorm) h = tf.div(tf.sub(h, tf.tensor1d(spec.inputNorm.mean)), tf.tensor1d(spec.inputNorm.std));
    return body(next, h);
  }
}

function denseParams(name: string, fanIn: number, fanOut: number): ParamSpec[] {
  return [
    { name: `${name}.w`, shape: [fanIn, fanOut], init: { kind: 'uniformFanIn', fanIn } },
    { name: `${name}.b`, shape: [fanOut], init: { kind: 'uniformFanIn', fanIn } },
  ];
}

/** The next two parameters as a dense layer's weight and bias. */
const affine = (p: () => tf.Tensor, x: tf.Tensor): tf.Tensor2D => {
  const w = p();
  return dense(x, w, p());
};

/** Multinomial logistic regression on the flattened pixels. */
export function logreg(io: ModelIO, opts: Omit<z.input<typeof logregSpecSchema>, 'kind'> = {}): Model {
  const spec = logregSpecSchema.parse({ ...opts, kind: 'logreg' });
  const d = sizeOf(io.inputShape);
  return buildModel('logreg', spec, io, denseParams('fc', d, io.numClasses), (_p, x) => flatten(x));
}

/** Fully connected ReLU network on the flattened pixels. */
export function mlp(io: ModelIO, opts: Omit<z.input<typeof mlpSpecSchema>, 'kind'> = {}): Model {
  const spec = mlpSpecSchema.parse({ ...opts, kind: 'mlp' });
  const widths = [sizeOf(io.inputShape), ...spec.hidden];
  const params: ParamSpec[] = [];
  for (let l = 0; l < spec.hidden.length; l++) params.push(...denseParams(`fc${l}`, widths[l], widths[l + 1]));
  params.push(...denseParams('out', widths[widths.length - 1], io.numClasses));
  const name = `mlp-${widths.join('-')}-${io.numClasses}`;
  return buildModel(name, spec, io, params, (p, x) => {
    let h: tf.Tensor = flatten(x);
    for (let l = 0; l < spec.hidden.length; l++) h = tf.relu(affine(p, h));
    return h;
  });
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
  const normalise = (p: () => tf.Tensor, x: tf.Tensor4D): tf.Tensor4D => {
    const gamma = p();
    const beta = p();
    return spec.norm === 'instance' ? instanceNorm(x, { gamma, beta }) : batchNorm(x, { gamma, beta });
  };
  const name = `convnet-w${spec.width}-d${spec.depth}-${spec.norm}`;
  return buildModel(name, spec, io, params, (p, x) => {
    let a = x as tf.Tensor4D;
    for (let l = 0; l < spec.depth; l++) {
      const w = p() as tf.Tensor4D;
      let z: tf.Tensor4D;
      if (spec.norm === 'none') z = tf.relu(conv2dSame(a, w, p()));
      else if (spec.normBeforeActivation) z = tf.relu(normalise(p, conv2dSame(a, w)));
      else z = normalise(p, tf.relu(conv2dSame(a, w)));
      a = avgPool2x2(z);
    }
    return flatten(a);
  });
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
