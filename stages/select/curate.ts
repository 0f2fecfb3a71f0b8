/**
 * curate, the recommended strategy: the recipe of docs/curation.md in one
 * selection. Signals against a row, from scores the pool already has:
 * - a label issue (--issues, confident learning's `confident_issue` ≥ 0.5; or,
 *   with --issue-rank, as many of each class's lowest rows by that score as
 *   the flags count in the class);
 * - harm to the target (--helpful, `metagrad_helpful`: the share of the
 *   metagradient ensemble's runs in which upweighting the row lowered the target
 *   loss) — in no run ('strict'), or in fewer than half ('harmful').
 * A level says which rows are dropped: none, issues, strict (issues and rows
 * that helped in no run) or harmful (issues and rows that helped in fewer than
 * half). From the rows left, each class gets its share of the budget and draws
 * it uniformly (or over bins of --by, or its best by --by); when too few are
 * left, the budget is filled with the dropped rows, harmful ones before label
 * issues, best by --rank first.
 *
 * Level 'auto' (the default with a target set) builds the selection of every
 * level and keeps the one whose quick models (an MLP, two seeds, in worker
 * threads) score best on the target: dropping hard but correct rows costs a
 * clean pool accuracy, keeping wrong or off-domain rows costs a dirty one, and
 * the target says which this pool is.
 */
import { z } from 'zod';
import { DataError } from '../../core/errors.js';
import { one } from '../define.js';
import type { DataInfo } from '../inputs.js';
import { binsOption, coverageSample } from './ccs.js';
import { ascending, classSizes, largestRemainder, rankByScore } from './common.js';
import type { DecideInput, SelectOptions, Strategy } from './types.js';
import type { NamedInputs } from '../define.js';
import { bestOf, needTarget, scoreOnTarget, targetPlan } from './validate.js';

export const CURATE_LEVELS = ['none', 'issues', 'strict', 'harmful'] as const;
export type CurateLevel = (typeof CURATE_LEVELS)[number];
export const CURATE_DEFAULTS = {
  by: 'aum', rank: 'metagrad', issues: 'confident_issue', helpful: 'metagrad_helpful', bins: 10, spread: 'uniform',
} as const;

const NONE = 'none';

function spreadOf(o: SelectOptions): string {
  return (o.spread as string | undefined) ?? CURATE_DEFAULTS.spread;
}

function columnOption(o: SelectOptions, key: 'issues' | 'helpful' | 'rank'): string | undefined {
  const v = (o[key] as string | undefined) ?? CURATE_DEFAULTS[key];
  return v === NONE ? undefined : v;
}

/** The column that ranks label-issue candidates, if one was asked for (and there are flags to count). */
function issueRankOf(o: SelectOptions): string | undefined {
  const v = o.issueRank as string | undefined;
  return columnOption(o, 'issues') === undefined || v === undefined || v === NONE ? undefined : v;
}

/**
 * Confident learning's prune by noise rate: the flags say how many rows of each
 * class carry a wrong label; the rows marked are that many of the class's
 * lowest by `quality`. With AUM this keeps fewer wrong labels than the flags
 * do, but drops more hard correct rows; on the benchmark's dev pools models
 * trained on the flags' selections did better, so it is not the default.
 */
export function rankedIssues(flagged: Float64Array, quality: Float64Array, labels: Int32Array): Float64Array {
  const count = classSizes(labels).map(() => 0);
  for (let i = 0; i < flagged.length; i++) if (flagged[i] >= 0.5) count[labels[i]]++;
  const out = new Float64Array(flagged.length);
  for (const i of rankByScore(quality, false)) {
    if (count[labels[i]] > 0) {
      out[i] = 1;
      count[labels[i]]--;
    }
  }
  return out;
}

/** Class quotas ∝ the pool's class sizes, capped by the rows each class has left, leftovers to classes with room. */
export function classQuotas(poolSizes: number[], available: number[], k: number): number[] {
  const quota = largestRemainder(poolSizes, k).map((q, c) => Math.min(q, available[c]));
  let left = k - quota.reduce((a, b) => a + b, 0);
  while (left > 0) {
    const room = available.map((a, c) => Math.max(0, a - quota[c]));
    const extra = largestRemainder(room, Math.min(left, room.reduce((a, r) => a + r, 0)));
    const given = extra.reduce((a, b) => a + b, 0);
    if (given === 0) break;
    extra.forEach((e, c) => (quota[c] += e));
    left -= given;
  }
  return quota;
}

/** The level asked for; unset, auto when a target set is given (chosen on it), else harmful. */
function levelOf(inputs: NamedInputs, o: SelectOptions): string {
  return (o.level as string | undefined) ?? (one(inputs, 'target') === undefined ? 'harmful' : 'auto');
}

/** Per row: 0 keep, 1 harmful to the target at this level, 2 a label issue. */
function tiers(n: number, level: CurateLevel, flagged?: Float64Array, helps?: Float64Array): Uint8Array {
  const harmBelow = level === 'harmful' ? 0.5 : level === 'strict' ? 1e-9 : -1;
  const tier = new Uint8Array(n);
  if (level === 'none') return tier;
  for (let i = 0; i < n; i++) tier[i] = flagged && flagged[i] >= 0.5 ? 2 : helps && helps[i] < harmBelow ? 1 : 0;
  return tier;
}

interface Drawn {
  indices: Uint32Array;
  counts: { label_issues: number; harmful: number; passed: number; filled_from_dropped: number };
}

interface CurateColumns {
  by: Float64Array;
  /** Orders dropped rows harmful to the target when the budget needs some back. */
  order: Float64Array;
  /** Orders dropped label issues the same way (label quality when ranked, else `order`). */
  issueOrder: Float64Array;
  flagged?: Float64Array;
  helps?: Float64Array;
}

/** The selection of one level (see the top of the file). */
function draw(input: DecideInput, level: CurateLevel, cols: CurateColumns): Drawn {
  const { n, labels, options: o } = input;
  const k = input.budget!;
  const tier = tiers(n, level, cols.flagged, cols.helps);
  const ok: number[][] = classSizes(labels!).map(() => []);
  for (let i = 0; i < n; i++) if (tier[i] === 0) ok[labels![i]].push(i);
  const passed = ok.reduce((a, r) => a + r.length, 0);
  let kept: number[];
  if (passed >= k) {
    const quotas = classQuotas(classSizes(labels!), ok.map((r) => r.length), k);
    const spread = spreadOf(o);
    const bins = spread === 'uniform' ? 1 : ((o.bins as number | undefined) ?? CURATE_DEFAULTS.bins);
    const rng = input.rng('curate');
    kept = ok.flatMap((rows, c) => (spread === 'top'
      ? Array.from(rankByScore(Float64Array.from(rows, (i) => cols.by[i]), true).subarray(0, quotas[c]), (j) => rows[j])
      : coverageSample(rows, cols.by, quotas[c], bins, rng)));
  } else {
    // Everything that passed, then the least bad of the rest: harmful before label issues, best first.
    const dropped = (t: number, by: Float64Array) => Array.from(rankByScore(by, true)).filter((i) => tier[i] === t);
    kept = [...ok.flat(), ...dropped(1, cols.order), ...dropped(2, cols.issueOrder)].slice(0, k);
  }
  const count = (t: number) => tier.reduce((a, v) => a + (v === t ? 1 : 0), 0);
  return { indices: ascending(kept), counts: { label_issues: count(2), harmful: count(1), passed, filled_from_dropped: Math.max(0, k - passed) } };
}

export const curateStrategy: Strategy = {
  name: 'curate',
  description: 'the recommended recipe: drop label issues and rows the target says hurt (as much as the target confirms), cover the classes',
  options: {
    level: z.enum(['auto', ...CURATE_LEVELS]).optional()
      .describe('curate: which rows are dropped — auto (chosen on the target set; the default with --target), none, issues, strict or harmful (the default without a target)'),
    issues: z.string().min(1).optional()
      .describe(`curate: the label-issue flag column, 1 = flagged (default ${CURATE_DEFAULTS.issues}; "${NONE}" to skip)`),
    issueRank: z.string().min(1).optional()
      .describe('curate: a label-quality score (higher = cleaner, e.g. aum); each class then drops as many of its lowest rows by it as --issues flags there, instead of the flagged rows themselves (default: the flagged rows)'),
    helpful: z.string().min(1).optional()
      .describe(`curate: the column of how often a row helped the target, in [0, 1] (default ${CURATE_DEFAULTS.helpful}; "${NONE}" to skip)`),
    rank: z.string().min(1).optional()
      .describe(`curate: the score that orders the dropped rows when the budget needs some of them back (default ${CURATE_DEFAULTS.rank})`),
    bins: binsOption,
    spread: z.enum(['uniform', 'bins', 'top']).optional()
      .describe('curate: how each class draws its share from the rows left: uniformly, over bins of --by, or its best by --by (default uniform)'),
  },
  by: 'optional',
  budget: 'required',
  seeded: true,
  needsLabels: true,
  needsTarget: true,
  columns: (o) => [
    ...(spreadOf(o) !== 'uniform' ? [o.by ?? CURATE_DEFAULTS.by] : []),
    ...[columnOption(o, 'rank'), columnOption(o, 'issues'), columnOption(o, 'helpful'), issueRankOf(o)].filter((c): c is string => c !== undefined),
  ],
  canonical: (o) => ({
    level: o.level ?? (o.target === undefined ? 'harmful' : 'auto'),
    rank: columnOption(o, 'rank') ?? NONE,
    issues: columnOption(o, 'issues') ?? NONE,
    // Only when set, so selections by the flags keep their fingerprints.
    ...(issueRankOf(o) !== undefined ? { issueRank: issueRankOf(o) } : {}),
    helpful: columnOption(o, 'helpful') ?? NONE,
    spread: spreadOf(o),
    ...(spreadOf(o) !== 'uniform' ? { by: o.by ?? CURATE_DEFAULTS.by } : {}),
    ...(spreadOf(o) === 'bins' ? { bins: (o.bins as number | undefined) ?? CURATE_DEFAULTS.bins } : {}),
  }),
  checkInputs(inputs, o) {
    const level = levelOf(inputs, o);
    needTarget(inputs, `curate --level ${level}`, level === 'auto');
  },
  async plan(inputs, o) {
    const level = levelOf(inputs, o);
    return level === 'auto' ? { ...(await targetPlan(inputs, 'curate --level auto')), options: { level } } : { options: { level } };
  },
  async decide(input) {
    const { columns, options: o, dataset } = input;
    const issues = columnOption(o, 'issues');
    const helpful = columnOption(o, 'helpful');
    const rankName = columnOption(o, 'rank');
    const order = rankName ? columns[rankName] : undefined;
    const by = columns[o.by ?? CURATE_DEFAULTS.by] ?? order ?? new Float64Array(input.n);
    const flagged = issues ? columns[issues] : undefined;
    const helps = helpful ? columns[helpful] : undefined;
    for (const [name, v] of [[issues, flagged], [helpful, helps]] as const) {
      if (name && v && v.some((x) => x < 0 || x > 1)) {
        throw new DataError(`column "${name}" holds values outside [0, 1]; curate reads it as a share`, { file: dataset.dir, hint: 'Pick the flag column a score method wrote (e.g. confident_issue, metagrad_helpful)' });
      }
    }
    const issueRank = issueRankOf(o);
    const quality = issueRank ? columns[issueRank] : undefined;
    const cols: CurateColumns = {
      by,
      order: order ?? by,
      issueOrder: quality ?? order ?? by,
      flagged: flagged && quality ? rankedIssues(flagged, quality, input.labels!) : flagged,
      helps,
    };
    const ranked = { issues_ranked_by: issues ? issueRank ?? 'flags' : NONE };
    const target = input.plan as DataInfo | undefined;
    if (!target) {
      const level = ((o.level as CurateLevel | undefined) ?? 'harmful');
      const d = draw(input, level, cols);
      return { selection: { indices: d.indices }, budget: input.budget!, summary: { curate: { level, ...ranked, ...d.counts } } };
    }
    const candidates = CURATE_LEVELS.map((level) => draw(input, level, cols));
    const scores = await scoreOnTarget(input, target, candidates.map((c) => c.indices));
    // Levels go from dropping nothing to dropping most: a tie goes to the one that drops less.
    const best = bestOf(scores, target.n);
    input.ctx.log.info({ levels: Object.fromEntries(CURATE_LEVELS.map((l, j) => [l, scores[j]])), chosen: CURATE_LEVELS[best] }, 'select: curate level chosen on the target');
    return {
      selection: { indices: candidates[best].indices },
      budget: input.budget!,
      summary: {
        curate: {
          level: CURATE_LEVELS[best],
          ...ranked,
          target_accuracy: Object.fromEntries(CURATE_LEVELS.map((l, j) => [l, scores[j]])),
          ...candidates[best].counts,
        },
      },
    };
  },
};
