/**
 * Metagradients (MGD): the gradient of a target loss after training with respect
 * to every training example's loss weight (at the weights the trainer was
 * created with), by exact reverse mode through the
 * whole run. States are rebuilt with REPLAY (a lazy k-ary tree of checkpoints,
 * docs/methods/metagradients.md), so memory is O(k·log_k T) optimizer states instead of T.
 *
 * Each reverse step is a vector-Jacobian product of one optimizer step,
 * state_{t+1} = step(state_t, w_{B_t}), taken with tf.grads of a function that
 * itself calls tf.grads (backward over backward): it yields the cotangent on
 * state_t (a Hessian-vector product plus optimizer terms) and dφ/dw_i for the
 * batch's examples. ml/backend registers the gradients that make this exact.
 * For dense ReLU networks under SGD the same VJP is written out instead
 * (ml/dense-sgd-vjp.ts): no tape, and one large matrix product fewer.
 */
import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../core/errors.js';
import { Rng } from '../core/rng.js';
import { gatherPixels, gatherTargets, type Examples } from '../data/batch.js';
import { denseSgdVjp } from './dense-sgd-vjp.js';
import type { Model } from './models.js';
import { addAll, perExampleCrossEntropy } from './ops.js';
import { TrainingDivergedError, type Trainer } from './train.js';

type State = tf.Tensor[];

export interface MetagradOptions {
  /**
   * Branching factor of the REPLAY tree, used when the run's states do not all
   * fit the budget (else all are stored). Larger k: fewer replays (depth
   * ⌈log_k T⌉), more stored states. Default: the shallowest tree whose stored
   * states fit the store-all budget (`shallowestK`); k changes time and memory,
   * never the result.
   */
  k?: number;
  /** Memory the stored states may take, in bytes (default 2 GiB). Checked before any work. */
  maxStateBytes?: number;
  /** Store every state when they fit (the default); false always goes through REPLAY's tree. */
  storeAll?: boolean;
  /**
   * The first step whose example weights are differentiated (default 0): the
   * weights "enter late", so only steps from..T−1 are reversed and dφ/dw_i sums
   * row i's influence over the end of training only. Steps before it are plain
   * training. Cheaper, and the late part of a run is where a row's gradient
   * agrees or disagrees most clearly with the target's (docs/methods/metagradients.md).
   */
  from?: number;
  /**
   * Reverse every step with the generic tape (backward over backward) even where
   * ml/dense-sgd-vjp.ts has the step's VJP written out (dense ReLU networks under
   * SGD; default false). Both are exact; they differ only in float rounding.
   */
  tape?: boolean;
  /** Called once with the trained parameters θ_T (before the reverse pass): e.g. to measure a held-out loss. */
  atEnd?: (params: readonly tf.Tensor[]) => void;
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

export interface MetagradResult {
  /** dφ/dw_i for every training example (0 for examples never sampled). */
  grad: Float32Array;
  /** The target loss φ after training. */
  targetLoss: number;
  stats: {
    steps: number;
    /** The first differentiated step. */
    from: number;
    /** The branching factor used: the one asked for, else the shallowest tree's that fits, or the whole run when every state was stored. */
    k: number;
    /** Every state was stored (they fit the budget): no replays. */
    storedAll: boolean;
    /** Each step's VJP was the written-out one (ml/dense-sgd-vjp.ts), not the tape's. */
    fused: boolean;
    depth: number;
    forwardSteps: number;
    backwardSteps: number;
    peakStoredStates: number;
    stateBytes: number;
  };
}

/**
 * The target loss φ(params) = Σ_c loss(params, c) over `chunks` chunks (e.g. the
 * mean CE on a target set, in slices that bound activation memory).
 */
export interface TargetLoss {
  chunks: number;
  loss(params: tf.Tensor[], chunk: number): tf.Scalar;
}

/** φ = mean cross-entropy of `model` on `target`, in chunks of `chunkSize` rows. */
export function meanCrossEntropyTarget(model: Model, target: Examples, chunkSize = 1000): TargetLoss {
  const n = target.ids.length;
  const [H, W, C] = target.shape;
  return {
    chunks: Math.ceil(n / chunkSize),
    loss(params, c) {
      const idx = Int32Array.from({ length: Math.min(chunkSize, n - c * chunkSize) }, (_, i) => c * chunkSize + i);
      const x = tf.tensor4d(gatherPixels(target, idx), [idx.length, H, W, C]);
      const y = tf.tensor2d(gatherTargets(target, idx), [idx.length, target.numClasses]);
      return tf.div(tf.sum(perExampleCrossEntropy(model.apply(params, x), y)), n) as tf.Scalar;
    },
  };
}

/** How deep the REPLAY tree is and how many states it stores at once, for T steps. */
export function replayPlan(steps: number, k: number): { depth: number; peakStates: number } {
  if (!(k >= 2)) throw new UsageError(`REPLAY branching factor k must be >= 2, got ${k}`);
  let depth = 0;
  let seg = steps;
  while (seg > k) {
    seg = Math.ceil(seg / k);
    depth++;
  }
  // k boundary states per level, plus at most k states in a leaf.
  return { depth, peakStates: k * (depth + 1) + 1 };
}

/**
 * The branching factor of the shallowest REPLAY tree over `steps` that stores at
 * most `maxStates` states at once (2 when even the deepest does not fit: the
 * budget check then says so). Each level of the tree replays the run once more.
 */
export function shallowestK(steps: number, maxStates: number): number {
  for (let depth = 1; ; depth++) {
    const k = Math.max(2, Math.ceil(steps ** (1 / (depth + 1))));
    if (k === 2 || replayPlan(steps, k).peakStates <= maxStates) return k;
  }
}

function stateBytes(state: State): number {
  return state.reduce((a, t) => a + t.size * 4, 0);
}

/** Splits [t0, t1) into at most k contiguous segments of near-equal length. */
function splitSegments(t0: number, t1: number, k: number): number[] {
  const n = t1 - t0;
  const parts = Math.min(k, n);
  const bounds = [t0];
  for (let j = 1; j < parts; j++) bounds.push(t0 + Math.round((j * n) / parts));
  bounds.push(t1);
  return bounds;
}

/**
 * States stored at once, at most, unless the budget is lower: every state when they fit
 * (no replays), else REPLAY's shallowest tree within it. Not more even within the budget:
 * the wasm heap holding them is capped (4 GiB, less in practice), and a run's
 * activations and a second worker's states share the machine.
 */
export const STORE_ALL_BYTES = 1024 ** 3;

export async function metagradient(trainer: Trainer, targetLoss: TargetLoss, opts: MetagradOptions = {}): Promise<MetagradResult> {
  const T = trainer.steps;
  const n = trainer.numExamples;
  const from = opts.from ?? 0;
  if (!(Number.isInteger(from) && from >= 0 && from <= T)) throw new UsageError(`the first differentiated step must be within 0…${T}, got ${from}`);

  const s0 = trainer.initState();
  const bytes = stateBytes(s0);
  const maxBytes = opts.maxStateBytes ?? 2 * 1024 ** 3;
  // Every state of the differentiated steps kept, when they fit: no replays at all, so the reverse
  // pass costs one forward and one backward step per step. Otherwise REPLAY's tree with branching k.
  // The same states either way (training is deterministic), so the same metagradient.
  const storeBytes = Math.min(maxBytes, STORE_ALL_BYTES);
  const storeAll = opts.storeAll !== false && (T - from + 2) * bytes <= storeBytes;
  const k = storeAll ? Math.max(T - from, 2) : opts.k ?? shallowestK(T - from, Math.floor(storeBytes / bytes));
  const plan = replayPlan(T - from, k);
  if (plan.peakStates * bytes > maxBytes) {
    tf.dispose(s0);
    throw new UsageError(
      `metagradient over ${T} steps needs about ${plan.peakStates} stored states of ${(bytes / 2 ** 20).toFixed(1)} MiB ` +
        `(${((plan.peakStates * bytes) / 2 ** 30).toFixed(2)} GiB), over the ${(maxBytes / 2 ** 30).toFixed(2)} GiB allowed`,
      { hint: 'Use fewer steps or a smaller model, raise the memory budget, or lower k' },
    );
  }

  const grad = new Float32Array(n);
  const fusedVjp = opts.tape ? null : denseSgdVjp(trainer);
  const stats = { steps: T, from, k, storedAll: storeAll, fused: fusedVjp !== null, depth: plan.depth, forwardSteps: 0, backwardSteps: 0, peakStoredStates: 1, stateBytes: bytes };
  let stored = 1;
  const track = (delta: number) => {
    stored += delta;
    stats.peakStoredStates = Math.max(stats.peakStoredStates, stored);
  };

  /** One forward step; the caller owns the returned state. */
  const forward = (s: State, t: number): State => {
    stats.forwardSteps++;
    return tf.tidy(() => {
      const inputs = trainer.batchInputs(t);
      return trainer.step(s, trainer.batchWeights(t), t, inputs);
    });
  };

  const checkAbort = () => {
    if (opts.signal?.aborted) throw new UsageError('metagradient cancelled');
  };

  const isFinite = (st: State): boolean => tf.tidy(() => Number.isFinite(addAll(st.map((x) => tf.sum(tf.abs(x)))).dataSync()[0]));

  /** Only after a failure: replays from the first-level checkpoints, checking every step. */
  const firstNonFiniteStep = (kept: Map<number, State>, bounds: number[]): number => {
    for (let j = 0; j < bounds.length - 1; j++) {
      let cur = kept.get(bounds[j])!;
      for (let t = bounds[j]; t < bounds[j + 1]; t++) {
        const next = forward(cur, t);
        if (cur !== kept.get(bounds[j])) tf.dispose(cur);
        cur = next;
        if (!isFinite(cur)) {
          tf.dispose(cur);
          return t;
        }
      }
      tf.dispose(cur);
    }
    return T - 1;
  };

  /** Runs s (at t0) forward to t1, keeping the states at `keep` (t0 < keep < t1). */
  const advance = (s: State, t0: number, t1: number, keep: Set<number>, kept: Map<number, State>): State => {
    let cur = s;
    for (let t = t0; t < t1; t++) {
      const next = forward(cur, t);
      if (cur !== s && !kept.has(t)) {
        tf.dispose(cur);
        track(-1);
      }
      track(1);
      if (keep.has(t + 1)) kept.set(t + 1, next);
      cur = next;
    }
    return cur;
  };

  /** The VJP of step t at state s with cotangent v: returns the cotangent on s; adds dφ/dw to grad. */
  const backward = (s: State, t: number, v: State): State => {
    stats.backwardSteps++;
    const S = s.length;
    const idx = trainer.batches[t];
    const [vPrev, gw] = fusedVjp ? tf.tidy(() => {
      const r = fusedVjp(s, t, v);
      return [r.vPrev, r.dw] as [State, tf.Tensor];
    }) : tf.tidy(() => {
      const inputs = trainer.batchInputs(t);
      const wB = trainer.batchWeights(t);
      const f = (...args: tf.Tensor[]): tf.Scalar => {
        const next = trainer.step(args.slice(0, S), args[S] as tf.Tensor1D, t, inputs);
        let dot = tf.scalar(0);
        for (let j = 0; j < S; j++) dot = tf.add(dot, tf.sum(tf.mul(next[j], v[j])));
        return dot as tf.Scalar;
      };
      const g = tf.grads(f)([...s, wB]);
      return [g.slice(0, S), g[S]] as [State, tf.Tensor];
    });
    const gwv = gw.dataSync();
    for (let i = 0; i < idx.length; i++) grad[idx[i]] += gwv[i];
    gw.dispose();
    return vPrev;
  };

  /** Reverse pass over [t0, t1) from s (owned by the caller) with cotangent v at t1 (consumed). */
  const reverse = (s: State, t0: number, t1: number, v: State): State => {
    checkAbort();
    if (t1 - t0 <= k) {
      // Leaf: store every state of the segment, then walk back through it.
      const states: State[] = [s];
      for (let t = t0; t < t1 - 1; t++) {
        states.push(forward(states[states.length - 1], t));
        track(1);
      }
      for (let t = t1 - 1; t >= t0; t--) {
        const st = states[t - t0];
        const vPrev = backward(st, t, v);
        tf.dispose(v);
        v = vPrev;
        if (t > t0) {
          tf.dispose(st);
          track(-1);
        }
        opts.onProgress?.(stats.backwardSteps, T - from);
      }
      return v;
    }
    const bounds = splitSegments(t0, t1, k);
    const kept = new Map<number, State>([[t0, s]]);
    const inner = new Set(bounds.slice(1, -1));
    const end = advance(s, t0, bounds[bounds.length - 2], inner, kept);
    void end; // the last boundary is kept through `inner`
    for (let j = bounds.length - 2; j >= 0; j--) {
      const segStart = kept.get(bounds[j])!;
      v = reverse(segStart, bounds[j], bounds[j + 1], v);
      if (j > 0) {
        tf.dispose(segStart);
        track(-1);
      }
    }
    return v;
  };

  // Plain training up to the first differentiated step: no state is kept.
  let start = s0;
  for (let t = 0; t < from; t++) {
    const next = forward(start, t);
    tf.dispose(start);
    start = next;
    if (t % 50 === 49) checkAbort();
  }
  if (from > 0 && !isFinite(start)) {
    tf.dispose(start);
    throw new TrainingDivergedError(from - 1, trainer.lr(from - 1), 'the parameters became non-finite before the differentiated steps');
  }

  // Top level: train forward keeping the first level's boundaries, take φ and
  // its gradient at the end, then reverse through the segments.
  const bounds = splitSegments(from, T, k);
  const kept = new Map<number, State>([[from, start]]);
  const final = advance(start, from, T, new Set(bounds.slice(1, -1)), kept);
  if (T > from && !isFinite(final)) {
    const step = firstNonFiniteStep(kept, bounds);
    tf.dispose([...new Set([...kept.values(), final].flat())]);
    throw new TrainingDivergedError(step, trainer.lr(step), 'the parameters became non-finite');
  }
  const P = trainer.numParams;
  const params = final.slice(0, P);
  opts.atEnd?.(params);
  let targetLossValue = 0;
  let gParams: tf.Tensor[] = params.map((p) => tf.zerosLike(p));
  for (let c = 0; c < targetLoss.chunks; c++) {
    const [value, ...grads] = tf.tidy(() => {
      const r = tf.valueAndGrads((...p: tf.Tensor[]) => targetLoss.loss(p, c))(params);
      return [r.value, ...r.grads];
    });
    targetLossValue += (await value.data())[0];
    const summed = gParams.map((g, i) => tf.add(g, grads[i]));
    tf.dispose([value, ...grads, ...gParams]);
    gParams = summed;
  }
  let v: State = [...gParams, ...final.slice(P).map((t) => tf.zerosLike(t))];
  if (T > from && !bounds.slice(1, -1).includes(T)) {
    tf.dispose(final);
    track(-1);
  }
  for (let j = bounds.length - 2; j >= 0 && T > from; j--) {
    const segStart = kept.get(bounds[j])!;
    v = reverse(segStart, bounds[j], bounds[j + 1], v);
    tf.dispose(segStart);
    track(-1);
    await new Promise((r) => setImmediate(r));
  }
  tf.dispose(v);
  if (T === from) tf.dispose(start);
  return { grad, targetLoss: targetLossValue, stats };
}

export interface SmoothnessReport {
  /** φ at w, w + h·d, w + 2h·d for a random ±1 direction d. */
  phi: [number, number, number];
  h: number;
  /**
   * |Δ₂ − Δ₁| / max(|Δ₁|, |Δ₂|) with Δ₁ = φ₁ − φ₀, Δ₂ = φ₂ − φ₁: 0 when training
   * responds linearly to the weights at this scale, ≳ 1 when it is too rough for
   * metagradients to be useful (MGD's metasmoothness).
   */
  roughness: number;
  /** h·⟨g, d⟩ over Δ₁ when a metagradient g is given: ≈ 1 means it predicts the change. */
  predictedOverActual?: number;
}

/**
 * The metasmoothness diagnostic: trains three times, at w, w + h·d and w + 2h·d
 * along a seeded random ±1 direction d, and measures how linearly the target
 * loss responds. `train` builds and runs a trainer for given example weights.
 */
export async function metasmoothness(
  train: (weights: Float32Array) => Promise<number>,
  n: number,
  opts: { h?: number; seed?: number; weights?: Float32Array; grad?: Float32Array } = {},
): Promise<SmoothnessReport> {
  const h = opts.h ?? 0.1;
  const rng = Rng.derive(opts.seed ?? 0, 'metasmoothness');
  const d = Float32Array.from({ length: n }, () => (rng.next() < 0.5 ? -1 : 1));
  const base = opts.weights ?? new Float32Array(n).fill(1);
  const at = (s: number) => base.map((w, i) => w + s * h * d[i]);
  const phi: [number, number, number] = [await train(at(0)), await train(at(1)), await train(at(2))];
  const d1 = phi[1] - phi[0];
  const d2 = phi[2] - phi[1];
  const scale = Math.max(Math.abs(d1), Math.abs(d2));
  const roughness = scale === 0 ? 0 : Math.abs(d2 - d1) / scale;
  let predictedOverActual: number | undefined;
  if (opts.grad) {
    let dot = 0;
    for (let i = 0; i < n; i++) dot += opts.grad[i] * d[i];
    predictedOverActual = d1 === 0 ? undefined : (h * dot) / d1;
  }
  return { phi, h, roughness, predictedOverActual };
}
