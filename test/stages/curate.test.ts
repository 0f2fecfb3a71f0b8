/**
 * The coverage strategies on a synthetic pool whose truth is known: ccs spreads
 * its budget over score bins after dropping the harmful end; curate drops
 * flagged label issues and rows the target says hurt, keeps class shares, and
 * fills from the dropped rows only when the budget needs them. Plus the
 * class-balance guard every strategy gets.
 */
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../core/rng.js';
import type { ColumnSpec } from '../../data/format.js';
import { openDataset } from '../../data/reader.js';
import { writeDataset } from '../../data/writer.js';
import { select } from '../../stages/select/index.js';
import { betaFor, coverageSample, evenSplit } from '../../stages/select/ccs.js';
import { classQuotas, rankedIssues } from '../../stages/select/curate.js';
import { cli } from '../pipeline/helpers.js';

const N = 200;
const K = 4;
let tmp: string;
let pool: string;
let scores: string;
const labelOf = (i: number) => i % K;
/** Rows 0..29 flagged as label issues, rows 30..69 harmful to the target, the rest fine. */
const issue = (i: number) => (i < 30 ? 1 : 0);
const helpful = (i: number) => (i >= 30 && i < 70 ? 0.2 : 0.9);
/** A label-quality score whose lowest rows are 100..129, not the flagged ones (same count per class). */
const margin = (i: number) => (i >= 100 && i < 130 ? -1 : i / N);
/** A score crowded at the top (most rows near 1), a few spread below. */
const score = (i: number) => (i % 10 === 0 ? i / N : 0.95 + (i % 7) / 200);

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'mc-curate-'));
  pool = path.join(tmp, 'pool');
  const rng = new Rng(1);
  const fp = (await writeDataset(pool, Array.from({ length: N }, (_, i) => ({ id: `r${i}`, label: labelOf(i), pixels: Uint8Array.from({ length: 4 }, () => rng.int(256)) })), {
    columns: [{ name: 'id', kind: 'string' }, { name: 'label', kind: 'classLabel', names: ['a', 'b', 'c', 'd'] }, { name: 'pixels', kind: 'uint8Vector', length: 4 }],
    pixelShape: [2, 2, 1],
    meta: { stage: 'ingest', stageVersion: '1', options: {}, parents: [] },
  })).fingerprint;
  scores = path.join(tmp, 'scores');
  const cols: ColumnSpec[] = ['id', 'metagrad', 'metagrad_helpful', 'confident_issue', 'margin'].map((name) => ({ name, kind: name === 'id' ? 'string' : 'float32' }) as ColumnSpec);
  await writeDataset(scores, Array.from({ length: N }, (_, i) => ({ id: `r${i}`, metagrad: score(i), metagrad_helpful: helpful(i), confident_issue: issue(i), margin: margin(i) })), {
    columns: cols, meta: { stage: 'score', stageVersion: '1', options: {}, parents: [{ fingerprint: fp }], sidecarOf: fp },
  });
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

async function keptRows(dir: string): Promise<number[]> {
  const ds = await openDataset(dir);
  const out: number[] = [];
  for await (const b of ds.blocks()) for (let i = 0; i < b.length; i++) out.push(Number(String(b.column('id').get(i)).slice(1)));
  return out;
}

let n = 0;
const out = () => path.join(tmp, `out-${n++}`);

describe('ccs', () => {
  it('drops more of the pool the smaller the budget, none from half up', () => {
    expect(betaFor(0.1)).toBeCloseTo(0.35);
    expect(betaFor(0.3)).toBeCloseTo(0.175);
    expect(betaFor(0.5)).toBe(0);
    expect(betaFor(0.8)).toBe(0);
  });

  it('splits evenly, small groups giving all they have, the total exact', () => {
    expect(evenSplit([2, 10, 10], 12)).toEqual([2, 5, 5]);
    expect(evenSplit([0, 3, 100], 50)).toEqual([0, 3, 47]);
    expect(evenSplit([5, 5, 5], 7).reduce((a, b) => a + b)).toBe(7);
  });

  it('samples across the score range instead of where scores crowd', () => {
    const rows = Array.from({ length: N }, (_, i) => i);
    const s = rows.map(score);
    const picked = coverageSample(rows, s, 40, 10, new Rng(3));
    const low = picked.filter((i) => s[i] < 0.9).length;
    // 20 of 200 rows score below 0.9 (10% of the pool); spread over 10 bins they get more than 10% of the budget.
    expect(low).toBeGreaterThan(8);
    expect(new Set(picked).size).toBe(40);
  });

  it('runs as a stage, recording β', async () => {
    const r = await select(pool, { out: out(), scores: [scores], strategy: 'ccs', by: 'metagrad', budget: 0.2 });
    expect(r.numRows).toBe(40);
    expect(r.summary.ccs).toEqual({ beta: betaFor(0.2), dropped: Math.round(betaFor(0.2) * N) });
  });
});

describe('curate', () => {
  it('spreads a budget over classes as the pool does, as far as their rows allow', () => {
    expect(classQuotas([50, 50, 50, 50], [50, 5, 50, 50], 100)).toEqual([32, 5, 32, 31]);
    expect(classQuotas([10, 10], [10, 10], 20)).toEqual([10, 10]);
  });

  const run = (o: Record<string, unknown>) => select(pool, { out: out(), scores: [scores], strategy: 'curate', by: 'metagrad', ...o });

  it('at level harmful (the default without a target) keeps no flagged or harmful row while the budget allows, and class shares', async () => {
    const r = await run({ budget: 0.4 });
    const rows = await keptRows(r.dir);
    expect(rows.length).toBe(80);
    expect(rows.every((i) => i >= 70)).toBe(true);
    expect([0, 1, 2, 3].map((c) => rows.filter((i) => labelOf(i) === c).length)).toEqual([20, 20, 20, 20]);
    expect(r.summary.curate).toEqual({ level: 'harmful', issues_ranked_by: 'flags', label_issues: 30, harmful: 40, passed: 130, filled_from_dropped: 0 });
  });

  it('with --issue-rank drops, per class, as many of the lowest rows by it as are flagged there', async () => {
    const labels = Int32Array.from({ length: N }, (_, i) => labelOf(i));
    const flags = Float64Array.from({ length: N }, (_, i) => issue(i));
    const marked = rankedIssues(flags, Float64Array.from({ length: N }, (_, i) => margin(i)), labels);
    expect(Array.from(marked.keys()).filter((i) => marked[i] === 1)).toEqual(Array.from({ length: 30 }, (_, j) => 100 + j));
    // Counts are per class: row 4, second lowest overall, is class 1's and its one flag went to row 5.
    const skewed = rankedIssues(Float64Array.from([1, 1, 0, 0, 0, 1]), Float64Array.from([5, 4, 3, 2, 1, 0]), Int32Array.from([0, 0, 0, 0, 1, 1]));
    expect(Array.from(skewed)).toEqual([0, 0, 1, 1, 0, 1]);
    const r = await run({ budget: 0.4, level: 'issues', issueRank: 'margin' });
    expect(r.summary.curate).toMatchObject({ issues_ranked_by: 'margin', label_issues: 30, passed: 170 });
    const rows = await keptRows(r.dir);
    expect(rows.filter((i) => i >= 100 && i < 130)).toEqual([]);
    expect(rows.some((i) => i < 30)).toBe(true);
  });

  it('drops less at lower levels: issues keeps the harmful rows, none keeps every row eligible', async () => {
    expect((await run({ budget: 0.4, level: 'issues' })).summary.curate).toMatchObject({ level: 'issues', label_issues: 30, harmful: 0, passed: 170 });
    expect((await run({ budget: 0.4, level: 'none' })).summary.curate).toMatchObject({ level: 'none', passed: N });
    // strict: only rows that helped in no run count as harmful; here every harmful row helped in some (0.2).
    expect((await run({ budget: 0.4, level: 'strict' })).summary.curate).toMatchObject({ level: 'strict', harmful: 0 });
  });

  it('fills from the harmful rows before the flagged ones when the budget needs them', async () => {
    const rows = await keptRows((await run({ budget: 0.8 })).dir);
    expect(rows.length).toBe(160);
    // 130 passed + 30 of the 40 harmful; no flagged row.
    expect(rows.filter((i) => i < 30).length).toBe(0);
    expect(rows.filter((i) => i >= 30 && i < 70).length).toBe(30);
  });

  it('"none" skips a column; a missing column names how to make it; auto needs a target', async () => {
    expect(((await run({ issues: 'none', helpful: 'none', budget: 0.5 })).summary.curate as { passed: number }).passed).toBe(N);
    await expect(run({ issues: 'nope', budget: 0.5 })).rejects.toThrow(/no column "nope"/);
    await expect(run({ level: 'auto', budget: 0.5 })).rejects.toThrow(/chooses on a target set/);
  });

  it('is seeded: the same options give the same rows, another seed other rows', async () => {
    const a = await keptRows((await run({ budget: 0.3, seed: 1 })).dir);
    const b = await keptRows((await run({ budget: 0.3, seed: 1 })).dir);
    const c = await keptRows((await run({ budget: 0.3, seed: 2 })).dir);
    expect(a).toEqual(b);
    expect(a).not.toEqual(c);
  });
});

describe('class-balance guard', () => {
  it('warns in the summary when a strategy starves a class', async () => {
    // topk by a score that favours class 0: rows with i % 4 = 0 score highest.
    const side = path.join(tmp, 'skewed');
    const fp = (await openDataset(pool)).fingerprint;
    await writeDataset(side, Array.from({ length: N }, (_, i) => ({ id: `r${i}`, skew: labelOf(i) === 0 ? 10 + i : i / N })), {
      columns: [{ name: 'id', kind: 'string' }, { name: 'skew', kind: 'float32' }],
      meta: { stage: 'score', stageVersion: '1', options: {}, parents: [{ fingerprint: fp }], sidecarOf: fp },
    });
    const r = await select(pool, { out: out(), scores: [side], strategy: 'topk', by: 'skew', budget: 60 });
    const below = (r.summary.class_balance as { below: { class: string; kept: number; expected: number }[] }).below;
    expect(below.map((b) => b.class).sort()).toEqual(['b', 'c', 'd']);
    expect(below[0].expected).toBe(15);
    const quiet = await select(pool, { out: out(), scores: [side], strategy: 'topk', by: 'skew', budget: 60, classFloor: 0 });
    expect(quiet.summary.class_balance).toBeUndefined();
    expect(quiet.numRows).toBe(60);
  });
});

describe('choosing on the target (curate --level auto, prune --drop auto)', () => {
  /** 3 learnable classes on 6×6 pixels; the pool's rows 0..89 carry a wrong label. */
  async function toyPool(dir: string, n: number, flipped: number, seed: number): Promise<string> {
    const rng = new Rng(seed);
    const rows = Array.from({ length: n }, (_, i) => {
      const c = i % 3;
      const pixels = Uint8Array.from({ length: 36 }, (_, j) => Math.max(0, Math.min(255, Math.round((j % 3 === c ? 170 : 50) + 40 * rng.normal()))));
      return { id: `t${i}`, label: i < flipped ? (c + 1) % 3 : c, pixels };
    });
    return (await writeDataset(dir, rows, {
      columns: [{ name: 'id', kind: 'string' }, { name: 'label', kind: 'classLabel', names: ['a', 'b', 'c'] }, { name: 'pixels', kind: 'uint8Vector', length: 36 }],
      pixelShape: [6, 6, 1],
      meta: { stage: 'ingest', stageVersion: '1', options: { seed }, parents: [] },
    })).fingerprint;
  }

  it('drops what the target says hurts, and records what each candidate scored', async () => {
    const toy = path.join(tmp, 'toy');
    const target = path.join(tmp, 'toy-target');
    const fp = await toyPool(toy, 300, 90, 5);
    await toyPool(target, 150, 0, 6);
    const side = path.join(tmp, 'toy-scores');
    await writeDataset(side, Array.from({ length: 300 }, (_, i) => ({ id: `t${i}`, confident_issue: i < 90 ? 1 : 0, metagrad_helpful: 1, metagrad: i < 90 ? 0 : 1, aum: 1 })), {
      columns: [{ name: 'id', kind: 'string' }, ...['confident_issue', 'metagrad_helpful', 'metagrad', 'aum'].map((name) => ({ name, kind: 'float32' }) as ColumnSpec)],
      meta: { stage: 'score', stageVersion: '1', options: {}, parents: [{ fingerprint: fp }], sidecarOf: fp },
    });
    const r = await select(toy, { out: out(), scores: [side], target, strategy: 'curate', budget: 0.5 });
    const c = r.summary.curate as { level: string; target_accuracy: Record<string, number> };
    expect(Object.keys(c.target_accuracy)).toEqual(['none', 'issues', 'strict', 'harmful']);
    expect(c.level).not.toBe('none');
    // Without --issue-rank the flagged rows themselves are the label issues, aum or not.
    expect(r.summary.curate).toMatchObject({ issues_ranked_by: 'flags' });
    expect(c.target_accuracy[c.level]).toBeGreaterThan(c.target_accuracy.none);
    expect((await keptRows(r.dir)).every((i) => i >= 90)).toBe(true);
    const p = await select(toy, { out: out(), scores: [side], target, strategy: 'prune', by: 'metagrad', drop: 'auto', budget: 0.5 });
    const pr = p.summary.prune as { drop: number; target_accuracy: Record<string, number> };
    expect(Object.keys(pr.target_accuracy)).toEqual(['0', '0.1', '0.2', '0.3']);
    expect(pr.drop).toBeGreaterThan(0);
    // The same options and seed choose the same rows.
    const again = await select(toy, { out: out(), scores: [side], target, strategy: 'curate', budget: 0.5 });
    expect(again.fingerprint).toBe(r.fingerprint);
    expect(await keptRows(again.dir)).toEqual(await keptRows(r.dir));
  });
});

describe('from the CLI', () => {
  it('takes numbers and words for --drop, and refuses auto without a target', async () => {
    const ok = await cli(['--json', 'select', pool, '--scores', scores, '--strategy', 'prune', '--by', 'metagrad', '--drop', '0.3', '--budget', '0.5', '--out', out()]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout).summary.prune.drop).toBe(0.3);
    const auto = await cli(['select', pool, '--scores', scores, '--strategy', 'prune', '--by', 'metagrad', '--drop', 'auto', '--budget', '0.5', '--out', out()]);
    expect(auto.code).toBe(64);
    expect(auto.stderr).toMatch(/chooses on a target set/);
  });
});
