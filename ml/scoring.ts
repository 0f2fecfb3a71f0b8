/**
 * Per-example scores by method, one seed at a time: the metagradient (ml/metagrad)
 * or a baseline (ml/scores). Every score is oriented so that higher means more
 * valuable to keep:
 *
 * | method     | raw quantity                                   | score          |
 * |------------|------------------------------------------------|----------------|
 * | metagrad   | dφ/dw_i, φ = target loss after training        | −dφ/dw_i       |
 * | loss       | ℓ_i under the trained model                    | −ℓ_i           |
 * | el2n       | ‖softmax(f(x_i)) − y_i‖₂ early in training      | −EL2N          |
 * | grand      | ‖∇θ ℓ_i‖₂ early in training                     | −GraNd         |
 * | forgetting | correct→incorrect flips during training        | −flips         |
 * | tracin     | Σ_t lr_t ⟨∇ℓ(target), ∇ℓ_i⟩ over checkpoints    | as is          |
 *
 * So a noisy or harmful example scores low under every method; the EL2N/GraNd
 * papers' "keep the hardest" pruning is bottom-k of these scores.
 */
import { UsageError } from '../core/errors.js';
import type { Examples } from '../data/batch.js';
import { meanCrossEntropyTarget, metagradient } from './metagrad.js';
import { scoreBaseline } from './scores.js';
import { createTrainer, type TrainConfig } from './train.js';

export const SCORE_METHODS = ['metagrad', 'loss', 'el2n', 'grand', 'forgetting', 'tracin'] as const;
export type ScoreMethod = (typeof SCORE_METHODS)[number];

/** Methods that need a target (validation) set. */
export const NEEDS_TARGET: ReadonlySet<ScoreMethod> = new Set(['metagrad', 'tracin']);

export interface ScoreSettings {
  method: ScoreMethod;
  train: TrainConfig;
  /** REPLAY branching factor (metagrad). */
  k?: number;
  /** Memory budget for stored states (metagrad), bytes. */
  maxStateBytes?: number;
  /** Epochs of training before the "early" baselines (EL2N, GraNd) score. */
  epochsForScore?: number;
}

export interface ScoreOutput {
  scores: Float32Array;
  /** Method-specific numbers worth recording (target loss, REPLAY stats, ...). */
  details: Record<string, unknown>;
}

export async function computeScores(
  train: Examples,
  target: Examples | undefined,
  s: ScoreSettings,
  onProgress?: (done: number, total: number) => void,
): Promise<ScoreOutput> {
  if (NEEDS_TARGET.has(s.method) && !target) {
    throw new UsageError(`${s.method} scores need a target set`, { hint: 'Pass --target <dataset> (a clean held-out set)' });
  }
  if (s.method === 'metagrad') {
    const trainer = createTrainer(s.train, train);
    const res = await metagradient(trainer, meanCrossEntropyTarget(trainer.model, target!), {
      k: s.k,
      maxStateBytes: s.maxStateBytes,
      onProgress,
    });
    const scores = new Float32Array(res.grad.length);
    for (let i = 0; i < scores.length; i++) scores[i] = -res.grad[i];
    return { scores, details: { targetLoss: res.targetLoss, replay: res.stats } };
  }
  // One model per call: the score stage runs seeds as parallel jobs and averages them.
  const res = await scoreBaseline(s.method, train, { train: s.train, target, seeds: 1, epochsForScore: s.epochsForScore, onProgress });
  return { scores: res.scores, details: { ...res.details } };
}
