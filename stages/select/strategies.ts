/**
 * The selection strategies of the select stage, as pure functions over in-memory
 * arrays: scores (higher = more valuable to keep), labels, a seeded Rng. Each
 * returns the kept row indices in ascending order (the parent's order), plus
 * integer counts for MGD. Ties are always broken deterministically: by row index,
 * or for MGD by a seeded permutation.
 */
import { DataError, UsageError } from '../../core/errors.js';
import type { Rng } from '../../core/rng.js';

/** Kept rows, ascending; `weights[j]` is the count of row `indices[j]` (absent = all 1). */
export interface Selection {
  indices: Uint32Array;
  weights?: Float32Array;
}

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

function ascending(indices: ArrayLike<number>): Uint32Array {
  return Uint32Array.from(indices).sort();
}

/**
 * Row indices ranked by score, best first (`descending`) or worst first; equal
 * scores keep row order. Explicit comparisons, not a difference, so ±Infinity
 * ties are broken by row index too.
 */
export function rankByScore(scores: Float64Array, descending = true): Uint32Array {
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

/** The `k` highest-scoring rows. */
export function topK(scores: Float64Array, k: number): Selection {
  return { indices: ascending(rankByScore(scores, true).subarray(0, k)) };
}

/** The `k` lowest-scoring rows. */
export function bottomK(scores: Float64Array, k: number): Selection {
  return { indices: ascending(rankByScore(scores, false).subarray(0, k)) };
}

/** Rows scoring at least `threshold`; with a `cap`, only the `cap` best of them. */
export function aboveThreshold(scores: Float64Array, threshold: number, cap?: number): Selection {
  const pass: number[] = [];
  for (let i = 0; i < scores.length; i++) if (scores[i] >= threshold) pass.push(i);
  if (cap === undefined || pass.length <= cap) return { indices: Uint32Array.from(pass) };
  const sub = Float64Array.from(pass, (i) => scores[i]);
  const best = rankByScore(sub, true).subarray(0, cap);
  return { indices: ascending(Array.from(best, (j) => pass[j])) };
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

/** Per-class top-k: each class keeps its share of the pool (largest remainder), its best rows first. */
export function stratifiedTopK(scores: Float64Array, labels: Int32Array, k: number): Selection {
  const numClasses = labels.reduce((m, l) => Math.max(m, l + 1), 0);
  const sizes = new Array<number>(numClasses).fill(0);
  for (const l of labels) sizes[l]++;
  const quotas = largestRemainder(sizes, k);
  const taken = new Array<number>(numClasses).fill(0);
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

/** Uniform without replacement. */
export function randomK(n: number, k: number, rng: Rng): Selection {
  return { indices: ascending(rng.permutation(n).subarray(0, k)) };
}

/**
 * Drops the lowest-scoring `drop` fraction of the pool (the suspected harmful
 * rows, e.g. mislabelled ones), then draws `k` of the rest uniformly: a random
 * subset of the cleaner pool, which keeps random's coverage of easy and hard rows
 * alike (top-k keeps only the easiest).
 */
export function pruneThenRandom(scores: Float64Array, k: number, drop: number, rng: Rng, file?: string): Selection & { droppedBottom: number } {
  const n = scores.length;
  const ranked = rankByScore(scores, true);
  const droppedBottom = Math.round(drop * n);
  const candidates = n - droppedBottom;
  if (k > candidates) {
    throw new UsageError(`budget ${k} is above the ${candidates} rows left after dropping the bottom ${droppedBottom} (drop ${drop} of ${n} rows)`, {
      file,
      hint: 'Lower the budget or --drop',
    });
  }
  const chosen = rng.permutation(candidates).subarray(0, k);
  return { indices: ascending(Array.from(chosen, (j) => ranked[j])), droppedBottom };
}

/** A uniform draw in (0, 1): never 0, so its logarithm is finite. */
function openUnit(rng: Rng): number {
  return (rng.nextUint32() + 0.5) / 4294967296;
}

export interface ShiftGsampleOptions {
  /** Fraction of the pool, from the top of the ranking, never kept. */
  shift: number;
  /** Centre of the sampling density, as a percentile of the pool (0 = best). */
  mu: number;
  /** Its width, in percentile units. */
  sigma: number;
}

export interface ShiftGsampleResult extends Selection {
  /** Rows in the dropped top block. */
  droppedTop: number;
  /** Mean percentile (0 = best) of the kept rows. */
  keptPercentileMean: number;
}

/**
 * Alchemist's Shift-Gsample (ANCHORS.md): rank by score, best first; drop the top
 * `shift` of the pool; sample `k` of the rest without replacement with probability
 * ∝ exp(−(p − μ)² / 2σ²), p = the row's percentile in the whole pool, (rank + ½)/n.
 *
 * Sampling without replacement by exponential keys (Efraimidis–Spirakis): row i
 * gets E_i = −log(u_i) / w_i and the k smallest keys win, which draws rows one by
 * one with probability ∝ w among those left. Keys are compared as
 * log E_i = log(−log u_i) − log w_i, so far-tail weights that would underflow
 * exp() still order correctly.
 */
export function shiftGsample(scores: Float64Array, k: number, opts: ShiftGsampleOptions, rng: Rng, file?: string): ShiftGsampleResult {
  const n = scores.length;
  const ranked = rankByScore(scores, true);
  const droppedTop = Math.round(opts.shift * n);
  const candidates = n - droppedTop;
  if (k > candidates) {
    throw new UsageError(`budget ${k} is above the ${candidates} rows left after dropping the top ${droppedTop} (shift ${opts.shift} of ${n} rows)`, {
      file,
      hint: 'Lower the budget or the shift',
    });
  }
  const keys = new Float64Array(candidates);
  const twoVar = 2 * opts.sigma * opts.sigma;
  for (let r = droppedTop; r < n; r++) {
    const p = (r + 0.5) / n;
    const logW = -((p - opts.mu) ** 2) / twoVar;
    keys[r - droppedTop] = Math.log(-Math.log(openUnit(rng))) - logW;
  }
  // Smallest keys first; rank order (hence row order among equal scores) breaks ties.
  const order = rankByScore(keys, false).subarray(0, k);
  let percentileSum = 0;
  const kept = Array.from(order, (j) => {
    percentileSum += (j + droppedTop + 0.5) / n;
    return ranked[j + droppedTop];
  });
  return { indices: ascending(kept), droppedTop, keptPercentileMean: k > 0 ? percentileSum / k : NaN };
}

/**
 * The metagradient at the current counts: dφ/dc_i for every pool row, where φ is
 * the target loss after training with per-example weights c (ml/metagrad.ts).
 */
export type MetagradFn = (weights: Float32Array, info: { round: number }) => Promise<Float32Array>;

export interface MgdOptions {
  /** Rounds of metagradient + swap at most (stops early once no swap helps). */
  rounds: number;
  /** Count moved in the first round, as a fraction of the budget; decays linearly to 1 by the last. */
  swap: number;
  /** Highest count one row may reach (1 = a plain subset). */
  maxCount: number;
  rng: Rng;
  signal?: AbortSignal;
  onRound?: (round: MgdRound) => void;
}

export interface MgdRound {
  round: number;
  /** Units of count the round may move. */
  step: number;
  /** Units actually moved (each: +1 on a helpful row, −1 on a harmful one). */
  swaps: number;
  /** Mean metagradient over the selection (count-weighted) before the swap. */
  meanGrad: number;
}

export interface MgdResult extends Selection {
  weights: Float32Array;
  history: MgdRound[];
}

/**
 * MGD data selection at a fixed budget (ANCHORS.md, "Data selection with MGD"):
 * integer counts c with Σc = budget, starting from `initial` (count 1 each). Each
 * round takes g = dφ/dc and moves up to `step` units: +1 to the rows with the most
 * negative g that may still grow (most helpful), −1 to the rows with the most
 * positive g that hold a count (most harmful), pairing them best-first and only
 * while g(add) < g(drop), i.e. while the first-order change of φ is negative.
 * `step` decays linearly over the rounds. Equal g are ordered by a seeded
 * permutation, so ties do not always favour low row indices.
 */
export async function mgdSelect(n: number, initial: Uint32Array, metagrad: MetagradFn, opts: MgdOptions): Promise<MgdResult> {
  const counts = new Int32Array(n);
  for (const i of initial) counts[i] = 1;
  const budget = initial.length;
  const tieRank = new Uint32Array(n);
  const perm = opts.rng.permutation(n);
  for (let r = 0; r < n; r++) tieRank[perm[r]] = r;
  const firstStep = Math.max(1, Math.round(opts.swap * budget));
  const history: MgdRound[] = [];
  for (let round = 0; round < opts.rounds; round++) {
    opts.signal?.throwIfAborted();
    const g = await metagrad(Float32Array.from(counts), { round });
    if (g.length !== n) {
      throw new UsageError(`the metagradient has ${g.length} values for ${n} rows`, { hint: 'The metagrad callback must return dφ/dc for every pool row' });
    }
    let meanGrad = 0;
    for (let i = 0; i < n; i++) {
      if (!Number.isFinite(g[i])) {
        throw new DataError(`the metagradient is ${g[i]} at row ${i} in round ${round}`, {
          row: i,
          hint: 'Training diverged or is not metasmooth: lower the learning rate or use a smoother model (ANCHORS.md, metasmoothness)',
        });
      }
      meanGrad += counts[i] * g[i];
    }
    const step = Math.max(1, Math.round((firstStep * (opts.rounds - round)) / opts.rounds));
    const byGrad = (dir: 1 | -1) => (a: number, b: number) => (g[a] < g[b] ? -dir : g[a] > g[b] ? dir : tieRank[a] - tieRank[b]);
    const grow: number[] = [];
    const shrink: number[] = [];
    for (let i = 0; i < n; i++) {
      if (counts[i] < opts.maxCount) grow.push(i);
      if (counts[i] > 0) shrink.push(i);
    }
    grow.sort(byGrad(1));
    shrink.sort(byGrad(-1));
    let swaps = 0;
    for (let j = 0; j < step && j < grow.length && j < shrink.length; j++) {
      const add = grow[j];
      const drop = shrink[j];
      if (!(g[add] < g[drop])) break;
      // A row in both lists (0 < c < maxCount) is never both added and dropped: that
      // would need g(x) < g(drop) for a drop ranked before x and g(add) < g(x) for an
      // add ranked before x, so x would pair earlier on both sides. Σc stays the budget.
      counts[add]++;
      counts[drop]--;
      swaps++;
    }
    const record = { round, step, swaps, meanGrad: budget > 0 ? meanGrad / budget : 0 };
    history.push(record);
    opts.onRound?.(record);
    // No helpful pair left: g is unchanged next round (same counts), so stop.
    if (swaps === 0) break;
  }
  const indices: number[] = [];
  for (let i = 0; i < n; i++) if (counts[i] > 0) indices.push(i);
  return {
    indices: Uint32Array.from(indices),
    weights: Float32Array.from(indices, (i) => counts[i]),
    history,
  };
}
