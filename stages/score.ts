/**
 * The score stage: per-example scores of a training set, written as a sidecar
 * (`id` plus score columns, row-aligned with the parent's shards). Methods and
 * their sign conventions are in ml/scoring.ts: every score is oriented so that
 * higher means more valuable to keep. With several seeds the scores are the
 * mean over independently trained runs (in parallel worker threads), with a
 * `<method>_std` column beside them.
 */
import path from 'node:path';
import { z } from 'zod';
import { DataError, UsageError } from '../core/errors.js';
import { fingerprint as computeFingerprint } from '../core/hash.js';
import { readShard } from '../data/reader.js';
import { DatasetWriter } from '../data/writer.js';
import { modelSpecSchema, type ModelSpec } from '../ml/models.js';
import { optimizerSpecSchema, type OptimizerSpec } from '../ml/optim.js';
import { runJobs, type ScoreJob } from '../ml/pool.js';
import { scheduleSpecSchema, type ScheduleSpec } from '../ml/schedule.js';
import { DEFAULT_SEEDS } from '../ml/scores.js';
import { NEEDS_TARGET, SCORE_METHODS, type ScoreMethod, type ScoreSettings } from '../ml/scoring.js';
import type { TrainConfig } from '../ml/train.js';
import { quietContext, type Stage, type StageContext, type StageResult } from './context.js';
import { checkCompatible, checkLabelled, describeDataset, type DataInfo, backendOption } from './inputs.js';

export const SCORE_VERSION = '2';

const positiveInt = z.number().int().positive();

/** `model`: a kind with the defaults in MODEL_DEFAULTS, or a full model spec. */
export const modelChoice = z.union([z.enum(['logreg', 'mlp', 'convnet']), modelSpecSchema]);
/** `optimizer`: a kind with the defaults in OPTIMIZER_DEFAULTS, or a full spec. */
export const optimizerChoice = z.union([z.enum(['sgd', 'adam', 'adamw']), optimizerSpecSchema]);
/** The scored training run's defaults for the baselines (other stages that train a scorer reuse them). */
export const TRAIN_DEFAULTS = { model: 'mlp', optimizer: 'sgd', epochs: 2, batchSize: 128 } as const;
/**
 * The metagradient's defaults (score and MGD selection). Chosen by the label-free
 * metasmoothness check (scripts/bench/metasmooth-sweep.ts): with momentum 0.9 and
 * batch 128 the run is not smooth in the example weights and its metagradients
 * are noise (AUROC 0.53 at finding flipped labels); momentum-free SGD on batches
 * of 256 is smooth (roughness 0.3, prediction/actual 0.97) and reaches 0.88.
 */
export const METAGRAD_TRAIN_DEFAULTS: Omit<TrainChoices, 'schedule' | 'lr'> = {
  model: modelSpecSchema.parse({ kind: 'mlp', hidden: [512] }),
  optimizer: optimizerSpecSchema.parse({ kind: 'sgd', lr: 0.05, momentum: 0 }),
  epochs: 2,
  batchSize: 256,
};

/** Fills the training choices a user left unset with the method's defaults. */
export function trainChoicesFor(method: ScoreMethod, o: Partial<TrainChoices> & { schedule: ScheduleSpec }): TrainChoices {
  const d = method === 'metagrad' ? METAGRAD_TRAIN_DEFAULTS : TRAIN_DEFAULTS;
  return {
    model: o.model ?? d.model,
    optimizer: o.optimizer ?? d.optimizer,
    lr: o.lr,
    schedule: o.schedule,
    epochs: o.epochs ?? d.epochs,
    batchSize: o.batchSize ?? d.batchSize,
  };
}

export const scoreOptions = z.object({
  out: z.string().min(1),
  /** The target (validation) set: clean, held out from the training pool. Needed by metagrad and tracin. */
  target: z.string().min(1).optional(),
  method: z.enum(SCORE_METHODS).default('metagrad'),
  /** A model kind with defaults below, or a full model spec (default: the method's, see METAGRAD_TRAIN_DEFAULTS). */
  model: modelChoice.optional(),
  /** An optimizer kind with defaults below, or a full spec (default: the method's). */
  optimizer: optimizerChoice.optional(),
  lr: z.number().positive().optional(),
  schedule: scheduleSpecSchema.default({ kind: 'constant' }),
  epochs: positiveInt.optional(),
  batchSize: positiveInt.optional(),
  /** Independent runs averaged (default: 4 for el2n and grand, as the papers do, else 1). */
  seeds: positiveInt.optional(),
  seed: z.number().int().min(0).default(0),
  /** metagrad: REPLAY branching factor (memory O(k log_k T) states). */
  k: z.number().int().min(2).default(16),
  /** metagrad: memory the stored training states may take, MiB. */
  maxMemoryMiB: positiveInt.default(2048),
  /** el2n, grand: epochs trained before scoring (default 10% of the run, at least 1). */
  epochsForScore: z.number().int().min(0).optional(),
  backend: backendOption,
  /** Worker threads at most (default: all cores). Does not change the results. */
  parallelism: positiveInt.optional(),
  overwrite: z.boolean().default(false),
}).strict();

export type ScoreOptions = z.input<typeof scoreOptions>;
type Parsed = z.output<typeof scoreOptions>;

/** What `--model <kind>` and `--optimizer <kind>` mean without a full spec. */
export const MODEL_DEFAULTS: Record<'logreg' | 'mlp' | 'convnet', ModelSpec> = {
  logreg: { kind: 'logreg' },
  mlp: { kind: 'mlp', hidden: [256] },
  convnet: { kind: 'convnet', width: 32, depth: 3, norm: 'instance' },
};
export const OPTIMIZER_DEFAULTS: Record<'sgd' | 'adam' | 'adamw', OptimizerSpec> = {
  sgd: { kind: 'sgd', lr: 0.05, momentum: 0.9 },
  adam: { kind: 'adam', lr: 1e-3 },
  adamw: { kind: 'adamw', lr: 1e-3 },
};

export interface ScoreSummary {
  method: ScoreMethod;
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

/** The training choices a stage's options make (score's, or select's for mgd, with defaults filled in). */
export interface TrainChoices {
  model: z.output<typeof modelChoice>;
  optimizer: z.output<typeof optimizerChoice>;
  lr?: number;
  schedule: ScheduleSpec;
  epochs: number;
  batchSize: number;
}

/** Resolves kinds to specs and applies `lr`: the full training config of one seed. */
export function trainConfigOf(o: TrainChoices, seed: number): TrainConfig {
  const model = typeof o.model === 'string' ? MODEL_DEFAULTS[o.model] : o.model;
  const base = typeof o.optimizer === 'string' ? OPTIMIZER_DEFAULTS[o.optimizer] : o.optimizer;
  const optimizer = o.lr !== undefined ? { ...base, lr: o.lr } : base;
  return { model, optimizer, schedule: o.schedule, epochs: o.epochs, batchSize: o.batchSize, seed };
}

function seedsOf(o: Parsed): number[] {
  const n = o.seeds ?? (o.method === 'metagrad' ? 1 : DEFAULT_SEEDS[o.method]);
  return Array.from({ length: n }, (_, i) => o.seed + i);
}

/** Options that change the scores: not where they go, nor how many threads. */
function canonicalOptions(o: Parsed): Record<string, unknown> {
  const { out: _o, overwrite: _w, parallelism: _p, target: _t, backend: _b, ...rest } = o;
  return { ...rest, seeds: seedsOf(o).length };
}

interface Inputs {
  train: DataInfo;
  target?: DataInfo;
}

async function describeInputs(trainDir: string, o: Parsed): Promise<Inputs> {
  const train = await describeDataset(trainDir, 'training');
  checkLabelled(train);
  if (!o.target) {
    if (NEEDS_TARGET.has(o.method)) {
      throw new UsageError(`${o.method} scores need a target set`, { hint: 'Pass --target <dataset>: a clean set held out from the training pool' });
    }
    return { train };
  }
  const target = await describeDataset(o.target, 'target');
  checkLabelled(target);
  checkCompatible(train, target);
  return { train, target };
}

function fingerprintOf(o: Parsed, inputs: Inputs): string {
  return computeFingerprint({
    stage: 'score',
    stageVersion: SCORE_VERSION,
    options: canonicalOptions(o),
    seed: o.seed,
    parents: [inputs.train.ds.fingerprint, ...(inputs.target ? [inputs.target.ds.fingerprint] : [])],
  });
}

/** Scores every row of `trainDir` and writes the sidecar to `options.out`. */
export async function score(trainDir: string, options: ScoreOptions, ctx: StageContext = quietContext()): Promise<ScoreResult> {
  const o = scoreOptions.parse(options);
  const t0 = performance.now();
  const inputs = await describeInputs(trainDir, o);
  const { train, target } = inputs;
  const seeds = seedsOf(o);
  const settings = (seed: number): ScoreSettings => ({
    method: o.method,
    train: trainConfigOf(trainChoicesFor(o.method, o), seed),
    k: o.k,
    maxStateBytes: o.maxMemoryMiB * 2 ** 20,
    epochsForScore: o.epochsForScore,
  });
  // Refuse an existing output before hours of work, not after.
  const writer = await DatasetWriter.create(o.out, {
    columns: [
      { name: 'id', kind: 'string' },
      { name: o.method, kind: 'float32' },
      ...(seeds.length > 1 ? [{ name: `${o.method}_std`, kind: 'float32' as const }] : []),
    ],
    shardSizes: await shardSizes(train),
    overwrite: o.overwrite,
    meta: {
      stage: 'score',
      stageVersion: SCORE_VERSION,
      options: canonicalOptions(o),
      seed: o.seed,
      parents: [
        { fingerprint: train.ds.fingerprint, path: path.resolve(trainDir), role: 'train' },
        ...(target ? [{ fingerprint: target.ds.fingerprint, path: path.resolve(target.dir), role: 'target' }] : []),
      ],
      sidecarOf: train.ds.fingerprint,
      description: `${o.method} scores of ${path.basename(trainDir)} (higher = more valuable to keep)`,
    },
  });
  try {
    const progress = ctx.progress(`score ${o.method}`);
    const done = new Array(seeds.length).fill(0);
    const totals = new Array(seeds.length).fill(0);
    ctx.log.info({ method: o.method, rows: train.n, seeds: seeds.length }, `scoring ${train.n} rows with ${o.method}`);
    const jobs: ScoreJob[] = seeds.map((seed) => ({
      kind: 'score',
      train: { dir: train.dir },
      target: target ? { dir: target.dir } : undefined,
      settings: settings(seed),
    }));
    const results = await runJobs(jobs, {
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
    progress.done();
    const { mean, std } = meanAndStd(results.map((r) => r.scores), train.n);
    const ids = await readIds(train);
    const bad = mean.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      throw new DataError(`the ${o.method} score of row ${bad} (id ${ids[bad]}) is ${mean[bad]}`, {
        file: trainDir,
        hint: 'Training was unstable: lower the learning rate (--lr) or use fewer epochs',
      });
    }
    await writer.writeColumns({ id: ids, [o.method]: mean, ...(seeds.length > 1 ? { [`${o.method}_std`]: std } : {}) });
    let min = Infinity;
    let max = -Infinity;
    let sum = 0;
    for (const v of mean) {
      min = Math.min(min, v);
      max = Math.max(max, v);
      sum += v;
    }
    const summary: ScoreSummary = {
      method: o.method,
      rows: train.n,
      seeds,
      columns: seeds.length > 1 ? [o.method, `${o.method}_std`] : [o.method],
      mean: sum / train.n,
      min,
      max,
      protocol: trainConfigOf(trainChoicesFor(o.method, o), o.seed),
      details: results.map((r) => r.details),
      seconds: (performance.now() - t0) / 1000,
      backend: results[0]?.backend ?? 'unknown',
    };
    const written = await writer.finish(summary as unknown as Record<string, unknown>);
    const expected = fingerprintOf(o, inputs);
    if (written.fingerprint !== expected) ctx.log.warn({ written: written.fingerprint, expected }, 'fingerprint mismatch');
    return { dir: written.dir, fingerprint: written.fingerprint, numRows: written.numRows, summary: summary as ScoreResult['summary'] };
  } catch (err) {
    await writer.abort();
    throw err;
  }
}

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

async function readIds(d: DataInfo): Promise<string[]> {
  const ids: string[] = new Array(d.n);
  for await (const b of d.ds.blocks()) {
    const v = b.column('id');
    for (let i = 0; i < b.length; i++) ids[b.offset + i] = String(v.get(i));
  }
  return ids;
}

/** Per-row mean and population std over seeds. */
function meanAndStd(runs: Float32Array[], n: number): { mean: Float32Array; std: Float32Array } {
  const mean = new Float32Array(n);
  const std = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (const r of runs) s += r[i];
    const m = s / runs.length;
    let v = 0;
    for (const r of runs) v += (r[i] - m) ** 2;
    mean[i] = m;
    std[i] = Math.sqrt(v / runs.length);
  }
  return { mean, std };
}

export const scoreStage: Stage<typeof scoreOptions> = {
  name: 'score',
  version: SCORE_VERSION,
  options: scoreOptions,
  async fingerprint(inputs, options) {
    const o = scoreOptions.parse(withTarget(inputs, options));
    return fingerprintOf(o, await describeInputs(single(inputs), o));
  },
  async run(ctx, inputs, options) {
    return score(single(inputs), withTarget(inputs, options), ctx);
  },
};

/** A pipeline may pass the target as the second input (a reference to an earlier stage). */
function withTarget<T extends { target?: string }>(inputs: string[], options: T): T {
  return inputs[1] && !options.target ? { ...options, target: inputs[1] } : options;
}

function single(inputs: string[]): string {
  if (inputs.length < 1 || inputs.length > 2) throw new UsageError(`score takes 1 or 2 inputs (train [target]), got ${inputs.length}`);
  return inputs[0];
}
