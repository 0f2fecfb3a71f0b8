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
import type { Selection, Strategy } from './types.js';

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

export const pruneStrategy: Strategy = {
  name: 'prune',
  description: 'drop the bottom --drop fraction by --by, then a uniform draw of the budget from the rest',
  options: {
    drop: z.number().min(0).lt(1).optional().describe(`prune: fraction of the pool dropped from the bottom of the ranking before the random draw (default ${PRUNE_DEFAULTS.drop})`),
  },
  by: 'required',
  budget: 'required',
  seeded: true,
  canonical: (o) => ({ drop: o.drop ?? PRUNE_DEFAULTS.drop }),
  async decide({ scores, budget, options, rng, dataset }) {
    const drop = (options.drop as number | undefined) ?? PRUNE_DEFAULTS.drop;
    const r = pruneThenRandom(scores!, budget!, drop, rng('prune'), dataset.dir);
    return { selection: { indices: r.indices }, budget: budget!, summary: { prune: { drop, dropped_bottom: r.droppedBottom } } };
  },
};
