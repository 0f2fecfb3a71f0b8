/** AUROC and Spearman against hand-computed values and a brute-force pair count. */
import { describe, expect, it } from 'vitest';
import { DataError, UsageError } from '../../core/errors.js';
import { Rng } from '../../core/rng.js';
import { auroc, averageRanks, spearman } from '../../core/metrics.js';

describe('averageRanks', () => {
  it('ranks ascending from 1 and gives tied values the mean of their ranks', () => {
    expect(Array.from(averageRanks([10, 20, 20, 5]))).toEqual([2, 3.5, 3.5, 1]);
    expect(Array.from(averageRanks([7, 7, 7]))).toEqual([2, 2, 2]);
    expect(Array.from(averageRanks([]))).toEqual([]);
  });
});

describe('auroc', () => {
  it('matches hand-computed values', () => {
    // Positives 0.35, 0.8; negatives 0.1, 0.4: pairs won 1 + 0 + 1 + 1 = 3 of 4.
    expect(auroc([0.1, 0.4, 0.35, 0.8], [false, false, true, true])).toBeCloseTo(0.75, 12);
    // Positives 1, 2; negatives 0, 1: 1 + ½ (tie) + 1 + 1 = 3.5 of 4.
    expect(auroc([0, 1, 1, 2], [false, true, false, true])).toBeCloseTo(0.875, 12);
  });

  it('is 1 for a perfect separation, 0 for a reversed one, ½ for all ties', () => {
    expect(auroc([1, 2, 3, 4], new Uint8Array([0, 0, 1, 1]))).toBe(1);
    expect(auroc([4, 3, 2, 1], new Uint8Array([0, 0, 1, 1]))).toBe(0);
    expect(auroc([5, 5, 5, 5], [true, false, true, false])).toBe(0.5);
  });

  it('equals the fraction of (positive, negative) pairs won, ties ½, on random tied data', () => {
    const rng = new Rng(7);
    const n = 300;
    const scores = Array.from({ length: n }, () => rng.int(20)); // many ties
    const pos = Array.from({ length: n }, (_, i) => rng.next() < 0.3 || i === 0);
    let won = 0;
    let pairs = 0;
    for (let i = 0; i < n; i++) {
      if (!pos[i]) continue;
      for (let j = 0; j < n; j++) {
        if (pos[j]) continue;
        pairs++;
        won += scores[i] > scores[j] ? 1 : scores[i] === scores[j] ? 0.5 : 0;
      }
    }
    expect(auroc(scores, pos)).toBeCloseTo(won / pairs, 12);
    // Negating the score mirrors the curve.
    expect(auroc(scores.map((s) => -s), pos)).toBeCloseTo(1 - won / pairs, 12);
  });

  it('refuses mismatched lengths, a single group, and non-finite scores', () => {
    expect(() => auroc([1, 2], [true])).toThrow(UsageError);
    expect(() => auroc([1, 2], [true, true])).toThrow(/at least one positive and one negative/);
    expect(() => auroc([1, 2], [false, false])).toThrow(UsageError);
    expect(() => auroc([1, NaN], [true, false])).toThrow(DataError);
  });
});

describe('spearman', () => {
  it('matches a hand-computed value with ties', () => {
    // Ranks [1..5] and [1, 2, 3.5, 5, 3.5]: Σdadb = 8, Σda² = 10, Σdb² = 9.5.
    expect(spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7])).toBeCloseTo(8 / Math.sqrt(95), 12);
  });

  it('is ±1 for monotone relations and NaN for a constant input', () => {
    expect(spearman([1, 2, 3, 4], [1, 10, 100, 1000])).toBeCloseTo(1, 12);
    expect(spearman([1, 2, 3, 4], [0.4, 0.3, 0.2, -5])).toBeCloseTo(-1, 12);
    expect(spearman([1, 2, 3], [2, 2, 2])).toBeNaN();
  });

  it('refuses mismatched lengths, too few values and non-finite values', () => {
    expect(() => spearman([1, 2], [1])).toThrow(UsageError);
    expect(() => spearman([1], [1])).toThrow(UsageError);
    expect(() => spearman([1, Infinity], [1, 2])).toThrow(DataError);
  });
});
