/**
 * ccs, coverage-centric coreset selection (Zheng et al. 2023): drop the most
 * harmful β of the pool by --by, then spread the budget evenly over equal-width
 * bins of the score range (a bin with fewer rows than its share gives all it
 * has, the rest go to the others), drawing uniformly inside each bin. Unlike
 * top-k it keeps rows of every difficulty; unlike random it does not spend the
 * budget where the scores crowd. β grows as the budget shrinks (see betaFor).
 */
import { z } from 'zod';
import { UsageError } from '../../core/errors.js';
import type { Rng } from '../../core/rng.js';
import { ascending, rankByScore } from './common.js';
import type { Strategy } from './types.js';

export const CCS_DEFAULTS = { bins: 50 } as const;

/** Shared by the strategies that spread their budget over score bins. */
export const binsOption = z.number().int().min(1).optional()
  .describe(`ccs, curate: equal-width score bins the budget is spread over (default: ccs ${CCS_DEFAULTS.bins}, curate 10 within each class)`);

/**
 * The pruned fraction for a budget (a fraction of the pool): about 0.35 at 10%,
 * 0.17 at 30%, none from 50% up, as CCS's sweeps found best on CIFAR; never more
 * than leaves the budget.
 */
export function betaFor(fraction: number): number {
  return Math.min(Math.max(0, 0.875 * (0.5 - fraction)), 1 - fraction);
}

/** Splits `budget` over groups of the given sizes as evenly as they allow: small groups give all they have. */
export function evenSplit(sizes: number[], budget: number): number[] {
  const quota = new Array<number>(sizes.length).fill(0);
  let left = budget;
  const order = sizes.map((_, i) => i).sort((a, b) => sizes[a] - sizes[b] || a - b);
  order.forEach((g, j) => {
    const share = Math.floor(left / (order.length - j));
    quota[g] = Math.min(sizes[g], share);
    left -= quota[g];
  });
  // Rounding leftovers go one each to groups with room, largest first.
  for (const g of [...order].reverse()) {
    if (left <= 0) break;
    if (quota[g] < sizes[g]) {
      quota[g]++;
      left--;
    }
  }
  return quota;
}

/** Coverage sampling of `k` of `rows` by their scores: equal-width bins, an even split, uniform draws inside. */
export function coverageSample(rows: ArrayLike<number>, scores: ArrayLike<number>, k: number, bins: number, rng: Rng): number[] {
  if (k >= rows.length) return Array.from(rows);
  let lo = Infinity;
  let hi = -Infinity;
  for (let j = 0; j < rows.length; j++) {
    lo = Math.min(lo, scores[rows[j]]);
    hi = Math.max(hi, scores[rows[j]]);
  }
  const width = (hi - lo) / bins;
  const members: number[][] = Array.from({ length: bins }, () => []);
  for (let j = 0; j < rows.length; j++) {
    const b = width > 0 ? Math.min(bins - 1, Math.floor((scores[rows[j]] - lo) / width)) : 0;
    members[b].push(rows[j]);
  }
  const quota = evenSplit(members.map((m) => m.length), k);
  return members.flatMap((m, b) => rng.shuffle(m.slice()).slice(0, quota[b]));
}

export function ccsSelect(scores: Float64Array, k: number, beta: number, bins: number, rng: Rng, file?: string): { indices: Uint32Array; dropped: number } {
  const n = scores.length;
  const ranked = rankByScore(scores, true);
  const dropped = Math.round(beta * n);
  if (k > n - dropped) {
    throw new UsageError(`budget ${k} is above the ${n - dropped} rows left after dropping ${dropped} (beta ${beta})`, { file, hint: 'Lower the budget or --beta' });
  }
  return { indices: ascending(coverageSample(ranked.subarray(0, n - dropped), scores, k, bins, rng)), dropped };
}

export const ccsStrategy: Strategy = {
  name: 'ccs',
  description: 'coverage-centric: drop the most harmful --beta by --by, then spread the budget evenly over score bins',
  options: {
    beta: z.number().min(0).lt(1).optional().describe('ccs: fraction of the pool dropped from the harmful end first (default: from the budget, 0.35 at 10% to 0 from 50%)'),
    bins: binsOption,
  },
  by: 'required',
  budget: 'required',
  seeded: true,
  canonical: (o) => ({ beta: o.beta, bins: (o.bins as number | undefined) ?? CCS_DEFAULTS.bins }),
  async decide({ scores, budget, n, options, rng, dataset }) {
    const beta = (options.beta as number | undefined) ?? betaFor(budget! / n);
    const r = ccsSelect(scores!, budget!, beta, (options.bins as number | undefined) ?? CCS_DEFAULTS.bins, rng('ccs'), dataset.dir);
    return { selection: { indices: r.indices }, budget: budget!, summary: { ccs: { beta, dropped: r.dropped } } };
  },
};
