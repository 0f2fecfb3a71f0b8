/**
 * What a stage can say about planted problems (stages/plant.ts) when its input
 * carries the `planted` truth column: how well a score ranks each kind below
 * the clean rows, and how much of each kind a selection kept.
 */
import { auroc } from '../core/metrics.js';
import { readStrings, type Dataset } from '../data/reader.js';
import { PLANTED_COLUMN } from './plant.js';

/** The planted kind of every row, or undefined when the dataset has no truth column. */
export async function plantedKinds(ds: Dataset): Promise<string[] | undefined> {
  return ds.column(PLANTED_COLUMN) ? readStrings(ds, PLANTED_COLUMN) : undefined;
}

function kindsOf(planted: string[]): string[] {
  return [...new Set(planted)].filter((k) => k !== 'clean').sort();
}

/**
 * Per planted kind: its rows and the AUROC of the score at putting clean rows
 * above them (1 = every clean row scores higher, 0.5 = chance); `flagged`, the
 * share a 0/1 issue column flags, when one is given.
 */
export function detection(scores: ArrayLike<number>, planted: string[], issue?: ArrayLike<number>) {
  const out: Record<string, { rows: number; auroc: number | null; flagged?: number }> = {};
  for (const kind of kindsOf(planted)) {
    const rows: number[] = [];
    for (let i = 0; i < planted.length; i++) if (planted[i] === kind || planted[i] === 'clean') rows.push(i);
    const count = rows.filter((i) => planted[i] === kind).length;
    const clean = rows.length - count;
    out[kind] = {
      rows: count,
      auroc: count && clean ? auroc(rows.map((i) => scores[i]), rows.map((i) => planted[i] === 'clean')) : null,
      ...(issue ? { flagged: rows.reduce((a, i) => a + (planted[i] === kind && issue[i] >= 0.5 ? 1 : 0), 0) / Math.max(1, count) } : {}),
    };
  }
  if (issue) {
    const cleanRows = planted.filter((k) => k === 'clean').length;
    out.clean = { rows: cleanRows, auroc: null, flagged: planted.reduce((a, k, i) => a + (k === 'clean' && issue[i] >= 0.5 ? 1 : 0), 0) / Math.max(1, cleanRows) };
  }
  return out;
}

/** Per kind (clean included): rows in the pool, rows kept, and the kept share. */
export function keptByKind(planted: string[], kept: ArrayLike<number>) {
  const pool = new Map<string, number>();
  const took = new Map<string, number>();
  for (const k of planted) pool.set(k, (pool.get(k) ?? 0) + 1);
  for (let j = 0; j < kept.length; j++) took.set(planted[kept[j]], (took.get(planted[kept[j]]) ?? 0) + 1);
  return Object.fromEntries([...pool.keys()].sort().map((k) => [k, { pool: pool.get(k)!, kept: took.get(k) ?? 0, fraction: (took.get(k) ?? 0) / pool.get(k)! }]));
}
