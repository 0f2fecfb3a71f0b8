/** threshold: rows scoring at least `threshold`; with a budget, only that many of the best. */
import { z } from 'zod';
import { UsageError } from '../../core/errors.js';
import { ascending, rankByScore } from './common.js';
import type { Selection, Strategy } from './types.js';

/** Rows scoring at least `threshold`; with a `cap`, only the `cap` best of them. */
export function aboveThreshold(scores: Float64Array, threshold: number, cap?: number): Selection {
  const pass: number[] = [];
  for (let i = 0; i < scores.length; i++) if (scores[i] >= threshold) pass.push(i);
  if (cap === undefined || pass.length <= cap) return { indices: Uint32Array.from(pass) };
  const sub = Float64Array.from(pass, (i) => scores[i]);
  const best = rankByScore(sub, true).subarray(0, cap);
  return { indices: ascending(Array.from(best, (j) => pass[j])) };
}

export const thresholdStrategy: Strategy = {
  name: 'threshold',
  description: 'rows with --by at least --threshold (at most --budget of them, the best)',
  options: {
    threshold: z.number().optional().describe('threshold: keep rows whose score is at least this'),
  },
  by: 'required',
  budget: 'cap',
  seeded: false,
  check(o) {
    if (o.threshold === undefined) throw new UsageError('strategy threshold needs a threshold', { hint: 'Pass --threshold <score>: rows scoring at least this are kept' });
  },
  canonical: (o) => ({ threshold: o.threshold }),
  // Without a cap, a row's fate is its own score's: rows appended later are selected alone.
  perRow: (o) => o.budget === undefined,
  decide: async ({ scores, budget, options }) => ({
    selection: aboveThreshold(scores!, options.threshold as number, budget),
    budget: budget ?? null,
  }),
};
