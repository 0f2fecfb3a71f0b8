/**
 * krr's real-batch features on a second thread. A krr step needs Φ(X_t), the
 * random-feature map of step t's real batch, which depends only on the seed and t
 * (the nets and the batch are seeded), never on the synthetic set: so a worker
 * thread computes it ahead of time while this thread differentiates through
 * Φ(X_s), the part that does. It is the same computation on the same backend, so
 * the features, and the whole distillation, are bit-identical with or without
 * the feed (tested). On 2 cores it takes about 40% of a default krr step off
 * this thread.
 *
 * The two threads meet in one SharedArrayBuffer with two slots: the worker
 * fills slot t mod 2 once this thread has taken step t − 2's, and marks it with
 * t; `ready(t)` waits for that mark without blocking the event loop (so a worker
 * that dies is noticed), `take(t)` copies the features and frees the slot. The
 * worker blocks on the shared words; nothing but the start message goes through
 * the event loops.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { InternalError } from '../../core/errors.js';
import type { BackendRequest } from '../backend.js';
import { disposeNets, randomFeatureNets, randomFeatures, type FeatureNet } from '../krr.js';
import { rebuildError, serializeError, workerScript, type DataRef, type SerializedError } from '../threads.js';
import type { WorkerInit } from '../worker.js';
import { realBatch, type RealSet } from './common.js';
import { krrNetsSeed, krrRealFeatures, type KrrSettings } from './krr.js';

/** Control words of the shared buffer, then room for a failed worker's error, then the two slots. */
const SLOT_STEP = [0, 1];
const TAKEN = 2;
const STOP = 3;
const FAILED = 4;
const ERROR_BYTES = 5;
const CONTROL_WORDS = 8;
const ERROR_ROOM = 8192;
const SLOTS_AT = 4 * CONTROL_WORDS + ERROR_ROOM;
/** How long one wait lasts before the stop and failure flags are looked at again, ms. */
const POLL_MS = 100;

/** Atomics.waitAsync (Node 16+; its type is in TypeScript's ES2024 library, newer than this project's). */
const waitAsync = (Atomics as unknown as {
  waitAsync(a: Int32Array, index: number, value: number, timeout: number): { async: false; value: string } | { async: true; value: Promise<string> };
}).waitAsync;

/** The feature map of step t as this thread receives it from the feed. */
export interface FeatureFeed {
  /** Resolves when step t's features are ready (the event loop runs meanwhile, so a dead worker is noticed). */
  ready(t: number): Promise<void>;
  /** Step t's features, [batch, D] (waits for them if `ready` was not awaited). Steps must be taken in order. */
  take(t: number): tf.Tensor2D;
  /** Stops the worker. */
  close(): Promise<void>;
}

export interface FeedRequest {
  type: 'feature-feed';
  settings: KrrSettings;
  /** The real set's dataset and class count (as the distilling thread built it). */
  train: DataRef;
  numClasses: number;
  from: number;
  to: number;
  shared: SharedArrayBuffer;
  rows: number;
  featureDim: number;
}

export function isFeedRequest(msg: unknown): msg is FeedRequest {
  return (msg as { type?: unknown } | null)?.type === 'feature-feed';
}

/**
 * The worker's side: loads its own copy of the real set, then fills the slots for
 * steps from..to−1 (blocking its thread) until the last step or the stop flag. A
 * failure is written into the shared buffer, where the waiting thread reads it.
 */
export async function serveFeatureFeed(req: FeedRequest, loadReal: () => Promise<RealSet>): Promise<void> {
  const control = new Int32Array(req.shared, 0, CONTROL_WORDS);
  const size = req.rows * req.featureDim;
  let nets: FeatureNet[] = [];
  let netsEpoch = -1;
  try {
    const real = await loadReal();
    for (let t = req.from; t < req.to; t++) {
      // Slot t mod 2 is free once step t − 2 has been taken.
      while (t - 2 >= req.from && Atomics.load(control, TAKEN) < t - 2) {
        if (Atomics.load(control, STOP)) return;
        Atomics.wait(control, TAKEN, Atomics.load(control, TAKEN), POLL_MS);
      }
      if (Atomics.load(control, STOP)) return;
      const { epoch, seed } = krrNetsSeed(req.settings, t);
      if (epoch !== netsEpoch) {
        disposeNets(nets);
        nets = randomFeatureNets(req.settings.net, { inputShape: real.shape, numClasses: real.numClasses }, req.settings.nets, seed);
        netsEpoch = epoch;
      }
      const phi = krrRealFeatures(real, req.settings, t, nets);
      const values = phi.dataSync() as Float32Array;
      phi.dispose();
      if (values.length !== size) throw new InternalError(`step ${t}'s features have ${values.length} values, not the ${size} of a slot`);
      new Float32Array(req.shared, SLOTS_AT + 4 * (t % 2) * size, size).set(values);
      Atomics.store(control, SLOT_STEP[t % 2], t);
      Atomics.notify(control, SLOT_STEP[t % 2]);
    }
  } catch (err) {
    const text = new TextEncoder().encode(JSON.stringify(serializeError(err))).subarray(0, ERROR_ROOM);
    new Uint8Array(req.shared, 4 * CONTROL_WORDS, ERROR_ROOM).set(text);
    Atomics.store(control, ERROR_BYTES, text.length);
    Atomics.store(control, FAILED, 1);
    Atomics.notify(control, SLOT_STEP[0]);
    Atomics.notify(control, SLOT_STEP[1]);
  } finally {
    disposeNets(nets);
  }
}

/**
 * Starts a worker thread that computes the real-batch features of steps
 * from..to−1 of a krr distillation of `train` (the same data as `real`).
 */
export function startFeatureFeed(real: RealSet, s: KrrSettings, train: DataRef, from: number, to: number, backend: BackendRequest): FeatureFeed {
  // The feature width, from one image through this step's nets: the slots' size.
  const probeNets = randomFeatureNets(s.net, { inputShape: real.shape, numClasses: real.numClasses }, s.nets, krrNetsSeed(s, from).seed);
  const featureDim = tf.tidy(() => randomFeatures(probeNets, realBatch(real, [0])).shape[1]!);
  disposeNets(probeNets);
  const rows = Math.min(s.batchSize, real.labels.length);
  const size = rows * featureDim;
  const shared = new SharedArrayBuffer(SLOTS_AT + 4 * 2 * size);
  const control = new Int32Array(shared, 0, CONTROL_WORDS);
  control[SLOT_STEP[0]] = -1;
  control[SLOT_STEP[1]] = -1;
  control[TAKEN] = from - 1;

  const script = workerScript();
  if (!existsSync(fileURLToPath(script))) {
    throw new InternalError(`the worker script ${fileURLToPath(script)} is missing`, { hint: 'Build the package first: npm run build' });
  }
  const init: WorkerInit = { backend, plugins: [] };
  const worker = new Worker(script, { workerData: { metacurateWorker: init } });
  // A thread that dies outright (not through serveFeatureFeed's catch) is reported by the flag too.
  let crash: unknown;
  const died = (err?: unknown) => {
    crash ??= err;
    Atomics.store(control, FAILED, 1);
    Atomics.notify(control, SLOT_STEP[0]);
    Atomics.notify(control, SLOT_STEP[1]);
  };
  worker.on('error', (err) => died(err));
  worker.on('exit', () => { if (Atomics.load(control, STOP) === 0) died(); });
  worker.postMessage({ type: 'feature-feed', settings: s, train, numClasses: real.numClasses, from, to, shared, rows, featureDim } satisfies FeedRequest);

  const failure = (t: number): Error => {
    const length = Atomics.load(control, ERROR_BYTES);
    if (length > 0) {
      try {
        return rebuildError(JSON.parse(new TextDecoder().decode(new Uint8Array(shared, 4 * CONTROL_WORDS, length).slice())) as SerializedError);
      } catch {
        // A message cut at the room's end: the generic error below.
      }
    }
    return new InternalError(`the feature thread of the krr distillation stopped before step ${t}${crash instanceof Error ? `: ${crash.message}` : ''}`, {
      hint: 'Rerun with --parallelism 1 to compute the features on this thread',
      cause: crash,
    });
  };

  return {
    async ready(t) {
      const slot = SLOT_STEP[t % 2];
      while (Atomics.load(control, slot) !== t) {
        if (Atomics.load(control, FAILED)) throw failure(t);
        const wait = waitAsync(control, slot, Atomics.load(control, slot), POLL_MS);
        if (wait.async) await wait.value;
      }
    },
    take(t) {
      const slot = SLOT_STEP[t % 2];
      while (Atomics.load(control, slot) !== t) {
        if (Atomics.load(control, FAILED)) throw failure(t);
        Atomics.wait(control, slot, Atomics.load(control, slot), POLL_MS);
      }
      const values = new Float32Array(shared, SLOTS_AT + 4 * (t % 2) * size, size).slice();
      Atomics.store(control, TAKEN, t);
      Atomics.notify(control, TAKEN);
      return tf.tensor2d(values, [rows, featureDim]);
    },
    async close() {
      Atomics.store(control, STOP, 1);
      Atomics.notify(control, TAKEN);
      await worker.terminate();
    },
  };
}

