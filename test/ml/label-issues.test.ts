/**
 * Label-issue scores: AUM's margins and confident learning's rule on hand-made
 * numbers, then both end to end on a toy problem with flipped labels.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { auroc } from '../../core/metrics.js';
import { Rng } from '../../core/rng.js';
import type { Examples } from '../../data/batch.js';
import { initBackend } from '../../ml/backend.js';
import { margins } from '../../ml/scores/aum.js';
import { findLabelIssues, foldsOf } from '../../ml/scores/confident.js';
import { scoreSeeds } from '../../ml/scores/index.js';

beforeAll(async () => {
  await initBackend('wasm');
});

function toy(n: number, seed: number, flip: number): { ex: Examples; flipped: boolean[] } {
  const rng = new Rng(seed);
  const len = 36;
  const pixels = new Uint8Array(n * len);
  const labels = new Int32Array(n);
  const flipped: boolean[] = [];
  for (let i = 0; i < n; i++) {
    const c = i % 3;
    for (let j = 0; j < len; j++) pixels[i * len + j] = Math.max(0, Math.min(255, Math.round((j % 3 === c ? 170 : 50) + 30 * rng.normal())));
    const f = rng.next() < flip;
    labels[i] = f ? (c + 1 + rng.int(2)) % 3 : c;
    flipped.push(f);
  }
  return { ex: { ids: Array.from({ length: n }, (_, i) => `r${i}`), pixels, shape: [6, 6, 1], labels, numClasses: 3, classNames: ['a', 'b', 'c'] }, flipped };
}

describe('aum', () => {
  it('is the given class logit minus the largest other', () => {
    const logits = Float32Array.of(2, 5, 1, 0, -1, 3);
    expect(Array.from(margins(logits, 3, [1, 0], [0, 1]))).toEqual([3, -3]);
  });
});

describe('confident learning', () => {
  it('flags a row whose probability clears another class\'s threshold above its own', () => {
    // Class thresholds: mean p(class | rows labelled it).
    const probs = Float32Array.of(
      0.9, 0.1, // labelled 0, confident 0
      0.8, 0.2, // labelled 0
      0.3, 0.7, // labelled 1
      0.85, 0.15, // labelled 1, but looks like 0: flagged, suggested 0
    );
    const r = findLabelIssues(probs, [0, 0, 1, 1], 2);
    expect(r.thresholds[0]).toBeCloseTo(0.85);
    expect(r.thresholds[1]).toBeCloseTo(0.425);
    expect(Array.from(r.issue)).toEqual([0, 0, 0, 1]);
    expect(r.suggested[3]).toBe(0);
    expect(r.margin[3]).toBeCloseTo(-0.7);
  });

  it('cuts the rows into seeded folds that cover each row once', () => {
    const folds = foldsOf(23, 5, 7);
    const all = folds.flatMap((f) => Array.from(f)).sort((a, b) => a - b);
    expect(all).toEqual(Array.from({ length: 23 }, (_, i) => i));
    expect(foldsOf(23, 5, 7)).toEqual(folds);
  });

  it('finds flipped labels on a toy problem, and so does aum', async () => {
    const { ex, flipped } = toy(300, 3, 0.15);
    const clean = flipped.map((f) => !f);
    const cfg = { model: { kind: 'mlp' as const, hidden: [16] }, optimizer: { kind: 'adam' as const, lr: 0.01 }, epochs: 8, batchSize: 32, seed: 1 };
    const cl = await scoreSeeds(ex, undefined, { method: 'confident', train: cfg, folds: 4 });
    expect(auroc(cl.scores, clean)).toBeGreaterThan(0.85);
    const issue = cl.runs[0].columns!.issue.values;
    const caught = flipped.reduce((a, f, i) => a + (f && issue[i] ? 1 : 0), 0) / flipped.filter(Boolean).length;
    const wrong = flipped.reduce((a, f, i) => a + (!f && issue[i] ? 1 : 0), 0) / flipped.filter((f) => !f).length;
    expect(caught).toBeGreaterThan(0.6);
    expect(wrong).toBeLessThan(0.1);
    const aum = await scoreSeeds(ex, undefined, { method: 'aum', train: cfg });
    expect(auroc(aum.scores, clean)).toBeGreaterThan(0.85);
  });
});
