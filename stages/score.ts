/**
 * The score stage: per-example scores of a training set, written as a sidecar
 * (`id` plus the score column, row-aligned with the parent's shards). The methods
 * live in ml/scores/, one file each; every score is oriented so that higher means
 * more valuable to keep. Seeds run as parallel worker-thread jobs and are
 * combined here, by the mean of the scores or of each run's percentile ranks
 * (the method's choice), with a `<method>_std` column beside them and, for an
 * ensemble, the split-half agreement in the summary.
 */
import path from 'node:path';
import { z } from 'zod';
import { UsageError } from '../core/errors.js';
import { readShard, readStrings } from '../data/reader.js';
import { runJobs, type ScoreJob } from '../ml/pool.js';
import { combineColumns, combineSeeds, getScorer, scorerNames, seedList, splitHalfAgreement, type ScoreSettings } from '../ml/scores/index.js';
import { scheduleSpecSchema } from '../ml/schedule.js';
import type { MetagradResult } from '../ml/metagrad.js';
import type { TrainConfig } from '../ml/train.js';
import { defineStage, one, parentOf } from './define.js';
import { detection, plantedKinds } from './planted.js';
import type { StageContext, StageResult } from './context.js';
import { backendOption, checkCompatible, checkLabelled, describeDataset, type DataInfo } from './inputs.js';
import { REPLAY_DEFAULTS, replayOptions, slicesField, slicesOption, trainChoicesFor, trainConfigOf, trainingOptions } from './training.js';

export const SCORE_VERSION = '2';
/** Below this split-half Spearman an ensemble's ranking is mostly seed noise: the stage warns. */
export const AGREEMENT_WARNING = 0.8;
/**
 * Fewer optimizer steps than this and a scored run has barely moved from its
 * initialisation: its scores say more about the seed than the data. With the
 * epochs left to the method, a small pool trains more epochs to reach it (or the
 * method's own `minSteps`); with the epochs set by the user and below it, the
 * stage warns.
 */
export const MIN_TRAIN_STEPS = 20;

/** Optimizer steps of a run: full batches per epoch (a last partial one counts), times epochs. */
export function trainSteps(rows: number, epochs: number, batchSize: number): number {
  return epochs * Math.ceil(rows / Math.max(1, Math.min(batchSize, rows)));
}

/**
 * The epochs a scored run trains: the user's, or the method's default raised so a
 * small pool still gets MIN_TRAIN_STEPS (`scaled`), and a warning when it still
 * falls short. Pure, so the plan (fingerprint) and the run agree.
 */
export function trainingLength(o: Pick<Parsed, 'method' | 'epochs' | 'batchSize'>, rows: number): { epochs: number; scaled: boolean; steps: number; warning?: string } {
  const scorer = getScorer(o.method);
  const batch = o.batchSize ?? scorer.trainDefaults.batchSize;
  let epochs = o.epochs ?? scorer.trainDefaults.epochs;
  let scaled = false;
  const minSteps = scorer.trainDefaults.minSteps ?? MIN_TRAIN_STEPS;
  if (scorer.trains !== false && o.epochs === undefined && trainSteps(rows, epochs, batch) < minSteps) {
    const perEpoch = trainSteps(rows, 1, batch);
    epochs = Math.max(epochs, Math.ceil(minSteps / perEpoch));
    scaled = true;
  }
  const steps = trainSteps(rows, epochs, batch);
  // Epochs the user chose are warned about below the floor all methods share, not a method's own.
  if (scorer.trains === false || steps >= MIN_TRAIN_STEPS) return { epochs, scaled, steps };
  return {
    epochs, scaled, steps,
    warning: `the scored run trains only ${steps} optimizer steps (${rows} rows, batch ${batch}, ${epochs} epochs): too few for its scores to reflect the data rather than the seed; use more epochs (--epochs; ${epochs} now) or a smaller --batch-size`,
  };
}

const positiveInt = z.number().int().positive();
const replay = replayOptions('metagrad');

export const scoreOptions = z.object({
  out: z.string().min(1).describe('output sidecar directory'),
  target: z.string().min(1).optional().describe('the clean target (validation) set, held out from the pool; needed by metagrad and tracin'),
  method: z.string().refine((m) => scorerNames().includes(m), { error: () => `unknown score method; the methods are ${scorerNames().join(', ')}` }).default('metagrad')
    .describe('scoring method (see "Methods" below)'),
  ...trainingOptions('the scored run'),
  slices: slicesOption,
  schedule: scheduleSpecSchema.optional().describe('learning-rate schedule, a JSON spec (default: the method\'s; constant for all but metagrad)'),
  seeds: positiveInt.optional().describe('independent runs to combine (default: the method\'s: 6 for metagrad, 4 for el2n and grand, else 1); adds a <method>_std column'),
  seed: z.number().int().min(0).default(0).describe('first seed'),
  k: replay.k.optional(),
  maxMemoryMiB: replay.maxMemoryMiB.default(REPLAY_DEFAULTS.maxMemoryMiB),
  epochsForScore: z.number().int().min(0).optional().describe('el2n, grand: epochs trained before scoring (default 10% of the run, at least 1)'),
  combine: z.enum(['mean', 'rank']).optional()
    .describe('how seeds combine: the mean of the scores, or of each run\'s percentile ranks (default: the method\'s; rank for metagrad)'),
  enterAt: z.number().min(0).lt(1).optional()
    .describe('metagrad: the fraction of the run after which the example weights enter (default 0.5)'),
  folds: z.number().int().min(2).optional().describe('confident: folds of the out-of-sample predictions (default 5)'),
  backend: backendOption,
  parallelism: positiveInt.optional().describe('worker threads at most (default: all cores); does not change the results'),
  overwrite: z.boolean().default(false).describe('replace the output if it exists'),
}).strict();

export type ScoreOptions = z.input<typeof scoreOptions>;
type Parsed = z.output<typeof scoreOptions>;

export interface ScoreSummary {
  method: string;
  rows: number;
  seeds: number[];
  columns: string[];
  /** How the seeds were combined. */
  combine: 'mean' | 'rank';
  /** When the pool has planted problems: per kind, how well the score finds it. */
  planted?: ReturnType<typeof detection>;
  /** With two or more seeds: how well two halves of the ensemble agree (Spearman), and the estimate for the whole. */
  agreement?: { split_half_spearman: number; full_ensemble_estimate: number };
  /** Mean, min and max of the scores. */
  mean: number;
  min: number;
  max: number;
  protocol: TrainConfig;
  /** What makes these scores less trustworthy than usual (e.g. a run too short to learn anything). */
  warnings?: string[];
  details: Record<string, unknown>[];
  seconds: number;
  backend: string;
}

export interface ScoreResult extends StageResult {
  summary: ScoreSummary & Record<string, unknown>;
}

function trainConfigFor(o: Parsed, seed: number): TrainConfig {
  return trainConfigOf(trainChoicesFor(getScorer(o.method).trainDefaults, o), seed);
}

/** How seeds combine: the option, else the method's own way. */
function combineOf(o: Parsed): 'mean' | 'rank' {
  return o.combine ?? getScorer(o.method).combine ?? 'mean';
}

/** Options that change the scores: not where they go, nor how many threads. */
function canonicalOptions(o: Parsed): Record<string, unknown> {
  const { out: _o, overwrite: _w, parallelism: _p, target: _t, backend: _b, combine: _c, slices, ...rest } = o;
  const scorer = getScorer(o.method);
  const version = scorer.version;
  return {
    ...rest,
    ...slicesField(slices),
    // Resolved, as the option's default used to be: outputs made before keep their fingerprints.
    schedule: o.schedule ?? scorer.trainDefaults.schedule ?? { kind: 'constant' },
    seeds: seedList(o.method, o.seed, o.seeds).length,
    // Resolved to the old default: k never changes the scores, and outputs made before keep their fingerprints.
    k: o.k ?? REPLAY_DEFAULTS.fingerprintK,
    // Spelled out only when not the mean, so outputs made before rank combination keep their fingerprints.
    ...(combineOf(o) !== 'mean' ? { combine: combineOf(o) } : {}),
    ...(version ? { methodVersion: version } : {}),
  };
}

export const scoreStage = defineStage({
  name: 'score',
  version: SCORE_VERSION,
  description: 'Score every training example (higher = more valuable to keep) and write the scores as a sidecar dataset',
  options: scoreOptions,
  inputs: [
    { name: 'train', description: 'the training pool to score' },
    { name: 'target', description: 'clean held-out target set', optional: true },
  ],
  checkInputs(inputs, o) {
    if (getScorer(o.method).needsTarget && !one(inputs, 'target')) {
      throw new UsageError(`${o.method} scores need a target set`, { hint: 'Pass --target <dataset>: a clean set held out from the training pool' });
    }
  },
  async plan(inputs, o) {
    const train = await describeDataset(inputs.train[0], 'training');
    checkLabelled(train);
    const targetDir = one(inputs, 'target');
    let target: DataInfo | undefined;
    if (targetDir) {
      target = await describeDataset(targetDir, 'target');
      checkLabelled(target);
      checkCompatible(train, target);
    }
    const length = trainingLength(o, train.n);
    return {
      train, target, length,
      // Scaled epochs change the scores, so they are part of the fingerprint; only then, so other outputs keep theirs.
      options: { ...canonicalOptions(o), ...(length.scaled ? { epochs: length.epochs } : {}) },
      seed: o.seed,
      parents: [parentOf(train, 'train'), ...(target ? [parentOf(target, 'target')] : [])],
    };
  },
  async run(ctx, plan, given, out) {
    const { train, target, length } = plan;
    const o = { ...given, epochs: length.epochs };
    if (length.scaled) ctx.log.info({ epochs: length.epochs, steps: length.steps }, `score: a small pool; training ${length.epochs} epochs (${length.steps} steps) instead of the method's ${getScorer(o.method).trainDefaults.epochs}`);
    if (length.warning) ctx.log.warn({ steps: length.steps }, `score: ${length.warning}`);
    const seeds = seedList(o.method, o.seed, o.seeds);
    const column = o.method;
    // The template refused an existing output before this work; the writer opens once the columns are known.
    ctx.log.info({ method: o.method, rows: train.n, seeds: seeds.length }, `scoring ${train.n} rows with ${o.method}`);
    const settings = (seed: number): ScoreSettings => ({
      method: o.method,
      train: trainConfigFor(o, seed),
      k: o.k,
      maxStateBytes: o.maxMemoryMiB * 2 ** 20,
      epochsForScore: o.epochsForScore,
      enterAt: o.enterAt,
      folds: o.folds,
    });
    const results = await runScoreJobs(ctx, seeds.map((seed) => ({
      kind: 'score', train: { dir: train.dir }, target: target ? { dir: target.dir } : undefined, settings: settings(seed),
    })), o);
    // Where the memory budget put the run: every state stored, or REPLAY's tree (and its replays).
    const replay = (results[0]?.details as { replay?: MetagradResult['stats'] } | undefined)?.replay;
    if (replay) {
      const mib = (states: number) => ((states * replay.stateBytes) / 2 ** 20).toFixed(0);
      ctx.log.info({ replay }, replay.storedAll
        ? `score: every state of steps ${replay.from}–${replay.steps} stored (${replay.steps - replay.from} states, ${mib(replay.peakStoredStates)} MiB of ${o.maxMemoryMiB}); nothing replayed`
        : `score: REPLAY over steps ${replay.from}–${replay.steps}: k ${replay.k}, depth ${replay.depth}, at most ${replay.peakStoredStates} stored states (${mib(replay.peakStoredStates)} MiB of ${o.maxMemoryMiB}), ${replay.forwardSteps} forward steps for ${replay.backwardSteps} backward`);
    }
    const how = combineOf(o);
    const combined = combineSeeds(results.map((r) => r.scores), how);
    const extra = Object.fromEntries(Object.entries(combineColumns(results)).map(([name, v]) => [`${column}_${name}`, v]));
    const agreement = splitHalfAgreement(results.map((r) => r.scores), how);
    if (agreement && agreement.splitHalf < AGREEMENT_WARNING) {
      ctx.log.warn({ splitHalf: agreement.splitHalf, seeds: seeds.length },
        `the ${o.method} scores of two halves of the ensemble agree at Spearman ${agreement.splitHalf.toFixed(2)}: rankings are partly seed noise; more seeds (--seeds) make them steadier`);
    }
    const ids = await readStrings(train.ds, 'id');
    const planted = await plantedKinds(train.ds);
    const writer = await out.dataset({
      columns: [
        { name: 'id', kind: 'string' },
        { name: column, kind: 'float32' },
        ...(seeds.length > 1 ? [{ name: `${column}_std`, kind: 'float32' as const }] : []),
        ...Object.keys(extra).map((name) => ({ name, kind: 'float32' as const })),
      ],
      shardSizes: await shardSizes(train),
      sidecarOf: train.ds.fingerprint,
      sidecarShards: train.ds.shards.map((s) => s.file),
      description: `${o.method} scores of ${path.basename(train.dir)} (higher = more valuable to keep)`,
    });
    await writer.writeColumns({ id: ids, [column]: combined.scores, ...(combined.std ? { [`${column}_std`]: combined.std } : {}), ...extra });
    const summary: ScoreSummary = {
      method: o.method,
      rows: train.n,
      seeds,
      columns: [column, ...(combined.std ? [`${column}_std`] : []), ...Object.keys(extra)],
      combine: how,
      ...(agreement ? { agreement: { split_half_spearman: agreement.splitHalf, full_ensemble_estimate: agreement.fullEstimate } } : {}),
      ...(planted ? { planted: detection(combined.scores, planted, extra[`${column}_issue`]) } : {}),
      ...range(combined.scores),
      protocol: trainConfigFor(o, o.seed),
      ...(length.warning ? { warnings: [length.warning] } : {}),
      details: results.map((r) => r.details),
      seconds: 0,
      backend: results[0]?.backend ?? 'unknown',
    };
    return { summary: summary as unknown as Record<string, unknown> };
  },
});

/** Runs score jobs in worker threads with one combined progress bar. */
export async function runScoreJobs(ctx: StageContext, jobs: ScoreJob[], o: Pick<Parsed, 'parallelism' | 'backend' | 'method'>) {
  const progress = ctx.progress(`score ${o.method}`);
  const done = new Array(jobs.length).fill(0);
  const totals = new Array(jobs.length).fill(0);
  try {
    return await runJobs(jobs, {
      size: o.parallelism,
      backend: o.backend,
      signal: ctx.signal,
      runner: ctx.jobRunner,
      onOutput: (line, stream) => ctx.log.debug({ stream }, line),
      onProgress: (i, d, total) => {
        if (totals[i] !== total) {
          totals[i] = total;
          progress.setTotal(totals.reduce((a, b) => a + b, 0));
        }
        progress.tick(d - done[i]);
        done[i] = d;
      },
    });
  } finally {
    progress.done();
  }
}

function range(v: Float32Array): { mean: number; min: number; max: number } {
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (const x of v) {
    min = Math.min(min, x);
    max = Math.max(max, x);
    sum += x;
  }
  return { mean: sum / v.length, min, max };
}

/** Rows per shard of a dataset (a sidecar must match them). */
export async function shardSizes(d: DataInfo): Promise<number[]> {
  const known = d.ds.shards.map((s) => s.rows);
  if (known.every((r): r is number => r !== undefined)) return known;
  // Datasets written by Python `datasets` do not record rows per shard.
  const sizes: number[] = [];
  for (const shard of d.ds.shards) {
    let n = 0;
    for await (const b of readShard(shard)) n += b.numRows;
    sizes.push(n);
  }
  return sizes;
}

/** Scores every row of `trainDir` and writes the sidecar to `options.out` (the library form of `metacurate score`). */
export async function score(trainDir: string, options: ScoreOptions, ctx?: StageContext): Promise<ScoreResult> {
  return (await scoreStage.run(ctx, { train: trainDir }, options)) as ScoreResult;
}
