/**
 * Rank statistics for judging scores: AUROC (how well a score separates two
 * groups of rows) and Spearman's rank correlation (how alike two rankings are).
 * Ties get the average of the ranks they span, so both are well defined for
 * scores with many equal values (e.g. forgetting counts).
 */
import { DataError, UsageError } from './errors.js';

type Numbers = ArrayLike<number>;

function checkFinite(values: Numbers, name: string): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) {
      throw new DataError(`${name} has a non-finite value (${values[i]})`, { row: i, hint: 'Scores must be finite numbers' });
    }
  }
}

/** 1-based ranks of `values` in ascending order; tied values share the mean of their ranks. */
export function averageRanks(values: Numbers): Float64Array {
  const n = values.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => values[a] - values[b]);
  const ranks = new Float64Array(n);
  for (let start = 0; start < n; ) {
    let end = start + 1;
    while (end < n && values[order[end]] === values[order[start]]) end++;
    // Positions start..end-1 hold ranks start+1..end; their mean:
    const rank = (start + 1 + end) / 2;
    for (let j = start; j < end; j++) ranks[order[j]] = rank;
    start = end;
  }
  return ranks;
}

/**
 * Area under the ROC curve of `scores` for telling `positives` from the other
 * rows: the probability that a random positive scores higher than a random
 * negative, ties counting one half (the Mann–Whitney U statistic over P·N).
 * 1 = every positive above every negative, 0.5 = no better than chance.
 */
export function auroc(scores: Numbers, positives: ArrayLike<boolean | number>): number {
  if (scores.length !== positives.length) {
    throw new UsageError(`auroc: ${scores.length} scores but ${positives.length} positive flags`);
  }
  checkFinite(scores, 'auroc: scores');
  const ranks = averageRanks(scores);
  let p = 0;
  let rankSum = 0;
  for (let i = 0; i < ranks.length; i++) {
    if (positives[i]) {
      p++;
      rankSum += ranks[i];
    }
  }
  const neg = scores.length - p;
  if (p === 0 || neg === 0) {
    throw new UsageError(`auroc needs at least one positive and one negative row, got ${p} and ${neg}`);
  }
  return (rankSum - (p * (p + 1)) / 2) / (p * neg);
}

/**
 * Spearman's rank correlation: the Pearson correlation of the two average-rank
 * vectors. NaN when either input is constant (the correlation is undefined).
 */
export function spearman(a: Numbers, b: Numbers): number {
  if (a.length !== b.length) throw new UsageError(`spearman: the inputs have ${a.length} and ${b.length} values`);
  if (a.length < 2) throw new UsageError(`spearman needs at least 2 values, got ${a.length}`);
  checkFinite(a, 'spearman: first input');
  checkFinite(b, 'spearman: second input');
  const ra = averageRanks(a);
  const rb = averageRanks(b);
  // Both rank vectors have mean (n + 1) / 2.
  const mean = (a.length + 1) / 2;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < ra.length; i++) {
    const da = ra[i] - mean;
    const db = rb[i] - mean;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  if (saa === 0 || sbb === 0) return NaN;
  return sab / Math.sqrt(saa * sbb);
}
