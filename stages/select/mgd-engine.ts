/**
 * The metagradient engine behind `select --strategy mgd --target <dir>`: the
 * MetagradFn that MGD selection (mgd.ts) calls each round,
 * built from a training config, the pool and the target set.
 *
 * Each call trains the pool with per-example loss weights derived from the counts
 * c and returns dφ/dc by exact reverse mode through that run (ml/metagrad.ts),
 * φ = mean cross-entropy on the target after training. Rows with c_i = 0 add
 * nothing to training, yet their dφ/dc_i is well defined (the derivative of φ
 * with respect to letting them in), which is what lets MGD add rows.
 *
 * Normalisation: the trainer's batch loss is Σ w_i ℓ_i / B over a batch of B pool
 * rows. With w = c, a batch holds about B·f selected rows (f = Σc / n, the
 * fraction selected), so the step would shrink with f: a selection of 30% would
 * train with 30% of the learning rate. The engine trains with w = c · n / Σc
 * instead (mean weight over the pool = 1), which makes every step the mean loss
 * over the batch's selected rows: the same run as training on the subset alone
 * with batches of ≈ B·f rows, for the same epochs and learning rate — the run the
 * selection will later get, up to the batch size. Σc is the budget and MGD's swaps
 * keep it, so the factor s = n / Σc is a constant and dφ/dc = s · dφ/dw (the term
 * from differentiating s itself is the same for every row, so it cannot change
 * which swaps help, and is left out).
 *
 * Runs in the calling thread: MGD's rounds are sequential by nature.
 */
import { UsageError } from '../../core/errors.js';
import { fingerprint as computeFingerprint } from '../../core/hash.js';
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../../core/rng.js';
import { subsetExamples, type Examples } from '../../data/batch.js';
import { initBackend, type BackendRequest } from '../../ml/backend.js';
import { meanCrossEntropyTarget, metagradient } from '../../ml/metagrad.js';
import { createTrainer, trainConfigSchema, type TrainConfig } from '../../ml/train.js';
import { quietContext, type StageContext } from '../context.js';
import { slicesField } from '../training.js';
import type { MetagradFn } from './mgd.js';

/** Bumped when the engine's definition of dφ/dc changes (it is part of the key). */
export const MGD_ENGINE_VERSION = '1';

export interface MgdEngineSettings {
  /** The training run differentiated through (its seed included). */
  train: TrainConfig;
  /** REPLAY branching factor (default: the shallowest tree within the memory budget). */
  k?: number;
  /** Memory the stored training states may take, bytes (does not change the result). */
  maxStateBytes: number;
  backend?: BackendRequest;
}

/**
 * Names the engine's setup for the selection's fingerprint: the target's
 * fingerprint, the training config and k (everything that decides dφ/dc besides
 * the pool and the counts).
 */
export function mgdEngineKey(targetFingerprint: string, s: { train: TrainConfig; k: number }): string {
  return computeFingerprint({
    stage: 'mgd-engine',
    stageVersion: MGD_ENGINE_VERSION,
    // slices 1 is whole batches, as when unset: keep the keys made before slices existed.
    options: { train: { ...trainConfigSchema.parse(s.train), slices: undefined, ...slicesField(s.train.slices) }, k: s.k },
    parents: [targetFingerprint],
  });
}

export interface MgdEngine {
  metagrad: MetagradFn;
  /** The loss on the validation part of the target after training with `counts` (plain training, no metagradient). */
  validate(counts: Float32Array): Promise<number>;
  /** φ after each call's training run, in call order (the target loss of each round's counts). */
  targetLosses: number[];
  /** Rows of the target φ is measured on, and of its validation part. */
  split: { phi: number; validation: number };
}

/** The target's validation share: iterates are judged on rows the metagradient never saw. */
export const VALIDATION_FRACTION = 0.2;

/** Splits the target (seeded) into the part φ is measured on and a validation part. */
export function splitTarget(target: Examples, seed: number): { phi: Examples; validation: Examples } {
  const n = target.ids.length;
  const nVal = Math.round(VALIDATION_FRACTION * n);
  if (nVal < 1 || n - nVal < 1) throw new UsageError(`the target set has ${n} rows, too few to hold out a validation part`, { hint: 'Use a target of at least 5 rows' });
  const perm = Rng.derive(seed, 'mgd-validation').permutation(n);
  return {
    validation: subsetExamples(target, Int32Array.from(perm.subarray(0, nVal)).sort()),
    phi: subsetExamples(target, Int32Array.from(perm.subarray(nVal)).sort()),
  };
}

function lossOn(model: Parameters<typeof meanCrossEntropyTarget>[0], ex: Examples, params: readonly tf.Tensor[]): number {
  const tl = meanCrossEntropyTarget(model, ex);
  let v = 0;
  for (let c = 0; c < tl.chunks; c++) v += tf.tidy(() => tl.loss(params as tf.Tensor[], c).dataSync()[0]);
  return v;
}

/** The weights the engine trains with: c scaled to mean 1 over the pool (see the top of this file). */
export function normalisedWeights(counts: Float32Array): { weights: Float32Array; scale: number } {
  let total = 0;
  for (const c of counts) total += c;
  if (!(total > 0)) throw new UsageError('MGD counts sum to 0: the selection is empty', { hint: 'Use a positive budget' });
  const scale = counts.length / total;
  return { weights: counts.map((c) => c * scale), scale };
}

/** The metagradient callback for MGD selection of `pool` rows against `target`. */
export function createMgdEngine(pool: Examples, target: Examples, s: MgdEngineSettings, ctx: StageContext = quietContext()): MgdEngine {
  const targetLosses: number[] = [];
  const { phi, validation } = splitTarget(target, s.train.seed ?? 0);
  let ready: Promise<unknown> | undefined;
  const start = async () => {
    ready ??= initBackend(s.backend ?? 'auto').then((b) => ctx.log.info({ backend: b.label }, 'select: metagradient engine in this thread'));
    await ready;
  };
  const metagrad: MetagradFn = async (counts, { round }) => {
    await start();
    const { weights, scale } = normalisedWeights(counts);
    const trainer = createTrainer(s.train, pool, { weights });
    const progress = ctx.progress(`select: metagradient, round ${round + 1}`, trainer.steps);
    let done = 0;
    let validationLoss = NaN;
    try {
      const res = await metagradient(trainer, meanCrossEntropyTarget(trainer.model, phi), {
        k: s.k,
        maxStateBytes: s.maxStateBytes,
        signal: ctx.signal,
        atEnd: (params) => (validationLoss = lossOn(trainer.model, validation, params)),
        onProgress: (d) => {
          progress.tick(d - done);
          done = d;
        },
      });
      targetLosses.push(res.targetLoss);
      ctx.log.info({ round, targetLoss: res.targetLoss, validationLoss }, 'select: mgd target loss');
      const grad = res.grad;
      for (let i = 0; i < grad.length; i++) grad[i] *= scale;
      return { grad, validationLoss };
    } finally {
      progress.done();
    }
  };
  const validate = async (counts: Float32Array) => {
    await start();
    const trainer = createTrainer(s.train, pool, { weights: normalisedWeights(counts).weights });
    const { params } = await trainer.run();
    try {
      return lossOn(trainer.model, validation, params);
    } finally {
      tf.dispose(params);
    }
  };
  return { metagrad, validate, targetLosses, split: { phi: phi.ids.length, validation: validation.ids.length } };
}
