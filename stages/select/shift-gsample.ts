/**
 * shift-gsample (Alchemist): rank by score, best first; drop the top `shift` of
 * the pool; sample the budget from the rest without replacement with probability
 * ∝ exp(−(p − μ)² / 2σ²), p = the row's percentile in the whole pool, (rank + ½)/n.
 * Sampling without replacement by exponential keys (Efraimidis–Spirakis): the k
 * smallest keys E_i = −log(u_i) / w_i win; keys are compared as logarithms, so
 * far-tail weights that would underflow exp() still order correctly.
 */
import { z } from 'zod';
import { UsageError } from '../../core/errors.js';
import type { Rng } from '../../core/rng.js';
import { ascending, rankByScore } from './common.js';
import type { Selection, Strategy } from './types.js';

/**
 * μ = 0.5 centres on the best block Alchemist reports (40th–60th percentile);
 * σ = 0.15 puts about half the mass inside it, so half the pool can be drawn
 * without scraping the tails; 0.1 drops the top decile.
 */
export const SHIFT_GSAMPLE_DEFAULTS = { shift: 0.1, mu: 0.5, sigma: 0.15 } as const;

export interface ShiftGsampleOptions {
  shift: number;
  mu: number;
  sigma: number;
}

export interface ShiftGsampleResult extends Selection {
  droppedTop: number;
  /** Mean percentile (0 = best) of the kept rows. */
  keptPercentileMean: number;
}

/** A uniform draw in (0, 1): never 0, so its logarithm is finite. */
function openUnit(rng: Rng): number {
  return (rng.nextUint32() + 0.5) / 4294967296;
}

export function shiftGsample(scores: Float64Array, k: number, opts: ShiftGsampleOptions, rng: Rng, file?: string): ShiftGsampleResult {
  const n = scores.length;
  const ranked = rankByScore(scores, true);
  const droppedTop = Math.round(opts.shift * n);
  const candidates = n - droppedTop;
  if (k > candidates) {
    throw new UsageError(`budget ${k} is above the ${candidates} rows left after dropping the top ${droppedTop} (shift ${opts.shift} of ${n} rows)`, {
      file,
      hint: 'Lower the budget or the shift',
    });
  }
  const keys = new Float64Array(candidates);
  const twoVar = 2 * opts.sigma * opts.sigma;
  for (let r = droppedTop; r < n; r++) {
    const p = (r + 0.5) / n;
    const logW = -((p - opts.mu) ** 2) / twoVar;
    keys[r - droppedTop] = Math.log(-Math.log(openUnit(rng))) - logW;
  }
  // Smallest keys first; rank order (hence row order among equal scores) breaks ties.
  const order = rankByScore(keys, false).subarray(0, k);
  let percentileSum = 0;
  const kept = Array.from(order, (j) => {
    percentileSum += (j + droppedTop + 0.5) / n;
    return ranked[j + droppedTop];
  });
  return { indices: ascending(kept), droppedTop, keptPercentileMean: k > 0 ? percentileSum / k : NaN };
}

function paramsOf(o: Record<string, unknown>): ShiftGsampleOptions {
  return {
    shift: (o.shift as number | undefined) ?? SHIFT_GSAMPLE_DEFAULTS.shift,
    mu: (o.mu as number | undefined) ?? SHIFT_GSAMPLE_DEFAULTS.mu,
    sigma: (o.sigma as number | undefined) ?? SHIFT_GSAMPLE_DEFAULTS.sigma,
  };
}

export const shiftGsampleStrategy: Strategy = {
  name: 'shift-gsample',
  description: 'Alchemist: drop the top --shift, sample the rest around percentile --mu with width --sigma',
  options: {
    shift: z.number().min(0).lt(1).optional().describe(`shift-gsample: fraction of the pool dropped from the top of the ranking (default ${SHIFT_GSAMPLE_DEFAULTS.shift})`),
    mu: z.number().min(0).max(1).optional().describe(`shift-gsample: centre of the sampling density, a percentile of the pool, 0 = best (default ${SHIFT_GSAMPLE_DEFAULTS.mu})`),
    sigma: z.number().positive().optional().describe(`shift-gsample: width of the sampling density, in percentile units (default ${SHIFT_GSAMPLE_DEFAULTS.sigma})`),
  },
  by: 'required',
  budget: 'required',
  seeded: true,
  canonical: (o) => ({ ...paramsOf(o) }),
  async decide({ scores, budget, options, rng, dataset }) {
    const params = paramsOf(options);
    const r = shiftGsample(scores!, budget!, params, rng('shift-gsample'), dataset.dir);
    const mean = Number.isFinite(r.keptPercentileMean) ? r.keptPercentileMean : null;
    return {
      selection: { indices: r.indices },
      budget: budget!,
      summary: { shift_gsample: { ...params, dropped_top: r.droppedTop, kept_percentile_mean: mean } },
    };
  },
};
