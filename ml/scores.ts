/**
 * Cheap per-example baseline scores (ANCHORS.md, "Cheap per-example baselines"),
 * the references the metagradient scores are compared with. Every method returns
 * one score per training row, oriented so that **higher = more valuable to keep**;
 * `raw` holds the quantity of the paper, unoriented.
 *
 * | method     | raw (mean over seeds)                                   | score  | a low score means                          |
 * |------------|---------------------------------------------------------|--------|--------------------------------------------|
 * | loss       | cross-entropy under the model trained for the full run  | −raw   | hard or mislabelled                        |
 * | el2n       | ‖softmax(f(x)) − y‖₂ after `epochsForScore` epochs      | −raw   | hard or mislabelled                        |
 * | grand      | ‖∇θ ℓ(x, y)‖₂ after `epochsForScore` epochs             | −raw   | hard or mislabelled                        |
 * | forgetting | correct→incorrect flips over the run (never learned:    | −raw   | forgotten often, or never learned          |
 * |            | `epochs`, more than any row can flip, ⌊epochs/2⌋)       |        |                                            |
 * | tracin     | Σ_checkpoints lr_c ⟨∇ℓ_target(θ_c), ∇ℓ(x, y; θ_c)⟩      | +raw   | its gradient step raises the target loss   |
 *
 * Pruning by the papers' rule on clean data ("keep the hardest": high EL2N or
 * GraNd, Paul et al. 2021; the most forgotten, Toneva et al. 2019) is the
 * *bottom*-k by these scores; top-k keeps the easiest rows, which is what one
 * wants when the data has label noise.
 *
 * Conventions: seed s of `seeds` trains with `train.seed + s` (initialisation and
 * batch order); EL2N/GraNd stop after `epochsForScore` epochs of the same run
 * (the learning-rate schedule of the full run, cut short); forgetting judges each
 * row every time it is in a batch, by a forward pass at the parameters the step
 * starts from (the logits of the step itself); TracIn uses plain loss gradients
 * whatever the optimizer (Adam's preconditioning is ignored, as TracInCP does).
 */
import * as tf from '@tensorflow/tfjs';
import { DataError, UsageError } from '../core/errors.js';
import { gatherPixels, gatherTargets, type Examples } from '../data/batch.js';
import { EVAL_BATCH_SIZE, hardLabels } from './evaluate.js';
import type { Model } from './models.js';
import { perExampleCrossEntropy, softmax } from './ops.js';
import { perExampleGradDots, perExampleGradNorms } from './scores/pergrad.js';
import { TrainingDivergedError, createTrainer, trainConfigSchema, type BatchInputs, type TrainConfig, type Trainer } from './train.js';

export { forwardWithTaps, perExampleGradDots, perExampleGradNorms, tapShapes } from './scores/pergrad.js';

export const BASELINE_METHODS = ['loss', 'el2n', 'grand', 'forgetting', 'tracin'] as const;
export type BaselineMethod = (typeof BASELINE_METHODS)[number];

/** Models trained (and averaged) per method unless `seeds` is given: Paul et al. average EL2N/GraNd over inits. */
export const DEFAULT_SEEDS: Readonly<Record<BaselineMethod, number>> = { loss: 1, el2n: 4, grand: 4, forgetting: 1, tracin: 1 };

export interface BaselineOptions {
  /** How the scoring models are trained (model, optimizer, schedule, epochs, batch size, seed). */
  train: TrainConfig;
  /** The target (validation) set; required by tracin. */
  target?: Examples;
  /** Models to train and average, seeds train.seed … train.seed + seeds − 1 (default DEFAULT_SEEDS). */
  seeds?: number;
  /** el2n, grand: epochs of training before scoring, 0 = at initialisation (default: 10% of the run, at least 1). */
  epochsForScore?: number;
  /** tracin: step counts (1…T) after which the parameters are checkpoints (default: the end of every epoch). */
  checkpoints?: number[];
  /** Rows per batch for gradient scores (grand, tracin); default the training batch size. */
  scoreBatchSize?: number;
  /** Work done so far and in total, in steps and scoring batches. */
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface BaselineDetails {
  method: BaselineMethod;
  /** The training seed of each model; scores are the mean over them. */
  seeds: number[];
  /** Optimizer steps each model was trained for before it was scored, of `totalSteps`. */
  stepsTrained: number;
  totalSteps: number;
  /** el2n, grand. */
  epochsForScore?: number;
  /** tracin: the checkpoints (steps) and the learning-rate weight of each (mean lr since the previous one). */
  checkpoints?: number[];
  checkpointLrs?: number[];
  /** forgetting: rows never classified correctly (mean over seeds) and the count they were given. */
  neverLearned?: number;
  neverLearnedCount?: number;
  seconds: number;
}

export interface BaselineResult {
  method: BaselineMethod;
  /** One per training row, higher = more valuable to keep (table at the top). */
  scores: Float32Array;
  /** The unoriented quantity. */
  raw: Float32Array;
  details: BaselineDetails;
}

/** EL2N per row: ‖softmax(logits) − targets‖₂, targets one-hot or soft [B, K]. */
export function el2n(logits: tf.Tensor2D, targets: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => tf.sqrt(tf.sum(tf.square(tf.sub(softmax(logits), targets)), 1)) as tf.Tensor1D);
}

/**
 * Forgetting events (Toneva et al. 2019): feed each row's correctness every time
 * it is presented; a forgetting event is a presentation at which a row that was
 * correct at its previous presentation is wrong.
 */
export class ForgettingTracker {
  readonly forgets: Int32Array;
  readonly presentations: Int32Array;
  /** 1 once a row has been correct at some presentation. */
  readonly learned: Uint8Array;
  private readonly previous: Uint8Array;

  constructor(readonly n: number) {
    this.forgets = new Int32Array(n);
    this.presentations = new Int32Array(n);
    this.learned = new Uint8Array(n);
    this.previous = new Uint8Array(n);
  }

  /** Rows `idx` were just evaluated; correct[r] is row idx[r]'s correctness. */
  update(idx: ArrayLike<number>, correct: ArrayLike<number | boolean>): void {
    if (idx.length !== correct.length) throw new UsageError(`${correct.length} correctness values for ${idx.length} rows`);
    for (let r = 0; r < idx.length; r++) {
      const i = idx[r];
      if (!(i >= 0 && i < this.n)) throw new UsageError(`row ${i} is outside 0..${this.n - 1}`);
      const c = correct[r] ? 1 : 0;
      if (this.previous[i] === 1 && c === 0) this.forgets[i]++;
      if (c === 1) this.learned[i] = 1;
      this.previous[i] = c;
      this.presentations[i]++;
    }
  }

  /** Forgetting counts, with rows never learned (or never presented) at `neverLearned`. */
  counts(neverLearned: number): Float32Array {
    const out = new Float32Array(this.n);
    for (let i = 0; i < this.n; i++) out[i] = this.learned[i] ? this.forgets[i] : neverLearned;
    return out;
  }
}

/** Progress, cancellation and yielding to the event loop during long loops. */
class Work {
  done = 0;
  private lastYield = Date.now();
  constructor(
    readonly total: number,
    private readonly onProgress?: (done: number, total: number) => void,
    private readonly signal?: AbortSignal,
  ) {}

  async tick(): Promise<void> {
    this.done++;
    this.onProgress?.(this.done, this.total);
    this.signal?.throwIfAborted();
    if (Date.now() - this.lastYield > 200) {
      await new Promise((res) => setImmediate(res));
      this.lastYield = Date.now();
    }
  }
}

function batchCount(n: number, batchSize: number): number {
  return Math.ceil(n / batchSize);
}

/** Builds the pixels and targets of rows [s, s + m) as tensors. */
function rowsInputs(ex: Examples, s: number, m: number): BatchInputs {
  const idx = new Int32Array(m);
  for (let r = 0; r < m; r++) idx[r] = s + r;
  const [H, W, C] = ex.shape;
  return {
    x: tf.tensor4d(gatherPixels(ex, idx), [m, H, W, C]),
    y: tf.tensor2d(gatherTargets(ex, idx), [m, ex.numClasses]),
  };
}

/** f over every row of `ex` in fixed-order batches: one value per row. */
async function mapRows(ex: Examples, batchSize: number, work: Work, f: (x: tf.Tensor4D, y: tf.Tensor2D) => tf.Tensor1D): Promise<Float32Array> {
  const n = ex.ids.length;
  const out = new Float32Array(n);
  for (let s = 0; s < n; s += batchSize) {
    const m = Math.min(batchSize, n - s);
    const v = tf.tidy(() => {
      const { x, y } = rowsInputs(ex, s, m);
      return f(x, y);
    });
    out.set(v.dataSync(), s);
    v.dispose();
    await work.tick();
  }
  return out;
}

/** ∇θ of the mean cross-entropy over all rows of `ex` (one tensor per parameter). */
async function meanLossGradient(model: Model, params: readonly tf.Tensor[], ex: Examples, batchSize: number, work: Work): Promise<tf.Tensor[]> {
  const n = ex.ids.length;
  let acc: tf.Tensor[] = params.map((p) => tf.zerosLike(p));
  try {
    for (let s = 0; s < n; s += batchSize) {
      const m = Math.min(batchSize, n - s);
      const next = tf.tidy(() => {
        const { x, y } = rowsInputs(ex, s, m);
        const g = tf.grads((...p: tf.Tensor[]) => tf.sum(perExampleCrossEntropy(model.apply(p, x, { training: true }), y)) as tf.Scalar)(
          params as tf.Tensor[],
        );
        return acc.map((a, j) => tf.add(a, g[j]));
      });
      tf.dispose(acc);
      acc = next;
      await work.tick();
    }
    return tf.tidy(() => acc.map((a) => tf.div(a, n)));
  } finally {
    tf.dispose(acc);
  }
}

function checkFinite(trainer: Trainer, params: readonly tf.Tensor[], t: number): void {
  const total = tf.tidy(() => tf.addN(params.map((p) => tf.sum(p))).dataSync()[0]);
  if (!Number.isFinite(total)) throw new TrainingDivergedError(t - 1, trainer.lr(Math.max(0, t - 1)), 'the parameters are not finite');
}

interface TrainHooks {
  /** Before step t, with the parameters θ_t the step starts from and its batch. */
  beforeStep?: (t: number, params: readonly tf.Tensor[], inputs: BatchInputs) => void;
  /** Called with θ_t after t steps, for each t in `at`. */
  at?: ReadonlySet<number>;
  reached?: (t: number, params: readonly tf.Tensor[]) => Promise<void>;
}

/** Runs the first `stop` steps of `trainer`; returns θ_stop (the caller disposes it). */
async function trainTo(trainer: Trainer, stop: number, work: Work, hooks: TrainHooks = {}): Promise<tf.Tensor[]> {
  const P = trainer.numParams;
  let state = trainer.initState();
  try {
    for (let t = 0; t < stop; t++) {
      const inputs = trainer.batchInputs(t);
      let next: tf.Tensor[];
      try {
        hooks.beforeStep?.(t, state.slice(0, P), inputs);
        next = tf.tidy(() => trainer.step(state, trainer.batchWeights(t), t, inputs));
      } finally {
        tf.dispose([inputs.x, inputs.y]);
      }
      tf.dispose(state);
      state = next;
      if (hooks.at?.has(t + 1)) {
        checkFinite(trainer, state.slice(0, P), t + 1);
        await hooks.reached?.(t + 1, state.slice(0, P));
      }
      await work.tick();
    }
    tf.dispose(state.slice(P));
    state = state.slice(0, P);
    checkFinite(trainer, state, stop);
    return state;
  } catch (err) {
    tf.dispose(state);
    throw err;
  }
}

function positiveInt(name: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new UsageError(`${name} must be a positive integer, got ${v}`);
  return v;
}

function checkTarget(train: Examples, target: Examples | undefined): Examples {
  if (!target) {
    throw new UsageError('tracin needs a target (validation) set', { hint: 'Pass the target dataset (e.g. a held-out validation split) as `target`' });
  }
  if (target.ids.length === 0) throw new DataError('the target set is empty', { hint: 'Use a target set with at least one row' });
  if (target.shape.join('×') !== train.shape.join('×') || target.numClasses !== train.numClasses) {
    throw new DataError(
      `the target set has ${target.shape.join('×')} images and ${target.numClasses} classes; the training set ${train.shape.join('×')} and ${train.numClasses}`,
      { hint: 'Ingest the target set at the same working resolution and with the same label names' },
    );
  }
  if (!target.labels && !target.softLabels) throw new DataError('the target set has no labels', { hint: 'TracIn needs a labelled target set' });
  return target;
}

/**
 * Scores every row of `train` by `method` (table at the top of the file):
 * trains `seeds` models as `opts.train` says, scores the rows with each, and
 * averages. Deterministic for a given backend.
 */
export async function scoreBaseline(method: BaselineMethod, train: Examples, opts: BaselineOptions): Promise<BaselineResult> {
  const started = Date.now();
  if (!BASELINE_METHODS.includes(method)) {
    throw new UsageError(`unknown baseline method '${String(method)}'`, { hint: `Use one of ${BASELINE_METHODS.join(', ')}` });
  }
  const cfg = trainConfigSchema.parse(opts.train);
  const numSeeds = positiveInt('seeds', opts.seeds ?? DEFAULT_SEEDS[method]);
  const seeds = Array.from({ length: numSeeds }, (_, s) => cfg.seed + s);
  const trainerFor = (seed: number) => createTrainer({ ...cfg, seed }, train);
  const first = trainerFor(seeds[0]);
  const T = first.steps;
  const stepsPerEpoch = T / cfg.epochs;
  const n = train.ids.length;
  const bs = positiveInt('scoreBatchSize', opts.scoreBatchSize ?? cfg.batchSize);
  const details: BaselineDetails = { method, seeds, stepsTrained: T, totalSteps: T, seconds: 0 };

  let perSeedWork: number;
  let checkpoints: number[] = [];
  let checkpointLrs: number[] = [];
  let target: Examples | undefined;
  if (method === 'el2n' || method === 'grand') {
    const e = opts.epochsForScore ?? Math.min(cfg.epochs, Math.max(1, Math.round(cfg.epochs / 10)));
    if (!(e >= 0 && e <= cfg.epochs)) {
      throw new UsageError(`epochsForScore must be within 0…${cfg.epochs} (the training epochs), got ${e}`);
    }
    details.epochsForScore = e;
    details.stepsTrained = Math.round(e * stepsPerEpoch);
    perSeedWork = details.stepsTrained + batchCount(n, method === 'el2n' ? EVAL_BATCH_SIZE : bs);
  } else if (method === 'tracin') {
    target = checkTarget(train, opts.target);
    checkpoints = opts.checkpoints ? [...opts.checkpoints] : Array.from({ length: cfg.epochs }, (_, e) => Math.round((e + 1) * stepsPerEpoch));
    checkpoints.forEach((c, j) => {
      if (!Number.isInteger(c) || c < 1 || c > T || (j > 0 && c <= checkpoints[j - 1])) {
        throw new UsageError(`checkpoints must be increasing step counts within 1…${T}, got [${checkpoints.join(', ')}]`);
      }
    });
    if (checkpoints.length === 0) throw new UsageError('tracin needs at least one checkpoint');
    checkpointLrs = checkpoints.map((c, j) => {
      const from = j === 0 ? 0 : checkpoints[j - 1];
      let sum = 0;
      for (let t = from; t < c; t++) sum += first.lr(t);
      return sum / (c - from);
    });
    details.checkpoints = checkpoints;
    details.checkpointLrs = checkpointLrs;
    details.stepsTrained = checkpoints[checkpoints.length - 1];
    perSeedWork = details.stepsTrained + checkpoints.length * (batchCount(target.ids.length, bs) + batchCount(n, bs));
  } else {
    perSeedWork = T + (method === 'loss' ? batchCount(n, EVAL_BATCH_SIZE) : 0);
  }

  const work = new Work(numSeeds * perSeedWork, opts.onProgress, opts.signal);
  const raw = new Float32Array(n);
  const add = (v: ArrayLike<number>) => {
    for (let i = 0; i < n; i++) raw[i] += v[i] / numSeeds;
  };
  let neverLearned = 0;

  for (const seed of seeds) {
    const trainer = seed === seeds[0] ? first : trainerFor(seed);
    const model = trainer.model;
    let params: tf.Tensor[] = [];
    try {
      switch (method) {
        case 'loss':
          params = await trainTo(trainer, T, work);
          add(await mapRows(train, EVAL_BATCH_SIZE, work, (x, y) => perExampleCrossEntropy(model.apply(params, x), y)));
          break;
        case 'el2n':
          params = await trainTo(trainer, details.stepsTrained, work);
          add(await mapRows(train, EVAL_BATCH_SIZE, work, (x, y) => el2n(model.apply(params, x), y)));
          break;
        case 'grand':
          params = await trainTo(trainer, details.stepsTrained, work);
          add(await mapRows(train, bs, work, (x, y) => perExampleGradNorms(model, params, x, y)));
          break;
        case 'forgetting': {
          const labels = hardLabels(train);
          const tracker = new ForgettingTracker(n);
          params = await trainTo(trainer, T, work, {
            beforeStep: (t, p, inputs) => {
              const idx = trainer.batches[t];
              const pred = tf.tidy(() => tf.argMax(model.apply(p, inputs.x, { training: true }), 1));
              const predicted = pred.dataSync();
              pred.dispose();
              tracker.update(idx, Array.from(idx, (i, r) => predicted[r] === labels[i]));
            },
          });
          add(tracker.counts(cfg.epochs));
          neverLearned += (n - tracker.learned.reduce((a, v) => a + v, 0)) / numSeeds;
          break;
        }
        case 'tracin': {
          const tgt = target!;
          params = await trainTo(trainer, details.stepsTrained, work, {
            at: new Set(checkpoints),
            reached: async (t, p) => {
              const lr = checkpointLrs[checkpoints.indexOf(t)];
              const g = await meanLossGradient(model, p, tgt, bs, work);
              try {
                const dots = await mapRows(train, bs, work, (x, y) => perExampleGradDots(model, p, x, y, g));
                add(dots.map((d) => d * lr));
              } finally {
                tf.dispose(g);
              }
            },
          });
          break;
        }
      }
    } finally {
      tf.dispose(params);
    }
  }

  for (let i = 0; i < n; i++) {
    if (!Number.isFinite(raw[i])) {
      throw new TrainingDivergedError(details.stepsTrained - 1, first.lr(Math.max(0, details.stepsTrained - 1)), `the ${method} score of row ${i} is ${raw[i]}`);
    }
  }
  if (method === 'forgetting') {
    details.neverLearned = neverLearned;
    details.neverLearnedCount = cfg.epochs;
  }
  // 0 − v, not −v: no −0 in the output.
  const scores = method === 'tracin' ? raw.slice() : raw.map((v) => 0 - v);
  details.seconds = (Date.now() - started) / 1000;
  return { method, scores, raw, details };
}
