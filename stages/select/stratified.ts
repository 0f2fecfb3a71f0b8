/** stratified: per-class top-k, each class keeping its share of the pool. */
import { ascending, classSizes, largestRemainder, rankByScore } from './common.js';
import type { Selection, Strategy } from './types.js';

/** Per-class top-k: each class keeps its share of the pool (largest remainder), its best rows first. */
export function stratifiedTopK(scores: Float64Array, labels: Int32Array, k: number): Selection {
  const quotas = largestRemainder(classSizes(labels), k);
  const taken = new Array<number>(quotas.length).fill(0);
  const kept: number[] = [];
  for (const i of rankByScore(scores, true)) {
    const c = labels[i];
    if (taken[c] < quotas[c]) {
      taken[c]++;
      kept.push(i);
      if (kept.length === k) break;
    }
  }
  return { indices: ascending(kept) };
}

export const stratifiedStrategy: Strategy = {
  name: 'stratified',
  description: 'per-class top-k: each class keeps its share of the pool, best rows first',
  options: {},
  by: 'required',
  budget: 'required',
  seeded: false,
  needsLabels: true,
  canonical: () => ({}),
  decide: async ({ scores, labels, budget }) => ({ selection: stratifiedTopK(scores!, labels!, budget!), budget: budget! }),
};
