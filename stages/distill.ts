/**
 * The distill stage: synthesises `ipc` images per class (and soft labels) whose
 * training effect stands in for the whole training set.
 * Methods (ml/distill/): `rcig` (convexified implicit gradients), `krr`
 * (KIP/RFAD: kernel ridge regression on random ConvNet features) and `dm`
 * (distribution matching). The synthetic set starts from real images of each
 * class, chosen with the seed.
 *
 * Output: a full dataset — `id`, `label` (the class each image was made for),
 * `soft_label` (float32 × classes, rows sum to 1; `evaluate` trains on it),
 * `pixels` (uint8, the input's shape) — plus `contact_sheet.png`, written
 * atomically.
 *
 * Resuming: every `checkpointEvery` steps (and on interruption) the whole
 * optimisation state goes to `<out>.checkpoint/`; a rerun with the same
 * options continues from there and gives the same result as an uninterrupted
 * run. A checkpoint made with other options (or another input) is refused, naming
 * what differs. When a run ends early for its time budget the checkpoint is
 * kept, so a rerun with `--overwrite` continues it; after the last step it is
 * removed.
 */
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';
import { stagingDir, writeDirAtomic } from '../core/atomic.js';
import { DataError, UsageError } from '../core/errors.js';
import { canonicalJson } from '../core/hash.js';
import { loadExamples } from '../data/batch.js';
import { writeContactSheet } from '../data/export.js';
import type { ColumnSpec } from '../data/format.js';
import { writeDataset } from '../data/writer.js';
import { initBackend } from '../ml/backend.js';
import { runJobs, type DistillJob, type DistillJobResult } from '../ml/pool.js';
import { DistillDivergedError, makeRealSet, rowLength, toUint8, type RealSet, type SavedState } from '../ml/distill/common.js';
import { createDistiller, DISTILL_METHODS, type DistillMethod, type MethodSettings } from '../ml/distill/index.js';
import { startFeatureFeed } from '../ml/distill/feature-feed.js';
import { lastLossOf, runDistillLoop } from '../ml/distill/run.js';
import type { ModelSpec } from '../ml/models.js';
import type { StageContext, StageResult } from './context.js';
import { defineStage, parentOf, type Output, type Planned } from './define.js';
import { describeDataset, type DataInfo, backendOption } from './inputs.js';

export const DISTILL_VERSION = '1';
export const CONTACT_SHEET_FILE = 'contact_sheet.png';
/** The checkpoint directory of an output directory. */
export const checkpointDirOf = (out: string): string => `${path.resolve(out)}.checkpoint`;
const CHECKPOINT_STATE = 'checkpoint.json';
const CHECKPOINT_TENSORS = 'tensors.bin';

const positiveInt = z.number().int().positive();

export const distillOptions = z.object({
  out: z.string().min(1).describe('output dataset directory'),
  method: z.enum(DISTILL_METHODS).default('rcig').describe('distillation method: rcig, krr or dm'),
  ipc: positiveInt.default(10).describe('synthetic images per class'),
  steps: positiveInt.optional().describe('outer steps (default: the method\'s)'),
  timeBudget: z.number().positive().optional().describe('stop after this many seconds of this run and write what there is (the checkpoint is kept)'),
  seed: z.number().int().min(0).default(0).describe('seed'),
  restarts: positiveInt.default(1)
    .describe('independent distillations from seeds seed, seed+1, …, run at once as jobs (worker threads, or metacurate workers with --queue); the one whose final objective on a fixed real batch is lowest is kept. With more than one there are no checkpoints'),
  checkpointEvery: positiveInt.default(50).describe('steps between checkpoints'),
  lr: z.number().positive().optional().describe('learning rate of the synthetic images (and labels): Adam for krr/rcig, SGD for dm'),
  batchSize: positiveInt.optional().describe('real images per step (dm: per class)'),
  width: positiveInt.optional().describe('width of the ConvNets the methods use (random features, embeddings, the pool)'),
  depth: positiveInt.optional().describe('depth of those ConvNets'),
  norm: z.enum(['none', 'instance']).optional().describe('normalisation in those ConvNets (default instance)'),
  nets: positiveInt.optional().describe('krr: random nets per kernel; rcig: models in the pool'),
  learnLabels: z.boolean().default(true).describe('krr, rcig: learn the labels too (else they stay one-hot)'),
  loss: z.enum(['ce', 'mse']).default('ce').describe('krr: cross-entropy with a learned temperature, or MSE against centred one-hot targets'),
  innerSteps: positiveInt.optional().describe('rcig: Adam steps of the inner solve'),
  hinvSteps: positiveInt.optional().describe('rcig: Adam steps of the H⁻¹ solve'),
  ridge: z.number().positive().optional().describe('ridge factor (krr: λ·mean diag K; rcig: λ·n·mean diag K)'),
  backend: backendOption,
  parallelism: positiveInt.optional()
    .describe('worker threads at most (default: all cores): restarts run side by side, and one krr run computes its real batches\' features on a second thread; does not change the results'),
  overwrite: z.boolean().default(false).describe('replace the output if it exists (a kept checkpoint is continued)'),
}).strict();

export type DistillOptions = z.input<typeof distillOptions>;
type Parsed = z.output<typeof distillOptions>;

/** Defaults per method; chosen for 2 CPU cores (see the README's distillation table for what they reach). */
export const METHOD_DEFAULTS = {
  krr: { steps: 1000, lr: 0.01, batchSize: 256, width: 32, depth: 3, nets: 4, ridge: 1e-3, norm: 'instance' },
  dm: { steps: 2000, lr: 1, batchSize: 64, width: 64, depth: 3, norm: 'instance' },
  rcig: { steps: 500, lr: 0.003, batchSize: 256, width: 32, depth: 3, nets: 30, ridge: 5e-4, innerSteps: 20, hinvSteps: 20, norm: 'instance' },
} as const;

/** Everything that determines the trajectory of a run (what a checkpoint must agree on). */
export function resolveSettings(o: Parsed, inputDepthLimit?: number): MethodSettings {
  const d = METHOD_DEFAULTS[o.method];
  const depth = o.depth ?? (inputDepthLimit !== undefined ? Math.min(d.depth, inputDepthLimit) : d.depth);
  const net: ModelSpec = { kind: 'convnet', width: o.width ?? d.width, depth, norm: o.norm ?? d.norm };
  const common = { ipc: o.ipc, seed: o.seed, lr: o.lr ?? d.lr, batchSize: o.batchSize ?? d.batchSize, net };
  switch (o.method) {
    case 'krr': {
      const k = METHOD_DEFAULTS.krr;
      return { method: 'krr', ...common, nets: o.nets ?? k.nets, renewEvery: 1, ridge: o.ridge ?? k.ridge, learnLabels: o.learnLabels, loss: o.loss };
    }
    case 'dm':
      return { method: 'dm', ...common };
    case 'rcig': {
      const r = METHOD_DEFAULTS.rcig;
      return {
        method: 'rcig', ...common, poolSize: o.nets ?? r.nets, innerSteps: o.innerSteps ?? r.innerSteps, hinvSteps: o.hinvSteps ?? r.hinvSteps,
        ridge: o.ridge ?? r.ridge, learnLabels: o.learnLabels, poolLr: 5e-5, maxPoolSteps: 16, poolReset: 100, emaDecay: 0.99,
      };
    }
  }
}

function stepsOf(o: Parsed): number {
  return o.steps ?? METHOD_DEFAULTS[o.method].steps;
}

/** The options the output is a function of: the settings, the steps asked for and the time budget. */
function canonicalOptions(o: Parsed, settings: MethodSettings): Record<string, unknown> {
  // Restarts join only when more than one, so outputs made before they existed keep their fingerprints.
  return { ...settings, steps: stepsOf(o), timeBudget: o.timeBudget, ...(o.restarts > 1 ? { restarts: o.restarts } : {}) };
}

/** The deepest ConvNet (2×2 pooling per layer) the images allow. */
function maxDepth(shape: [number, number, number]): number {
  let d = 0;
  for (let s = Math.min(shape[0], shape[1]); s >= 2; s = Math.floor(s / 2)) d++;
  return d;
}

async function describeInput(trainDir: string): Promise<DataInfo> {
  const train = await describeDataset(trainDir, 'training');
  if (!train.hasLabels) {
    throw new DataError(train.hasSoftLabels ? 'the training set has only soft labels' : 'the training set has no labels', {
      file: trainDir,
      hint: 'Distillation makes images per class: it needs a label column with class names (ingest with labels)',
    });
  }
  if (train.numClasses < 2) {
    throw new DataError(`the training set declares ${train.numClasses} classes`, { file: trainDir, hint: 'The label column needs its class names (a ClassLabel feature with at least 2 classes)' });
  }
  return train;
}

export interface DistillSummary {
  method: DistillMethod;
  ipc: number;
  rows: number;
  stepsRequested: number;
  stepsDone: number;
  /** Why the run ended: all steps, or the time budget. */
  stoppedBy: 'steps' | 'time-budget';
  resumedFrom: number | null;
  firstLoss: number | null;
  /** Mean loss over the last 10 steps run. */
  lastLoss: number | null;
  skippedSteps: number;
  seconds: number;
  backend: string;
  /** krr: the real batches' features came from a second thread (--parallelism ≥ 2); the same result either way. */
  featureThread?: boolean;
  settings: MethodSettings;
  details: Record<string, number>;
  /** With --restarts: each restart's seed, final objective (on one fixed real batch; the lowest is kept), last loss and steps. */
  restarts?: { seed: number; finalLoss: number; lastLoss: number | null; stepsDone: number; stoppedBy: 'steps' | 'time-budget' }[];
}

export interface DistillResult extends StageResult {
  summary: DistillSummary & Record<string, unknown>;
}

interface CheckpointFile {
  version: string;
  input: string;
  settings: MethodSettings;
  step: number;
  scalars: Record<string, number>;
  tensors: { name: string; shape: number[]; offset: number; length: number }[];
}

async function writeCheckpoint(dir: string, input: string, settings: MethodSettings, step: number, state: SavedState): Promise<void> {
  const entries = Object.entries(state.tensors);
  const total = entries.reduce((a, [, t]) => a + t.data.length, 0);
  const buf = new Float32Array(total);
  const tensors: CheckpointFile['tensors'] = [];
  let offset = 0;
  for (const [name, t] of entries) {
    buf.set(t.data, offset);
    tensors.push({ name, shape: t.shape, offset, length: t.data.length });
    offset += t.data.length;
  }
  const meta: CheckpointFile = { version: DISTILL_VERSION, input, settings, step, scalars: state.scalars, tensors };
  await writeDirAtomic(dir, { overwrite: true }, async (tmp) => {
    await fsp.writeFile(path.join(tmp, CHECKPOINT_TENSORS), new Uint8Array(buf.buffer));
    await fsp.writeFile(path.join(tmp, CHECKPOINT_STATE), JSON.stringify(meta, null, 2) + '\n');
  });
}

/** Loads the checkpoint in `dir` if there is one; refuses one made with other settings or another input. */
async function readCheckpoint(dir: string, input: string, settings: MethodSettings): Promise<{ step: number; state: SavedState } | undefined> {
  let meta: CheckpointFile;
  try {
    meta = JSON.parse(await fsp.readFile(path.join(dir, CHECKPOINT_STATE), 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new DataError(`the checkpoint cannot be read: ${(err as Error).message}`, { file: dir, hint: 'Remove it to start over' });
  }
  const startOver = `Rerun with the options it was made with, or remove ${dir} to start over`;
  if (meta.version !== DISTILL_VERSION) {
    throw new UsageError(`the checkpoint was written by distill version ${meta.version}, this is ${DISTILL_VERSION}`, { file: dir, hint: `Remove ${dir} to start over` });
  }
  if (meta.input !== input) {
    throw new UsageError(`the checkpoint was made from another training set (fingerprint ${meta.input}, now ${input})`, { file: dir, hint: startOver });
  }
  const keys = [...new Set([...Object.keys(meta.settings), ...Object.keys(settings)])].sort();
  const before = meta.settings as unknown as Record<string, unknown>;
  const now = settings as unknown as Record<string, unknown>;
  const differ = keys.filter((k) => canonicalJson(before[k]) !== canonicalJson(now[k]));
  if (differ.length > 0) {
    const list = differ.map((k) => `${k} (checkpoint ${canonicalJson(before[k]) ?? 'unset'}, now ${canonicalJson(now[k]) ?? 'unset'})`).join(', ');
    throw new UsageError(`the checkpoint was made with different options: ${list}`, { file: dir, hint: startOver });
  }
  const bytes = await fsp.readFile(path.join(dir, CHECKPOINT_TENSORS));
  if (bytes.byteLength % 4 !== 0) throw new DataError('the checkpoint is truncated', { file: dir, hint: 'Remove it to start over' });
  const all = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  const tensors: SavedState['tensors'] = {};
  for (const t of meta.tensors) {
    if (t.offset + t.length > all.length) throw new DataError('the checkpoint is truncated', { file: dir, hint: 'Remove it to start over' });
    tensors[t.name] = { shape: t.shape, data: all.slice(t.offset, t.offset + t.length) };
  }
  return { step: meta.step, state: { scalars: meta.scalars, tensors } };
}

async function loadReal(train: DataInfo, ipc: number): Promise<RealSet> {
  const ex = await loadExamples(train.ds);
  const real = makeRealSet(ex.pixels, ex.shape, ex.labels!, train.numClasses);
  // Refuse before any work: every class needs `ipc` real images to start from.
  real.byClass.forEach((rows, c) => {
    if (rows.length < ipc) {
      const name = train.classNames[c] !== undefined ? `'${train.classNames[c]}' (${c})` : String(c);
      throw new DataError(`class ${name} has ${rows.length} images, fewer than --ipc ${ipc}`, {
        file: train.dir,
        hint: `Lower --ipc to at most ${Math.min(...real.byClass.map((r) => r.length))} (the smallest class)`,
      });
    }
  });
  return real;
}

interface DistillPlan {
  train: DataInfo;
  settings: MethodSettings;
  options: Record<string, unknown>;
  seed: number;
  parents: ReturnType<typeof parentOf>[];
}

/** Runs the distillation (resuming a checkpoint) and writes the synthetic set. */
async function runDistill(ctx: StageContext, plan: Planned<DistillPlan>, o: Parsed, output: Output): Promise<DistillSummary> {
  const t0 = performance.now();
  const { train, settings } = plan;
  const steps = stepsOf(o);
  const real = await loadReal(train, o.ipc);
  const backend = await initBackend(o.backend);
  const ckptDir = checkpointDirOf(o.out);
  const resumed = await readCheckpoint(ckptDir, train.ds.fingerprint, settings);
  if (resumed) ctx.log.info({ checkpoint: ckptDir, step: resumed.step }, `distill: resuming from step ${resumed.step}`);
  const startStep = resumed?.step ?? 0;
  // krr's real-batch features do not depend on the synthetic set: a second thread computes them ahead.
  const feed = settings.method === 'krr' && (o.parallelism ?? os.availableParallelism()) >= 2 && startStep < steps
    ? startFeatureFeed(real, settings, { dir: train.dir }, startStep, steps, o.backend)
    : undefined;
  // Whatever fails from here on, the feature thread is closed (an open thread keeps the process alive).
  try {
    const distiller = createDistiller(real, settings, resumed?.state, feed);
    const deadline = o.timeBudget !== undefined ? performance.now() + o.timeBudget * 1000 : Infinity;
    const progress = ctx.progress(`distill ${o.method}`, steps);
    const checkpoint = (t: number) => writeCheckpoint(ckptDir, train.ds.fingerprint, settings, t, distiller.save());
    try {
      progress.tick(startStep);
      const logEvery = Math.max(1, Math.round(steps / 20));
      ctx.log.info({ method: o.method, ipc: o.ipc, rows: real.labels.length, steps, backend: backend.label, settings }, `distill: ${o.method}, ${o.ipc} images per class`);
      const run = await runDistillLoop(distiller, {
        startStep, steps, deadline, signal: ctx.signal, checkpoint, checkpointEvery: o.checkpointEvery,
        onSkipped: (t, why) => ctx.log.warn({ step: t }, `distill: step ${t} skipped: ${why}`),
        onStep: (t, loss, details) => {
          progress.tick();
          if (t % logEvery === 0) ctx.log.info({ step: t, loss, ...details }, 'distill: step');
        },
      });
      const t = run.stepsDone;
      const { stoppedBy, losses, skipped, details } = run;
      if (stoppedBy === 'time-budget') {
        ctx.log.warn({ stepsDone: t, steps }, `distill: time budget reached after ${t} of ${steps} steps; the checkpoint is kept (rerun with --overwrite to continue)`);
        if (t > startStep) await checkpoint(t);
      }
      const out = distiller.result();
      if (!out.x.every(Number.isFinite) || !out.softLabels.every(Number.isFinite)) {
        throw new DistillDivergedError(t, 'the synthetic set holds non-finite values');
      }
      const summary: DistillSummary = {
        method: o.method,
        ipc: o.ipc,
        rows: out.classes.length,
        stepsRequested: steps,
        stepsDone: t,
        stoppedBy,
        resumedFrom: resumed ? startStep : null,
        firstLoss: losses[0] ?? null,
        lastLoss: lastLossOf(losses),
        skippedSteps: skipped,
        seconds: (performance.now() - t0) / 1000,
        backend: backend.label,
        ...(feed ? { featureThread: true } : {}),
        settings,
        details,
      };
      await writeSynthetic(o, plan, real, out, output);
      if (stoppedBy === 'steps') await fsp.rm(ckptDir, { recursive: true, force: true });
      ctx.log.info({ out: o.out, steps: t, lastLoss: summary.lastLoss }, 'distill: done');
      return summary;
    } finally {
      progress.done();
      distiller.dispose();
    }
  } finally {
    await feed?.close();
  }
}

/**
 * Several independent distillations (seeds seed…seed+R−1) as jobs, through the
 * run's job runner or this machine's threads; keeps the one whose objective on a
 * fixed real batch is lowest. No checkpoints: each restart runs to its steps or
 * its time budget.
 */
async function runRestarts(ctx: StageContext, plan: Planned<DistillPlan>, o: Parsed, output: Output): Promise<DistillSummary> {
  const t0 = performance.now();
  const { train, settings } = plan;
  const steps = stepsOf(o);
  const real = await loadReal(train, o.ipc);
  const seeds = Array.from({ length: o.restarts }, (_, r) => o.seed + r);
  const jobs: DistillJob[] = seeds.map((seed) => ({ kind: 'distill', train: { dir: train.dir }, settings: { ...settings, seed }, steps, timeBudget: o.timeBudget }));
  ctx.log.info({ method: o.method, ipc: o.ipc, restarts: o.restarts, steps }, `distill: ${o.restarts} restarts of ${o.method}, ${o.ipc} images per class`);
  const progress = ctx.progress(`distill ${o.method} ×${o.restarts}`, steps * o.restarts);
  const done = new Array<number>(jobs.length).fill(0);
  let results: DistillJobResult[];
  try {
    results = await runJobs(jobs, {
      runner: ctx.jobRunner, backend: o.backend, signal: ctx.signal, size: o.parallelism,
      onProgress: (i, d) => {
        progress.tick(d - done[i]);
        done[i] = d;
      },
    });
  } finally {
    progress.done();
  }
  // The lowest objective; ties (and non-finite ones) to the earlier seed.
  const score = (r: DistillJobResult) => (Number.isFinite(r.finalLoss) ? r.finalLoss : Infinity);
  const best = results.reduce((b, r, i) => (score(r) < score(results[b]) ? i : b), 0);
  const chosen = results[best];
  if (!chosen.x.every(Number.isFinite) || !chosen.softLabels.every(Number.isFinite)) {
    throw new DistillDivergedError(chosen.stepsDone, 'every restart\'s synthetic set holds non-finite values');
  }
  await writeSynthetic(o, plan, real, chosen, output);
  ctx.log.info({ out: o.out, chosen: seeds[best], finalLoss: chosen.finalLoss }, 'distill: done');
  return {
    method: o.method,
    ipc: o.ipc,
    rows: chosen.classes.length,
    stepsRequested: steps,
    stepsDone: chosen.stepsDone,
    stoppedBy: chosen.stoppedBy,
    resumedFrom: null,
    firstLoss: chosen.firstLoss,
    lastLoss: chosen.lastLoss,
    skippedSteps: chosen.skippedSteps,
    seconds: (performance.now() - t0) / 1000,
    backend: chosen.backend,
    settings: { ...settings, seed: seeds[best] },
    details: chosen.details,
    restarts: results.map((r, i) => ({ seed: seeds[i], finalLoss: r.finalLoss, lastLoss: r.lastLoss, stepsDone: r.stepsDone, stoppedBy: r.stoppedBy })),
  };
}

async function writeSynthetic(
  o: Parsed, plan: Planned<DistillPlan>, real: RealSet, out: { x: Float32Array; softLabels: Float32Array; classes: Int32Array }, output: Output,
): Promise<void> {
  const { train } = plan;
  const k = real.numClasses;
  const len = rowLength(real.shape);
  const names = train.classNames.length === k ? train.classNames : Array.from({ length: k }, (_, i) => `class${i}`);
  const counts = new Array<number>(k).fill(0);
  const rows = Array.from(out.classes, (c, r) => ({
    id: `synthetic-${String(c).padStart(3, '0')}-${String(counts[c]++).padStart(4, '0')}`,
    label: c,
    soft_label: out.softLabels.subarray(r * k, (r + 1) * k),
    pixels: toUint8(real, out.x.subarray(r * len, (r + 1) * len)),
  }));
  const columns: ColumnSpec[] = [
    { name: 'id', kind: 'string' },
    { name: 'label', kind: 'classLabel', names },
    { name: 'soft_label', kind: 'float32Vector', length: k },
    { name: 'pixels', kind: 'uint8Vector', length: len },
  ];
  const description = `${o.method} distillation of ${path.basename(train.dir)}: ${o.ipc} synthetic images per class`;
  // The contact sheet is drawn from a dataset: stage one beside the output, then write the real one with the PNG inside.
  const staging = await stagingDir(o.out, 'sheet');
  let png: Buffer;
  try {
    const meta = { fingerprint: plan.fingerprint, stage: 'distill', stageVersion: DISTILL_VERSION, options: plan.options, seed: plan.seed, parents: plan.parents };
    await writeDataset(path.join(staging, 'data'), rows, { columns, pixelShape: real.shape, meta });
    const sheet = path.join(staging, CONTACT_SHEET_FILE);
    await writeContactSheet(path.join(staging, 'data'), sheet, { perClass: Math.min(o.ipc, 10), seed: o.seed });
    png = await fsp.readFile(sheet);
  } finally {
    await fsp.rm(staging, { recursive: true, force: true });
  }
  const writer = await output.dataset({ columns, pixelShape: real.shape, description, extraFiles: { [CONTACT_SHEET_FILE]: png } });
  for (const row of rows) await writer.writeRow(row);
}

export const distillStage = defineStage({
  name: 'distill',
  version: DISTILL_VERSION,
  description: 'Synthesise k images per class with soft labels (krr, dm, rcig); resumable',
  options: distillOptions,
  inputs: [{ name: 'train', description: 'the labelled training set' }],
  async plan(inputs, o) {
    const train = await describeInput(inputs.train[0]);
    const settings = resolveSettings(o, maxDepth(train.shape));
    return { train, settings, options: canonicalOptions(o, settings), seed: o.seed, parents: [parentOf(train, 'train')] };
  },
  async run(ctx, plan, o, out) {
    const summary = o.restarts > 1 ? await runRestarts(ctx, plan, o, out) : await runDistill(ctx, plan, o, out);
    return { summary: summary as unknown as Record<string, unknown> };
  },
});

/** Distils `trainDir` into `options.out` (the library form of `metacurate distill`). */
export async function distill(trainDir: string, options: DistillOptions, ctx?: StageContext): Promise<DistillResult> {
  return (await distillStage.run(ctx, { train: trainDir }, options)) as DistillResult;
}
