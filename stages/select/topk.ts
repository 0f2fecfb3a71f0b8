/** topk / bottomk: the best / worst `budget` rows by `by`, ties by row order. */
import { ascending, rankByScore } from './common.js';
import type { Selection, Strategy } from './types.js';

/** The `k` highest-scoring rows. */
export function topK(scores: Float64Array, k: number): Selection {
  return { indices: ascending(rankByScore(scores, true).subarray(0, k)) };
}

/** The `k` lowest-scoring rows. */
export function bottomK(scores: Float64Array, k: number): Selection {
  return { indices: ascending(rankByScore(scores, false).subarray(0, k)) };
}

export const topkStrategy: Strategy = {
  name: 'topk',
  description: 'the best `budget` rows by --by',
  options: {},
  by: 'required',
  budget: 'required',
  seeded: false,
  canonical: () => ({}),
  decide: async ({ scores, budget }) => ({ selection: topK(scores!, budget!), budget: budget! }),
};

export const bottomkStrategy: Strategy = {
  name: 'bottomk',
  description: 'the worst `budget` rows by --by (e.g. "keep the hardest" by EL2N)',
  options: {},
  by: 'required',
  budget: 'required',
  seeded: false,
  canonical: () => ({}),
  decide: async ({ scores, budget }) => ({ selection: bottomK(scores!, budget!), budget: budget! }),
};
