/**
 * The deterministic trainer. Training is a fixed sequence of pure steps,
 * state_{t+1} = step(state_t, w_{B_t}, t), where the state is the parameters
 * followed by the optimizer slots, the batches are a pure function of
 * (n, batchSize, epochs, seed) and the initial parameters a pure function of the
 * seed. That is what lets the metagradient engine (ml/metagrad.ts) rebuild any
 * state by replaying, and differentiate through a step: `step` uses only
 * tf.grads and ops with exact second derivatives (ml/ops.ts).
 */
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import { DataError, InternalError, UsageError } from '../core/errors.js';
import { batchSchedule, featureLength, gatherPixels, gatherTargets, type Examples } from '../data/batch.js';
import { pixelRowCount } from '../data/pixel-rows.js';
import { makeModel, modelSpecSchema, type Model } from './models.js';
import { makeOptimizer, optimizerSpecSchema, type Optimizer } from './optim.js';
import { makeSchedule, scheduleSpecSchema } from './schedule.js';
import { addAll, perExampleCrossEntropy } from './ops.js';
import type { BackendRequest } from './backend.js';
import type { DataRef } from './threads.js';

export const trainConfigSchema = z.object({
  model: modelSpecSchema,
  optimizer: optimizerSpecSchema,
  schedule: scheduleSpecSchema.default({ kind: 'constant' }),
  epochs: z.number().int().positive(),
  batchSize: z.number().int().positive(),
  seed: z.number().int().min(0),
  /** Drop each epoch's last, smaller batch (default false, as PyTorch's DataLoader). */
  dropLast: z.boolean().default(false),
  /** Stop after this many steps, inside the last epoch (equal compute for sets of different sizes). */
  maxSteps: z.number().int().positive().optional(),
  /**
   * Each batch's gradient is the sum, in slice order, of the gradients of this many
   * contiguous slices of the batch. Slices can run on separate threads
   * (ml/data-parallel.ts); the result depends on the slice count, never on the
   * thread count. 1 (the default) takes the batch's gradient in one piece.
   */
  slices: z.number().int().positive().default(1),
}).strict();

export type TrainConfig = z.input<typeof trainConfigSchema>;
export type ParsedTrainConfig = z.output<typeof trainConfigSchema>;

/** Training produced a non-finite loss or parameters: bad data or, usually, too large a learning rate (65). */
export class TrainingDivergedError extends DataError {
  constructor(readonly step: number, readonly lr: number, readonly detail: string) {
    super(`training diverged at step ${step} (learning rate ${lr.toPrecision(3)}): ${detail}`, {
      hint: 'Lower the learning rate (e.g. by 10×), or check the data for extreme values',
    });
  }
}

export interface BatchInputs {
  /** Pixels [B, H, W, C] in [0, 1]. */
  x: tf.Tensor4D;
  /** One-hot or soft targets [B, numClasses]. */
  y: tf.Tensor2D;
}

export interface RunOptions {
  /** Called after each step with the step index and the loss before the update. */
  onStep?: (t: number, loss: number) => void;
  signal?: AbortSignal;
}

export interface Trainer {
  config: ParsedTrainConfig;
  model: Model;
  optimizer: Optimizer;
  /** T, the number of optimizer steps. */
  steps: number;
  /** Rows of the training set. */
  numExamples: number;
  /** The row indices of step t's batch. */
  batches: Int32Array[];
  lr(t: number): number;
  /** params ++ optimizer slots at t = 0, from the seed. */
  initState(): tf.Tensor[];
  /** How many leading tensors of the state are parameters. */
  numParams: number;
  /** Step t's inputs; the caller disposes them (or calls this inside tf.tidy). */
  batchInputs(t: number): BatchInputs;
  /** The per-example loss weights of step t's rows, [B] (all 1 unless `weights` were given). */
  batchWeights(t: number): tf.Tensor1D;
  /** The training objective Σ_i w_i ℓ_i / B on a batch (w default 1). */
  loss(params: readonly tf.Tensor[], inputs: BatchInputs, wBatch?: tf.Tensor1D): tf.Scalar;
  /**
   * One optimizer step as a pure, twice-differentiable function:
   * state_{t+1} = step(state_t, wBatch, t). Without `inputs`, batch t's inputs are
   * built here and left to the enclosing tf.tidy.
   */
  step(state: readonly tf.Tensor[], wBatch: tf.Tensor1D, t: number, inputs?: BatchInputs): tf.Tensor[];
  /** Plain training from initState: memory stays flat; throws TrainingDivergedError on NaN/Inf. */
  run(opts?: RunOptions): Promise<{ params: tf.Tensor[]; losses: Float32Array }>;
  /** Threads its plain runs may spread batch slices over, when there are slices. */
  spread?: SpreadOptions;
  /** The number of parameter values (the length of a flattened gradient). */
  paramSize: number;
  /**
   * Writes slice s's gradient at step t, flattened over the parameters in order, into `out`
   * and returns the slice's part of the batch loss (Σ over its rows of w·ℓ / B); null for
   * an empty slice. A data-parallel replica's work.
   */
  sliceGradient(state: readonly tf.Tensor[], t: number, s: number, out: Float32Array): number | null;
  /** The state after step t given the step's summed, flattened gradient (a data-parallel replica's update). */
  applyGradient(state: readonly tf.Tensor[], grad: Float32Array, t: number): tf.Tensor[];
}

/**
 * The rows [start, end) of each non-empty slice when a batch of `b` rows is cut
 * into `slices` contiguous slices of near-equal size.
 */
export function sliceBounds(b: number, slices: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let s = 0; s < slices; s++) {
    const r = sliceRange(b, slices, s);
    if (r[1] > r[0]) out.push(r);
  }
  return out;
}

/** The rows [start, end) of slice s of a batch of `b` rows (empty when b < slices). */
function sliceRange(b: number, slices: number, s: number): [number, number] {
  return [Math.floor((s * b) / slices), Math.floor(((s + 1) * b) / slices)];
}

/** Where a trainer's plain runs may spread their batch slices over threads (ml/data-parallel.ts). */
export interface SpreadOptions {
  /** The training set, for the threads to load themselves. */
  train: DataRef;
  threads: number;
  backend: BackendRequest;
}

export interface TrainerOptions {
  /** Plain runs of this trainer may use threads for its batch slices (only with config.slices > 1). */
  spread?: SpreadOptions;
  /** Per-example loss weights (length n, default all 1). */
  weights?: Float32Array;
  /** The step from which `weights` apply; every row weighs 1 before it (default 0: from the start). */
  weightsFrom?: number;
}

/** Checks that `train` can be trained on: rows, targets, and weights of the right length. */
function checkTrainable(train: Examples, weights: Float32Array | undefined): void {
  const n = train.ids.length;
  if (n === 0) throw new DataError('the training set is empty', { hint: 'Train on a dataset with at least one row' });
  if (!train.labels && !train.softLabels) {
    throw new DataError('the training set has no labels', { hint: 'Training needs a label (or soft_label) column; ingest with labels' });
  }
  if (!(train.numClasses >= 1)) {
    throw new DataError('the training set declares no classes', { hint: 'The label column needs class names (a ClassLabel feature)' });
  }
  const pixelRows = pixelRowCount(train.pixels, featureLength(train.shape));
  if (pixelRows !== n) {
    throw new DataError(`pixels hold ${pixelRows} rows of shape [${train.shape.join(', ')}] for ${n} ids`);
  }
  if (weights && weights.length !== n) {
    throw new UsageError(`${weights.length} example weights for ${n} training rows`);
  }
}

export function createTrainer(cfg: TrainConfig, train: Examples, opts: TrainerOptions = {}): Trainer {
  const config = trainConfigSchema.parse(cfg);
  checkTrainable(train, opts.weights);
  if (config.slices > 1 && config.model.kind === 'convnet' && config.model.norm === 'batch') {
    throw new UsageError(`slices (${config.slices}) with batch norm would normalise each slice with its own rows' statistics: another model, not the same one on more threads`, {
      hint: 'Use instance norm (the default) or no slices',
    });
  }
  if (opts.spread && opts.weights) throw new InternalError('a trainer with example weights cannot spread its runs over threads');
  const n = train.ids.length;
  const [H, W, C] = train.shape;
  const K = train.numClasses;
  const model = makeModel(config.model, { inputShape: train.shape, numClasses: K });
  const optimizer = makeOptimizer(config.optimizer);
  const schedule = batchSchedule(n, config.batchSize, config.epochs, config.seed, config.dropLast);
  const batches = config.maxSteps !== undefined ? schedule.slice(0, config.maxSteps) : schedule;
  if (batches.length === 0) {
    throw new UsageError(`no full batch of ${config.batchSize} in ${n} rows with dropLast`, { hint: 'Lower the batch size or turn dropLast off' });
  }
  const steps = batches.length;
  const lr = makeSchedule(config.schedule, config.optimizer.lr, steps);
  const numParams = model.paramShapes.length;
  const weights = opts.weights;

  const paramSizes = model.paramShapes.map(({ shape }) => shape.reduce((a, b) => a * b, 1));
  const paramSize = paramSizes.reduce((a, b) => a + b, 0);
  const batchInputs = (t: number): BatchInputs => inputsOf(batches[t]);

  const inputsOf = (idx: Int32Array): BatchInputs => ({
    x: tf.tensor4d(gatherPixels(train, idx), [idx.length, H, W, C]),
    y: tf.tensor2d(gatherTargets(train, idx), [idx.length, K]),
  });

  const weightsFrom = opts.weightsFrom ?? 0;
  const weightsOf = (idx: Int32Array, t: number): tf.Tensor1D => {
    if (!weights || t < weightsFrom) return tf.ones([idx.length]);
    const w = new Float32Array(idx.length);
    for (let i = 0; i < idx.length; i++) w[i] = weights[idx[i]];
    return tf.tensor1d(w);
  };
  const batchWeights = (t: number): tf.Tensor1D => weightsOf(batches[t], t);

  /** Σ_i w_i ℓ_i / `divisor`: the batch's loss, or a slice's part of it when the divisor is the whole batch's size. */
  const lossOver = (params: readonly tf.Tensor[], inputs: BatchInputs, wBatch: tf.Tensor1D | undefined, divisor: number): tf.Scalar => {
    const l = perExampleCrossEntropy(model.apply(params, inputs.x, { training: true }), inputs.y);
    const total = wBatch ? tf.sum(tf.mul(l, wBatch)) : tf.sum(l);
    return tf.div(total, divisor);
  };
  const loss = (params: readonly tf.Tensor[], inputs: BatchInputs, wBatch?: tf.Tensor1D): tf.Scalar =>
    lossOver(params, inputs, wBatch, inputs.x.shape[0]);

  /**
   * The batch's loss and gradients, summed over slices in slice order: the same
   * float operations, in the same order, as ml/data-parallel.ts's reduction.
   */
  const slicedValueAndGrads = (params: tf.Tensor[], inputs: BatchInputs, wBatch: tf.Tensor1D) => {
    const B = inputs.x.shape[0];
    let value: tf.Scalar | undefined;
    let grads: tf.Tensor[] | undefined;
    for (const [a, b] of sliceBounds(B, config.slices)) {
      const part: BatchInputs = {
        x: tf.slice(inputs.x, [a, 0, 0, 0], [b - a, -1, -1, -1]),
        y: tf.slice(inputs.y, [a, 0], [b - a, -1]),
      };
      const w = tf.slice(wBatch, [a], [b - a]);
      const r = tf.valueAndGrads((...p: tf.Tensor[]) => lossOver(p, part, w, B))(params);
      value = value ? tf.add<tf.Scalar>(value, r.value) : r.value;
      grads = grads ? grads.map((g, i) => tf.add(g, r.grads[i])) : r.grads;
    }
    return { value: value!, grads: grads! };
  };

  /** The update, and the loss at the current parameters (for plain training). */
  const update = (state: readonly tf.Tensor[], wBatch: tf.Tensor1D, t: number, inputs: BatchInputs) => {
    const params = state.slice(0, numParams);
    const slots = state.slice(numParams);
    const { value, grads } = config.slices === 1
      ? tf.valueAndGrads((...p: tf.Tensor[]) => loss(p, inputs, wBatch))(params)
      : slicedValueAndGrads(params, inputs, wBatch);
    const next = optimizer.update(params, grads, slots, lr(t), t);
    return { state: [...next.params, ...next.slots], loss: value };
  };

  const sliceGradient = (state: readonly tf.Tensor[], t: number, s: number, out: Float32Array): number | null => {
    if (out.length !== paramSize) throw new InternalError(`a gradient buffer of ${out.length} values for ${paramSize} parameters`);
    const idx = batches[t];
    const [start, end] = sliceRange(idx.length, config.slices, s);
    if (end <= start) return null;
    const rows = idx.subarray(start, end);
    // Only tensors leave the tidy: it would walk every element of a returned typed array.
    const { value, grads } = tf.tidy(() =>
      tf.valueAndGrads((...p: tf.Tensor[]) => lossOver(p, inputsOf(rows), weightsOf(rows, t), idx.length))(state.slice(0, numParams)));
    try {
      let offset = 0;
      for (const g of grads) {
        const v = g.dataSync() as Float32Array;
        out.set(v, offset);
        offset += v.length;
      }
      return value.dataSync()[0];
    } finally {
      tf.dispose([value, ...grads]);
    }
  };

  const applyGradient = (state: readonly tf.Tensor[], grad: Float32Array, t: number): tf.Tensor[] => {
    if (grad.length !== paramSize) throw new InternalError(`a gradient of ${grad.length} values for ${paramSize} parameters`);
    return tf.tidy(() => {
      let offset = 0;
      const grads = model.paramShapes.map(({ shape }, i) => {
        // A copy: `grad` may be shared memory that other threads write next.
        const g = tf.tensor(grad.slice(offset, offset + paramSizes[i]), shape);
        offset += paramSizes[i];
        return g;
      });
      const next = optimizer.update(state.slice(0, numParams), grads, state.slice(numParams), lr(t), t);
      return [...next.params, ...next.slots];
    });
  };

  const initState = (): tf.Tensor[] => {
    const params = model.init(config.seed);
    return [...params, ...optimizer.initSlots(params)];
  };

  const step = (state: readonly tf.Tensor[], wBatch: tf.Tensor1D, t: number, inputs?: BatchInputs): tf.Tensor[] => {
    if (state.length !== numParams * (1 + optimizer.slotsPerParam)) {
      throw new UsageError(`the state has ${state.length} tensors; expected ${numParams * (1 + optimizer.slotsPerParam)}`);
    }
    if (t < 0 || t >= steps) throw new UsageError(`step ${t} is outside 0..${steps - 1}`);
    const r = update(state, wBatch, t, inputs ?? batchInputs(t));
    return r.state;
  };

  const run = async (ro: RunOptions = {}): Promise<{ params: tf.Tensor[]; losses: Float32Array }> => {
    const losses = new Float32Array(steps);
    let state = initState();
    let lastYield = Date.now();
    try {
      for (let t = 0; t < steps; t++) {
        ro.signal?.throwIfAborted();
        const r = tf.tidy(() => update(state, batchWeights(t), t, batchInputs(t)));
        tf.dispose(state);
        state = r.state;
        const value = r.loss.dataSync()[0];
        r.loss.dispose();
        losses[t] = value;
        if (!Number.isFinite(value)) throw new TrainingDivergedError(t, lr(t), `the loss is ${value}`);
        ro.onStep?.(t, value);
        // Let timers and abort signals through during long runs.
        if (Date.now() - lastYield > 200) {
          await new Promise((res) => setImmediate(res));
          lastYield = Date.now();
        }
      }
      const params = state.slice(0, numParams);
      tf.dispose(state.slice(numParams));
      state = params;
      const total = tf.tidy(() => addAll(params.map((p) => tf.sum(p))).dataSync()[0]);
      if (!Number.isFinite(total)) throw new TrainingDivergedError(steps - 1, lr(steps - 1), 'the final parameters are not finite');
      return { params, losses };
    } catch (err) {
      tf.dispose(state);
      throw err;
    }
  };

  return {
    config, model, optimizer, steps, numExamples: n, batches, lr, initState, numParams,
    batchInputs, batchWeights, loss, step, run, spread: opts.spread, paramSize, sliceGradient, applyGradient,
  };
}
