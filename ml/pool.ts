/**
 * A pool of worker threads, one tfjs backend each, for independent trainings
 * (evaluation seeds, baselines). wasm runs on one thread in Node, so this is how
 * work uses every core. Workers run the compiled dist/ml/worker.js.
 *
 * Hand-written rather than piscina or tinypool: a job here streams progress to
 * the stage while it runs, forwards the worker's stdout line by line, is
 * cancelled by terminating its worker, and comes back as the same error class
 * (hence exit code); and each worker initialises its backend and plug-ins once.
 * Those pools do tasks-in, results-out well, but each of these would be a
 * message channel or a wrapper around them, so they would not make this shorter.
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { InternalError } from '../core/errors.js';
import type { BackendRequest } from './backend.js';
import { pluginModuleUrls } from './scores/index.js';
import { rebuildError, workerScript } from './threads.js';
import type { Job, JobResult, WorkerInit, WorkerMessage } from './worker.js';

export type { DataRef } from './threads.js';
export type { DecodeJob, DecodeJobResult, DistillJob, DistillJobResult, EvaluateJob, EvaluateJobResult, Job, JobResult, ScoreJob, ScoreJobResult, TrainJob, TrainJobResult } from './worker.js';

export interface PoolOptions {
  /** Worker threads at most (default: os.availableParallelism()). */
  size?: number;
  /** The backend each worker initialises (default 'auto'). */
  backend?: BackendRequest;
  /** Receives the workers' stdout/stderr lines (default: dropped, so a stage prints nothing). */
  onOutput?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Plug-in modules (file URLs) each worker imports (default: those loaded in this process). */
  plugins?: string[];
}

interface Pending {
  id: number;
  job: Job;
  resolve: (r: unknown) => void;
  reject: (e: unknown) => void;
  onProgress?: (done: number, total: number) => void;
}

interface Slot {
  worker: Worker;
  current?: Pending;
}

export class WorkerPool {
  readonly size: number;
  private readonly backend: BackendRequest;
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private nextId = 0;
  private closed: unknown = undefined;

  constructor(private readonly opts: PoolOptions = {}) {
    this.size = Math.max(1, Math.floor(opts.size ?? os.availableParallelism()));
    this.backend = opts.backend ?? 'auto';
  }

  /** Runs a job on the next free worker. */
  run<J extends Job>(job: J, onProgress?: (done: number, total: number) => void): Promise<JobResult<J>> {
    if (this.closed !== undefined) return Promise.reject(this.closed);
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, job, resolve: resolve as (r: unknown) => void, reject, onProgress });
      this.dispatch();
    });
  }

  /** Stops every worker; queued and running jobs reject with `reason`. */
  async close(reason: unknown = new InternalError('the worker pool was closed')): Promise<void> {
    if (this.closed === undefined) this.closed = reason;
    for (const p of this.queue.splice(0)) p.reject(reason);
    const slots = this.slots.splice(0);
    for (const s of slots) s.current?.reject(reason);
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => !s.current);
      if (!slot && this.slots.length < this.size) slot = this.spawn();
      if (!slot) return;
      const p = this.queue.shift()!;
      slot.current = p;
      slot.worker.postMessage({ type: 'job', id: p.id, job: p.job });
    }
  }

  private spawn(): Slot {
    const script = workerScript();
    if (!existsSync(fileURLToPath(script))) {
      throw new InternalError(`the worker script ${fileURLToPath(script)} is missing`, { hint: 'Build the package first: npm run build' });
    }
    const init: WorkerInit = { backend: this.backend, plugins: this.opts.plugins ?? pluginModuleUrls() };
    const worker = new Worker(script, { workerData: { metacurateWorker: init }, stdout: true, stderr: true });
    const slot: Slot = { worker };
    for (const stream of ['stdout', 'stderr'] as const) {
      const s = worker[stream];
      s.setEncoding('utf8');
      s.on('data', (chunk: string) => {
        if (!this.opts.onOutput) return;
        for (const line of chunk.split('\n')) if (line.trim()) this.opts.onOutput(line, stream);
      });
    }
    worker.on('message', (msg: WorkerMessage) => {
      const p = slot.current;
      if (!p || msg.id !== p.id) return;
      if (msg.type === 'progress') {
        p.onProgress?.(msg.done, msg.total);
        return;
      }
      slot.current = undefined;
      if (msg.type === 'result') p.resolve(msg.result);
      else p.reject(rebuildError(msg.error));
      this.dispatch();
    });
    const lost = (why: string, cause?: unknown) => {
      const i = this.slots.indexOf(slot);
      if (i < 0) return; // already removed (close, or the other event)
      this.slots.splice(i, 1);
      slot.current?.reject(new InternalError(`a worker thread ${why}`, { cause, hint: 'See the error above; rerun with --backend cpu to rule out the wasm backend' }));
      slot.current = undefined;
      void worker.terminate();
      if (this.closed === undefined) this.dispatch();
    };
    worker.on('error', (err) => lost(`failed: ${err.message}`, err));
    worker.on('exit', (code) => lost(`exited with code ${code}`));
    this.slots.push(slot);
    return slot;
  }
}

export interface RunJobsOptions extends PoolOptions {
  signal?: AbortSignal;
  /** Progress of job `index`: `done` of `total` steps. */
  onProgress?: (index: number, done: number, total: number) => void;
  /** Called as each job finishes, in completion order. */
  onResult?: (index: number, result: unknown) => void;
  /** Where the jobs run (default: worker threads of this process, `localJobs`). */
  runner?: JobRunner;
}

/**
 * Where independent jobs run. Every runner returns results in job order and
 * rejects with the first failure, rebuilt as its own error class, so a stage's
 * output does not depend on where its jobs ran. `localJobs` uses this process's
 * threads; ml/queue.ts sends them to `metacurate worker`s through Redis.
 */
export interface JobRunner {
  run<J extends Job>(jobs: readonly J[], opts: RunJobsOptions): Promise<JobResult<J>[]>;
}

/**
 * With fewer jobs than threads, training jobs whose config cuts batches into
 * slices get the spare threads for their slices (ml/data-parallel.ts): the same
 * results, sooner. The job's own thread then only coordinates its replicas.
 */
export function withSpareThreads<J extends Job>(jobs: readonly J[], size: number): readonly J[] {
  const spare = Math.floor(size / jobs.length);
  if (spare < 2) return jobs;
  const sliced = (job: Job) => ((job.kind === 'train' || job.kind === 'evaluate') && (job.config.slices ?? 1) > 1)
    || (job.kind === 'score' && (job.settings.train.slices ?? 1) > 1);
  return jobs.map((job) => (sliced(job) ? { ...job, threads: spare } : job));
}

/** Runs jobs on min(jobs, size) worker threads of this process. */
export const localJobs: JobRunner = {
  async run(allJobs, opts) {
    const size = opts.size ?? os.availableParallelism();
    const jobs = withSpareThreads(allJobs, size);
    const pool = new WorkerPool({ ...opts, size: Math.min(jobs.length, size) });
    const onAbort = () => void pool.close(opts.signal?.reason);
    opts.signal?.throwIfAborted();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      return await Promise.all(jobs.map((job, i) =>
        pool.run(job, (done, total) => opts.onProgress?.(i, done, total)).then((r) => {
          opts.onResult?.(i, r);
          return r;
        })));
    } finally {
      opts.signal?.removeEventListener('abort', onAbort);
      await pool.close();
    }
  },
};

/**
 * Runs independent jobs with `opts.runner` (default: worker threads here) and
 * returns their results in job order. The first failure stops the other jobs and is rethrown.
 */
export async function runJobs<J extends Job>(jobs: readonly J[], opts: RunJobsOptions = {}): Promise<JobResult<J>[]> {
  if (jobs.length === 0) return [];
  return (opts.runner ?? localJobs).run(jobs, opts);
}

/**
 * Results of a long, lazily made list of jobs, in job order, with bounded memory:
 * the jobs go to `opts.runner` in groups of `group`, one runJobs call each (so a
 * queue's workers keep one thread pool per group, not one per job).
 */
export async function* runJobsInGroups<J extends Job>(jobs: AsyncIterable<J> | Iterable<J>, group: number, opts: RunJobsOptions = {}): AsyncGenerator<JobResult<J>> {
  let pending: J[] = [];
  for await (const job of jobs) {
    pending.push(job);
    if (pending.length === group) {
      yield* await runJobs(pending, opts);
      pending = [];
    }
  }
  if (pending.length) yield* await runJobs(pending, opts);
}
