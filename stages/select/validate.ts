/**
 * Choosing between candidate selections on the target set: quick models (the
 * evaluate stage's fast preset, a few seeds, in worker threads) train on each
 * candidate and are scored on the target; the best wins unless it beats an
 * earlier (more conservative) candidate by less than the quick models' own
 * seed-to-seed noise. Strategies with an 'auto' setting
 * (curate's level, prune's drop) use it, so the target decides how hard to cut.
 */
import { UsageError } from '../../core/errors.js';
import { runJobs, type EvaluateJob } from '../../ml/pool.js';
import { defaultEpochs, PRESETS } from '../evaluate.js';
import { one, type NamedInputs } from '../define.js';
import { checkCompatible, checkLabelled, describeDataset, type DataInfo } from '../inputs.js';
import type { DecideInput, StrategyPlan } from './types.js';

/** Seeds per candidate: enough to steady the choice, cheap beside the scores. */
export const VALIDATION_SEEDS = 2;

/** Names the choice rule in the fingerprint of selections made by it (see `chooseCandidate`). */
export const CHOICE_RULE = 'beyond-seed-noise';

/** The target set an 'auto' setting chooses on, checked against the pool. */
export async function targetPlan(inputs: NamedInputs, what: string): Promise<StrategyPlan> {
  const dir = needTarget(inputs, what, true);
  const pool = await describeDataset(inputs.dataset[0], 'pool');
  const target = await describeDataset(dir, 'target');
  // Quick models train on the pool's labels and are tested on the target's.
  checkLabelled(pool);
  checkLabelled(target);
  checkCompatible(pool, target);
  return { parents: [{ fingerprint: target.ds.fingerprint, path: target.dir, role: 'target' }], options: { choice: CHOICE_RULE }, state: target };
}

/**
 * Refuses a target set given to a setting that uses none (`uses` false), or one
 * missing where the setting chooses on it (`uses` true). Returns the target.
 */
export function needTarget(inputs: NamedInputs, what: string, uses: boolean): string {
  const dir = one(inputs, 'target');
  if (uses && dir === undefined) throw new UsageError(`${what} chooses on a target set`, { hint: 'Pass --target <dir> (a clean held-out set), or give the setting a value' });
  if (!uses && dir !== undefined) throw new UsageError(`${what} uses no target set`, { hint: 'Drop --target, or let the setting be chosen on the target (auto)' });
  return dir!;
}

/** Trains quick models on each candidate; returns their accuracies on the target, per candidate and seed. */
export async function scoreOnTarget(input: DecideInput, target: DataInfo, candidates: Uint32Array[], seeds = VALIDATION_SEEDS): Promise<number[][]> {
  const preset = PRESETS.fast;
  const epochs = defaultEpochs(input.budget!, preset.batchSize, preset);
  const jobs: EvaluateJob[] = candidates.flatMap((c) => Array.from({ length: seeds }, (_, s): EvaluateJob => ({
    kind: 'evaluate',
    train: { dir: input.dataset.dir, indices: Int32Array.from(c) },
    test: { dir: target.dir },
    config: { model: preset.model, optimizer: preset.optimizer, schedule: preset.schedule, batchSize: preset.batchSize, epochs, seed: input.options.seed + s },
  })));
  const progress = input.ctx.progress('select: scoring candidates on the target', jobs.length);
  try {
    const results = await runJobs(jobs, { backend: input.options.backend as never, signal: input.ctx.signal, runner: input.ctx.jobRunner, onResult: () => progress.tick() });
    return candidates.map((_, j) => results.slice(j * seeds, (j + 1) * seeds).map((r) => r.accuracy));
  } finally {
    progress.done();
  }
}

export interface Choice {
  best: number;
  /** Each candidate's mean accuracy over its seeds. */
  means: number[];
  /** How much more a later candidate needed to replace an earlier one. */
  tolerance: number;
}

/**
 * The candidate to keep, from each candidate's accuracies over the same seeds.
 * Scanning from the most conservative, a candidate replaces the best so far
 * only when its mean is higher by more than one standard error of a difference
 * of two means, estimated from the seed-to-seed spread pooled over candidates
 * (and by at least one target row). A smaller gap is noise: on a clean pool the
 * candidates that drop rows otherwise win about half the time by luck alone.
 */
export function chooseCandidate(accuracies: number[][], targetRows: number): Choice {
  const means = accuracies.map((a) => a.reduce((s, x) => s + x, 0) / a.length);
  let pooled = 0;
  let groups = 0;
  accuracies.forEach((a, j) => {
    if (a.length < 2) return;
    pooled += a.reduce((v, x) => v + (x - means[j]) ** 2, 0) / (a.length - 1);
    groups++;
  });
  const variance = groups ? pooled / groups : 0;
  const seeds = Math.min(...accuracies.map((a) => a.length));
  const tolerance = Math.max(1 / targetRows, Math.sqrt((2 * variance) / seeds));
  const best = means.reduce((b, m, j) => (m > means[b] + tolerance ? j : b), 0);
  return { best, means, tolerance };
}
