/** random: a uniform, seeded draw — the baseline every selection is compared with. */
import type { Rng } from '../../core/rng.js';
import { ascending } from './common.js';
import type { Selection, Strategy } from './types.js';

/** Uniform without replacement. */
export function randomK(n: number, k: number, rng: Rng): Selection {
  return { indices: ascending(rng.permutation(n).subarray(0, k)) };
}

export const randomStrategy: Strategy = {
  name: 'random',
  description: 'a uniform random subset (seeded): the baseline',
  options: {},
  by: 'optional',
  budget: 'required',
  seeded: true,
  canonical: () => ({}),
  decide: async ({ n, budget, rng }) => ({ selection: randomK(n, budget!, rng('random')), budget: budget! }),
};
