/** Combining the seeds of a score: means, percentile ranks, the split-half agreement, and extra columns. */
import { describe, expect, it } from 'vitest';
import { Rng } from '../../core/rng.js';
import { combineColumn, combineSeeds, percentileRanks, splitHalfAgreement } from '../../ml/scores/index.js';

describe('combining seeds', () => {
  it('ranks are scale-free: a run on another scale counts as much as the others', () => {
    const a = Float32Array.of(1, 2, 3, 4);
    const b = Float32Array.of(400, 300, 200, 100); // the opposite order, 100× the scale
    expect(Array.from(percentileRanks(a))).toEqual([0.125, 0.375, 0.625, 0.875]);
    // The mean follows the large run; the rank combination sees a tie.
    expect(Array.from(combineSeeds([a, b], 'mean').scores)).toEqual([200.5, 151, 101.5, 52]);
    expect(Array.from(combineSeeds([a, b], 'rank').scores)).toEqual([0.5, 0.5, 0.5, 0.5]);
    expect(combineSeeds([a]).std).toBeUndefined();
  });

  it('split-half agreement: 1 for identical runs, near 0 for unrelated ones, with the Spearman–Brown estimate', () => {
    const rng = new Rng(1);
    const same = Array.from({ length: 4 }, () => Float32Array.of(3, 1, 4, 1.5, 9, 2.6));
    expect(splitHalfAgreement(same, 'rank')).toEqual({ splitHalf: 1, fullEstimate: 1 });
    const noise = Array.from({ length: 6 }, () => Float32Array.from({ length: 2000 }, () => rng.normal()));
    const r = splitHalfAgreement(noise, 'rank')!;
    expect(Math.abs(r.splitHalf)).toBeLessThan(0.1);
    // A shared signal plus run noise: halves agree partly, the whole more.
    const signal = Float32Array.from({ length: 2000 }, () => rng.normal());
    const runs = Array.from({ length: 6 }, () => signal.map((v) => v + rng.normal()));
    const s = splitHalfAgreement(runs, 'rank')!;
    expect(s.splitHalf).toBeGreaterThan(0.5);
    expect(s.fullEstimate).toBeCloseTo((2 * s.splitHalf) / (1 + s.splitHalf), 10);
    expect(splitHalfAgreement([signal], 'rank')).toBeUndefined();
  });

  it('extra columns: the mean of flags, the most common label (ties to the smallest)', () => {
    expect(Array.from(combineColumn([Float32Array.of(1, 0), Float32Array.of(0, 0), Float32Array.of(1, 1)], 'mean'))).toEqual([2 / 3, 1 / 3].map((v) => Math.fround(v)));
    expect(Array.from(combineColumn([Float32Array.of(3, 2), Float32Array.of(3, 5), Float32Array.of(1, 7)], 'mode'))).toEqual([3, 2]);
  });
});
