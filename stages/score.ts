/**
 * The score stage: per-example scores of a training set, written as a sidecar
 * (`id` plus the score column, row-aligned with the parent's shards). The methods
 * live in ml/scores/, one file each; every score is oriented so that higher means
 * more valuable to keep. Seeds run as parallel worker-thread jobs and are
 * combined here: the mean, with a `<method>_std` column beside it.
 */
import { z } from 'zod';
import { UsageError } from '../core/errors.js';
import { readShard } from '../data/reader.js';
import { runJobs, type ScoreJob } from '../ml/pool.js';
import { combineSeeds, getScorer, scorerNames, seedList, type ScoreSettings } from '../ml/scores/index.js';
import { scheduleSpecSchema } from '../ml/schedule.js';
import type { TrainConfig } from '../ml/train.js';
import { defineStage, one, parentOf } from './define.js';
import type { StageContext, StageResult } from './context.js';
import { backendOption, checkCompatible, checkLabelled, describeDataset, type DataInfo } from './inputs.js';
import { REPLAY_DEFAULTS, replayOptions, trainChoicesFor, trainConfigOf, trainingOptions } from './training.js';

export const SCORE_VERSION = '2';

const positiveInt = z.number().int().positive();
const replay = replayOptions('metagrad');

export const scoreOptions = z.object({
  out: z.string().min(1).describe('output sidecar directory'),
  target: z.string().min(1).optional().describe('the clean target (validation) set, held out from the pool; needed by metagrad and tracin'),
  method: z.string().refine((m) => scorerNames().includes(m), { error: () => `unknown score method; the methods are ${scorerNames().join(', ')}` }).default('metagrad')
    .describe('scoring method (see "Methods" below)'),
  ...trainingOptions('the scored run'),
  schedule: scheduleSpecSchema.default({ kind: 'constant' }).describe('learning-rate schedule, a JSON spec'),
  seeds: positiveInt.optional().describe('independent runs to combine (default: the method\'s, 4 for el2n and grand, else 1); adds a <method>_std column'),
  seed: z.number().int().min(0).default(0).describe('first seed'),
  k: replay.k.default(REPLAY_DEFAULTS.k),
  maxMemoryMiB: replay.maxMemoryMiB.default(REPLAY_DEFAULTS.maxMemoryMiB),
  epochsForScore: z.number().int().min(0).optional().describe('el2n, grand: epochs trained before scoring (default 10% of the run, at least 1)'),
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
  /** Mean, min and max of the scores. */
  mean: number;
  min: number;
  max: number;
  protocol: TrainConfig;
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

/** Options that change the scores: not where they go, nor how many threads. */
function canonicalOptions(o: Parsed): Record<string, unknown> {
  const { out: _o, overwrite: _w, parallelism: _p, target: _t, backend: _b, ...rest } = o;
  const version = getScorer(o.method).version;
  return { ...rest, seeds: seedList(o.method, o.seed, o.seeds).length, ...(version ? { methodVersion: version } : {}) };
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
  async plan(inputs, o) {
    const train = await describeDataset(inputs.train[0], 'training');
    checkLabelled(train);
    const targetDir = one(inputs, 'target');
    let target: DataInfo | undefined;
    if (targetDir) {
      target = await describeDataset(targetDir, 'target');
      checkLabelled(target);
      checkCompatible(train, target);
    } else if (getScorer(o.method).needsTarget) {
      throw new UsageError(`${o.method} scores need a target set`, { hint: 'Pass --target <dataset>: a clean set held out from the training pool' });
    }
    return {
      train, target,
      options: canonicalOptions(o),
      seed: o.seed,
      parents: [parentOf(train, 'train'), ...(target ? [parentOf(target, 'target')] : [])],
    };
  },
  async run(ctx, plan, o, out) {
    const { train, target } = plan;
    const seeds = seedList(o.method, o.seed, o.seeds);
    const column = o.method;
    // Refuse an existing output before hours of work, not after.
    const writer = await out.dataset({
      columns: [
        { name: 'id', kind: 'string' },
        { name: column, kind: 'float32' },
        ...(seeds.length > 1 ? [{ name: `${column}_std`, kind: 'float32' as const }] : []),
      ],
      shardSizes: await shardSizes(train),
      sidecarOf: train.ds.fingerprint,
      description: `${o.method} scores of ${train.dir} (higher = more valuable to keep)`,
    });
    ctx.log.info({ method: o.method, rows: train.n, seeds: seeds.length }, `scoring ${train.n} rows with ${o.method}`);
    const settings = (seed: number): ScoreSettings => ({
      method: o.method,
      train: trainConfigFor(o, seed),
      k: o.k,
      maxStateBytes: o.maxMemoryMiB * 2 ** 20,
      epochsForScore: o.epochsForScore,
    });
    const results = await runScoreJobs(ctx, seeds.map((seed) => ({
      kind: 'score', train: { dir: train.dir }, target: target ? { dir: target.dir } : undefined, settings: settings(seed),
    })), o);
    const combined = combineSeeds(results.map((r) => r.scores));
    const ids = await readIds(train);
    await writer.writeColumns({ id: ids, [column]: combined.scores, ...(combined.std ? { [`${column}_std`]: combined.std } : {}) });
    const summary: ScoreSummary = {
      method: o.method,
      rows: train.n,
      seeds,
      columns: combined.std ? [column, `${column}_std`] : [column],
      ...range(combined.scores),
      protocol: trainConfigFor(o, o.seed),
      details: results.map((r) => r.details),
      seconds: 0,
      backend: results[0]?.backend ?? 'unknown',
    };
    return { summary: summary as unknown as Record<string, unknown> };
  },
});

/** Runs score jobs in worker threads with one combined progress bar. */
async function runScoreJobs(ctx: StageContext, jobs: ScoreJob[], o: Pick<Parsed, 'parallelism' | 'backend' | 'method'>) {
  const progress = ctx.progress(`score ${o.method}`);
  const done = new Array(jobs.length).fill(0);
  const totals = new Array(jobs.length).fill(0);
  try {
    return await runJobs(jobs, {
      size: o.parallelism,
      backend: o.backend,
      signal: ctx.signal,
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

export async function readIds(d: DataInfo): Promise<string[]> {
  const ids: string[] = new Array(d.n);
  for await (const b of d.ds.blocks()) {
    const v = b.column('id');
    for (let i = 0; i < b.length; i++) ids[b.offset + i] = String(v.get(i));
  }
  return ids;
}

/** Scores every row of `trainDir` and writes the sidecar to `options.out` (the library form of `metacurate score`). */
export async function score(trainDir: string, options: ScoreOptions, ctx?: StageContext): Promise<ScoreResult> {
  return (await scoreStage.run(ctx, { train: trainDir }, options)) as ScoreResult;
}
