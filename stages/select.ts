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
 * - `random`: uniform, seeded — the baseline every selection is compared with;
 * - `mgd`: metagradient descent on integer counts at a fixed budget; needs a
 *   metagradient callback (library only, see `select`).
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
import { columnData, numericValues } from '../data/columns.js';
import { makeSchema, type ColumnSpec } from '../data/format.js';
import { openDataset, type Dataset } from '../data/reader.js';
import { DatasetWriter } from '../data/writer.js';
import { quietContext, type Stage, type StageContext, type StageResult } from './context.js';
import { rowReader } from './select/rows.js';
import {
  aboveThreshold, bottomK, mgdSelect, randomK, resolveBudget, shiftGsample, stratifiedTopK, topK,
  type MetagradFn, type MgdRound, type Selection,
} from './select/strategies.js';

export { largestRemainder, rankByScore, resolveBudget, type MetagradFn, type MgdRound, type Selection } from './select/strategies.js';

export const SELECT_VERSION = '1';
/** The kept rows' ids, parent row indices and weights, written beside the shards. */
export const SELECTION_FILE = 'selection.arrow';

export const SELECT_STRATEGIES = ['topk', 'bottomk', 'threshold', 'stratified', 'shift-gsample', 'random', 'mgd'] as const;
export type SelectStrategy = (typeof SELECT_STRATEGIES)[number];

/**
 * Shift-Gsample defaults. ANCHORS.md: the best block of ratings was around the
 * 40th–60th percentile, so μ = 0.5 centres on it; σ = 0.15 puts about half the
 * sampling mass inside that block (P(|Z| < 0.1/0.15) ≈ 0.50) and lets the rest taper
 * off, so a budget of half the pool can be met without scraping the tails. The
 * paper's drop fraction n is not recorded there; 0.1 drops the top decile.
 */
export const SHIFT_GSAMPLE_DEFAULTS = { shift: 0.1, mu: 0.5, sigma: 0.15 } as const;
/** MGD defaults: 10 rounds (ANCHORS: "repeat tens of times" at larger scale), 20% of the budget moved in the first. */
export const MGD_DEFAULTS = { rounds: 10, swap: 0.2, maxCount: 1 } as const;

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
  /** mgd: rounds of metagradient + swap, at most. */
  rounds: positiveInt.optional(),
  /** mgd: count moved in the first round as a fraction of the budget (decays to 1 unit). */
  swap: z.number().gt(0).max(1).optional(),
  /** mgd: highest count a row may reach (1 = a plain subset). */
  maxCount: positiveInt.optional(),
  /**
   * mgd: names the metagradient setup (e.g. the score stage's fingerprint). It goes
   * into the output fingerprint, since the callback itself cannot.
   */
  metagradKey: z.string().min(1).optional(),
  /** random, shift-gsample, mgd: the seed of every random draw (other strategies draw none). */
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
  rounds: ['mgd'],
  swap: ['mgd'],
  maxCount: ['mgd'],
  metagradKey: ['mgd'],
};
const SEEDED: ReadonlySet<SelectStrategy> = new Set(['random', 'shift-gsample', 'mgd']);
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
  per_class?: { before: Record<string, number>; after: Record<string, number> };
  /** Mean score of the kept and the dropped rows (null when none). */
  score?: { kept_mean: number | null; dropped_mean: number | null; kept_min: number | null; kept_max: number | null };
  shift_gsample?: { shift: number; mu: number; sigma: number; dropped_top: number; kept_percentile_mean: number | null };
  mgd?: { rounds_run: number; total_count: number; history: MgdRound[] };
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

/** The options that decide the output, with the strategy's defaults filled in: curation.json's and the fingerprint's. */
function canonicalOptions(o: SelectOptions): Record<string, unknown> {
  const c: Record<string, unknown> = { strategy: o.strategy, by: o.by, budget: o.budget, shardRows: o.shardRows };
  if (o.strategy === 'threshold') c.threshold = o.threshold;
  if (o.strategy === 'shift-gsample') {
    c.shift = o.shift ?? SHIFT_GSAMPLE_DEFAULTS.shift;
    c.mu = o.mu ?? SHIFT_GSAMPLE_DEFAULTS.mu;
    c.sigma = o.sigma ?? SHIFT_GSAMPLE_DEFAULTS.sigma;
  }
  if (o.strategy === 'mgd') {
    c.rounds = o.rounds ?? MGD_DEFAULTS.rounds;
    c.swap = o.swap ?? MGD_DEFAULTS.swap;
    c.maxCount = o.maxCount ?? MGD_DEFAULTS.maxCount;
    c.metagradKey = o.metagradKey;
  }
  return c;
}

function seedOf(o: SelectOptions): number | undefined {
  return SEEDED.has(o.strategy) ? o.seed : undefined;
}

/** The sidecars: the inputs after the first, then `scores`, each once. */
function sidecarDirs(inputs: string[], o: SelectOptions): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const d of [...inputs.slice(1), ...o.scores]) {
    const key = path.resolve(d);
    if (!seen.has(key)) {
      seen.add(key);
      out.push(d);
    }
  }
  return out;
}

async function openInputs(inputs: string[], o: SelectOptions): Promise<Dataset> {
  if (inputs.length < 1) throw new UsageError('select takes a dataset (and optionally score sidecars), got no input');
  const ds = await openDataset(inputs[0], { sidecars: sidecarDirs(inputs, o) });
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

function selectFingerprint(ds: Dataset, o: SelectOptions): string {
  return computeFingerprint({
    stage: 'select',
    stageVersion: SELECT_VERSION,
    options: canonicalOptions(o),
    seed: seedOf(o),
    parents: [ds.fingerprint, ...ds.sidecars.map((s) => s.fingerprint)],
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
  mgd?: SelectSummary['mgd'];
}

async function decide(ctx: StageContext, ds: Dataset, o: SelectOptions, loaded: Loaded, hooks: SelectHooks): Promise<Decision> {
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
        const r = await mgdSelect(n, initial, hooks.metagrad!, {
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
  if (o.strategy === 'mgd' && !hooks.metagrad) {
    throw new UsageError('mgd selection needs the score stage\'s metagradient engine, which is not wired to this command yet', {
      hint: 'Call select() from the library with a metagrad callback, or use --strategy topk --by metagrad on a metagradient score sidecar',
    });
  }
  const ds = await openInputs(inputs, o);
  checkColumns(ds, o);
  const n = await ds.countRows();
  // Validate the budget before reading any row.
  if (o.budget !== undefined) resolveBudget(o.budget, n, ds.dir);
  ctx.log.info({ dataset: ds.dir, rows: n, strategy: o.strategy, by: o.by, sidecars: ds.sidecars.map((s) => s.dir) }, 'select: reading');

  const loaded = await loadSelectionColumns(ctx, ds, n, o.by);
  if (o.by !== undefined) checkScores(ds, o.by, loaded.scores!, loaded.ids);
  if (o.strategy === 'stratified') checkLabels(ds, loaded.labels!, loaded.ids);
  const decision = await decide(ctx, ds, o, loaded, hooks);
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
      options: canonicalOptions(o),
      seed: seedOf(o),
      parents: [
        { fingerprint: ds.fingerprint, path: ds.dir, role: 'dataset' },
        ...ds.sidecars.map((s) => ({ fingerprint: s.fingerprint, path: s.dir, role: 'scores' })),
      ],
      description: `Selected by metacurate: ${o.strategy}${o.by ? ` by ${o.by}` : ''}`,
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
    per_class: loaded.labels ? perClass(ds, loaded.labels, kept) : undefined,
    score: loaded.scores ? scoreStats(loaded.scores, kept) : undefined,
    shift_gsample: decision.shiftGsample,
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
    return selectFingerprint(await openInputs(inputs, o), o);
  },
  run: (ctx, inputs, options) => runSelect(ctx, inputs, options),
};

/**
 * Selects rows of the dataset at `datasetDir` into `options.out` (the library form
 * of `metacurate select`). `metagrad` is the hook for the mgd strategy: given the
 * per-row counts c, it returns dφ/dc (ml/metagrad.ts computes it).
 */
export async function select(
  datasetDir: string,
  options: SelectInput & SelectHooks,
  ctx: StageContext = quietContext(),
): Promise<SelectResult> {
  const { metagrad, ...rest } = options;
  return runSelect(ctx, [datasetDir], parseOptions(rest), { metagrad });
}
