/**
 * The rate stage: an Alchemist-style rater (ml/rater/, docs/methods/rater.md)
 * rates every row of a dataset; the ratings are a sidecar (`id`, `rating`
 * float32, row-aligned with the parent's shards), higher = more valuable to keep,
 * like the score stage's columns.
 *
 * Two uses:
 * - rate with a trained rater: `rate(dataset, { rater, out })`. Any dataset with
 *   the rater's pixel shape (and classes, for a label-conditioned rater) works,
 *   including data ingested after the rater was trained: the path for scheduled
 *   jobs where new shards arrive daily.
 * - train, then rate the training set: `rate(train, { trainRater: true, target |
 *   scores, out })`. The rater is written to `raterOut`, by default into the
 *   sidecar itself (`<out>/rater/`, committed with it); `rater` accepts either.
 *
 * Rating streams: the rows are cut into ranges (within shards, a function of the
 * row counts only), rated by worker threads in parallel (one tfjs backend each),
 * and written in order as they come back; memory holds a few ranges at a time.
 * A row's rating does not depend on the other rows, and the ranges do not depend
 * on the number of workers, so the output is the same with any parallelism.
 *
 * Pipeline inputs: the first is the dataset. With `trainRater`, later inputs are
 * the target set, or a score sidecar (a dataset whose curation.json names the one
 * it annotates); otherwise the second input is the rater (a rater directory or a
 * ratings sidecar holding one). Options `target`, `scores`, `rater` name them too.
 */
import os from 'node:os';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { pathExists } from '../core/atomic.js';
import { DataError, InternalError, OutputError, UsageError } from '../core/errors.js';
import { fingerprint as computeFingerprint } from '../core/hash.js';
import { featureLength } from '../data/batch.js';
import { numericValues } from '../data/columns.js';
import { openDataset, readCuration } from '../data/reader.js';
import { OutputDir, type DatasetWriter } from '../data/writer.js';
import { modelSpecSchema, type ModelSpec } from '../ml/models.js';
import { WorkerPool, runJobs, runJobsInGroups, type Job, type JobResult } from '../ml/pool.js';
import {
  BODY_DEFAULTS, PROXY_DEFAULTS, RATE_BATCH_SIZE, RATER_FORMAT_VERSION, RATER_MODES, checkRaterFits, raterTrainSchema,
  readRater, writeRaterFiles, type RaterTrainSettings, type SavedRater,
} from '../ml/rater/index.js';
import type { RateJob, TrainRaterJob } from '../ml/worker.js';
import type { StageContext, StageResult } from './context.js';
import { defineStage, one, type NamedInputs } from './define.js';
import { checkCompatible, checkLabelled, describeDataset, type DataInfo, backendOption } from './inputs.js';
import { whatChanged } from './lineage.js';
import { shardSizes } from './score.js';

export const RATE_VERSION = '1';
/** The ratings column. */
export const RATING_COLUMN = 'rating';

const positiveInt = z.number().int().positive();

/**
 * Training knobs are optional: unset ones take ml/rater.ts's defaults
 * (raterTrainSchema), the one home of those numbers.
 */
export const rateOptions = z.object({
  out: z.string().min(1).describe('the ratings sidecar directory'),
  rater: z.string().min(1).optional().describe('a trained rater: its directory, or a ratings sidecar holding one in rater/'),
  trainRater: z.boolean().default(false).describe('train a rater on the input, then rate the input with it'),
  raterOut: z.string().min(1).optional().describe('where the trained rater goes (default <out>/rater)'),
  target: z.string().min(1).optional().describe('meta: the clean target (validation) set, held out from the training pool'),
  scores: z.string().min(1).optional().describe('regress: a score sidecar of the training set'),
  by: z.string().min(1).default('metagrad').describe('regress: the score column to learn'),
  mode: z.enum(RATER_MODES).default('meta').describe('how the rater learns: meta (against the target) or regress (onto scores)'),
  body: z.union([z.enum(['mlp', 'convnet']), modelSpecSchema]).default('mlp').describe('the rater\'s body: mlp, convnet or a JSON model spec'),
  featureDim: positiveInt.optional().describe('features the body outputs'),
  labels: z.boolean().optional().describe('condition the rater on labels (default: when the training set has them)'),
  epochs: positiveInt.optional().describe('epochs of rater training'),
  batchSize: positiveInt.optional().describe('rows per training batch'),
  lr: z.number().positive().optional().describe('the rater\'s AdamW learning rate'),
  weightDecay: z.number().min(0).optional().describe('the rater\'s AdamW weight decay'),
  proxy: z.union([z.enum(['logreg', 'mlp', 'convnet']), modelSpecSchema]).default('mlp').describe('meta: the proxy model (trained with SGD, momentum 0.9), a kind or a JSON model spec'),
  proxyLr: z.number().positive().optional().describe('meta: the proxy\'s learning rate'),
  warmupSteps: z.number().int().min(0).optional().describe('meta: plain proxy steps before the rater learns'),
  valMix: z.number().min(0).max(1).optional().describe('meta: weight of the target loss mixed into early proxy steps'),
  logitPenalty: z.number().min(0).optional().describe('meta: penalty on squared rating logits (keeps them responsive)'),
  targetBatchSize: positiveInt.optional().describe('meta: target rows per step'),
  holdout: z.number().min(0).lt(1).optional().describe('regress: fraction of rows held out to measure the ratings\' rank correlation with the scores'),
  seed: z.number().int().min(0).default(0).describe('seed of rater training'),
  rateBatchSize: positiveInt.default(RATE_BATCH_SIZE).describe('rows per rating batch'),
  backend: backendOption,
  parallelism: positiveInt.optional().describe('worker threads at most (default: all cores); does not change the results'),
  overwrite: z.boolean().default(false).describe('replace the output (and --rater-out) if it exists'),
}).strict();

export type RateOptions = z.input<typeof rateOptions>;
type Parsed = z.output<typeof rateOptions>;

export interface RateSummary {
  rows: number;
  /** When the output already rated the dataset's first shards: the shards rated now, and their rows (mean, min and max are theirs). */
  appended?: { shards: string[]; rows: number };
  column: string;
  mean: number;
  min: number;
  max: number;
  rater: { dir: string; fingerprint: string; mode: string };
  /** Rating throughput: rows, seconds, rows per second, worker threads. */
  rating: { seconds: number; rowsPerSecond: number; workers: number; ranges: number };
  /** Present when the rater was trained by this run. */
  training?: { seconds: number; settings: Record<string, unknown>; details: Record<string, unknown> };
  seconds: number;
  backend: string;
}

export interface RateResult extends StageResult {
  summary: RateSummary & Record<string, unknown>;
}

/** The training settings the options ask for, every default filled in (what the rater's fingerprint hashes). */
export function trainSettingsOf(o: Parsed): z.output<typeof raterTrainSchema> {
  const body: ModelSpec = typeof o.body === 'string' ? BODY_DEFAULTS[o.body] : o.body;
  const proxy: ModelSpec = typeof o.proxy === 'string' ? PROXY_DEFAULTS[o.proxy] : o.proxy;
  const settings: RaterTrainSettings = {
    mode: o.mode, body, featureDim: o.featureDim, labelConditioned: o.labels, epochs: o.epochs, batchSize: o.batchSize,
    lr: o.lr, weightDecay: o.weightDecay, seed: o.seed,
    ...(o.mode === 'meta'
      ? {
        proxy,
        proxyOptimizer: o.proxyLr !== undefined ? { kind: 'sgd', lr: o.proxyLr, momentum: 0.9 } : undefined,
        warmupSteps: o.warmupSteps, valMix: o.valMix, logitPenalty: o.logitPenalty, targetBatchSize: o.targetBatchSize,
      }
      : { holdout: o.holdout }),
  };
  const parsed = raterTrainSchema.parse(settings);
  // Options of the other mode do not change the rater: keep them out of its fingerprint.
  if (parsed.mode === 'meta') {
    const { holdout: _h, ...meta } = parsed;
    return meta as z.output<typeof raterTrainSchema>;
  }
  const { proxy: _p, proxyOptimizer: _o, warmupSteps: _w, valMix: _v, valMixSteps: _s, logitPenalty: _l, targetBatchSize: _t, ...regress } = parsed;
  return regress as z.output<typeof raterTrainSchema>;
}

interface Plan {
  data: DataInfo;
  /** Rate mode: the rater read from disk. */
  rater?: SavedRater;
  /** Train mode. */
  target?: DataInfo;
  scores?: { dir: string; fingerprint: string; column: string };
  settings?: z.output<typeof raterTrainSchema>;
  raterFingerprint: string;
  /** The sidecar's options and parents, as recorded and hashed. */
  options: Record<string, unknown>;
  choices?: Record<string, unknown>;
  parents: { fingerprint: string; path: string; role: string; rows?: number }[];
  /** Rate mode, when the output already holds this rater's ratings of the dataset's first shards: rate only the rest. */
  appendFrom?: number;
}

/**
 * The shards of `data` an existing ratings output at `out` already covers, when
 * only new ones need rating: the same stage version, rater and options, a
 * dataset that only grew by appended rows since (lineage, as select decides it),
 * and its shards the first of the dataset's. Rating is per row and the ranges
 * are laid out as for a full run, so the appended ratings are the ones a full
 * rerun would give.
 */
async function coveredShards(out: string, data: DataInfo, now: { options: Record<string, unknown>; parents: Plan['parents'] }): Promise<number | undefined> {
  const existing = await readCuration(out).catch(() => undefined);
  const covers = existing?.sidecar_shards;
  const files = data.ds.shards.map((sh) => sh.file);
  if (!existing || existing.stage !== 'rate' || !covers || covers.length >= files.length) return undefined;
  if (!covers.every((f, i) => f === files[i])) return undefined;
  const change = await whatChanged(existing, { stageVersion: RATE_VERSION, choices: now.options, parents: now.parents });
  return change.grew ? covers.length : undefined;
}

/** A plain list: the dataset, then (by content) a rater, a target set or a score sidecar (see the top of the file). */
async function fromList(paths: readonly string[], o: Parsed): Promise<NamedInputs> {
  if (paths.length < 1) throw new UsageError('rate takes a dataset to rate (or to train on), got no input');
  const out: NamedInputs = { dataset: [paths[0]], rater: [], target: [], scores: [] };
  for (const dir of paths.slice(1)) {
    const role = !o.trainRater ? 'rater' : (await readCuration(dir))?.sidecar_of ? 'scores' : 'target';
    if (out[role].length) throw new UsageError(`two ${role === 'scores' ? 'score sidecars' : `${role}s`} given: ${out[role][0]} and ${dir}`);
    out[role].push(dir);
  }
  return out;
}

async function planOf(inputs: NamedInputs, o: Parsed): Promise<Plan> {
  const named = { rater: one(inputs, 'rater'), target: one(inputs, 'target'), scores: one(inputs, 'scores') };
  const data = await describeDataset(inputs.dataset[0], o.trainRater ? 'training' : 'rated');
  const dataParent: Plan['parents'][number] = { fingerprint: data.ds.fingerprint, path: path.resolve(data.dir), role: o.trainRater ? 'train' : 'data', rows: data.n };
  if (!o.trainRater) {
    if (!named.rater) {
      throw new UsageError('rate needs a trained rater', { hint: 'Pass --rater <dir>, or train one with --train-rater --target <dir>' });
    }
    const rater = await readRater(named.rater);
    checkRaterFits(rater, data);
    const options = { rateBatchSize: o.rateBatchSize };
    const parents = [dataParent, { fingerprint: rater.meta.fingerprint, path: path.resolve(rater.dir), role: 'rater' }];
    return {
      data, rater, raterFingerprint: rater.meta.fingerprint, options, parents,
      appendFrom: o.overwrite ? undefined : await coveredShards(o.out, data, { options, parents }),
    };
  }
  if (named.rater) throw new UsageError('--rater names a rater to rate with; with --train-rater the rater is written to --rater-out');
  const settings = trainSettingsOf(o);
  const parents = [dataParent];
  let target: DataInfo | undefined;
  let scores: Plan['scores'];
  if (settings.mode === 'meta') {
    if (!named.target) throw new UsageError('meta-training a rater needs a target set', { hint: 'Pass --target <dataset>: a clean set held out from the training pool' });
    checkLabelled(data);
    target = await describeDataset(named.target, 'target');
    checkLabelled(target);
    checkCompatible(data, target);
    parents.push({ fingerprint: target.ds.fingerprint, path: path.resolve(target.dir), role: 'target' });
  } else {
    if (!named.scores) throw new UsageError('regress mode needs scores', { hint: 'Pass --scores <sidecar> (written by metacurate score) and --by <column>' });
    const sc = await openDataset(named.scores);
    const col = sc.ownColumns.find((c) => c.name === o.by);
    if (!col || !['float32', 'float64', 'int32', 'int64'].includes(col.kind)) {
      const numeric = sc.ownColumns.filter((c) => ['float32', 'float64', 'int32', 'int64'].includes(c.kind)).map((c) => c.name);
      throw new UsageError(`the score sidecar has no numeric column "${o.by}"; its numeric columns are: ${numeric.join(', ') || '(none)'}`, { file: named.scores, hint: 'Pick one with --by' });
    }
    scores = { dir: named.scores, fingerprint: sc.fingerprint, column: o.by };
    parents.push({ fingerprint: sc.fingerprint, path: path.resolve(named.scores), role: 'scores' });
  }
  const raterFingerprint = computeFingerprint({
    stage: 'rater',
    stageVersion: String(RATER_FORMAT_VERSION),
    options: { ...settings, ...(scores ? { by: scores.column } : {}) },
    seed: o.seed,
    parents: parents.map((p) => p.fingerprint),
  });
  return {
    data, target, scores, settings, raterFingerprint,
    options: { trainRater: true, rater: raterFingerprint, rateBatchSize: o.rateBatchSize },
    // The rater's fingerprint follows from its inputs too; these are the choices alone.
    choices: { trainRater: true, ...settings, ...(scores ? { by: scores.column } : {}), seed: o.seed, rateBatchSize: o.rateBatchSize },
    parents,
  };
}

/** Reads the score column of a sidecar aligned with `train` (ids checked by the reader); refuses NaN. */
async function readScores(train: DataInfo, scores: NonNullable<Plan['scores']>): Promise<Float32Array> {
  const ds = await openDataset(train.dir, { sidecars: [scores.dir] });
  const out = new Float32Array(train.n);
  for await (const b of ds.blocks()) {
    const v = numericValues(b.column(scores.column));
    for (let i = 0; i < b.length; i++) {
      if (!Number.isFinite(v[i])) {
        throw new DataError(`the "${scores.column}" score of row ${b.offset + i} (id ${b.column('id').get(i)}) is ${v[i]}`, {
          file: scores.dir,
          row: b.offset + i,
          hint: 'Rescore the data: a rater cannot learn from non-finite scores',
        });
      }
    }
    out.set(v, b.offset);
  }
  return out;
}

/** Pixel bytes a rating range may hold in a worker. */
const RANGE_BYTES = 64 * 2 ** 20;

/**
 * Row ranges for rating: within shards, about an eighth of the rows each (so two
 * workers share even a one-shard dataset), between 4 and 64 batches and at most
 * RANGE_BYTES of pixels (but at least one batch), a whole number of batches. A
 * function of the row counts and shapes only, never of the parallelism.
 */
export function planRanges(sizes: readonly number[], batchSize: number, rowBytes: number): { shard: number; start: number; end: number; offset: number }[] {
  const total = sizes.reduce((a, b) => a + b, 0);
  const byBytes = Math.max(1, Math.floor(RANGE_BYTES / Math.max(1, rowBytes) / batchSize));
  const batches = Math.min(64, byBytes, Math.max(4, Math.ceil(total / 8 / batchSize)));
  const rows = batches * batchSize;
  const out: { shard: number; start: number; end: number; offset: number }[] = [];
  let offset = 0;
  sizes.forEach((size, shard) => {
    for (let start = 0; start < size; start += rows) {
      out.push({ shard, start, end: Math.min(size, start + rows), offset: offset + start });
    }
    offset += size;
  });
  return out;
}

/**
 * Where rate's jobs run: this process's worker threads, or the run's job runner
 * (other machines). Results come in job order, the same either way.
 */
interface Jobs {
  run<J extends Job>(job: J, onProgress?: (done: number, total: number) => void): Promise<JobResult<J>>;
  inOrder<J extends Job>(jobs: readonly J[]): AsyncIterable<JobResult<J>>;
}

/** Rating ranges per group sent to a job runner: enough to keep remote workers busy. */
const REMOTE_GROUP = 64;

function jobsFor(ctx: StageContext, pool: WorkerPool, o: Parsed): Jobs {
  const runner = ctx.jobRunner;
  if (runner) {
    const opts = { runner, backend: o.backend, signal: ctx.signal };
    return {
      run: async (job, onProgress) => (await runJobs([job], { ...opts, onProgress: (_, d, t) => onProgress?.(d, t) }))[0],
      inOrder: (jobs) => runJobsInGroups(jobs, REMOTE_GROUP, opts),
    };
  }
  return {
    run: (job, onProgress) => pool.run(job, onProgress),
    // A window of jobs in flight on the pool's threads, taken back in order.
    async *inOrder<J extends Job>(jobs: readonly J[]) {
      const inFlight = pool.size * 2;
      const results: (Promise<JobResult<J>> | undefined)[] = [];
      const submit = (i: number) => {
        const p = pool.run(jobs[i]);
        p.catch(() => undefined); // awaited in order below; avoid an unhandled rejection meanwhile
        results[i] = p;
      };
      for (let i = 0; i < Math.min(inFlight, jobs.length); i++) submit(i);
      for (let i = 0; i < jobs.length; i++) {
        const r = await results[i]!;
        results[i] = undefined;
        if (i + inFlight < jobs.length) submit(i + inFlight);
        yield r;
      }
    },
  };
}

/** Rates every row of `data` with the rater at `raterDir` through `jobs`, writing `id`, `rating` in order. */
async function rateInto(
  jobs: Jobs,
  ctx: StageContext,
  data: DataInfo,
  raterDir: string,
  writer: DatasetWriter,
  o: Parsed,
  fromShard = 0,
): Promise<{ mean: number; min: number; max: number; seconds: number; ranges: number; rows: number; backend: string }> {
  const t0 = performance.now();
  const sizes = await shardSizes(data);
  // Laid out as for the whole dataset, then cut to the shards asked for: the same batches, hence the same ratings.
  const ranges = planRanges(sizes, o.rateBatchSize, featureLength(data.shape)).filter((r) => r.shard >= fromShard);
  const expected = sizes.slice(fromShard).reduce((a, b) => a + b, 0);
  const progress = ctx.progress('rate', expected);
  const rateJobs = ranges.map((range): RateJob => ({ kind: 'rate', rater: raterDir, range: { dir: data.dir, ...range, batchSize: o.rateBatchSize } }));
  let sum = 0;
  let min = Infinity;
  let max = -Infinity;
  let rows = 0;
  let backend = 'unknown';
  let i = 0;
  for await (const r of jobs.inOrder(rateJobs)) {
    const want = ranges[i].end - ranges[i].start;
    if (r.ratings.length !== want || r.ids.length !== want) throw new InternalError(`a rating job returned ${r.ratings.length} ratings for ${want} rows`);
    for (let j = 0; j < want; j++) {
      const v = r.ratings[j];
      if (!Number.isFinite(v)) throw new DataError(`the rating of row ${ranges[i].offset + j} (id ${r.ids[j]}) is ${v}`, { file: data.dir, hint: `The rater (${raterDir}) is corrupt` });
      sum += v;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    await writer.writeColumns({ id: r.ids, [RATING_COLUMN]: r.ratings });
    rows += want;
    backend = r.backend;
    progress.tick(want);
    i++;
  }
  progress.done();
  if (rows !== expected) throw new InternalError(`rated ${rows} rows of ${expected}`);
  return { mean: rows > 0 ? sum / rows : 0, min, max, seconds: (performance.now() - t0) / 1000, ranges: ranges.length, rows, backend };
}

export const rateStage = defineStage({
  name: 'rate',
  version: RATE_VERSION,
  description: 'Train an Alchemist-style rater (--train-rater), or rate a dataset with a trained one (--rater); writes the ratings as a sidecar',
  options: rateOptions,
  inputs: [
    { name: 'dataset', description: 'the dataset to rate (or to train the rater on)' },
    { name: 'rater', description: 'a trained rater (rating)', optional: true },
    { name: 'target', description: 'the clean target set (meta training)', optional: true },
    { name: 'scores', description: 'a score sidecar of the dataset (regress training)', optional: true },
  ],
  fromList,
  async plan(inputs, o) {
    const plan = await planOf(inputs, o);
    if (o.trainRater && o.raterOut) {
      if (path.resolve(o.raterOut) === path.resolve(o.out)) throw new UsageError('--rater-out and --out must differ', { hint: 'Leave --rater-out unset to keep the rater in <out>/rater' });
    }
    return { ...plan, seed: o.seed };
  },
  appends: (_o, plan) => plan.appendFrom !== undefined,
  async run(ctx, plan, o, out) {
    const { data } = plan;
    const nested = o.trainRater && !o.raterOut;
    if (o.trainRater && o.raterOut && !o.overwrite && (await pathExists(o.raterOut))) {
      throw new OutputError('output already exists', { file: o.raterOut, hint: 'Choose another --rater-out, or pass --overwrite to replace it' });
    }
    // Refuse an existing output before training, not after.
    const from = plan.appendFrom ?? 0;
    if (plan.appendFrom !== undefined) ctx.log.info({ shards: data.ds.shards.length - from, of: data.ds.shards.length }, 'rate: the output covers the first shards; rating the new ones');
    const writer = await out.dataset({
      columns: [{ name: 'id', kind: 'string' }, { name: RATING_COLUMN, kind: 'float32' }],
      shardSizes: (await shardSizes(data)).slice(from),
      sidecarOf: data.ds.fingerprint,
      sidecarShards: data.ds.shards.map((s) => s.file),
      description: `ratings of ${path.basename(data.dir)} by an Alchemist-style rater (higher = more valuable to keep)`,
    });
    const pool = new WorkerPool({ size: o.parallelism ?? os.availableParallelism(), backend: o.backend, onOutput: (line, stream) => ctx.log.debug({ stream }, line) });
    const onAbort = () => void pool.close(ctx.signal?.reason);
    ctx.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      ctx.signal?.throwIfAborted();
      let raterDir: string;
      let raterMode: string;
      let training: RateSummary['training'];
      if (plan.rater) {
        raterDir = plan.rater.dir;
        raterMode = plan.rater.meta.training.mode;
      } else {
        const trained = await trainInto(ctx, jobsFor(ctx, pool, o), plan, o, nested ? writer : undefined);
        raterDir = trained.dir;
        raterMode = plan.settings!.mode;
        training = trained.training;
      }
      const rated = await rateInto(jobsFor(ctx, pool, o), ctx, data, raterDir, writer, o, from);
      const summary: RateSummary = {
        rows: data.n,
        ...(plan.appendFrom !== undefined ? { appended: { shards: data.ds.shards.slice(from).map((sh) => sh.file), rows: rated.rows } } : {}),
        column: RATING_COLUMN,
        mean: rated.mean,
        min: rated.min,
        max: rated.max,
        rater: { dir: nested ? 'rater' : raterDir, fingerprint: plan.raterFingerprint, mode: raterMode },
        rating: { seconds: rated.seconds, rowsPerSecond: rated.rows / Math.max(rated.seconds, 1e-9), workers: Math.min(pool.size, rated.ranges), ranges: rated.ranges },
        training,
        seconds: 0,
        backend: rated.backend,
      };
      return { summary: summary as unknown as Record<string, unknown> };
    } catch (err) {
      if (ctx.signal?.aborted) throw ctx.signal.reason ?? err;
      throw err;
    } finally {
      ctx.signal?.removeEventListener('abort', onAbort);
      await pool.close();
    }
  },
});

/**
 * Trains the rater in a worker and writes it: inside the sidecar being written
 * (committed with it), or to --rater-out as its own output, marked complete by
 * curation.json like every other output.
 */
async function trainInto(
  ctx: StageContext, jobs: Jobs, plan: Plan, o: Parsed, sidecar: DatasetWriter | undefined,
): Promise<{ dir: string; training: NonNullable<RateSummary['training']> }> {
  const { data } = plan;
  const settings = plan.settings!;
  const tt = performance.now();
  ctx.log.info({ mode: settings.mode, rows: data.n, epochs: settings.epochs }, `training a rater (${settings.mode}) on ${data.n} rows`);
  const scores = plan.scores ? await readScores(data, plan.scores) : undefined;
  const job: TrainRaterJob = {
    kind: 'trainRater',
    train: { dir: data.dir },
    target: plan.target ? { dir: plan.target.dir } : undefined,
    scores,
    settings,
  };
  const bar = ctx.progress('train rater');
  let lastDone = 0;
  const trained = await jobs.run(job, (done, total) => {
    bar.setTotal(total);
    bar.tick(done - lastDone);
    lastDone = done;
  });
  bar.done();
  const prov = {
    fingerprint: plan.raterFingerprint,
    mode: settings.mode,
    settings: { ...settings, ...(plan.scores ? { by: plan.scores.column } : {}) } as Record<string, unknown>,
    parents: plan.parents.map((p) => ({ ...p, rows: p.role === 'train' ? data.n : p.role === 'target' ? plan.target?.n : undefined })),
    seconds: (performance.now() - tt) / 1000,
    details: trained.details,
  };
  const training = { seconds: prov.seconds, settings: prov.settings, details: trained.details };
  if (sidecar) {
    const dir = path.join(sidecar.tempDir, 'rater');
    await fsp.mkdir(dir);
    await writeRaterFiles(dir, trained.arch, trained.weights, prov);
    ctx.log.info({ rater: path.join(o.out, 'rater'), seconds: Math.round(prov.seconds * 10) / 10 }, 'rater trained');
    return { dir, training };
  }
  const dir = path.resolve(o.raterOut!);
  const files = await OutputDir.create(dir, {
    fingerprint: plan.raterFingerprint, stage: 'rater', stageVersion: String(RATER_FORMAT_VERSION), options: prov.settings, seed: o.seed, parents: plan.parents,
  }, { overwrite: o.overwrite });
  try {
    await writeRaterFiles(files.tempDir, trained.arch, trained.weights, prov);
  } catch (err) {
    await files.abort();
    throw err;
  }
  await files.finish({ mode: settings.mode, seconds: prov.seconds });
  ctx.log.info({ rater: dir, seconds: Math.round(prov.seconds * 10) / 10 }, 'rater trained');
  return { dir, training };
}

/** Rates `dataset` (training a rater on it first with `trainRater`) and writes the ratings sidecar to `options.out` (the library form of `metacurate rate`). */
export async function rate(dataset: string, options: RateOptions, ctx?: StageContext, extraInputs: string[] = []): Promise<RateResult> {
  return (await rateStage.run(ctx, [dataset, ...extraInputs], options)) as RateResult;
}
