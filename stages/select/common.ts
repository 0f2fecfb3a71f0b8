/**
 * Helpers the strategies share: budgets, ranking with deterministic ties, and
 * splitting a count over groups. Pure functions over in-memory arrays.
 */
import { UsageError } from '../../core/errors.js';

/**
 * The number of rows a budget keeps: a fraction in (0, 1] of `rows` (rounded),
 * or a whole count from 2 up to `rows`. `1` is the fraction (every row).
 */
export function resolveBudget(budget: number, rows: number, file?: string): number {
  const hint = `Pass a fraction in (0, 1] or a whole count from 1 to ${rows}`;
  if (!Number.isFinite(budget) || budget <= 0) {
    throw new UsageError(`budget ${budget} must be positive (the dataset has ${rows} rows)`, { file, hint });
  }
  if (budget <= 1) {
    const k = Math.round(budget * rows);
    if (k < 1) throw new UsageError(`budget ${budget} keeps no row of the dataset's ${rows} rows`, { file, hint });
    return k;
  }
  if (!Number.isInteger(budget)) {
    throw new UsageError(`budget ${budget} is above 1 but not a whole count of rows (the dataset has ${rows} rows)`, { file, hint });
  }
  if (budget > rows) throw new UsageError(`budget ${budget} is above the dataset's ${rows} rows`, { file, hint });
  return budget;
}

export function ascending(indices: ArrayLike<number>): Uint32Array {
  return Uint32Array.from(indices).sort();
}

/**
 * Row indices ranked by score, best first (`descending`) or worst first; equal
 * scores keep row order. Explicit comparisons, not a difference, so ±Infinity
 * ties are broken by row index too.
 */
export function rankByScore(scores: ArrayLike<number>, descending = true): Uint32Array {
  const order = new Uint32Array(scores.length);
  for (let i = 0; i < order.length; i++) order[i] = i;
  const sign = descending ? -1 : 1;
  return order.sort((a, b) => {
    const sa = scores[a];
    const sb = scores[b];
    if (sa < sb) return -sign;
    if (sa > sb) return sign;
    return a - b;
  });
}

/**
 * Splits `total` over groups in proportion to `sizes` by largest remainder
 * (Hamilton): floors first, then one more to the largest fractional parts, ties
 * to the lower group index. The quotas sum to `total` exactly and none exceeds
 * its group when total ≤ Σ sizes. Integer arithmetic, so no rounding drift.
 */
export function largestRemainder(sizes: number[], total: number): number[] {
  const n = sizes.reduce((a, b) => a + b, 0);
  if (n === 0) return sizes.map(() => 0);
  const quotas = sizes.map((s) => Math.floor((total * s) / n));
  const rest = sizes.map((s) => (total * s) % n);
  let left = total - quotas.reduce((a, b) => a + b, 0);
  const order = sizes.map((_, c) => c).sort((a, b) => rest[b] - rest[a] || a - b);
  for (const c of order) {
    if (left <= 0) break;
    quotas[c]++;
    left--;
  }
  return quotas;
}

/** Rows per class (labels 0…C−1). */
export function classSizes(labels: Int32Array): number[] {
  const numClasses = labels.reduce((m, l) => Math.max(m, l + 1), 0);
  const sizes = new Array<number>(numClasses).fill(0);
  for (const l of labels) sizes[l]++;
  return sizes;
}
