/**
 * One training run on several cores. wasm runs on one thread in Node, so a run
 * whose config cuts each batch into slices (`slices` in ml/train.ts) can spread
 * the slices over worker threads: every worker keeps a replica of the training
 * state and writes the gradients of the slices it owns into shared memory; this
 * thread adds them in slice order into a shared sum, which every replica applies
 * with the same optimizer update. The additions are the float32 operations the
 * trainer does in one thread, in the same order, so the parameters are
 * bit-identical for any number of threads (tested); they do depend on `slices`.
 *
 * Each replica loads the training set itself (from the shards, like any worker
 * job). Per step only small messages cross threads; the gradients stay in one
 * SharedArrayBuffer of (slices + 1) × the parameter count floats.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { InternalError } from '../core/errors.js';
import type { Examples } from '../data/batch.js';
import type { BackendRequest } from './backend.js';
import { rebuildError, workerScript, type DataRef, type SerializedError } from './threads.js';
import { TrainingDivergedError, createTrainer, trainConfigSchema, type TrainConfig, type Trainer } from './train.js';
import type { WorkerInit } from './worker.js';

/** Coordinator → replica. */
export type ReplicaRequest =
  | { type: 'dp-init'; config: TrainConfig; train: DataRef; owned: number[]; weights?: Float32Array; weightsFrom?: number }
  /**
   * Apply the summed gradient of step t − 1 (not at t = 0), then write the owned slices'
   * gradients of step t. `shared` comes with the first step.
   */
  | { type: 'dp-step'; t: number; shared?: SharedArrayBuffer }
  /** Apply step t's summed gradient (the last one run) and send the parameters. */
  | { type: 'dp-finish'; t: number };

/** Replica → coordinator. */
export type ReplicaReply =
  | { type: 'dp-ready'; steps: number; lrs: Float64Array; paramSize: number }
  /** The losses of the owned, non-empty slices of step t, whose gradients are in shared memory. */
  | { type: 'dp-grads'; t: number; parts: { slice: number; loss: number }[] }
  | { type: 'dp-params'; params: Float32Array[]; shapes: number[][] }
  | { type: 'dp-error'; error: SerializedError };

/** Region r of the shared gradients: slice r's gradient, or the sum at r = slices. */
function region(shared: SharedArrayBuffer, size: number, r: number): Float32Array {
  return new Float32Array(shared, 4 * size * r, size);
}

export function isReplicaRequest(msg: unknown): msg is ReplicaRequest {
  const type = (msg as { type?: unknown } | null)?.type;
  return type === 'dp-init' || type === 'dp-step' || type === 'dp-finish';
}

/** A worker thread's side: one replica of the training state. */
export class Replica {
  private state: tf.Tensor[] | undefined;
  private shared: SharedArrayBuffer | undefined;
  private constructor(private readonly trainer: Trainer, private readonly owned: number[], private readonly slices: number) {
    this.state = trainer.initState();
  }

  static create(req: Extract<ReplicaRequest, { type: 'dp-init' }>, train: Examples): { replica: Replica; reply: ReplicaReply } {
    const trainer = createTrainer(req.config, train, { weights: req.weights, weightsFrom: req.weightsFrom });
    const replica = new Replica(trainer, req.owned, trainer.config.slices);
    const lrs = Float64Array.from({ length: trainer.steps }, (_, t) => trainer.lr(t));
    return { replica, reply: { type: 'dp-ready', steps: trainer.steps, lrs, paramSize: trainer.paramSize } };
  }

  /** The reply to a step or finish request, and the buffers to transfer with it. */
  handle(req: Exclude<ReplicaRequest, { type: 'dp-init' }>): { reply: ReplicaReply; transfer: ArrayBuffer[] } {
    if (!this.state) throw new InternalError('a data-parallel replica got a request after it finished');
    if (req.type === 'dp-step' && req.shared) this.shared = req.shared;
    if (!this.shared) throw new InternalError('a data-parallel replica got no shared gradient memory');
    const size = this.trainer.paramSize;
    if (req.type === 'dp-finish') {
      this.apply(region(this.shared, size, this.slices), req.t);
      const params = this.state.slice(0, this.trainer.numParams);
      const out = params.map((p) => (p.dataSync() as Float32Array).slice());
      const shapes = params.map((p) => p.shape);
      tf.dispose(this.state);
      this.state = undefined;
      return { reply: { type: 'dp-params', params: out, shapes }, transfer: out.map((p) => p.buffer as ArrayBuffer) };
    }
    if (req.t > 0) this.apply(region(this.shared, size, this.slices), req.t - 1);
    const parts: { slice: number; loss: number }[] = [];
    for (const slice of this.owned) {
      const loss = this.trainer.sliceGradient(this.state, req.t, slice, region(this.shared, size, slice));
      if (loss !== null) parts.push({ slice, loss });
    }
    return { reply: { type: 'dp-grads', t: req.t, parts }, transfer: [] };
  }

  private apply(grad: Float32Array, t: number): void {
    const next = this.trainer.applyGradient(this.state!, grad, t);
    tf.dispose(this.state!);
    this.state = next;
  }
}

export interface DataParallelOptions {
  /** Worker threads (at most the config's slices are used). */
  threads: number;
  backend?: BackendRequest;
  /** Per-example loss weights and the step they apply from (as createTrainer's options). */
  weights?: Float32Array;
  weightsFrom?: number;
  /** Run the first `stop` steps only (default: all), with the full run's learning-rate schedule. */
  stop?: number;
  onStep?: (t: number, loss: number) => void;
  /** Stop at the first loss that is not finite (default true); false checks the final parameters only, as scoring's own loop does. */
  checkLoss?: boolean;
  signal?: AbortSignal;
}

export interface DataParallelResult {
  params: Float32Array[];
  shapes: number[][];
  losses: Float32Array;
  steps: number;
  threads: number;
}

/** A worker running one replica: one request in flight at a time. */
class ReplicaThread {
  private readonly worker: Worker;
  private pending: { resolve: (r: ReplicaReply) => void; reject: (e: unknown) => void } | undefined;
  private failure: Error | undefined;

  constructor(backend: BackendRequest) {
    const script = workerScript();
    if (!existsSync(fileURLToPath(script))) {
      throw new InternalError(`the worker script ${fileURLToPath(script)} is missing`, { hint: 'Build the package first: npm run build' });
    }
    const init: WorkerInit = { backend, plugins: [] };
    this.worker = new Worker(script, { workerData: { metacurateWorker: init } });
    this.worker.on('message', (reply: ReplicaReply) => {
      const p = this.pending;
      this.pending = undefined;
      if (!p) return;
      if (reply.type === 'dp-error') p.reject(rebuildError(reply.error));
      else p.resolve(reply);
    });
    const lost = (why: string, cause?: unknown) => {
      this.failure ??= new InternalError(`a data-parallel worker thread ${why}`, { cause });
      this.pending?.reject(this.failure);
      this.pending = undefined;
    };
    this.worker.on('error', (err) => lost(`failed: ${err.message}`, err));
    this.worker.on('exit', (code) => lost(`exited with code ${code}`));
  }

  call(req: ReplicaRequest, transfer: ArrayBuffer[] = []): Promise<ReplicaReply> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.pending = { resolve, reject };
      this.worker.postMessage(req, transfer);
    });
  }

  async close(): Promise<void> {
    this.failure ??= new InternalError('the data-parallel run was closed');
    await this.worker.terminate();
  }
}

function expect<T extends ReplicaReply['type']>(reply: ReplicaReply, type: T): Extract<ReplicaReply, { type: T }> {
  if (reply.type !== type) throw new InternalError(`a data-parallel worker answered ${reply.type}, expected ${type}`);
  return reply as Extract<ReplicaReply, { type: T }>;
}

/**
 * Trains `config` on `train` from its seed with the batch slices spread over
 * `opts.threads` worker threads; the same parameters and losses as
 * `createTrainer(config, train).run()` in one thread.
 */
export async function trainDataParallel(config: TrainConfig, train: DataRef, opts: DataParallelOptions): Promise<DataParallelResult> {
  const { slices } = trainConfigSchema.parse(config);
  const threads = Math.max(1, Math.min(Math.floor(opts.threads), slices));
  const replicas: ReplicaThread[] = [];
  const onAbort = () => void Promise.all(replicas.map((r) => r.close()));
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    opts.signal?.throwIfAborted();
    // One by one inside the try: a thread that fails to start leaves none running.
    for (let w = 0; w < threads; w++) replicas.push(new ReplicaThread(opts.backend ?? 'auto'));
    // Slice s belongs to thread s mod threads.
    const ready = await Promise.all(replicas.map((r, w) => r.call({
      type: 'dp-init', config, train, weights: opts.weights, weightsFrom: opts.weightsFrom,
      owned: Array.from({ length: slices }, (_, s) => s).filter((s) => s % threads === w),
    }).then((reply) => expect(reply, 'dp-ready'))));
    const { lrs, paramSize } = ready[0];
    const steps = Math.min(ready[0].steps, opts.stop ?? Infinity);
    if (!(steps >= 1)) throw new InternalError(`a data-parallel run of ${steps} steps`);
    const shared = new SharedArrayBuffer(4 * paramSize * (slices + 1));
    const sum = region(shared, paramSize, slices);
    const losses = new Float32Array(steps);
    for (let t = 0; t < steps; t++) {
      opts.signal?.throwIfAborted();
      const replies = await Promise.all(replicas.map((r) => r.call({ type: 'dp-step', t, ...(t === 0 ? { shared } : {}) })
        .then((reply) => expect(reply, 'dp-grads'))));
      const parts = replies.flatMap((r) => r.parts).sort((a, b) => a.slice - b.slice);
      // Left to right in slice order, rounding to float32 after each addition: the trainer's own order.
      sum.set(region(shared, paramSize, parts[0].slice));
      let loss = parts[0].loss;
      for (const p of parts.slice(1)) {
        const g = region(shared, paramSize, p.slice);
        for (let i = 0; i < paramSize; i++) sum[i] += g[i];
        loss = Math.fround(loss + p.loss);
      }
      losses[t] = loss;
      if (opts.checkLoss !== false && !Number.isFinite(loss)) throw new TrainingDivergedError(t, lrs[t], `the loss is ${loss}`);
      opts.onStep?.(t, loss);
    }
    const done = expect(await replicas[0].call({ type: 'dp-finish', t: steps - 1 }), 'dp-params');
    if (!done.params.every((p) => p.every(Number.isFinite))) {
      throw new TrainingDivergedError(steps - 1, lrs[steps - 1], 'the final parameters are not finite');
    }
    return { params: done.params, shapes: done.shapes, losses, steps, threads };
  } catch (err) {
    if (opts.signal?.aborted) throw opts.signal.reason;
    throw err;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    await Promise.all(replicas.map((r) => r.close()));
  }
}
