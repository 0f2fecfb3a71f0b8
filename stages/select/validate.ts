/**
 * Choosing between candidate selections on the target set: quick models (the
 * evaluate stage's fast preset, a few seeds, in worker threads) train on each
 * candidate and are scored on the target; the best wins, a near tie going to
 * the earlier (more conservative) candidate. Strategies with an 'auto' setting
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

/** The target set an 'auto' setting chooses on, checked against the pool. */
export async function targetPlan(inputs: NamedInputs, what: string): Promise<StrategyPlan> {
  const dir = needTarget(inputs, what, true);
  const pool = await describeDataset(inputs.dataset[0], 'pool');
  const target = await describeDataset(dir, 'target');
  // Quick models train on the pool's labels and are tested on the target's.
  checkLabelled(pool);
  checkLabelled(target);
  checkCompatible(pool, target);
  return { parents: [{ fingerprint: target.ds.fingerprint, path: target.dir, role: 'target' }], state: target };
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

/** Trains quick models on each candidate and returns their mean accuracy on the target. */
export async function scoreOnTarget(input: DecideInput, target: DataInfo, candidates: Uint32Array[], seeds = VALIDATION_SEEDS): Promise<number[]> {
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
    return candidates.map((_, j) => results.slice(j * seeds, (j + 1) * seeds).reduce((a, r) => a + r.accuracy, 0) / seeds);
  } finally {
    progress.done();
  }
}

/** The best candidate; one within a target row's worth of accuracy of an earlier one does not replace it. */
export function bestOf(accuracies: number[], targetRows: number): number {
  const tol = 1 / targetRows;
  return accuracies.reduce((b, s, j) => (s > accuracies[b] + tol ? j : b), 0);
}
