/**
 * The select stage, the pruner (DESIGN.md "Stages"): turns scores or ratings into
 * a subset under a budget. Scores come from sidecar datasets (`scores`, or the
 * stage's inputs after the first), oriented so that higher = more valuable to keep.
 *
 * Strategies (stages/select/strategies.ts):
 * - `topk` / `bottomk`: the best / worst `budget` rows by `by`, ties by row order;
 * - `threshold`: rows with `by` ≥ `threshold`, at most `budget` of them (the best) if given;
 * - `stratified`: per-class top-k, each class keeping its share of the pool;
 * - `shift-gsample` (Alchemist): drop the top `shift`, sample the rest around the
 *   percentile `mu` with width `sigma`;
 * - `prune`: drop the bottom `drop` fraction (the suspected harmful rows), then a
 *   uniform draw of the budget from the rest;
 * - `random`: uniform, seeded — the baseline every selection is compared with;
 * - `mgd`: metagradient descent on integer counts at a fixed budget. Its
 *   metagradient comes from the built-in engine (stages/mgd.ts: training on the
 *   pool, φ = loss on the `target` set, options as the score stage's) or, from the
 *   library, from a `metagrad` callback.
 *
 * `invert` keeps the complement of what the strategy chooses: e.g. `random` with
 * a budget of 1000 carves a held-out target, and the same options with `invert`
 * give the rest as the pool (same seed, same draw, so the two never overlap).
 *
 * Two passes, so memory holds only ids, labels and the score column: the first
 * reads those and decides the kept rows, the second streams the parent again and
 * writes the kept rows in the parent's order.
 *
 * Output: a full dataset with the parent's own columns — plus the `by` column when
 * it came from a sidecar, so the subset shows what it was selected by (other
 * sidecar columns are left out: attach them to the parent to see them) — and
 * `selection.arrow`, an Arrow IPC stream of `id` (utf8), `index` (int64, the row in
 * the parent) and `weight` (float32: 1, or the MGD count), in the parent's order.
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { RecordBatch, Struct, Table, makeData, tableToIPC } from 'apache-arrow';
import { z } from 'zod';
import { DataError, UsageError } from '../core/errors.js';
import { fingerprint as computeFingerprint, sha256Hex } from '../core/hash.js';
import { Rng } from '../core/rng.js';
import { loadExamples } from '../data/batch.js';
import { columnData, numericValues } from '../data/columns.js';
import { makeSchema, type ColumnSpec } from '../data/format.js';
import { openDataset, type Dataset } from '../data/reader.js';
import { DatasetWriter } from '../data/writer.js';
import { scheduleSpecSchema } from '../ml/schedule.js';
import type { TrainConfig } from '../ml/train.js';
import { quietContext, type Stage, type StageContext, type StageResult } from './context.js';
import { checkCompatible, checkLabelled, describeDataset, type DataInfo } from './inputs.js';
import { createMgdEngine, mgdEngineKey } from './mgd.js';
import { modelChoice, optimizerChoice, trainChoicesFor, trainConfigOf } from './score.js';
import { BACKEND_REQUESTS } from '../ml/backend.js';
import { rowReader } from './select/rows.js';
import {
  aboveThreshold, bottomK, mgdSelect, pruneThenRandom, randomK, resolveBudget, shiftGsample, stratifiedTopK, topK,
  type MetagradFn, type MgdRound, type Selection,
} from './select/strategies.js';

export { largestRemainder, rankByScore, resolveBudget, type MetagradFn, type MgdRound, type Selection } from './select/strategies.js';

export const SELECT_VERSION = '1';
/** The kept rows' ids, parent row indices and weights, written beside the shards. */
export const SELECTION_FILE = 'selection.arrow';

export const SELECT_STRATEGIES = ['topk', 'bottomk', 'threshold', 'stratified', 'shift-gsample', 'prune', 'random', 'mgd'] as const;
export type SelectStrategy = (typeof SELECT_STRATEGIES)[number];

/**
 * Shift-Gsample defaults. ANCHORS.md: the best block of ratings was around the
 * 40th–60th percentile, so μ = 0.5 centres on it; σ = 0.15 puts about half the
 * sampling mass inside that block (P(|Z| < 0.1/0.15) ≈ 0.50) and lets the rest taper
 * off, so a budget of half the pool can be met without scraping the tails. The
 * paper's drop fraction n is not recorded there; 0.1 drops the top decile.
 */
export const SHIFT_GSAMPLE_DEFAULTS = { shift: 0.1, mu: 0.5, sigma: 0.15 } as const;
/** prune: the fraction of the pool dropped from the bottom of the ranking by default (the suspected fifth). */
export const PRUNE_DEFAULTS = { drop: 0.2 } as const;
/** MGD defaults: 10 rounds (ANCHORS: "repeat tens of times" at larger scale), 20% of the budget moved in the first. */
export const MGD_DEFAULTS = { rounds: 10, swap: 0.2, maxCount: 1 } as const;
/** The built-in engine's REPLAY settings (the score stage's defaults). */
export const MGD_ENGINE_DEFAULTS = { k: 16, maxMemoryMiB: 2048 } as const;

const positiveInt = z.number().int().positive();

export const selectOptions = z.object({
  /** Output dataset directory. */
  out: z.string().min(1),
  strategy: z.enum(SELECT_STRATEGIES).default('topk'),
  /** The score column (higher = keep); required except for random and mgd. */
  by: z.string().min(1).optional(),
  /** Sidecar datasets holding score columns, joined to the dataset row by row. */
  scores: z.array(z.string().min(1)).default([]),
  /** A fraction of the rows in (0, 1], or a whole count; required except for threshold (where it caps). */
  budget: z.number().optional(),
  /** threshold: keep rows whose score is at least this. */
  threshold: z.number().optional(),
  /** shift-gsample: fraction of the pool dropped from the top of the ranking. */
  shift: z.number().min(0).lt(1).optional(),
  /** shift-gsample: centre of the sampling density, a percentile of the pool (0 = best). */
  mu: z.number().min(0).max(1).optional(),
  /** shift-gsample: width of the sampling density, in percentile units. */
  sigma: z.number().positive().optional(),
  /** prune: fraction of the pool dropped from the bottom of the ranking before the random draw. */
  drop: z.number().min(0).lt(1).optional(),
  /** mgd: rounds of metagradient + swap, at most. */
  rounds: positiveInt.optional(),
  /** mgd: count moved in the first round as a fraction of the budget (decays to 1 unit). */
  swap: z.number().gt(0).max(1).optional(),
  /** mgd: highest count a row may reach (1 = a plain subset). */
  maxCount: positiveInt.optional(),
  /**
   * mgd with a library callback: names the metagradient setup (e.g. the score
   * stage's fingerprint). It goes into the output fingerprint, since the callback
   * itself cannot. With `target` the engine's key is computed instead.
   */
  metagradKey: z.string().min(1).optional(),
  /**
   * mgd: the target set φ is measured on (clean, held out from the pool). In a
   * pipeline it may instead be an input after the first that holds images
   * (score sidecars never do): inputs: ['${pool}', '${target}'].
   */
  target: z.string().min(1).optional(),
  /** mgd: the model trained through (as score's: logreg, mlp, convnet, or a spec; default the metagradient's, METAGRAD_TRAIN_DEFAULTS). */
  model: modelChoice.optional(),
  /** mgd: the optimizer (as score's: sgd, adam, adamw, or a spec; default momentum-free SGD, METAGRAD_TRAIN_DEFAULTS). */
  optimizer: optimizerChoice.optional(),
  /** mgd: learning rate (overrides the optimizer's). */
  lr: z.number().positive().optional(),
  /** mgd: learning-rate schedule (default constant). */
  schedule: scheduleSpecSchema.optional(),
  /** mgd: epochs of the training run differentiated through (default 2). */
  epochs: positiveInt.optional(),
  /** mgd: its batch size (default METAGRAD_TRAIN_DEFAULTS'). */
  batchSize: positiveInt.optional(),
  /** mgd: REPLAY branching factor (default MGD_ENGINE_DEFAULTS.k; memory O(k log_k T) states). */
  k: z.number().int().min(2).optional(),
  /** mgd: memory the stored training states may take, MiB (default 2048; does not change the result). */
  maxMemoryMiB: positiveInt.optional(),
  /** Compute backend of the mgd engine (default: best available; ignored by other strategies, so a pipeline-wide backend applies). */
  backend: z.enum(BACKEND_REQUESTS).optional(),
  /** Keep the rows the strategy does not choose (the complement; weights dropped). */
  invert: z.boolean().default(false),
  /** random, shift-gsample, prune, mgd: the seed of every random draw (other strategies draw none). */
  seed: z.number().int().default(0),
  shardRows: positiveInt.optional(),
  overwrite: z.boolean().default(false),
}).strict();

export type SelectOptions = z.infer<typeof selectOptions>;
export type SelectInput = z.input<typeof selectOptions>;

/** Options that only some strategies take; any other strategy refuses them. */
const STRATEGY_ONLY: Partial<Record<keyof SelectOptions, SelectStrategy[]>> = {
  threshold: ['threshold'],
  shift: ['shift-gsample'],
  mu: ['shift-gsample'],
  sigma: ['shift-gsample'],
  drop: ['prune'],
  rounds: ['mgd'],
  swap: ['mgd'],
  maxCount: ['mgd'],
  metagradKey: ['mgd'],
  target: ['mgd'],
  model: ['mgd'],
  optimizer: ['mgd'],
  lr: ['mgd'],
  schedule: ['mgd'],
  epochs: ['mgd'],
  batchSize: ['mgd'],
  k: ['mgd'],
  maxMemoryMiB: ['mgd'],
};
/** Options of the built-in mgd engine: they need `target`, and a library callback takes none of them. */
const ENGINE_OPTIONS = ['model', 'optimizer', 'lr', 'schedule', 'epochs', 'batchSize', 'k', 'maxMemoryMiB'] as const;
const SEEDED: ReadonlySet<SelectStrategy> = new Set(['random', 'shift-gsample', 'prune', 'mgd']);
const NUMERIC_KINDS: ReadonlySet<string> = new Set(['int32', 'int64', 'float32', 'float64']);
const LABEL_KINDS: ReadonlySet<string> = new Set(['classLabel', 'int64', 'int32']);

export interface SelectSummary extends Record<string, unknown> {
  strategy: SelectStrategy;
  by: string | null;
  rows_in: number;
  /** Rows kept (distinct rows; with MGD counts above 1, fewer than the budget). */
  rows: number;
  /** The budget in rows (Σ counts for MGD); null for a threshold without a cap. */
  budget: number | null;
  /** The budget as given (fraction or count). */
  budget_requested: number | null;
  /** True when the output is the complement of the strategy's choice (rows = rows_in − chosen). */
  invert?: boolean;
  per_class?: { before: Record<string, number>; after: Record<string, number> };
  /** Mean score of the kept and the dropped rows (null when none). */
  score?: { kept_mean: number | null; dropped_mean: number | null; kept_min: number | null; kept_max: number | null };
  shift_gsample?: { shift: number; mu: number; sigma: number; dropped_top: number; kept_percentile_mean: number | null };
  prune?: { drop: number; dropped_bottom: number };
  mgd?: {
    rounds_run: number;
    total_count: number;
    history: MgdRound[];
    /** Built-in engine: φ (target loss after training) at the counts each round started from. */
    target_loss?: number[];
  };
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
  /** dφ/dc for every pool row at counts c; required by the mgd strategy. */
  metagrad?: MetagradFn;
}

function parseOptions(options: unknown): SelectOptions {
  const r = selectOptions.safeParse(options);
  if (!r.success) throw new UsageError(`invalid select options: ${z.prettifyError(r.error).replace(/\n/g, '; ')}`);
  const o = r.data;
  for (const [key, strategies] of Object.entries(STRATEGY_ONLY) as [keyof SelectOptions, SelectStrategy[]][]) {
    if (o[key] !== undefined && !strategies.includes(o.strategy)) {
      throw new UsageError(`option "${key}" applies only to strategy ${strategies.join(', ')}, not ${o.strategy}`, {
        hint: `Drop it, or pass --strategy ${strategies[0]}`,
      });
    }
  }
  if (o.by === undefined && o.strategy !== 'random' && o.strategy !== 'mgd') {
    throw new UsageError(`strategy ${o.strategy} needs a score column`, { hint: 'Name it with --by <column> (e.g. metagrad, el2n, rating)' });
  }
  if (o.budget === undefined && o.strategy !== 'threshold') {
    throw new UsageError(`strategy ${o.strategy} needs a budget`, { hint: 'Pass --budget <fraction in (0, 1] or row count>' });
  }
  if (o.strategy === 'threshold' && o.threshold === undefined) {
    throw new UsageError('strategy threshold needs a threshold', { hint: 'Pass --threshold <score>: rows scoring at least this are kept' });
  }
  return o;
}

/** The built-in mgd engine's setup (stages/mgd.ts): the target set and the training run differentiated through. */
interface EngineSetup {
  target: DataInfo;
  train: TrainConfig;
  k: number;
  /** mgdEngineKey(target, train, k): the output fingerprint's metagradKey. */
  key: string;
}

interface ResolvedInputs {
  /** Score sidecars: the inputs after the first (except an mgd target), then `scores`, each once. */
  sidecars: string[];
  engine?: EngineSetup;
}

/** Does `dir` hold images, i.e. is it a dataset rather than a score sidecar? */
async function holdsImages(dir: string): Promise<boolean> {
  return (await openDataset(dir)).column('pixels') !== undefined;
}

/**
 * Sorts the inputs into the dataset's score sidecars and, for mgd without a
 * library callback, the engine's setup: the target is `target`, or else the one
 * input after the first that holds images.
 */
async function resolveInputs(inputs: string[], o: SelectOptions, hooks: SelectHooks): Promise<ResolvedInputs> {
  if (inputs.length < 1) throw new UsageError('select takes a dataset (and optionally score sidecars), got no input');
  const usesEngine = o.strategy === 'mgd' && !hooks.metagrad;
  if (!usesEngine) {
    if (hooks.metagrad) {
      const given = [...(o.target !== undefined ? ['target'] : []), ...ENGINE_OPTIONS.filter((key) => o[key] !== undefined)];
      if (given.length) {
        throw new UsageError(`option ${given.map((g) => `"${g}"`).join(', ')} configures the built-in metagradient engine, but a metagrad callback was given`, {
          hint: 'Pass either the callback or the engine\'s options (target, model, epochs, ...), not both',
        });
      }
    }
    return { sidecars: sidecarDirs(inputs.slice(1), o) };
  }
  let targetDir = o.target;
  let extra = inputs.slice(1);
  if (targetDir === undefined) {
    const withImages: string[] = [];
    for (const d of extra) if (await holdsImages(d)) withImages.push(d);
    if (withImages.length > 1) {
      throw new UsageError(`mgd takes one target set, but ${withImages.length} inputs hold images: ${withImages.join(', ')}`, {
        hint: 'Name the target with --target; other inputs after the first must be score sidecars',
      });
    }
    targetDir = withImages[0];
    extra = extra.filter((d) => d !== targetDir);
  }
  if (targetDir === undefined) {
    throw new UsageError('mgd selection needs the score stage\'s metagradient engine, and the engine needs a target set to measure φ on', {
      hint: 'Pass --target <dir>: a clean, labelled set held out from the pool (e.g. carved with select --strategy random, the pool being the same selection with --invert)',
    });
  }
  if (o.metagradKey !== undefined) {
    throw new UsageError('metagradKey names the setup of a library metagrad callback; with a target the engine\'s key is computed', { hint: 'Drop metagradKey' });
  }
  if (o.seed < 0) throw new UsageError(`mgd trains with seed ${o.seed}; the training seed must be 0 or more`, { hint: 'Pass --seed <n ≥ 0>' });
  const pool = await describeDataset(inputs[0], 'pool');
  const target = await describeDataset(targetDir, 'target');
  checkLabelled(pool);
  checkLabelled(target);
  checkCompatible(pool, target);
  const train = trainConfigOf(trainChoicesFor('metagrad', { ...o, schedule: o.schedule ?? { kind: 'constant' } }), o.seed);
  const k = o.k ?? MGD_ENGINE_DEFAULTS.k;
  return { sidecars: sidecarDirs(extra, o), engine: { target, train, k, key: mgdEngineKey(target.ds.fingerprint, { train, k }) } };
}

/** The options that decide the output, with the strategy's defaults filled in: curation.json's and the fingerprint's. */
function canonicalOptions(o: SelectOptions, engine?: EngineSetup): Record<string, unknown> {
  const c: Record<string, unknown> = { strategy: o.strategy, by: o.by, budget: o.budget, shardRows: o.shardRows };
  // Only when set, so the fingerprints of plain selections stay as they were.
  if (o.invert) c.invert = true;
  if (o.strategy === 'threshold') c.threshold = o.threshold;
  if (o.strategy === 'shift-gsample') {
    c.shift = o.shift ?? SHIFT_GSAMPLE_DEFAULTS.shift;
    c.mu = o.mu ?? SHIFT_GSAMPLE_DEFAULTS.mu;
    c.sigma = o.sigma ?? SHIFT_GSAMPLE_DEFAULTS.sigma;
  }
  if (o.strategy === 'prune') {
    c.drop = o.drop ?? PRUNE_DEFAULTS.drop;
  }
  if (o.strategy === 'mgd') {
    c.rounds = o.rounds ?? MGD_DEFAULTS.rounds;
    c.swap = o.swap ?? MGD_DEFAULTS.swap;
    c.maxCount = o.maxCount ?? MGD_DEFAULTS.maxCount;
    c.metagradKey = engine?.key ?? o.metagradKey;
    // Also spelled out (they are in the key), so curation.json says how φ was trained.
    if (engine) {
      c.train = engine.train;
      c.k = engine.k;
    }
  }
  return c;
}

function seedOf(o: SelectOptions): number | undefined {
  return SEEDED.has(o.strategy) ? o.seed : undefined;
}

/** The sidecars: `extra` (the inputs after the first, less an mgd target), then `scores`, each once. */
function sidecarDirs(extra: string[], o: SelectOptions): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const d of [...extra, ...o.scores]) {
    const key = path.resolve(d);
    if (!seen.has(key)) {
      seen.add(key);
      out.push(d);
    }
  }
  return out;
}

async function openInputs(datasetDir: string, sidecars: string[]): Promise<Dataset> {
  const ds = await openDataset(datasetDir, { sidecars });
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

/** The parents of the output, in the order curation.json lists them: the dataset, its sidecars, an mgd target. */
function parentsOf(ds: Dataset, engine?: EngineSetup): { fingerprint: string; path: string; role: string }[] {
  return [
    { fingerprint: ds.fingerprint, path: ds.dir, role: 'dataset' },
    ...ds.sidecars.map((s) => ({ fingerprint: s.fingerprint, path: s.dir, role: 'scores' })),
    ...(engine ? [{ fingerprint: engine.target.ds.fingerprint, path: engine.target.dir, role: 'target' }] : []),
  ];
}

function selectFingerprint(ds: Dataset, o: SelectOptions, engine?: EngineSetup): string {
  return computeFingerprint({
    stage: 'select',
    stageVersion: SELECT_VERSION,
    options: canonicalOptions(o, engine),
    seed: seedOf(o),
    parents: parentsOf(ds, engine).map((p) => p.fingerprint),
  });
}

/** The dataset (own or sidecar) a column comes from: the first that has it, as the reader joins them. */
function ownerOf(ds: Dataset, column: string): Dataset {
  return [ds, ...ds.sidecars].find((d) => d.ownColumns.some((c) => c.name === column)) ?? ds;
}

function checkColumns(ds: Dataset, o: SelectOptions): void {
  const names = ds.columns.map((c) => c.name);
  if (!ds.column('id')) {
    throw new DataError(`the dataset has no id column (columns: ${names.join(', ')})`, {
      file: ds.dir,
      hint: 'Ingest it first (metacurate ingest <dir> --out <dir>): ingest gives every row a stable id',
    });
  }
  if (o.by !== undefined) {
    const spec = ds.column(o.by);
    if (!spec) {
      throw new DataError(`no column "${o.by}"; the columns are: ${names.join(', ')}`, {
        file: ds.dir,
        hint: ds.sidecars.length === 0
          ? 'Scores live in sidecar datasets: attach one with --scores <dir>, or pick one of these with --by'
          : 'Pick one of these with --by, or attach the sidecar that holds it with --scores',
      });
    }
    if (!NUMERIC_KINDS.has(spec.kind)) {
      throw new DataError(`column "${o.by}" holds ${spec.kind} values, not numeric scores`, { file: ownerOf(ds, o.by).dir, hint: 'Pick a score column with --by' });
    }
  }
  if (o.strategy === 'stratified') {
    const label = ds.column('label');
    if (!label || !LABEL_KINDS.has(label.kind)) {
      throw new DataError(`stratified selection needs an integer label column; the columns are: ${names.join(', ')}`, {
        file: ds.dir,
        hint: 'Use --strategy topk for unlabelled data',
      });
    }
  }
}

interface Loaded {
  ids: string[];
  scores?: Float64Array;
  labels?: Int32Array;
}

/** Pass 1: ids, the score column and labels, block by block (sidecar ids are checked by the reader). */
async function loadSelectionColumns(ctx: StageContext, ds: Dataset, n: number, by: string | undefined): Promise<Loaded> {
  const ids: string[] = new Array(n);
  const scores = by !== undefined ? new Float64Array(n) : undefined;
  const labelSpec = ds.column('label');
  const labels = labelSpec && LABEL_KINDS.has(labelSpec.kind) ? new Int32Array(n) : undefined;
  const progress = ctx.progress('select: read scores', n);
  let rows = 0;
  try {
    for await (const b of ds.blocks()) {
      ctx.signal?.throwIfAborted();
      if (b.offset + b.length > n) throw new DataError(`the dataset has more rows than its metadata records (${n})`, { file: ds.dir, hint: 'Re-create the dataset' });
      const idv = b.column('id');
      for (let i = 0; i < b.length; i++) ids[b.offset + i] = String(idv.get(i));
      if (scores) {
        const v = b.column(by!);
        const values = numericValues(v);
        if (v.nullCount > 0) for (let i = 0; i < b.length; i++) if (!v.isValid(i)) values[i] = NaN;
        scores.set(values, b.offset);
      }
      if (labels) labels.set(numericValues(b.column('label')), b.offset);
      rows += b.length;
      progress.tick(b.length);
    }
  } finally {
    progress.done();
  }
  if (rows !== n) throw new DataError(`read ${rows} rows but the metadata records ${n}`, { file: ds.dir, hint: 'Re-create the dataset' });
  return { ids, scores, labels };
}

function checkScores(ds: Dataset, by: string, scores: Float64Array, ids: string[]): void {
  let first = -1;
  let count = 0;
  for (let i = 0; i < scores.length; i++) {
    if (Number.isNaN(scores[i])) {
      if (first < 0) first = i;
      count++;
    }
  }
  if (first >= 0) {
    throw new DataError(`score "${by}" is NaN or missing for id "${ids[first]}" and ${count - 1} more of ${scores.length} rows`, {
      file: ownerOf(ds, by).dir,
      row: first,
      hint: 'Rerun the score stage (NaN scores usually mean its training diverged: lower the learning rate), or select --by another column',
    });
  }
}

function checkLabels(ds: Dataset, labels: Int32Array, ids: string[]): void {
  for (let i = 0; i < labels.length; i++) {
    if (labels[i] < 0) {
      throw new DataError(`label ${labels[i]} of id "${ids[i]}" is negative`, { file: ds.dir, row: i, hint: 'Stratified selection needs class indices 0…C−1; re-ingest the dataset' });
    }
  }
}

interface Decision {
  selection: Selection;
  budget: number | null;
  shiftGsample?: SelectSummary['shift_gsample'];
  prune?: SelectSummary['prune'];
  mgd?: SelectSummary['mgd'];
}

async function decide(ctx: StageContext, ds: Dataset, o: SelectOptions, loaded: Loaded, metagrad: MetagradFn | undefined): Promise<Decision> {
  const n = loaded.ids.length;
  const k = o.budget === undefined ? undefined : resolveBudget(o.budget, n, ds.dir);
  const scores = loaded.scores!;
  const rng = (label: string) => Rng.derive(o.seed, `select/${label}`);
  switch (o.strategy) {
    case 'topk': return { selection: topK(scores, k!), budget: k! };
    case 'bottomk': return { selection: bottomK(scores, k!), budget: k! };
    case 'threshold': return { selection: aboveThreshold(scores, o.threshold!, k), budget: k ?? null };
    case 'stratified': return { selection: stratifiedTopK(scores, loaded.labels!, k!), budget: k! };
    case 'random': return { selection: randomK(n, k!, rng('random')), budget: k! };
    case 'prune': {
      const drop = o.drop ?? PRUNE_DEFAULTS.drop;
      const r = pruneThenRandom(scores, k!, drop, rng('prune'), ds.dir);
      return { selection: r, budget: k!, prune: { drop, dropped_bottom: r.droppedBottom } };
    }
    case 'shift-gsample': {
      const params = {
        shift: o.shift ?? SHIFT_GSAMPLE_DEFAULTS.shift,
        mu: o.mu ?? SHIFT_GSAMPLE_DEFAULTS.mu,
        sigma: o.sigma ?? SHIFT_GSAMPLE_DEFAULTS.sigma,
      };
      const r = shiftGsample(scores, k!, params, rng('shift-gsample'), ds.dir);
      return {
        selection: r,
        budget: k!,
        shiftGsample: { ...params, dropped_top: r.droppedTop, kept_percentile_mean: finiteOrNull(r.keptPercentileMean) },
      };
    }
    case 'mgd': {
      const rounds = o.rounds ?? MGD_DEFAULTS.rounds;
      const initial = loaded.scores ? topK(scores, k!).indices : randomK(n, k!, rng('mgd-init')).indices;
      const progress = ctx.progress('select: mgd rounds', rounds);
      try {
        const r = await mgdSelect(n, initial, metagrad!, {
          rounds,
          swap: o.swap ?? MGD_DEFAULTS.swap,
          maxCount: o.maxCount ?? MGD_DEFAULTS.maxCount,
          rng: rng('mgd-ties'),
          signal: ctx.signal,
          onRound: (round) => {
            ctx.log.info({ ...round }, 'select: mgd round');
            progress.tick();
          },
        });
        return { selection: r, budget: k!, mgd: { rounds_run: r.history.length, total_count: k!, history: r.history } };
      } finally {
        progress.done();
      }
    }
  }
}

/** The rows a selection leaves out, ascending (no weights: each is kept once). */
function complement(n: number, chosen: Selection): Selection {
  const isChosen = new Uint8Array(n);
  for (const i of chosen.indices) isChosen[i] = 1;
  const rest = new Uint32Array(n - chosen.indices.length);
  let j = 0;
  for (let i = 0; i < n; i++) if (!isChosen[i]) rest[j++] = i;
  return { indices: rest };
}

function finiteOrNull(x: number): number | null {
  return Number.isFinite(x) ? x : null;
}

const SELECTION_COLUMNS: ColumnSpec[] = [
  { name: 'id', kind: 'string' },
  { name: 'index', kind: 'int64' },
  { name: 'weight', kind: 'float32' },
];

/** selection.arrow: one Arrow IPC stream, readable by pyarrow.ipc.open_stream / Polars read_ipc_stream. */
export function selectionBytes(ids: string[], selection: Selection): Uint8Array {
  const { indices, weights } = selection;
  const values: Record<string, ArrayLike<unknown>> = {
    id: Array.from(indices, (i) => ids[i]),
    index: indices,
    weight: weights ?? new Float32Array(indices.length).fill(1),
  };
  const schema = makeSchema(SELECTION_COLUMNS);
  const children = SELECTION_COLUMNS.map((c) => columnData(c, values[c.name]));
  const batch = new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: indices.length, children }));
  return tableToIPC(new Table([batch]), 'stream');
}

function mean(values: number[]): number | null {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
}

function scoreStats(scores: Float64Array, kept: Uint32Array): NonNullable<SelectSummary['score']> {
  const isKept = new Uint8Array(scores.length);
  for (const i of kept) isKept[i] = 1;
  const inside: number[] = [];
  const outside: number[] = [];
  for (let i = 0; i < scores.length; i++) (isKept[i] ? inside : outside).push(scores[i]);
  return {
    kept_mean: mean(inside),
    dropped_mean: mean(outside),
    kept_min: inside.length ? inside.reduce((a, b) => Math.min(a, b)) : null,
    kept_max: inside.length ? inside.reduce((a, b) => Math.max(a, b)) : null,
  };
}

function perClass(ds: Dataset, labels: Int32Array, kept: Uint32Array): NonNullable<SelectSummary['per_class']> {
  const names = ds.classNames ?? [];
  const name = (c: number) => names[c] ?? String(c);
  const count = (rows: Iterable<number>) => {
    const out = new Map<number, number>();
    for (const i of rows) out.set(labels[i], (out.get(labels[i]) ?? 0) + 1);
    return out;
  };
  const before = count(labels.keys());
  const after = count(kept);
  const classes = [...new Set([...names.keys(), ...before.keys()])].sort((a, b) => a - b);
  return {
    before: Object.fromEntries(classes.map((c) => [name(c), before.get(c) ?? 0])),
    after: Object.fromEntries(classes.map((c) => [name(c), after.get(c) ?? 0])),
  };
}

/** Pass 2: streams the parent alone and writes the kept rows in its order. */
async function writeKept(
  ctx: StageContext,
  parentDir: string,
  writer: DatasetWriter,
  columns: ColumnSpec[],
  kept: Uint32Array,
  loaded: Loaded,
  extraScore: string | undefined,
): Promise<void> {
  const parent = await openDataset(parentDir);
  const progress = ctx.progress('select: write', kept.length);
  let j = 0;
  try {
    // Reads to the end even once every kept row is written: leaving blocks() early
    // would leave its shard streams open (it does not close them on return).
    for await (const b of parent.blocks()) {
      ctx.signal?.throwIfAborted();
      const end = b.offset + b.length;
      if (j >= kept.length || kept[j] >= end) continue;
      const read = rowReader(b, columns);
      const start = j;
      for (; j < kept.length && kept[j] < end; j++) {
        const row = read(kept[j] - b.offset);
        if (row.id !== loaded.ids[kept[j]]) {
          throw new DataError(`row ${kept[j]} has id "${row.id}" now but had "${loaded.ids[kept[j]]}" when the selection was made`, {
            file: parent.dir,
            hint: 'The dataset changed while select was reading it; rerun select',
          });
        }
        if (extraScore !== undefined) row[extraScore] = loaded.scores![kept[j]];
        await writer.writeRow(row);
      }
      progress.tick(j - start);
    }
  } finally {
    progress.done();
  }
  if (j !== kept.length) {
    throw new DataError(`the dataset ended before row ${kept[j]}`, { file: parent.dir, hint: 'The dataset changed while select was reading it; rerun select' });
  }
}

async function runSelect(ctx: StageContext, inputs: string[], options: SelectOptions, hooks: SelectHooks = {}): Promise<SelectResult> {
  const started = performance.now();
  const o = parseOptions(options);
  const resolved = await resolveInputs(inputs, o, hooks);
  const ds = await openInputs(inputs[0], resolved.sidecars);
  checkColumns(ds, o);
  const n = await ds.countRows();
  // Validate the budget before reading any row.
  if (o.budget !== undefined) resolveBudget(o.budget, n, ds.dir);
  ctx.log.info({ dataset: ds.dir, rows: n, strategy: o.strategy, by: o.by, sidecars: ds.sidecars.map((s) => s.dir) }, 'select: reading');

  const loaded = await loadSelectionColumns(ctx, ds, n, o.by);
  if (o.by !== undefined) checkScores(ds, o.by, loaded.scores!, loaded.ids);
  if (o.strategy === 'stratified') checkLabels(ds, loaded.labels!, loaded.ids);
  let metagrad = hooks.metagrad;
  let targetLosses: number[] | undefined;
  if (resolved.engine) {
    const { target, train, k } = resolved.engine;
    ctx.log.info({ target: target.dir, train, k }, 'select: loading the pool and the target for the metagradient engine');
    const engine = createMgdEngine(await loadExamples(await openDataset(inputs[0])), await loadExamples(target.ds), {
      train,
      k,
      maxStateBytes: (o.maxMemoryMiB ?? MGD_ENGINE_DEFAULTS.maxMemoryMiB) * 2 ** 20,
      backend: o.backend,
    }, ctx);
    metagrad = engine.metagrad;
    targetLosses = engine.targetLosses;
  }
  const decision = await decide(ctx, ds, o, loaded, metagrad);
  if (decision.mgd && targetLosses) decision.mgd.target_loss = targetLosses;
  if (o.invert) decision.selection = complement(n, decision.selection);
  const kept = decision.selection.indices;
  if (kept.length === 0) ctx.log.warn({ threshold: o.threshold }, 'select: no row passes; the output is empty');

  const extraScore = o.by !== undefined && !ds.ownColumns.some((c) => c.name === o.by) ? o.by : undefined;
  const columns: ColumnSpec[] = [...ds.ownColumns, ...(extraScore ? [{ ...ds.column(extraScore)!, name: extraScore }] : [])];
  const selection = selectionBytes(loaded.ids, decision.selection);
  const writer = await DatasetWriter.create(o.out, {
    columns,
    pixelShape: ds.pixelShape,
    meta: {
      stage: 'select',
      stageVersion: SELECT_VERSION,
      options: canonicalOptions(o, resolved.engine),
      seed: seedOf(o),
      parents: parentsOf(ds, resolved.engine),
      description: `Selected by metacurate: ${o.invert ? 'all but ' : ''}${o.strategy}${o.by ? ` by ${o.by}` : ''}`,
      license: ds.info?.license,
    },
    shardRows: o.shardRows,
    // Encoded originals can be large: smaller record batches keep memory flat (as ingest does).
    batchRows: columns.some((c) => c.kind === 'image') ? 100 : undefined,
    overwrite: o.overwrite,
    extraFiles: { [SELECTION_FILE]: selection },
  });
  try {
    await writeKept(ctx, inputs[0], writer, ds.ownColumns, kept, loaded, extraScore);
  } catch (err) {
    await writer.abort();
    throw err;
  }

  const summary: SelectSummary = {
    strategy: o.strategy,
    by: o.by ?? null,
    rows_in: n,
    rows: kept.length,
    budget: decision.budget,
    budget_requested: o.budget ?? null,
    invert: o.invert || undefined,
    per_class: loaded.labels ? perClass(ds, loaded.labels, kept) : undefined,
    score: loaded.scores ? scoreStats(loaded.scores, kept) : undefined,
    shift_gsample: decision.shiftGsample,
    prune: decision.prune,
    mgd: decision.mgd,
    selection_file: SELECTION_FILE,
    selection_sha256: sha256Hex(selection),
    seconds: Math.round(performance.now() - started) / 1000,
  };
  const result = await writer.finish(summary);
  ctx.log.info({ out: result.dir, rows: kept.length, of: n, seconds: summary.seconds }, 'select: done');
  return {
    dir: result.dir,
    fingerprint: result.fingerprint,
    numRows: result.numRows,
    summary,
    selectionFile: path.join(result.dir, SELECTION_FILE),
  };
}

export const selectStage: Stage<typeof selectOptions> = {
  name: 'select',
  version: SELECT_VERSION,
  options: selectOptions,
  async fingerprint(inputs, options) {
    const o = parseOptions(options);
    const resolved = await resolveInputs(inputs, o, {});
    return selectFingerprint(await openInputs(inputs[0], resolved.sidecars), o, resolved.engine);
  },
  run: (ctx, inputs, options) => runSelect(ctx, inputs, options),
};

/**
 * Selects rows of the dataset at `datasetDir` into `options.out` (the library form
 * of `metacurate select`). For the mgd strategy, either pass `target` (and the
 * engine's training options) to use the built-in engine (stages/mgd.ts), or a
 * `metagrad` hook: given the per-row counts c, it returns dφ/dc.
 */
export async function select(
  datasetDir: string,
  options: SelectInput & SelectHooks,
  ctx: StageContext = quietContext(),
): Promise<SelectResult> {
  const { metagrad, ...rest } = options;
  return runSelect(ctx, [datasetDir], parseOptions(rest), { metagrad });
}
