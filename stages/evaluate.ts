/**
 * The evaluate stage, the referee: trains fresh models on a dataset for several
 * seeds, in parallel worker threads, and reports test accuracy mean ± std —
 * beside a random subset of the full pool of the same size and the full pool
 * itself, since a curated set means little without them.
 *
 * Protocol (the `dc-bench` preset, the common one in dataset distillation):
 * ConvNet width 128, depth 3, instance norm, ReLU, 2×2 average pooling; SGD
 * momentum 0.9, lr 0.01, weight decay 5e-4, batch 256, lr ×0.1 at half time;
 * inputs normalised with the full pool's per-channel mean/std; no augmentation;
 * cross-entropy against the hard (or soft) labels; std over seeds is the
 * population std (numpy's default, as DC-bench reports it).
 *
 * Default epochs: DC-bench trains tiny distilled sets for 1000 epochs, which for a
 * large set would be far too many. The default aims at a number of steps instead:
 * ceil(2000 / steps per epoch), clamped to [10, 1000] epochs — so sets of up to two
 * batches (e.g. 50 images per class on 10 classes) get DC-bench's 1000 epochs and
 * 60k images get 10 epochs. The full-pool baseline gets its own default
 * (`fullEpochs`), since `epochs` is usually chosen for the small set.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { Rng } from '../core/rng.js';
import { fixedListValues, numericValues } from '../data/columns.js';
import { trainsNatively } from '../ml/backend.js';
import { makeModel, modelSpecSchema, type ModelSpec } from '../ml/models.js';
import { optimizerSpecSchema, type OptimizerSpec } from '../ml/optim.js';
import { runJobs, type EvaluateJob, type EvaluateJobResult } from '../ml/pool.js';
import { scheduleSpecSchema, type ScheduleSpec } from '../ml/schedule.js';
import type { TrainConfig } from '../ml/train.js';
import type { StageContext } from './context.js';
import { defineStage, one } from './define.js';
import { checkCompatible, checkLabelled, describeDataset, type DataInfo, backendOption } from './inputs.js';
import { modelChoice, optimizerChoice, slicesField, slicesOption } from './training.js';

export const EVALUATE_VERSION = '1';
/** The report written into `out`. */
export const REPORT_FILE = 'evaluation.json';

const positiveInt = z.number().int().positive();

interface Preset {
  /** One line for --help. */
  summary: string;
  model: ModelSpec;
  optimizer: OptimizerSpec;
  schedule: ScheduleSpec;
  batchSize: number;
  /** Default epochs: about `targetSteps` steps, within [minEpochs, maxEpochs]. */
  targetSteps: number;
  minEpochs: number;
  maxEpochs: number;
}

export const PRESETS = {
  'dc-bench': {
    summary: 'the dataset-distillation benchmark: ConvNet width 128, SGD, ~2,000 steps (slow on CPU)',
    model: { kind: 'convnet', width: 128, depth: 3, norm: 'instance', normBeforeActivation: true },
    optimizer: { kind: 'sgd', lr: 0.01, momentum: 0.9, weightDecay: 5e-4 },
    schedule: { kind: 'step', milestones: [0.5], gamma: 0.1 },
    batchSize: 256,
    targetSteps: 2000,
    minEpochs: 10,
    maxEpochs: 1000,
  },
  /** A quick check: an MLP with Adam, minutes instead of hours on a CPU. */
  fast: {
    summary: 'an MLP with Adam, ~500 steps: minutes on a CPU',
    model: { kind: 'mlp', hidden: [256] },
    optimizer: { kind: 'adam', lr: 1e-3 },
    schedule: { kind: 'constant' },
    batchSize: 128,
    targetSteps: 500,
    minEpochs: 2,
    maxEpochs: 200,
  },
} as const satisfies Record<string, Preset>;
export type PresetName = keyof typeof PRESETS;

export const evaluateOptions = z.object({
  test: z.string().min(1).optional().describe('held-out test set (or the stage\'s test input)'),
  fullTrain: z.string().min(1).optional().describe('the full pool, for the baselines: a random subset of it and all of it'),
  preset: z.enum(Object.keys(PRESETS) as [PresetName, ...PresetName[]]).optional()
    .describe('training protocol (see "Presets" below; default: dc-bench on the native tensorflow backend, fast on wasm and the others)'),
  model: modelChoice.optional().describe('logreg, mlp, convnet, or a JSON model spec (default: the preset\'s)'),
  optimizer: optimizerChoice.optional().describe('sgd, adam, adamw, or a JSON optimizer spec (default: the preset\'s)'),
  lr: z.number().positive().optional().describe('learning rate (overrides the optimizer\'s)'),
  schedule: scheduleSpecSchema.optional().describe('learning-rate schedule, a JSON spec (default: the preset\'s)'),
  epochs: positiveInt.optional().describe('epochs on the evaluated set and the random baseline (default: by size)'),
  fullEpochs: positiveInt.optional().describe('epochs on the full pool (default: by size)'),
  steps: positiveInt.optional().describe('train every arm for exactly this many steps, whatever its size (equal compute across budgets; overrides the epochs)'),
  batchSize: positiveInt.optional().describe('batch size (default: the preset\'s)'),
  slices: slicesOption,
  seeds: positiveInt.default(3).describe('models trained per arm, each from its own seed'),
  seed: z.number().int().min(0).default(0).describe('seed of the first model; model i uses seed + i'),
  baselines: z.boolean().default(true).describe('also train on a random subset of the full pool of the same size, and on the full pool'),
  fullBaseline: z.boolean().default(true)
    .describe('with the baselines, train on the full pool too (false when another evaluation reports the same pool: it costs a third of the run)'),
  normalize: z.boolean().default(true).describe('normalise inputs with the full pool\'s (else the training set\'s) per-channel mean and std'),
  evalBatchSize: positiveInt.default(500).describe('rows per batch when testing'),
  backend: backendOption,
  parallelism: positiveInt.optional().describe('worker threads at most (default: all cores); does not change the results'),
  out: z.string().min(1).optional().describe('directory to write the report into (evaluation.json + curation.json)'),
  overwrite: z.boolean().default(false).describe('replace the output if it exists'),
}).strict();

export type EvaluateOptions = z.input<typeof evaluateOptions>;
type Parsed = z.output<typeof evaluateOptions>;

export interface SeedStats {
  mean: number;
  /** Population std over seeds. */
  std: number;
  perSeed: number[];
}

/** Test rows by true class and prediction, mean over seeds (the test set is the same for every seed). */
export interface ClassBreakdown {
  /** Accuracy on each class's test rows, mean over seeds (null for a class with no test rows). */
  perClass: (number | null)[];
  /** confusion[true][predicted]: mean test rows over seeds. */
  confusion: number[][];
}

export interface ArmReport extends ClassBreakdown {
  numTrain: number;
  epochs: number;
  steps: number;
  accuracy: SeedStats;
  loss: SeedStats;
  /** Training loss over the last epoch, per seed. */
  trainLoss: number[];
  /** Threads one run used, when its batch slices were spread over more than one (--slices). */
  threads?: number;
  seconds: number;
}

export interface EvaluateReport extends ClassBreakdown {
  /** Test accuracy of models trained on the evaluated set. */
  accuracy: SeedStats;
  loss: SeedStats;
  /** Threads one model's training used, when its batch slices were spread (--slices). */
  threads?: number;
  /** Class names (the test set's), in label order: the rows and columns of perClass and confusion. */
  classes: string[];
  numTrain: number;
  numTest: number;
  epochs: number;
  steps: number;
  baselines?: { random?: ArmReport; full?: ArmReport };
  /** Why baselines were not run, when they were asked for. */
  baselinesSkipped?: string;
  config: {
    train: string;
    test: string;
    fullTrain?: string;
    preset: PresetName;
    model: ModelSpec;
    optimizer: OptimizerSpec;
    schedule: ScheduleSpec;
    batchSize: number;
    /** Gradient slices per batch, when set. */
    slices?: number;
    seeds: number[];
    evalBatchSize: number;
    backend: string;
    /** The protocol in one line, to print beside the numbers. */
    protocol: string;
  };
  fingerprint: string;
  seconds: number;
}

/** Hard labels per row: the label column, else the argmax of soft_label. */
async function readLabels(d: DataInfo): Promise<Int32Array> {
  const out = new Int32Array(d.n);
  const k = d.numClasses;
  for await (const b of d.ds.blocks()) {
    if (d.hasLabels) out.set(numericValues(b.column('label')), b.offset);
    else {
      const soft = fixedListValues<Float32Array>(b.column('soft_label'));
      for (let r = 0; r < b.length; r++) {
        let best = 0;
        for (let j = 1; j < k; j++) if (soft[r * k + j] > soft[r * k + best]) best = j;
        out[b.offset + r] = best;
      }
    }
  }
  return out;
}

/** Per-channel mean and std of the pixels in [0, 1], streamed. */
async function channelStats(d: DataInfo): Promise<{ mean: number[]; std: number[] }> {
  const c = d.shape[2];
  const sum = new Float64Array(c);
  const sq = new Float64Array(c);
  let count = 0;
  for await (const b of d.ds.blocks()) {
    const px = fixedListValues<Uint8Array>(b.column('pixels'));
    for (let i = 0; i < px.length; i++) {
      const v = px[i] / 255;
      sum[i % c] += v;
      sq[i % c] += v * v;
    }
    count += px.length / c;
  }
  const round = (v: number) => Number(v.toPrecision(6));
  const mean = Array.from(sum, (s) => s / count);
  // A constant channel would divide by zero; one grey level is the smallest std that means anything.
  const std = Array.from(sq, (s, j) => Math.max(Math.sqrt(Math.max(0, s / count - mean[j] ** 2)), 1 / 255));
  return { mean: mean.map(round), std: std.map(round) };
}

/**
 * A random subset of the pool with the evaluated set's class counts (DC-bench's
 * "random real images per class"); classes short of rows are filled uniformly.
 */
export function stratifiedSubset(poolLabels: Int32Array, classCounts: number[], rng: Rng): Int32Array {
  const byClass: number[][] = classCounts.map(() => []);
  for (let i = 0; i < poolLabels.length; i++) byClass[poolLabels[i]]?.push(i);
  const chosen: number[] = [];
  const taken = new Uint8Array(poolLabels.length);
  let short = 0;
  classCounts.forEach((k, c) => {
    const rows = rng.shuffle(byClass[c]);
    const m = Math.min(k, rows.length);
    for (let j = 0; j < m; j++) {
      chosen.push(rows[j]);
      taken[rows[j]] = 1;
    }
    short += k - m;
  });
  if (short > 0) {
    const rest = rng.shuffle(Array.from(poolLabels.keys()).filter((i) => !taken[i]));
    chosen.push(...rest.slice(0, short));
  }
  return Int32Array.from(chosen).sort();
}

export function defaultEpochs(n: number, batchSize: number, preset: Preset): number {
  const stepsPerEpoch = Math.ceil(n / batchSize);
  return Math.min(preset.maxEpochs, Math.max(preset.minEpochs, Math.ceil(preset.targetSteps / stepsPerEpoch)));
}

function resolveModel(o: Parsed, preset: Preset): ModelSpec {
  if (o.model === undefined) return preset.model;
  if (typeof o.model !== 'string') return o.model;
  return o.model === preset.model.kind ? preset.model : { kind: o.model };
}

function resolveOptimizer(o: Parsed, preset: Preset): OptimizerSpec {
  let spec: OptimizerSpec;
  if (o.optimizer === undefined) spec = preset.optimizer;
  else if (typeof o.optimizer !== 'string') spec = o.optimizer;
  else if (o.optimizer === preset.optimizer.kind) spec = preset.optimizer;
  else spec = o.optimizer === 'sgd' ? { kind: 'sgd', lr: 0.01, momentum: 0.9 } : { kind: o.optimizer, lr: 1e-3 };
  return o.lr !== undefined ? { ...spec, lr: o.lr } : spec;
}

/** Mean confusion matrix over seeds, and each class's accuracy from it. */
export function classBreakdown(confusions: Int32Array[], k: number): ClassBreakdown {
  const confusion = Array.from({ length: k }, (_, t) => Array.from({ length: k }, (_, p) =>
    // Three decimals: a mean over seeds of counts, without float noise in evaluation.json.
    Number((confusions.reduce((a, c) => a + c[t * k + p], 0) / confusions.length).toFixed(3))));
  const perClass = confusion.map((row, t) => {
    const total = row.reduce((a, b) => a + b, 0);
    return total > 0 ? row[t] / total : null;
  });
  return { perClass, confusion };
}

function stats(values: number[]): SeedStats {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const std = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
  return { mean, std, perSeed: values };
}

function describeProtocol(model: ModelSpec, opt: OptimizerSpec, schedule: ScheduleSpec, batchSize: number, length: string, seeds: number, soft: boolean): string {
  const m = modelSpecSchema.parse(model);
  const arch = m.kind === 'convnet'
    ? `ConvNet width ${m.width} depth ${m.depth} ${m.norm} norm${m.normBeforeActivation ? '' : ' after ReLU'}, avg pool`
    : m.kind === 'mlp' ? `MLP hidden ${m.hidden.join('-')}` : 'logistic regression';
  const o = optimizerSpecSchema.parse(opt);
  const optText = o.kind === 'sgd'
    ? `SGD lr ${o.lr}${o.momentum ? ` momentum ${o.momentum}` : ''}${o.weightDecay ? ` wd ${o.weightDecay}` : ''}${o.nesterov ? ' nesterov' : ''}`
    : `${o.kind === 'adam' ? 'Adam' : 'AdamW'} lr ${o.lr}${o.weightDecay ? ` wd ${o.weightDecay}` : ''}`;
  const s = scheduleSpecSchema.parse(schedule);
  const sched = s.kind === 'step' ? `lr ×${s.gamma} at ${s.milestones.join(', ')} of training` : `${s.kind} lr`;
  const scale = m.outputScale !== 1 ? `, logits ×${m.outputScale}` : '';
  return `${arch}${scale}; ${optText}, batch ${batchSize}, ${sched}, ${length}; ` +
    `${soft ? 'soft' : 'hard'} labels, cross-entropy, no augmentation; ${seeds} seed${seeds > 1 ? 's' : ''}, mean ± population std`;
}

/**
 * The protocol: the one asked for, else the one the backend affords. dc-bench's
 * 1,000 epochs take minutes natively but hours on wasm, where `fast` (a few
 * hundred steps) keeps an evaluation to seconds or minutes.
 */
export function presetOf(o: Pick<Parsed, 'preset' | 'backend'>): PresetName {
  return o.preset ?? (trainsNatively(o.backend ?? 'auto') ? 'dc-bench' : 'fast');
}

/** Options that change the result: not where it is written, nor how many threads. */
function canonicalOptions(o: Parsed): Record<string, unknown> {
  const { out: _out, overwrite: _ow, parallelism: _p, test: _t, fullTrain: _f, fullBaseline, slices, ...rest } = o;
  // The preset as resolved (keys are sorted when hashed: the same fingerprint as when 'fast' was the default).
  const resolved = { ...rest, ...slicesField(slices), preset: presetOf(o) };
  // Joins the fingerprint only when off, so evaluations made before the option existed stay current.
  return fullBaseline ? resolved : { ...resolved, fullBaseline };
}

interface Described {
  train: DataInfo;
  test: DataInfo;
  full?: DataInfo;
}

async function describeAll(train: string, test: string, fullTrain?: string): Promise<Described> {
  const t = await describeDataset(train, 'training');
  const te = await describeDataset(test, 'test');
  checkLabelled(t);
  checkLabelled(te);
  checkCompatible(t, te);
  let full: DataInfo | undefined;
  if (fullTrain) {
    full = await describeDataset(fullTrain, 'full pool');
    checkLabelled(full);
    checkCompatible(t, full);
  }
  return { train: t, test: te, full };
}

interface Arm {
  name: 'train' | 'random' | 'full';
  numTrain: number;
  epochs: number;
  steps: number;
  jobs: EvaluateJob[];
}

/** Trains fresh models on the evaluated set and the baselines (see the top of this file). */
async function runEvaluation(ctx: StageContext, d: Described, o: Parsed, fingerprint: string): Promise<EvaluateReport> {
  const t0 = performance.now();
  const { train, test, full } = d;
  for (const other of [test, full]) {
    if (other && other.classNames.length > 0 && train.classNames.length > 0 && other.classNames.join('\n') !== train.classNames.join('\n')) {
      ctx.log.warn({ train: train.dir, other: other.dir }, `the ${other.role} set names its classes differently from the training set; classes are matched by index`);
    }
  }
  const preset: Preset = PRESETS[presetOf(o)];
  const batchSize = o.batchSize ?? preset.batchSize;
  let model = resolveModel(o, preset);
  if (o.normalize && !modelSpecSchema.parse(model).inputNorm) {
    model = { ...model, inputNorm: await channelStats(full ?? train) };
  }
  // Refuse a model that cannot take these images here, before any worker starts.
  makeModel(model, { inputShape: train.shape, numClasses: train.numClasses });
  const optimizer = resolveOptimizer(o, preset);
  const schedule = o.schedule ?? preset.schedule;
  const seeds = Array.from({ length: o.seeds }, (_, i) => o.seed + i);
  const dataRef = (ds: DataInfo, indices?: Int32Array) => ({ dir: ds.dir, indices });
  const makeArm = (name: Arm['name'], n: number, byEpochs: number, ref: (seed: number) => EvaluateJob['train']): Arm => {
    // With `steps`, every arm trains the same number of steps: small sets see more epochs.
    const perEpoch = Math.ceil(n / batchSize);
    const epochs = o.steps !== undefined ? Math.ceil(o.steps / perEpoch) : byEpochs;
    const maxSteps = o.steps;
    return {
      name, numTrain: n, epochs, steps: maxSteps ?? epochs * perEpoch,
      jobs: seeds.map((seed): EvaluateJob => ({
        kind: 'evaluate',
        train: ref(seed),
        test: dataRef(test),
        config: {
          model, optimizer, schedule, epochs, batchSize, seed, ...(maxSteps !== undefined ? { maxSteps } : {}), ...slicesField(o.slices),
        } satisfies TrainConfig,
        evalBatchSize: o.evalBatchSize,
      })),
    };
  };

  const epochs = o.epochs ?? defaultEpochs(train.n, batchSize, preset);
  const arms: Arm[] = [makeArm('train', train.n, epochs, () => dataRef(train))];
  let baselinesSkipped: string | undefined;
  if (o.baselines && !full) {
    baselinesSkipped = 'no full pool given (fullTrain)';
    ctx.log.warn({}, 'evaluate: baselines skipped: pass --full-train <dir> to compare with a random subset and the full pool');
  } else if (o.baselines && full && full.ds.fingerprint === train.ds.fingerprint) {
    baselinesSkipped = 'the evaluated set is the full pool';
  } else if (o.baselines && full) {
    if (train.n < full.n) {
      const poolLabels = await readLabels(full);
      const trainLabels = await readLabels(train);
      const counts = new Array<number>(train.numClasses).fill(0);
      for (const l of trainLabels) counts[l]++;
      arms.push(makeArm('random', train.n, epochs, (seed) => dataRef(full, stratifiedSubset(poolLabels, counts, Rng.derive(seed, 'random-baseline')))));
    } else {
      baselinesSkipped = 'the evaluated set is as large as the full pool: the random baseline is the full pool';
    }
    if (o.fullBaseline) arms.push(makeArm('full', full.n, o.fullEpochs ?? defaultEpochs(full.n, batchSize, preset), () => dataRef(full)));
  }

  // Longest jobs first, so the last one to start is a short one.
  const jobs = arms.flatMap((arm) => arm.jobs.map((job) => ({ arm, job, cost: arm.steps * Math.min(batchSize, arm.numTrain) })));
  const order = jobs.map((_, i) => i).sort((a, b) => jobs[b].cost - jobs[a].cost || a - b);
  const totalSteps = jobs.reduce((a, j) => a + j.arm.steps, 0);
  ctx.log.info({ train: train.dir, rows: train.n, test: test.dir, arms: arms.map((a) => a.name), seeds: seeds.length, epochs, totalSteps }, 'evaluate: training');
  const progress = ctx.progress('evaluate: training steps', totalSteps);
  const done = new Array<number>(jobs.length).fill(0);
  let results: EvaluateJobResult[];
  try {
    const sorted = await runJobs(order.map((i) => jobs[i].job), {
      size: o.parallelism,
      backend: o.backend,
      signal: ctx.signal,
      runner: ctx.jobRunner,
      onOutput: (line, stream) => ctx.log.debug({ stream }, line),
      onProgress: (k, dn) => {
        const i = order[k];
        progress.tick(dn - done[i]);
        done[i] = dn;
      },
    });
    results = new Array(jobs.length);
    order.forEach((i, k) => { results[i] = sorted[k]; });
  } finally {
    progress.done();
  }

  let offset = 0;
  const armReports = arms.map((arm) => {
    const rs = results.slice(offset, offset + arm.jobs.length);
    offset += arm.jobs.length;
    const threads = Math.max(...rs.map((r) => r.threads ?? 1));
    const report: ArmReport = {
      numTrain: arm.numTrain,
      epochs: arm.epochs,
      steps: arm.steps,
      accuracy: stats(rs.map((r) => r.accuracy)),
      loss: stats(rs.map((r) => r.loss)),
      trainLoss: rs.map((r) => r.trainLoss),
      ...(threads > 1 ? { threads } : {}),
      seconds: rs.reduce((a, r) => a + r.seconds, 0),
      ...classBreakdown(rs.map((r) => r.confusion), test.numClasses),
    };
    return [arm.name, report] as const;
  });
  const byName = Object.fromEntries(armReports) as Partial<Record<Arm['name'], ArmReport>>;
  const main = byName.train!;
  const baselines = byName.random || byName.full ? { random: byName.random, full: byName.full } : undefined;
  ctx.log.info({ accuracy: main.accuracy.mean, std: main.accuracy.std, random: byName.random?.accuracy.mean, full: byName.full?.accuracy.mean }, 'evaluate: done');
  const names = test.classNames.length ? test.classNames : train.classNames;
  return {
    accuracy: main.accuracy,
    loss: main.loss,
    ...(main.threads ? { threads: main.threads } : {}),
    classes: Array.from({ length: test.numClasses }, (_, c) => names[c] ?? String(c)),
    perClass: main.perClass,
    confusion: main.confusion,
    numTrain: train.n,
    numTest: test.n,
    epochs: main.epochs,
    steps: main.steps,
    baselines,
    baselinesSkipped,
    config: {
      train: train.dir,
      test: test.dir,
      fullTrain: full?.dir,
      preset: presetOf(o),
      model,
      optimizer,
      schedule,
      batchSize,
      ...slicesField(o.slices),
      seeds,
      evalBatchSize: o.evalBatchSize,
      backend: results[0]?.backend ?? o.backend,
      protocol: describeProtocol(model, optimizer, schedule, batchSize, o.steps !== undefined ? `${o.steps} steps (every arm)` : `${epochs} epochs`, seeds.length, train.hasSoftLabels),
    },
    fingerprint,
    seconds: (performance.now() - t0) / 1000,
  };
}

function summaryOf(r: EvaluateReport): Record<string, unknown> {
  const pick = (a?: ArmReport) => (a ? { mean: a.accuracy.mean, std: a.accuracy.std, numTrain: a.numTrain } : undefined);
  return {
    accuracy: r.accuracy.mean,
    std: r.accuracy.std,
    perSeed: r.accuracy.perSeed,
    numTrain: r.numTrain,
    numTest: r.numTest,
    random: pick(r.baselines?.random),
    full: pick(r.baselines?.full),
    // Per class name; the confusion matrices are in evaluation.json.
    perClass: Object.fromEntries(r.classes.map((c, i) => [c, r.perClass[i]])),
    protocol: r.config.protocol,
  };
}

export const evaluateStage = defineStage({
  name: 'evaluate',
  version: EVALUATE_VERSION,
  description: 'Train fresh models on a dataset and report test accuracy (mean ± std over seeds) beside a random subset and the full pool',
  options: evaluateOptions,
  outputOptional: true,
  inputs: [
    { name: 'train', description: 'the set to evaluate' },
    { name: 'test', description: 'held-out test set' },
    { name: 'fullTrain', description: 'the full pool, for the baselines', optional: true },
  ],
  async plan(inputs, o) {
    const described = await describeAll(inputs.train[0], inputs.test[0], one(inputs, 'fullTrain'));
    const parents = [described.train, described.test, ...(described.full ? [described.full] : [])];
    return {
      described,
      options: canonicalOptions(o),
      seed: o.seed,
      parents: parents.map((p) => ({ fingerprint: p.ds.fingerprint, path: p.dir, role: p.role, rows: p.n })),
      // Evaluations made before the stage template hashed each parent with its role.
      hashParents: parents.map((p) => `${p.role}:${p.ds.fingerprint}`),
    };
  },
  async run(ctx, plan, o, out) {
    const report = await runEvaluation(ctx, plan.described, o, plan.fingerprint);
    if (out.dir) {
      const files = await out.files();
      await fsp.writeFile(path.join(files.tempDir, REPORT_FILE), JSON.stringify(report, null, 2) + '\n');
    }
    return { summary: summaryOf(report), numRows: report.numTrain, extra: report };
  },
});

/** Trains fresh models on `trainDir` for several seeds and reports test accuracy (the library form of `metacurate evaluate`). */
export async function evaluate(trainDir: string, options: EvaluateOptions, ctx?: StageContext, extraInputs: string[] = []): Promise<EvaluateReport> {
  const result = await evaluateStage.run(ctx, [trainDir, ...extraInputs.slice(0, 2)], options);
  return result.extra!;
}
