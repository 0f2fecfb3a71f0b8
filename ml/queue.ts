/**
 * Independent jobs (ml/worker.ts) through a BullMQ queue on Redis, so that
 * `metacurate worker`s on several hosts sharing the dataset storage run them.
 * The coordinator's runner (`queueJobs`, a JobRunner) adds one queue job per
 * job and returns the results in job order, so a stage writes byte for byte
 * what a local run writes; a worker (`serveQueue`) runs them in its own thread
 * pool (ml/pool.ts). bullmq is imported here only, and only when used.
 */
import { promises as fsp } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import type { ConnectionOptions, Job as QueueJob, Queue, QueueEvents } from 'bullmq';
import { writeFileAtomic } from '../core/atomic.js';
import { InternalError, IoError, UsageError } from '../core/errors.js';
import { sha256Hex } from '../core/hash.js';
import { CODE_VERSION } from '../core/version.js';
import type { BackendRequest } from './backend.js';
import { WorkerPool, type JobRunner, type RunJobsOptions } from './pool.js';
import { pluginModuleUrls } from './scores/index.js';
import { rebuildError, serializeError, type SerializedError } from './threads.js';
import type { Job, JobResult } from './worker.js';

/** The queue's default name: coordinators and workers must use the same one. */
export const QUEUE_NAME = 'metacurate';
/** A result larger than this (bytes of JSON) goes through a file on the shared storage rather than through Redis. */
export const SPILL_BYTES = 4 * 2 ** 20;
/** The folder, inside one the coordinator writes to, that large results pass through. */
export const SPILL_DIR = '.metacurate-queue';
/** A job whose worker stopped renewing its lock for this long is handed to another worker. */
export const DEFAULT_STALLED_AFTER_MS = 30_000;
/** How long the first contact with Redis may take before we say it is unreachable. */
const CONNECT_TIMEOUT_MS = 10_000;
/** A worker frees a batch's threads (and the data they cached) after this long without its jobs. */
const IDLE_POOL_MS = 30_000;

export interface QueueConnection {
  /** `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS. */
  url: string;
  /** The queue's name (default QUEUE_NAME). */
  name?: string;
}

/** What one queue job carries: the job, and what a worker needs to run it as this process would. */
interface Envelope {
  /** The coordinator's CODE_VERSION: a worker of another version refuses the job. */
  version: string;
  /**
   * One runJobs call of one coordinator. A worker keeps one thread pool per batch,
   * as a local run keeps one per call: threads cache datasets by directory, and a
   * later run may rewrite a directory.
   */
  batch: string;
  backend: BackendRequest;
  plugins: string[];
  /** Where a worker writes a result larger than `above` bytes of JSON (on the shared storage), if anywhere. */
  spill?: { dir: string; above: number };
  job: unknown;
}

/** A result as it comes back: inline, or the file it was spilled to. */
type Packed = { result: unknown } | { file: string };

export type QueueLog = (level: 'debug' | 'info' | 'warn' | 'error', fields: object, message: string) => void;

/** BullMQ connection options for a Redis URL; a UsageError (64) for anything else. */
export function connectionOf(url: string): ConnectionOptions {
  let u: URL | undefined;
  try {
    u = new URL(url);
  } catch {
    u = undefined;
  }
  if (!u || (u.protocol !== 'redis:' && u.protocol !== 'rediss:') || !u.hostname) {
    throw new UsageError(`not a Redis URL: ${url}`, { hint: 'Give redis://host:port (rediss:// for TLS), e.g. redis://127.0.0.1:6379' });
  }
  return { url };
}

/** The URL without its password, for messages. */
export function redactedUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

async function loadBullmq(): Promise<typeof import('bullmq')> {
  try {
    return await import('bullmq');
  } catch (err) {
    throw new InternalError('the bullmq package cannot be loaded', { cause: err, hint: 'Reinstall metacurate\'s dependencies (npm ci): bullmq and ioredis come with it' });
  }
}

/** `p`, or an IoError (74) when Redis does not answer in time. */
async function reachable<T>(p: Promise<T>, url: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new IoError(`cannot reach Redis at ${redactedUrl(url)}`, {
      hint: 'Start Redis there (redis-server), or check the URL given to --queue or --redis',
    })), CONNECT_TIMEOUT_MS);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

// JSON with typed arrays (bit-exact, as base64 of their bytes) and non-finite numbers: what jobs and results hold.
const TYPED = { Float32Array, Float64Array, Int32Array, Uint32Array, Int16Array, Uint16Array, Int8Array, Uint8Array } as const;
type TypedName = keyof typeof TYPED;

export function encodeValue(v: unknown): unknown {
  if (ArrayBuffer.isView(v) && v.constructor.name in TYPED) {
    return { $typed: v.constructor.name, base64: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') };
  }
  if (typeof v === 'number' && !Number.isFinite(v)) return { $number: String(v) };
  if (Array.isArray(v)) return v.map(encodeValue);
  if (v && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => [k, encodeValue(x)]));
  }
  return v;
}

export function decodeValue(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(decodeValue);
  if (!v || typeof v !== 'object') return v;
  const o = v as Record<string, unknown>;
  if (typeof o.$typed === 'string' && o.$typed in TYPED && typeof o.base64 === 'string') {
    const Ctor = TYPED[o.$typed as TypedName];
    // A copy: Buffer.from may share a pool at an offset the typed array cannot start at.
    const bytes = new Uint8Array(Buffer.from(o.base64, 'base64'));
    return new Ctor(bytes.buffer, 0, bytes.byteLength / Ctor.BYTES_PER_ELEMENT);
  }
  if (typeof o.$number === 'string') return Number(o.$number);
  return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, decodeValue(x)]));
}

export interface QueueRunnerOptions extends QueueConnection {
  /**
   * A folder on the shared storage where results too large for Redis pass, in its
   * SPILL_DIR subfolder (default: none, every result goes through Redis).
   */
  spillIn?: string;
  /** Results larger than this (bytes of JSON) are spilled (default SPILL_BYTES). */
  spillAbove?: number;
  /** Warnings for the user, e.g. that no worker serves the queue yet. */
  onWarn?: (message: string) => void;
}

/**
 * A JobRunner that sends jobs to `metacurate worker`s through the queue. Job ids
 * hash the job's content and its batch, so adding a job twice (a retry, or the
 * same job twice in one call) makes one queue job.
 */
export function queueJobs(opts: QueueRunnerOptions): JobRunner {
  connectionOf(opts.url);
  const run = randomBytes(6).toString('hex');
  const target: Target = {
    url: opts.url,
    name: opts.name ?? QUEUE_NAME,
    spill: opts.spillIn ? { dir: path.join(path.resolve(opts.spillIn), SPILL_DIR), above: opts.spillAbove ?? SPILL_BYTES } : undefined,
    onWarn: opts.onWarn,
  };
  let calls = 0;
  return {
    run: <J extends Job>(jobs: readonly J[], o: RunJobsOptions) => runOnQueue(jobs, o, target, `${run}-${calls++}`) as Promise<JobResult<J>[]>,
  };
}

/** Where a runner's jobs go. */
interface Target {
  url: string;
  name: string;
  spill: Envelope['spill'];
  onWarn?: (message: string) => void;
}

async function runOnQueue(jobs: readonly Job[], o: RunJobsOptions, { url, name, spill, onWarn }: Target, batch: string): Promise<unknown[]> {
  o.signal?.throwIfAborted();
  const { Queue, QueueEvents } = await loadBullmq();
  const connection = connectionOf(url);
  const queue: Queue = new Queue(name, { connection });
  const events: QueueEvents = new QueueEvents(name, { connection });
  // Connection errors are retried by the client; without listeners they would crash the process.
  queue.on('error', () => undefined);
  events.on('error', () => undefined);
  const data = jobs.map((job): Envelope => ({
    version: CODE_VERSION, batch, backend: o.backend ?? 'auto', plugins: o.plugins ?? pluginModuleUrls(), spill, job: encodeValue(job),
  }));
  const ids = data.map((d) => `mc-${sha256Hex(JSON.stringify(d)).slice(0, 32)}`);
  const unique = [...new Set(ids)];
  const removeAll = () => Promise.allSettled(unique.map((id) => queue.remove(id)));
  try {
    await reachable(Promise.all([queue.waitUntilReady(), events.waitUntilReady()]), url);
    // A job retried after its worker died starts again from 0: its progress shows again once past where it was.
    const shown = new Map<string, number>();
    events.on('progress', ({ jobId, data: p }) => {
      const { done, total } = (p ?? {}) as { done?: number; total?: number };
      if (typeof done !== 'number' || typeof total !== 'number' || done <= (shown.get(jobId) ?? 0)) return;
      shown.set(jobId, done);
      ids.forEach((id, i) => {
        if (id === jobId) o.onProgress?.(i, done, total);
      });
    });
    const added = await queue.addBulk(unique.map((id) => ({
      name: jobs[ids.indexOf(id)].kind,
      data: data[ids.indexOf(id)],
      // attempts 1: a job's own error is final (it would fail again); a dead worker's job is retried as stalled.
      opts: { jobId: id, attempts: 1, removeOnComplete: { age: 3600 }, removeOnFail: { age: 24 * 3600 } },
    })));
    // Best effort: an ACL may forbid CLIENT LIST, which the count needs.
    if ((await queue.getWorkersCount().catch(() => undefined)) === 0) {
      onWarn?.(`no worker serves the queue "${name}" at ${redactedUrl(url)} yet: the jobs wait until one does (start \`metacurate worker --redis ${redactedUrl(url)}\`)`);
    }
    const byId = new Map(added.map((j) => [j.id!, j]));
    const finished = new Map<string, Promise<unknown>>();
    const wait = (id: string) => {
      let p = finished.get(id);
      if (!p) {
        p = byId.get(id)!.waitUntilFinished(events).then((packed) => unpack(packed as Packed), (err) => { throw queueFailure(err, id); });
        finished.set(id, p);
      }
      return p;
    };
    const all = Promise.all(ids.map((id, i) => wait(id).then((r) => {
      o.onResult?.(i, r);
      return r;
    })));
    return await untilAborted(all, o.signal);
  } finally {
    // Waiting jobs are removed (cancelled); a job a worker is running cannot be, and expires once finished.
    await removeAll();
    if (spill) {
      await fsp.rm(path.join(spill.dir, batch), { recursive: true, force: true });
      await fsp.rmdir(spill.dir).catch(() => undefined);
    }
    await Promise.allSettled([events.close(), queue.close()]);
  }
}

function untilAborted<T>(p: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

async function unpack(packed: Packed): Promise<unknown> {
  if ('file' in packed) return decodeValue(JSON.parse(await fsp.readFile(packed.file, 'utf8')));
  return decodeValue(packed.result);
}

/** A failed queue job as the error the worker threw (same class, same exit code), or why the queue gave up on it. */
function queueFailure(err: unknown, id: string): Error {
  const reason = err instanceof Error ? err.message : String(err);
  let e: Partial<SerializedError> | undefined;
  try {
    e = JSON.parse(reason);
  } catch {
    e = undefined;
  }
  if (typeof e?.message === 'string' && typeof e.exitCode === 'number') return rebuildError(e as SerializedError);
  return new InternalError(`queue job ${id} failed: ${reason}`, {
    hint: 'Its workers died or were stopped more often than the queue retries a job; see the workers\' logs, and rerun',
  });
}

export interface QueueWorkerOptions extends QueueConnection {
  /** Jobs run at once, each on its own thread. */
  concurrency: number;
  /** A job whose worker stops renewing its lock for this long goes to another worker (default DEFAULT_STALLED_AFTER_MS). */
  stalledAfterMs?: number;
  /** Stops taking jobs; the jobs in hand finish first. */
  signal: AbortSignal;
  log: QueueLog;
}

interface BatchPool {
  pool: WorkerPool;
  active: number;
  idle?: NodeJS.Timeout;
}

/** Serves the queue until `signal` aborts: each job runs in this process's thread pool, its result goes back through Redis. */
export async function serveQueue(opts: QueueWorkerOptions): Promise<void> {
  const { Worker, UnrecoverableError } = await loadBullmq();
  const name = opts.name ?? QUEUE_NAME;
  const pools = new Map<string, BatchPool>();
  const drop = (batch: string) => {
    const entry = pools.get(batch);
    if (!entry || entry.active > 0) return;
    clearTimeout(entry.idle);
    pools.delete(batch);
    void entry.pool.close();
  };
  const poolFor = (env: Envelope): BatchPool => {
    let entry = pools.get(env.batch);
    if (!entry) {
      // A new batch: the threads of finished ones go (their cached data may be stale by now).
      for (const batch of [...pools.keys()]) drop(batch);
      entry = {
        pool: new WorkerPool({ size: opts.concurrency, backend: env.backend, plugins: env.plugins, onOutput: (line, stream) => opts.log('debug', { stream }, line) }),
        active: 0,
      };
      pools.set(env.batch, entry);
    }
    clearTimeout(entry.idle);
    return entry;
  };

  const processJob = async (qj: QueueJob<Envelope>): Promise<Packed> => {
    const env = qj.data;
    const t0 = performance.now();
    opts.log('info', { job: qj.id, kind: qj.name }, 'job started');
    try {
      if (env.version !== CODE_VERSION) {
        throw new UsageError(`this worker runs metacurate ${CODE_VERSION}, the job comes from ${env.version}`, { hint: 'Run the same version on the coordinator and every worker' });
      }
      // Only modules this worker was started with: whoever can write to the queue must not choose code to import.
      const missing = env.plugins.filter((p) => !pluginModuleUrls().includes(p));
      if (missing.length) {
        throw new UsageError(`the job needs plug-in modules this worker has not loaded: ${missing.join(', ')}`, {
          hint: 'Start every worker with the coordinator\'s plug-ins (metacurate --plugin <module> worker ...), at the same paths',
        });
      }
      const entry = poolFor(env);
      entry.active++;
      try {
        const result = await entry.pool.run(decodeValue(env.job) as Job, (done, total) => void qj.updateProgress({ done, total }).catch(() => undefined));
        const packed = await pack(result, env, qj.id!);
        opts.log('info', { job: qj.id, kind: qj.name, seconds: Math.round(performance.now() - t0) / 1000, ...('file' in packed ? { spilled: packed.file } : {}) }, 'job finished');
        return packed;
      } finally {
        entry.active--;
        if (entry.active === 0) entry.idle = setTimeout(() => drop(env.batch), IDLE_POOL_MS).unref();
      }
    } catch (err) {
      opts.log('warn', { job: qj.id, kind: qj.name, error: err instanceof Error ? err.message : String(err) }, 'job failed');
      // Unrecoverable: the same job would fail again. The coordinator rebuilds the error from this JSON.
      throw new UnrecoverableError(JSON.stringify(serializeError(err)));
    }
  };

  const lockDuration = opts.stalledAfterMs ?? DEFAULT_STALLED_AFTER_MS;
  const worker = new Worker<Envelope, Packed>(name, processJob, {
    connection: connectionOf(opts.url),
    concurrency: opts.concurrency,
    autorun: false,
    // Training runs on threads, so this thread always renews the locks in time: a lock lapses only when the process is gone.
    lockDuration,
    stalledInterval: Math.max(1000, Math.round(lockDuration / 2)),
    maxStalledCount: 2,
  });
  worker.on('error', (err) => opts.log('warn', { error: err.message }, 'queue connection error (retrying)'));
  try {
    await reachable(worker.waitUntilReady(), opts.url);
    const running = worker.run();
    opts.log('info', { queue: name, redis: redactedUrl(opts.url), concurrency: opts.concurrency }, 'worker ready: waiting for jobs');
    await new Promise<void>((resolve) => {
      if (opts.signal.aborted) resolve();
      opts.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    opts.log('info', {}, 'stopping: the jobs in hand finish first');
    await worker.close();
    await running;
  } finally {
    await worker.close(true).catch(() => undefined);
    await Promise.all([...pools.values()].map((p) => p.pool.close()));
  }
}

/** The result as it goes back: inline, or written to the spill folder when large and the coordinator gave one. */
async function pack(result: unknown, env: Envelope, id: string): Promise<Packed> {
  const encoded = encodeValue(result);
  if (!env.spill) return { result: encoded };
  const json = JSON.stringify(encoded);
  if (json.length <= env.spill.above) return { result: encoded };
  // Written only where a coordinator would put it: whoever can write to the queue must not choose where workers write.
  if (!path.isAbsolute(env.spill.dir) || path.basename(env.spill.dir) !== SPILL_DIR || !/^[0-9a-f]+-\d+$/.test(env.batch)) {
    throw new UsageError(`refusing to write a result to ${env.spill.dir}`, { hint: `A coordinator spills into an absolute .../${SPILL_DIR} folder` });
  }
  const file = path.join(env.spill.dir, env.batch, `${id}.json`);
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await writeFileAtomic(file, json);
  return { file };
}
