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
import { DataError, UsageError } from '../core/errors.js';
import { batchSchedule, featureLength, gatherPixels, gatherTargets, type Examples } from '../data/batch.js';
import { pixelRowCount } from '../data/pixel-rows.js';
import { makeModel, modelSpecSchema, type Model } from './models.js';
import { makeOptimizer, optimizerSpecSchema, type Optimizer } from './optim.js';
import { makeSchedule, scheduleSpecSchema } from './schedule.js';
import { perExampleCrossEntropy } from './ops.js';

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
}

export interface TrainerOptions {
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

  const batchInputs = (t: number): BatchInputs => {
    const idx = batches[t];
    return {
      x: tf.tensor4d(gatherPixels(train, idx), [idx.length, H, W, C]),
      y: tf.tensor2d(gatherTargets(train, idx), [idx.length, K]),
    };
  };

  const weightsFrom = opts.weightsFrom ?? 0;
  const batchWeights = (t: number): tf.Tensor1D => {
    const idx = batches[t];
    if (!weights || t < weightsFrom) return tf.ones([idx.length]);
    const w = new Float32Array(idx.length);
    for (let i = 0; i < idx.length; i++) w[i] = weights[idx[i]];
    return tf.tensor1d(w);
  };

  const loss = (params: readonly tf.Tensor[], inputs: BatchInputs, wBatch?: tf.Tensor1D): tf.Scalar => {
    const l = perExampleCrossEntropy(model.apply(params, inputs.x, { training: true }), inputs.y);
    const total = wBatch ? tf.sum(tf.mul(l, wBatch)) : tf.sum(l);
    return tf.div(total, inputs.x.shape[0]);
  };

  /** The update, and the loss at the current parameters (for plain training). */
  const update = (state: readonly tf.Tensor[], wBatch: tf.Tensor1D, t: number, inputs: BatchInputs) => {
    const params = state.slice(0, numParams);
    const slots = state.slice(numParams);
    const { value, grads } = tf.valueAndGrads((...p: tf.Tensor[]) => loss(p, inputs, wBatch))(params);
    const next = optimizer.update(params, grads, slots, lr(t), t);
    return { state: [...next.params, ...next.slots], loss: value };
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
      const total = tf.tidy(() => tf.addN(params.map((p) => tf.sum(p))).dataSync()[0]);
      if (!Number.isFinite(total)) throw new TrainingDivergedError(steps - 1, lr(steps - 1), 'the final parameters are not finite');
      return { params, losses };
    } catch (err) {
      tf.dispose(state);
      throw err;
    }
  };

  return {
    config, model, optimizer, steps, numExamples: n, batches, lr, initState, numParams,
    batchInputs, batchWeights, loss, step, run,
  };
}
