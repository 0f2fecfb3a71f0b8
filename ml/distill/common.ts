/**
 * What the distillation methods share: the real training set in memory, seeded
 * sampling, the synthetic set's pixel space, state that survives a checkpoint,
 * and the guards against non-finite values.
 *
 * Synthetic images live in the normalised space (x − mean) / std of the real
 * set, as the methods' papers do, and are kept inside the range that uint8
 * pixels can represent (a projection after every update): what is optimised is
 * exactly what gets written, up to rounding to 1/255.
 */
import * as tf from '@tensorflow/tfjs';
import { addAll } from '../ops.js';
import { DataError } from '../../core/errors.js';
import { Rng } from '../../core/rng.js';
import type { PixelShape } from '../../data/format.js';
import { channelSums, readPixelRows, type PixelSource } from '../../data/pixel-rows.js';

/** A labelled real set: labels in memory, pixels in memory or read from the shards. */
export interface RealSet {
  /** uint8 pixels, row-major, channels last. */
  pixels: PixelSource;
  shape: PixelShape;
  labels: Int32Array;
  numClasses: number;
  /** Row indices of each class. */
  byClass: Int32Array[];
  /** Per-channel mean and std of the pixels in [0, 1]. */
  mean: number[];
  std: number[];
}

/** Builds a RealSet (class index lists and channel statistics) from pixels and labels. */
export function makeRealSet(pixels: PixelSource, shape: PixelShape, labels: Int32Array, numClasses: number): RealSet {
  const byClassLists: number[][] = Array.from({ length: numClasses }, () => []);
  labels.forEach((l, i) => byClassLists[l]?.push(i));
  const { sum, sq, count } = channelSums(pixels, shape);
  const mean = Array.from(sum, (s) => s / count);
  // One grey level is the smallest spread that means anything (a constant channel would divide by zero).
  const std = Array.from(sq, (s, j) => Math.max(Math.sqrt(Math.max(0, s / count - mean[j] ** 2)), 1 / 255));
  return { pixels, shape, labels, numClasses, byClass: byClassLists.map((l) => Int32Array.from(l)), mean, std };
}

export function rowLength(shape: PixelShape): number {
  return shape[0] * shape[1] * shape[2];
}

/** Rows `idx` as normalised float pixels (host array). */
export function normalisedPixels(real: RealSet, idx: ArrayLike<number>): Float32Array {
  const len = rowLength(real.shape);
  const c = real.shape[2];
  const out = new Float32Array(idx.length * len);
  const rows = readPixelRows(real.pixels, len, idx);
  for (let j = 0; j < rows.length; j++) {
    const ch = j % c;
    out[j] = (rows[j] / 255 - real.mean[ch]) / real.std[ch];
  }
  return out;
}

/** Rows `idx` as a normalised [B, H, W, C] tensor. */
export function realBatch(real: RealSet, idx: ArrayLike<number>): tf.Tensor4D {
  const [h, w, c] = real.shape;
  return tf.tensor4d(normalisedPixels(real, idx), [idx.length, h, w, c]);
}

/** One-hot rows [B, K] for the labels of rows `idx`, minus `shift` (RCIG centres targets at −1/K). */
export function oneHotTargets(real: RealSet, idx: ArrayLike<number>, shift = 0): tf.Tensor2D {
  const k = real.numClasses;
  const out = new Float32Array(idx.length * k).fill(-shift);
  for (let r = 0; r < idx.length; r++) out[r * k + real.labels[idx[r]]] += 1;
  return tf.tensor2d(out, [idx.length, k]);
}

/** `k` distinct indices of 0..n-1 (all of them, shuffled, when k ≥ n): a partial Fisher-Yates. */
export function sampleDistinct(rng: Rng, n: number, k: number): Int32Array {
  const m = Math.min(k, n);
  const swapped = new Map<number, number>();
  const out = new Int32Array(m);
  for (let i = 0; i < m; i++) {
    const j = i + rng.int(n - i);
    const vj = swapped.get(j) ?? j;
    swapped.set(j, swapped.get(i) ?? i);
    out[i] = vj;
  }
  return out;
}

/** A uniform batch of `size` real rows (without replacement). */
export function sampleRows(real: RealSet, rng: Rng, size: number): Int32Array {
  return sampleDistinct(rng, real.labels.length, size);
}

/** `size` rows of class `c` (without replacement). */
export function sampleClassRows(real: RealSet, c: number, rng: Rng, size: number): Int32Array {
  const rows = real.byClass[c];
  return sampleDistinct(rng, rows.length, size).map((i) => rows[i]);
}

/**
 * The initial synthetic set: `ipc` real rows of each class, chosen with the
 * seed, class by class. Returns the rows and the class of each synthetic image.
 */
export function initialRows(real: RealSet, ipc: number, seed: number): { rows: Int32Array; classes: Int32Array } {
  const rng = Rng.derive(seed, 'distill/init');
  const rows: number[] = [];
  const classes: number[] = [];
  for (let c = 0; c < real.numClasses; c++) {
    const picked = sampleClassRows(real, c, rng, ipc);
    if (picked.length < ipc) throw new DataError(`class ${c} has ${picked.length} images, fewer than ${ipc} per class`);
    rows.push(...picked);
    for (let i = 0; i < ipc; i++) classes.push(c);
  }
  return { rows: Int32Array.from(rows), classes: Int32Array.from(classes) };
}

/** Keeps normalised pixels inside what [0, 1] maps to, per channel. */
export function clampPixels(real: RealSet, x: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const lo = real.mean.map((m, j) => -m / real.std[j]);
    const hi = real.mean.map((m, j) => (1 - m) / real.std[j]);
    if (lo.length === 1) return tf.clipByValue(x, lo[0], hi[0]);
    return tf.minimum(tf.maximum(x, tf.tensor1d(lo)), tf.tensor1d(hi));
  });
}

/** Normalised float pixels back to uint8 (rounded, clamped). */
export function toUint8(real: RealSet, x: Float32Array): Uint8Array {
  const c = real.shape[2];
  const out = new Uint8Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i] * real.std[i % c] + real.mean[i % c];
    out[i] = Math.round(Math.min(1, Math.max(0, v)) * 255);
  }
  return out;
}

/** Row-wise softmax of a host matrix [n, k] (labels → probabilities for the soft_label column). */
export function softmaxRows(z: Float32Array, k: number, scale = 1): Float32Array {
  const out = new Float32Array(z.length);
  for (let r = 0; r < z.length / k; r++) {
    let m = -Infinity;
    for (let j = 0; j < k; j++) m = Math.max(m, scale * z[r * k + j]);
    let s = 0;
    for (let j = 0; j < k; j++) s += (out[r * k + j] = Math.exp(scale * z[r * k + j] - m));
    for (let j = 0; j < k; j++) out[r * k + j] /= s;
  }
  return out;
}

/** One-hot host matrix [n, k], minus `shift`. */
export function oneHotRows(classes: Int32Array, k: number, shift = 0): Float32Array {
  const out = new Float32Array(classes.length * k).fill(-shift);
  classes.forEach((c, r) => { out[r * k + c] += 1; });
  return out;
}

/** A tensor as saved in a checkpoint. */
export interface SavedTensor {
  shape: number[];
  data: Float32Array;
}

/** Everything a distiller needs to continue exactly where it stopped. */
export interface SavedState {
  scalars: Record<string, number>;
  tensors: Record<string, SavedTensor>;
}

export function saveTensor(t: tf.Tensor): SavedTensor {
  return { shape: t.shape.slice(), data: Float32Array.from(t.dataSync() as Float32Array) };
}

export function loadTensor(saved: SavedState, name: string): tf.Tensor {
  const s = saved.tensors[name];
  if (!s) throw new DataError(`the checkpoint has no tensor "${name}"`, { hint: 'It was written by another version; remove it to start over' });
  return tf.tensor(s.data, s.shape, 'float32');
}

/** Optimisation went wrong (NaN/Inf): stop before anything non-finite is written (65). */
export class DistillDivergedError extends DataError {
  constructor(readonly step: number, detail: string) {
    super(`distillation diverged at step ${step}: ${detail}`, {
      hint: 'Lower the learning rate (--lr, e.g. by 10×); the last checkpoint holds the state before it happened',
    });
  }
}

/** tf.tidy for results that are plain objects of tensors (tfjs types only accept its own container types). */
export function tidyObject<T>(fn: () => T): T {
  return tf.tidy(fn as unknown as () => tf.TensorContainer) as unknown as T;
}

/** True when every value of every tensor is finite (one host read). */
export function allFinite(ts: readonly tf.Tensor[]): boolean {
  if (ts.length === 0) return true;
  const v = tf.tidy(() => addAll(ts.map((t) => tf.sum(tf.abs(t)))).dataSync()[0]);
  return Number.isFinite(v);
}

/** Euclidean norm of a tensor (host number). */
export function norm(t: tf.Tensor): number {
  return tf.tidy(() => Math.sqrt(tf.sum(tf.square(t)).dataSync()[0]));
}

/** What one outer step reports. */
export interface StepReport {
  /** The method's own objective at this step (before the update); NaN when the step was skipped. */
  loss: number;
  /** Why the step changed nothing (the synthetic set is untouched). */
  skipped?: string;
  details?: Record<string, number>;
}

/** A running distillation: one step at a time, savable at any step boundary. */
export interface Distiller {
  /** Waits for what step t needs from other threads (krr's feature feed); absent when nothing does. */
  prepare?(t: number): Promise<void>;
  step(t: number): StepReport;
  save(): SavedState;
  /**
   * The synthetic set to write: normalised pixels [n, H, W, C] flattened, soft
   * labels [n, K] (rows sum to 1), and the class each image was made for.
   */
  result(): { x: Float32Array; softLabels: Float32Array; classes: Int32Array };
  /** The method's objective on the current synthetic set, for tests: `evalLoss(seedOfBatch)`. */
  evalLoss(seed: number): number;
  dispose(): void;
}
