/**
 * prune: drop the lowest-scoring `drop` fraction of the pool (the suspected
 * harmful rows, e.g. mislabelled ones), then draw the budget uniformly from the
 * rest: a random subset of the cleaner pool, which keeps random's coverage of
 * easy and hard rows alike (top-k keeps only the easiest).
 */
import { z } from 'zod';
import { UsageError } from '../../core/errors.js';
import type { Rng } from '../../core/rng.js';
import { ascending, rankByScore } from './common.js';
import type { DataInfo } from '../inputs.js';
import type { Selection, Strategy } from './types.js';
import { scoreOnTarget, bestOf, needTarget, targetPlan } from './validate.js';

export const PRUNE_DEFAULTS = { drop: 0.2 } as const;

export function pruneThenRandom(scores: Float64Array, k: number, drop: number, rng: Rng, file?: string): Selection & { droppedBottom: number } {
  const n = scores.length;
  const ranked = rankByScore(scores, true);
  const droppedBottom = Math.round(drop * n);
  const candidates = n - droppedBottom;
  if (k > candidates) {
    throw new UsageError(`budget ${k} is above the ${candidates} rows left after dropping the bottom ${droppedBottom} (drop ${drop} of ${n} rows)`, {
      file,
      hint: 'Lower the budget or --drop',
    });
  }
  const chosen = rng.permutation(candidates).subarray(0, k);
  return { indices: ascending(Array.from(chosen, (j) => ranked[j])), droppedBottom };
}

/** The drops 'auto' chooses between on the target, least first. */
export const AUTO_DROPS = [0, 0.1, 0.2, 0.3] as const;

export const pruneStrategy: Strategy = {
  name: 'prune',
  description: 'drop the bottom --drop fraction by --by (or the fraction the target set prefers: --drop auto), then a uniform draw of the budget from the rest',
  options: {
    drop: z.union([z.number().min(0).lt(1), z.literal('auto')]).optional()
      .describe(`prune: fraction of the pool dropped from the bottom of the ranking before the random draw, or auto: the one of ${AUTO_DROPS.join(', ')} whose quick models do best on --target (default ${PRUNE_DEFAULTS.drop})`),
  },
  by: 'required',
  budget: 'required',
  seeded: true,
  needsTarget: true,
  canonical: (o) => ({ drop: o.drop ?? PRUNE_DEFAULTS.drop }),
  checkInputs(inputs, o) {
    needTarget(inputs, `prune --drop ${o.drop ?? PRUNE_DEFAULTS.drop}`, o.drop === 'auto');
  },
  async plan(inputs, o) {
    return o.drop === 'auto' ? targetPlan(inputs, 'prune --drop auto') : {};
  },
  async decide(input) {
    const { scores, budget, options, rng, dataset } = input;
    const target = input.plan as DataInfo | undefined;
    const drops = target ? [...AUTO_DROPS].filter((d) => budget! <= scores!.length - Math.round(d * scores!.length)) : [(options.drop as number | undefined) ?? PRUNE_DEFAULTS.drop];
    const candidates = drops.map((d) => pruneThenRandom(scores!, budget!, d, rng('prune'), dataset.dir));
    const accuracy = target ? await scoreOnTarget(input, target, candidates.map((c) => c.indices)) : undefined;
    const j = accuracy ? bestOf(accuracy, target!.n) : 0;
    return {
      selection: { indices: candidates[j].indices },
      budget: budget!,
      summary: { prune: { drop: drops[j], dropped_bottom: candidates[j].droppedBottom, ...(accuracy ? { target_accuracy: Object.fromEntries(drops.map((d, i) => [d, accuracy[i]])) } : {}) } },
    };
  },
};
