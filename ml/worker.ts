/**
 * A worker thread of the pool (ml/pool.ts): one tfjs backend per thread, jobs run
 * one at a time. Jobs are plain messages naming datasets by directory; the worker
 * loads (and caches) the data itself, so no large arrays cross threads.
 *
 * Protocol (main → worker): { type: 'job', id, job }.
 * Worker → main: { type: 'progress', id, done, total }, { type: 'result', id, result }
 * or { type: 'error', id, error: SerializedError }.
 */
import { isMainThread, parentPort, workerData } from 'node:worker_threads';
import { loadExamples, subsetExamples, type Examples } from '../data/batch.js';
import { decodeItem, type DecodableItem, type DecodedItem, type ItemDecoding } from '../data/items.js';
import * as tf from '@tensorflow/tfjs';
import { Replica, isReplicaRequest, trainDataParallel, type ReplicaReply, type ReplicaRequest } from './data-parallel.js';
import { createDistiller, makeRealSet, type MethodSettings } from './distill/index.js';
import { isFeedRequest, serveFeatureFeed, type FeedRequest } from './distill/feature-feed.js';
import { lastLossOf, runDistillLoop } from './distill/run.js';
import { openDataset } from '../data/reader.js';
import { initBackend, type BackendInfo, type BackendRequest } from './backend.js';
import { EVAL_BATCH_SIZE, evaluateModel } from './evaluate.js';
import { computeScores, loadScorerPlugin, type ExtraColumn, type ScoreSettings } from './scores/index.js';
import { rateRange, trainRater, type NamedWeights, type RateRange, type RaterArch, type RaterTrainSettings } from './rater/index.js';
import { serializeError, type DataRef, type SerializedError } from './threads.js';
import { createTrainer, type TrainConfig } from './train.js';

/** Train a fresh model on `train`, report accuracy and loss on `test`. */
export interface EvaluateJob {
  kind: 'evaluate';
  train: DataRef;
  test: DataRef;
  config: TrainConfig;
  evalBatchSize?: number;
  /** Threads for the run's batch slices (ml/data-parallel.ts) when its config has slices; never changes the result. */
  threads?: number;
}

/** Train and return the final parameters. */
export interface TrainJob {
  kind: 'train';
  train: DataRef;
  config: TrainConfig;
  threads?: number;
}

/** Per-example scores of `train` for one seed (ml/scores). */
export interface ScoreJob {
  kind: 'score';
  train: DataRef;
  target?: DataRef;
  settings: ScoreSettings;
  /** Threads for the scored run's batch slices, when its config has slices and the method trains without per-step hooks. */
  threads?: number;
}

/** Rate rows of one shard with a saved rater (ml/rater): streams the shard, returns ids and ratings. */
export interface RateJob {
  kind: 'rate';
  rater: string;
  range: RateRange;
}

/** Train a rater (ml/rater) on `train`, against `target` (meta) or onto `scores` (regress). */
export interface TrainRaterJob {
  kind: 'trainRater';
  train: DataRef;
  target?: DataRef;
  scores?: Float32Array;
  settings: RaterTrainSettings;
}

/** Decode source items to working pixels (data/items.ts): ingest's work, when it runs through a queue. */
export interface DecodeJob {
  kind: 'decode';
  items: DecodableItem[];
  decoding: ItemDecoding;
}

export interface DecodeJobResult {
  items: DecodedItem[];
  seconds: number;
  backend: string;
}

/** One restart of a distillation (ml/distill): from its settings' seed, for `steps` steps or `timeBudget` seconds. */
export interface DistillJob {
  kind: 'distill';
  train: DataRef;
  settings: MethodSettings;
  steps: number;
  timeBudget?: number;
}

export interface DistillJobResult {
  x: Float32Array;
  softLabels: Float32Array;
  classes: Int32Array;
  stepsDone: number;
  stoppedBy: 'steps' | 'time-budget';
  firstLoss: number | null;
  lastLoss: number | null;
  /** The method's objective on the final set, on one fixed batch: comparable between restarts. */
  finalLoss: number;
  skippedSteps: number;
  details: Record<string, number>;
  seconds: number;
  backend: string;
}

/** The batch seed every restart's final loss is measured on, so restarts compare on the same real rows. */
export const FINAL_LOSS_BATCH_SEED = 0;

export type Job = EvaluateJob | TrainJob | ScoreJob | RateJob | TrainRaterJob | DecodeJob | DistillJob;

export interface EvaluateJobResult {
  accuracy: number;
  loss: number;
  /** Test rows by label and prediction, k × k row-major (ml/evaluate.ts). */
  confusion: Int32Array;
  /** Mean training loss over the last epoch's steps. */
  trainLoss: number;
  numTrain: number;
  numTest: number;
  steps: number;
  /** Threads the training used: more than 1 when its batch slices were spread (ml/data-parallel.ts). */
  threads: number;
  seconds: number;
  backend: string;
}

export interface TrainJobResult {
  params: Float32Array[];
  shapes: number[][];
  losses: Float32Array;
  steps: number;
  seconds: number;
  backend: string;
}

export interface ScoreJobResult {
  scores: Float32Array;
  details: Record<string, unknown>;
  columns?: Record<string, ExtraColumn>;
  seconds: number;
  backend: string;
}

export interface RateJobResult {
  ids: string[];
  ratings: Float32Array;
  seconds: number;
  backend: string;
}

export interface TrainRaterJobResult {
  arch: RaterArch;
  weights: NamedWeights[];
  details: Record<string, unknown>;
  seconds: number;
  backend: string;
}

export type JobResult<J extends Job> = J extends EvaluateJob ? EvaluateJobResult : J extends ScoreJob ? ScoreJobResult
  : J extends RateJob ? RateJobResult : J extends TrainRaterJob ? TrainRaterJobResult : J extends DecodeJob ? DecodeJobResult
  : J extends DistillJob ? DistillJobResult : TrainJobResult;

export type WorkerMessage =
  | { type: 'progress'; id: number; done: number; total: number }
  | { type: 'result'; id: number; result: unknown }
  | { type: 'error'; id: number; error: SerializedError };

export interface WorkerInit {
  backend: BackendRequest;
  /** Plug-in modules (file URLs) to import before the first job, so their score methods exist here too. */
  plugins?: string[];
}

const cache = new Map<string, Promise<Examples>>();

async function loadRef(ref: DataRef): Promise<Examples> {
  const key = JSON.stringify([ref.dir, ref.sidecars ?? []]);
  let p = cache.get(key);
  if (!p) {
    p = openDataset(ref.dir, { sidecars: ref.sidecars }).then(loadExamples);
    cache.set(key, p);
    p.catch(() => cache.delete(key));
  }
  const ex = await p;
  return ref.indices ? subsetExamples(ex, ref.indices) : ex;
}

let backend: Promise<BackendInfo> | undefined;

type Progress = (done: number, total: number) => void;
type AnyJobResult = EvaluateJobResult | TrainJobResult | ScoreJobResult | RateJobResult | TrainRaterJobResult;
type JobOfKind<K extends Job['kind']> = Extract<Job, { kind: K }>;
/** What a handler returns: its result without `seconds` and `backend`, which runJob appends. */
type JobOutput<J extends Job> = Omit<JobResult<J>, 'seconds' | 'backend'>;

/** How the worker runs one kind of job, and which of its result's buffers it hands over instead of copying. */
interface JobKind<J extends Job> {
  run(job: J, ctx: { tf: BackendInfo['tf']; request: BackendRequest; onProgress?: Progress }): Promise<JobOutput<J>>;
  transfer(result: JobResult<J>): ArrayBufferLike[];
}

/**
 * Trains a fresh model on `train` as `job.config` says, reporting progress at most
 * every 500 ms; on `job.threads` threads when the config cuts batches into slices
 * (the same parameters either way).
 */
async function trainFresh(job: EvaluateJob | TrainJob, train: Examples, request: BackendRequest, onProgress?: Progress) {
  const trainer = createTrainer(job.config, train);
  let last = 0;
  const onStep = (t: number) => {
    const now = performance.now();
    if (now - last > 500 || t === trainer.steps - 1) {
      last = now;
      onProgress?.(t + 1, trainer.steps);
    }
  };
  if ((job.threads ?? 1) > 1 && trainer.config.slices > 1) {
    const r = await trainDataParallel(job.config, job.train, { threads: job.threads!, backend: request, onStep });
    const params = r.params.map((p, i) => tf.tensor(p, r.shapes[i]));
    return { trainer, params, losses: r.losses, threads: r.threads };
  }
  const { params, losses } = await trainer.run({ onStep });
  return { trainer, params, losses, threads: 1 };
}

const JOB_KINDS: { [K in Job['kind']]: JobKind<JobOfKind<K>> } = {
  evaluate: {
    async run(job, { tf, request, onProgress }) {
      const train = await loadRef(job.train);
      const { trainer, params, losses, threads } = await trainFresh(job, train, request, onProgress);
      try {
        const test = await loadRef(job.test);
        const r = evaluateModel(trainer.model, params, test, job.evalBatchSize ?? EVAL_BATCH_SIZE);
        const perEpoch = Math.min(losses.length, Math.ceil(train.ids.length / trainer.config.batchSize));
        let tail = 0;
        for (let i = losses.length - perEpoch; i < losses.length; i++) tail += losses[i];
        return {
          accuracy: r.accuracy,
          loss: r.loss,
          confusion: r.confusion,
          trainLoss: tail / perEpoch,
          numTrain: train.ids.length,
          numTest: test.ids.length,
          steps: trainer.steps,
          threads,
        };
      } finally {
        tf.dispose(params);
      }
    },
    transfer: (r) => [r.confusion.buffer],
  },
  train: {
    async run(job, { tf, request, onProgress }) {
      const train = await loadRef(job.train);
      const { trainer, params, losses } = await trainFresh(job, train, request, onProgress);
      try {
        return {
          // Copies: some backends hand out their own buffers, and these get transferred.
          params: params.map((p) => (p.dataSync() as Float32Array).slice()),
          shapes: params.map((p) => p.shape),
          losses,
          steps: trainer.steps,
        };
      } finally {
        tf.dispose(params);
      }
    },
    transfer: (r) => [...r.params.map((p) => p.buffer), r.losses.buffer],
  },
  score: {
    async run(job, { request, onProgress }) {
      const train = await loadRef(job.train);
      const target = job.target ? await loadRef(job.target) : undefined;
      const spread = (job.threads ?? 1) > 1 ? { train: job.train, threads: job.threads!, backend: request } : undefined;
      const { scores, details, columns } = await computeScores(train, target, job.settings, onProgress, undefined, spread);
      return { scores, details, columns };
    },
    transfer: (r) => [r.scores.buffer, ...Object.values(r.columns ?? {}).map((c) => c.values.buffer)],
  },
  // Rating streams its rows: it never loads a whole dataset.
  rate: {
    run: (job) => rateRange(job.rater, job.range),
    transfer: (r) => [r.ratings.buffer],
  },
  distill: {
    async run(job, { onProgress }) {
      const ex = await loadRef(job.train);
      const real = makeRealSet(ex.pixels, ex.shape, ex.labels!, ex.numClasses);
      const distiller = createDistiller(real, job.settings);
      try {
        const deadline = job.timeBudget !== undefined ? performance.now() + job.timeBudget * 1000 : Infinity;
        const run = await runDistillLoop(distiller, { startStep: 0, steps: job.steps, deadline, onStep: (t) => onProgress?.(t, job.steps) });
        const out = distiller.result();
        return {
          ...out, stepsDone: run.stepsDone, stoppedBy: run.stoppedBy, firstLoss: run.losses[0] ?? null, lastLoss: lastLossOf(run.losses),
          finalLoss: distiller.evalLoss(FINAL_LOSS_BATCH_SEED), skippedSteps: run.skipped, details: run.details,
        };
      } finally {
        distiller.dispose();
      }
    },
    // Copied: the arrays may be views into a backend's memory.
    transfer: () => [],
  },
  decode: {
    async run(job) {
      // One after another: libvips spreads each decode over its own threads.
      const items: DecodedItem[] = [];
      for (const item of job.items) items.push(await decodeItem(item, job.decoding));
      return { items };
    },
    // Copied, not transferred: decoded pixels may be views into a buffer that holds others too.
    transfer: () => [],
  },
  trainRater: {
    async run(job, { onProgress }) {
      const train = await loadRef(job.train);
      const target = job.target ? await loadRef(job.target) : undefined;
      return trainRater(train, { target, scores: job.scores }, job.settings, onProgress);
    },
    transfer: (r) => r.weights.map((w) => w.values.buffer),
  },
};

function kindOf(job: Job): JobKind<Job> {
  return JOB_KINDS[job.kind] as unknown as JobKind<Job>;
}

/** Runs one job in this thread (the worker's entry point; also usable in-process). */
export async function runJob(job: Job, request: BackendRequest, onProgress?: Progress): Promise<AnyJobResult> {
  backend ??= initBackend(request);
  const { label, tf } = await backend;
  const t0 = performance.now();
  const out = await kindOf(job).run(job, { tf, request, onProgress });
  return { ...out, seconds: (performance.now() - t0) / 1000, backend: label } as AnyJobResult;
}

if (!isMainThread && parentPort && (workerData as { metacurateWorker?: WorkerInit } | undefined)?.metacurateWorker) {
  const port = parentPort;
  const init = (workerData as { metacurateWorker: WorkerInit }).metacurateWorker;
  const plugins = Promise.all((init.plugins ?? []).map(loadScorerPlugin));
  let replica: Replica | undefined;
  port.on('message', async (msg: { type: 'job'; id: number; job: Job } | ReplicaRequest | FeedRequest) => {
    if (isFeedRequest(msg)) {
      // krr's feature thread (ml/distill/feature-feed.ts): it reports through the shared buffer.
      await serveFeatureFeed(msg, async () => {
        backend ??= initBackend(init.backend);
        await backend;
        const ex = await loadRef(msg.train);
        return makeRealSet(ex.pixels, ex.shape, ex.labels!, msg.numClasses);
      });
      return;
    }
    if (isReplicaRequest(msg)) {
      // A replica of a data-parallel run (ml/data-parallel.ts): requests come one at a time.
      try {
        if (msg.type === 'dp-init') {
          backend ??= initBackend(init.backend);
          await backend;
          const made = Replica.create(msg, await loadRef(msg.train));
          replica = made.replica;
          port.postMessage(made.reply);
        } else {
          const { reply, transfer } = replica!.handle(msg);
          port.postMessage(reply, transfer);
        }
      } catch (err) {
        port.postMessage({ type: 'dp-error', error: serializeError(err) } satisfies ReplicaReply);
      }
      return;
    }
    if (msg?.type !== 'job') return;
    const { id, job } = msg;
    try {
      await plugins;
      const result = await runJob(job, init.backend, (done, total) => port.postMessage({ type: 'progress', id, done, total } satisfies WorkerMessage));
      const transfer = kindOf(job).transfer(result as JobResult<Job>);
      port.postMessage({ type: 'result', id, result } satisfies WorkerMessage, transfer as ArrayBuffer[]);
    } catch (err) {
      port.postMessage({ type: 'error', id, error: serializeError(err) } satisfies WorkerMessage);
    }
  });
}
