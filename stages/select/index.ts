/**
 * The select stage, the pruner: turns scores or ratings into a subset under a
 * budget. Scores come from sidecar datasets (`scores` inputs), oriented so that
 * higher = more valuable to keep. The strategies live in this folder, one file
 * each (strategies.ts lists them); this file merges their options, checks them,
 * and runs the two passes (passes.ts).
 *
 * `invert` keeps the complement of what the strategy chooses: e.g. `random` with
 * a budget of 1000 carves a held-out target, and the same options with `invert`
 * give the rest as the pool (same seed, same draw, so the two never overlap).
 *
 * Output: a full dataset with the parent's own columns — plus the `by` column when
 * it came from a sidecar — and `selection.arrow` (`id`, `index` in the parent,
 * `weight`: 1 or the MGD count), in the parent's order, or with `order: score`
 * both in the ranking's order (highest `by` first) for people who read from the top.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { z } from 'zod';
import { DataError, UsageError } from '../../core/errors.js';
import { sha256Hex } from '../../core/hash.js';
import { Rng } from '../../core/rng.js';
import type { IdList } from '../../data/id-list.js';
import type { ColumnSpec, ParentRef } from '../../data/format.js';
import { checkScoreColumn, openDataset, readCuration, type Dataset } from '../../data/reader.js';
import { BACKEND_REQUESTS } from '../../ml/backend.js';
import type { StageContext, StageResult } from '../context.js';
import { defineStage, type NamedInputs } from '../define.js';
import { whatChanged } from '../lineage.js';
import { keptByKind, plantedKinds } from '../planted.js';
import { resolveBudget } from './common.js';
import {
  LABEL_KINDS, checkLabels, complement, loadColumns, perClass, reorder, scoreOrder, scoreStats, selectionBytes, writeKept,
} from './passes.js';
import { allStrategies, getStrategy, strategiesVersion, strategyNames } from './strategies.js';
import type { SelectOptions, Strategy } from './types.js';
import type { MetagradFn, MgdRound } from './mgd.js';

export { resolveBudget, largestRemainder, rankByScore } from './common.js';
export { registerStrategy, strategyNames, getStrategy } from './strategies.js';
export type { Strategy, Selection, DecideInput, Decision, SelectOptions } from './types.js';
export type { MetagradFn, MgdRound } from './mgd.js';

export const SELECT_VERSION = '1';
/** The kept rows' ids, parent row indices and weights, written beside the shards. */
export const SELECTION_FILE = 'selection.arrow';

const positiveInt = z.number().int().positive();

/** select's own options; the strategies add theirs. */
const stageOptions = {
  out: z.string().min(1).describe('output dataset directory'),
  strategy: z.string().refine((s) => strategyNames().includes(s), { error: () => `unknown strategy; the strategies are ${strategyNames().join(', ')}` }).default('topk')
    .describe('selection strategy (see "Strategies" below)'),
  by: z.string().min(1).optional().describe('the score column (higher = keep), from the dataset or a --scores sidecar'),
  scores: z.array(z.string().min(1)).default([]).describe('a score sidecar to attach, joined row by row'),
  budget: z.number().optional().describe('a fraction of the rows in (0, 1], or a whole count'),
  target: z.string().min(1).optional().describe('the clean held-out target set, for the strategies that use one (mgd; curate --level auto; prune --drop auto)'),
  backend: z.enum(BACKEND_REQUESTS).optional().describe('compute backend of strategies that train (default: best available)'),
  invert: z.boolean().default(false).describe('keep the rows the strategy does not choose (the complement)'),
  order: z.enum(['parent', 'score']).default('parent')
    .describe('row order of the output and selection.arrow: the parent\'s, or by the --by column, highest first'),
  classFloor: z.number().min(0).max(1).default(0.5)
    .describe('warn (in the summary too) when a class keeps less than this share of its proportional part of the budget; 0 = never'),
  seed: z.number().int().default(0).describe('seed of every random draw (and of the training runs of strategies that train)'),
  shardRows: positiveInt.optional().describe('rows per output shard at most'),
  overwrite: z.boolean().default(false).describe('replace the output if it exists'),
};
const STAGE_KEYS = Object.keys(stageOptions);

let cached: { version: number; schema: z.ZodObject } | undefined;

/** The stage's options and every registered strategy's, as one strict object (rebuilt when a plug-in adds a strategy). */
export function selectOptionsSchema(): z.ZodObject {
  if (cached?.version === strategiesVersion()) return cached.schema;
  const shape: Record<string, z.core.$ZodType> = { ...stageOptions };
  for (const s of allStrategies()) {
    for (const [key, schema] of Object.entries(s.options)) {
      if (STAGE_KEYS.includes(key)) throw new UsageError(`strategy ${s.name} declares option "${key}", which select itself owns`);
      shape[key] = schema;
    }
  }
  cached = { version: strategiesVersion(), schema: z.object(shape as z.ZodRawShape).strict() };
  return cached.schema;
}

/** select's options as a library caller writes them: the stage's own, plus the chosen strategy's. */
export type SelectInput = Partial<z.input<z.ZodObject<typeof stageOptions>>> & { out: string } & Record<string, unknown>;

/** Refuses options a strategy does not take, and what a strategy needs but was not given. */
function checkOptions(o: SelectOptions): void {
  const s = getStrategy(o.strategy);
  for (const other of allStrategies()) {
    for (const key of Object.keys(other.options)) {
      if (o[key] !== undefined && !(key in s.options)) {
        const takers = allStrategies().filter((t) => key in t.options).map((t) => t.name);
        throw new UsageError(`option "${key}" applies only to strategy ${takers.join(', ')}, not ${o.strategy}`, { hint: `Drop it, or pass --strategy ${takers[0]}` });
      }
    }
  }
  if (o.target !== undefined && !s.needsTarget) {
    throw new UsageError(`option "target" applies only to strategy ${allStrategies().filter((t) => t.needsTarget).map((t) => t.name).join(', ')}, not ${o.strategy}`);
  }
  if (o.by === undefined && s.by === 'required') {
    throw new UsageError(`strategy ${o.strategy} needs a score column`, { hint: 'Name it with --by <column> (e.g. metagrad, el2n, rating)' });
  }
  if (o.by !== undefined && s.by === 'none') throw new UsageError(`strategy ${o.strategy} ranks by no column`, { hint: 'Drop --by' });
  if (o.order === 'score' && o.by === undefined) {
    throw new UsageError('--order score orders rows by the --by column, and none was given', { hint: 'Pass --by <column>, or drop --order score' });
  }
  if (o.budget === undefined && s.budget === 'required') {
    throw new UsageError(`strategy ${o.strategy} needs a budget`, { hint: 'Pass --budget <fraction in (0, 1] or row count>' });
  }
  s.check?.(o);
}

/** Does `dir` hold images, i.e. is it a dataset rather than a score sidecar? */
async function holdsImages(dir: string): Promise<boolean> {
  return (await openDataset(dir)).column('pixels') !== undefined;
}

/** A plain list: the pool first; after it score sidecars, and a target set (the one that holds images) for strategies that take one. */
async function fromList(paths: readonly string[], o: SelectOptions): Promise<NamedInputs> {
  if (paths.length < 1) throw new UsageError('select takes a dataset (and optionally score sidecars), got no input');
  const [dataset, ...rest] = paths;
  if (!getStrategy(o.strategy).needsTarget) return { dataset: [dataset], scores: [...rest], target: [] };
  const withImages: string[] = [];
  for (const d of rest) if (await holdsImages(d)) withImages.push(d);
  if (withImages.length > 1) {
    throw new UsageError(`${o.strategy} takes one target set, but ${withImages.length} inputs hold images: ${withImages.join(', ')}`, {
      hint: 'Name the target with --target; other inputs after the first must be score sidecars',
    });
  }
  return { dataset: [dataset], scores: rest.filter((d) => !withImages.includes(d)), target: withImages };
}

/** Opens the pool with its sidecars, each once, refusing sidecars written for another dataset. */
async function openPool(dir: string, sidecars: string[]): Promise<Dataset> {
  const seen = new Set<string>();
  const unique = sidecars.filter((d) => !seen.has(path.resolve(d)) && seen.add(path.resolve(d)));
  const ds = await openDataset(dir, { sidecars: unique });
  for (const sc of ds.sidecars) {
    const of = sc.curation?.sidecar_of;
    if (of !== undefined && of !== ds.fingerprint) {
      throw new DataError(`the scores were written for dataset ${of}, not for this one (${ds.fingerprint})`, {
        file: sc.dir,
        hint: `Rerun the stage that wrote them on ${ds.dir}`,
      });
    }
  }
  return ds;
}

/**
 * Rows of the pool an existing selection at --out already decided, when it can be
 * added to rather than remade: a per-row strategy in the pool's order, the same
 * choices, and inputs that only grew by appended rows since (so the first rows and
 * their scores are what they were).
 */
async function appendFrom(o: SelectOptions, s: Strategy, now: { options: Record<string, unknown>; parents: ParentRef[] }): Promise<number | undefined> {
  if (!s.perRow?.(o) || o.order === 'score' || o.overwrite) return undefined;
  const existing = await readCuration(o.out as string).catch(() => undefined);
  if (existing?.stage !== 'select') return undefined;
  const change = await whatChanged(existing, { stageVersion: SELECT_VERSION, choices: now.options, parents: now.parents });
  return change.grew ? existing.parents[0]?.rows : undefined;
}

/** Classes that kept less than `floor` × their proportional share of the kept rows. */
function thinClasses(ds: Dataset, labels: Int32Array, kept: Uint32Array, floor: number) {
  if (!(floor > 0) || kept.length === 0) return [];
  const counts = perClass(ds, labels, kept);
  const total = labels.length;
  return Object.entries(counts.before).flatMap(([name, pool]) => {
    const expected = (pool * kept.length) / total;
    const got = counts.after[name] ?? 0;
    return pool > 0 && got < floor * expected ? [{ class: name, kept: got, expected: Math.round(expected * 10) / 10 }] : [];
  });
}

function checkColumns(ds: Dataset, o: SelectOptions, s: Strategy): void {
  const names = ds.columns.map((c) => c.name);
  if (!ds.column('id')) {
    throw new DataError(`the dataset has no id column (columns: ${names.join(', ')})`, {
      file: ds.dir,
      hint: 'Ingest it first (metacurate ingest <dir> --out <dir>): ingest gives every row a stable id',
    });
  }
  for (const c of [...(o.by !== undefined ? [o.by] : []), ...(s.columns?.(o) ?? [])]) checkScoreColumn(ds, c, { attach: '--scores <dir>', pick: '--by' });
  if (s.needsLabels) {
    const label = ds.column('label');
    if (!label || !LABEL_KINDS.has(label.kind)) {
      throw new DataError(`strategy ${s.name} needs an integer label column; the columns are: ${names.join(', ')}`, {
        file: ds.dir,
        hint: 'Use --strategy topk for unlabelled data',
      });
    }
  }
}

export interface SelectSummary extends Record<string, unknown> {
  strategy: string;
  by: string | null;
  rows_in: number;
  /** Rows kept (distinct rows; with MGD counts above 1, fewer than the budget). */
  rows: number;
  /** The budget in rows (Σ counts for MGD); null for a threshold without a cap. */
  budget: number | null;
  budget_requested: number | null;
  invert?: boolean;
  per_class?: { before: Record<string, number>; after: Record<string, number> };
  score?: { kept_mean: number | null; dropped_mean: number | null; kept_min: number | null; kept_max: number | null };
  mgd?: { rounds_run: number; total_count: number; history: MgdRound[]; target_loss?: number[] };
  selection_file: string;
  selection_sha256: string;
  seconds: number;
}

export interface SelectResult extends StageResult {
  summary: SelectSummary;
  /** Path of selection.arrow in the output. */
  selectionFile: string;
}

/** What only the library can pass: callbacks have no place in a pipeline file. */
export interface SelectHooks {
  /** dφ/dc for every pool row at counts c (the mgd strategy). */
  metagrad?: MetagradFn;
}

function makeSelectStage(hooks: Record<string, unknown>) {
  return defineStage({
    name: 'select',
    version: SELECT_VERSION,
    description: 'Pick a subset under a budget by a score or rating column (full rows out, plus selection.arrow)',
    get options() {
      return selectOptionsSchema();
    },
    inputs: [
      { name: 'dataset', description: 'the pool to select from' },
      { name: 'scores', description: 'score sidecars of the pool', optional: true, many: true },
      { name: 'target', description: 'a clean held-out target set (strategies that measure a target loss)', optional: true },
    ],
    check: (o) => checkOptions(o as SelectOptions),
    fromList: (paths, o) => fromList(paths, o as SelectOptions),
    checkInputs(inputs, raw) {
      const o = raw as SelectOptions;
      const s = getStrategy(o.strategy);
      if (inputs.target.length && !s.needsTarget) throw new UsageError(`strategy ${s.name} takes no target set`, { hint: 'Drop the target input' });
      s.checkInputs?.(inputs, o, hooks);
    },
    async plan(inputs, raw) {
      const o = raw as SelectOptions;
      const s = getStrategy(o.strategy);
      const ds = await openPool(inputs.dataset[0], inputs.scores);
      checkColumns(ds, o, s);
      const n = await ds.countRows();
      // Validate the budget before reading any row.
      if (o.budget !== undefined) resolveBudget(o.budget, n, ds.dir);
      const extra = s.plan ? await s.plan(inputs, o, hooks) : {};
      const options: Record<string, unknown> = { strategy: o.strategy, by: o.by, budget: o.budget, shardRows: o.shardRows };
      // Only when set, so the fingerprints of plain selections stay as they were.
      if (o.invert) options.invert = true;
      if (o.order === 'score') options.order = 'score';
      Object.assign(options, s.canonical(o), extra.options);
      const parents = [
        { fingerprint: ds.fingerprint, path: ds.dir, role: 'dataset', rows: n },
        ...ds.sidecars.map((sc) => ({ fingerprint: sc.fingerprint, path: sc.dir, role: 'scores' })),
        ...(extra.parents ?? []),
      ];
      return {
        ds, n, strategy: s, state: extra.state,
        options,
        seed: s.seeded ? o.seed : undefined,
        parents,
        appendFrom: await appendFrom(o, s, { options, parents }),
      };
    },
    appends: (_o, plan) => plan.appendFrom !== undefined,
    async run(ctx, plan, raw, out) {
      const o = raw as SelectOptions;
      const { ds, n, strategy: s } = plan;
      ctx.log.info({ dataset: ds.dir, rows: n, strategy: o.strategy, by: o.by, sidecars: ds.sidecars.map((sc) => sc.dir) }, 'select: reading');
      const wanted = [...new Set([...(o.by !== undefined ? [o.by] : []), ...(s.columns?.(o) ?? [])])];
      const loaded = await loadColumns(ctx, ds, n, wanted);
      if (s.needsLabels && loaded.labels) checkLabels(ds, loaded.labels, loaded.ids);
      const scores = o.by !== undefined ? loaded.columns[o.by] : undefined;
      const decision = await s.decide({
        ctx, dataset: ds, n, ids: loaded.ids, scores, labels: loaded.labels, columns: loaded.columns,
        budget: o.budget === undefined ? undefined : resolveBudget(o.budget, n, ds.dir),
        options: o, rng: (label) => Rng.derive(o.seed, `select/${label}`), plan: plan.state, hooks,
      });
      const selection = o.invert ? complement(n, decision.selection) : decision.selection;
      const kept = selection.indices;
      if (kept.length === 0) ctx.log.warn({ threshold: o.threshold }, 'select: no row passes; the output is empty');
      const planted = await plantedKinds(ds);
      const thin = loaded.labels ? thinClasses(ds, loaded.labels, kept, o.classFloor as number) : [];
      if (thin.length) ctx.log.warn({ classes: thin }, `select: ${thin.length} class(es) kept less than ${o.classFloor} of their proportional share`);

      const extraScore = o.by !== undefined && !ds.ownColumns.some((c) => c.name === o.by) ? o.by : undefined;
      const columns: ColumnSpec[] = [...ds.ownColumns, ...(extraScore ? [{ ...ds.column(extraScore)!, name: extraScore }] : [])];
      const order = o.order === 'score' ? scoreOrder(kept, scores!) : kept;
      const written = plan.appendFrom === undefined ? order : await newRowsOnly(o.out as string, kept, plan.appendFrom, loaded.ids);
      const bytes = selectionBytes(loaded.ids, order === kept ? selection : reorder(selection, order));
      const writer = await out.dataset({
        columns,
        pixelShape: ds.pixelShape,
        description: `Selected by metacurate: ${o.invert ? 'all but ' : ''}${o.strategy}${o.by ? ` by ${o.by}` : ''}`,
        license: ds.info?.license,
        shardRows: o.shardRows as number | undefined,
        // Encoded originals can be large: smaller record batches keep memory flat (as ingest does).
        batchRows: columns.some((c) => c.kind === 'image') ? 100 : undefined,
        extraFiles: { [SELECTION_FILE]: bytes },
      });
      await writeKept(ctx, ds.dir, writer, ds.ownColumns, written, loaded.ids, extraScore ? { name: extraScore, values: scores! } : undefined);
      const summary: SelectSummary = {
        strategy: o.strategy,
        by: o.by ?? null,
        rows_in: n,
        rows: kept.length,
        budget: decision.budget,
        budget_requested: o.budget ?? null,
        invert: o.invert === true || undefined,
        per_class: loaded.labels ? perClass(ds, loaded.labels, kept) : undefined,
        score: scores ? scoreStats(scores, kept) : undefined,
        ...(planted ? { planted: keptByKind(planted, kept) } : {}),
        ...(thin.length ? { class_balance: { floor: o.classFloor, below: thin } } : {}),
        ...decision.summary,
        ...(plan.appendFrom !== undefined ? { appended: { rows_before: plan.appendFrom, kept: written.length } } : {}),
        selection_file: SELECTION_FILE,
        selection_sha256: sha256Hex(bytes),
        seconds: 0,
      };
      ctx.log.info({ out: out.dir, rows: kept.length, of: n }, 'select: done');
      return { summary };
    },
  });
}

/**
 * The kept rows past the first `from` of the pool, after checking the kept rows
 * before it are the ones the existing selection holds (they must be: their
 * scores are unchanged); the output keeps those and gains these.
 */
async function newRowsOnly(out: string, kept: Uint32Array, from: number, ids: IdList): Promise<Uint32Array> {
  const before = tableFromIPC(await fsp.readFile(path.join(out, SELECTION_FILE))).getChild('id')!.toArray() as string[];
  const split = kept.findIndex((i) => i >= from);
  const old = split < 0 ? kept : kept.subarray(0, split);
  if (old.length !== before.length || old.some((i, j) => ids.get(i) !== before[j])) {
    throw new DataError(`the rows selected among the first ${from} differ from those the existing selection kept`, {
      file: out,
      hint: 'Their scores changed although the inputs only grew; rerun select with --overwrite',
    });
  }
  return split < 0 ? new Uint32Array(0) : kept.subarray(split);
}

export const selectStage = makeSelectStage({});

/**
 * Selects rows of the dataset at `datasetDir` into `options.out` (the library form
 * of `metacurate select`). For the mgd strategy, either pass `target` (and the
 * engine's training options) to use the built-in engine, or a `metagrad` hook:
 * given the per-row counts c, it returns dφ/dc.
 */
export async function select(datasetDir: string, options: Record<string, unknown> & SelectHooks, ctx?: StageContext): Promise<SelectResult> {
  const { metagrad, ...rest } = options;
  const stage = metagrad ? makeSelectStage({ metagrad }) : selectStage;
  const result = await stage.run(ctx, [datasetDir], rest);
  return { ...(result as unknown as SelectResult), selectionFile: path.join(result.dir, SELECTION_FILE) };
}
