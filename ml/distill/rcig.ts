/**
 * `rcig`: dataset distillation with convexified implicit gradients (Loo et al.
 * 2023), after the authors' public implementation. The method, its settings
 * and where this departs from the paper: docs/methods/distillation.md.
 *
 * The formulas the functions below implement. Inner model, for a pool model θ₀:
 *   f(x) = J(x) Δ + φ₀(x)ᵀ W,
 * the body linearised around θ₀ (ml/distill/linearize.ts; the constant
 * f(x; θ₀) is left out, as RCIG does) and W solved by kernel ridge regression
 * on θ₀'s penultimate features φ₀. With K = φ₀(X)φ₀(X)ᵀ, M = (K + λI)⁻¹,
 * E = Y − J(X)Δ and λ = ridge · n · mean diag(K) (RCIG: 0.0005 · n in its own
 * kernel scale), the inner loss is the convex quadratic
 *   L_in(Δ) = λ/(2nC) · (tr(Eᵀ M E) + ‖Δ‖²).
 * The outer loss is the cross-entropy of exp(τ)·f on real images; its gradient
 * in (X, Y) is the direct term at fixed Δ* minus the implicit term
 * ∂/∂(X, Y) ⟨h, ∇_Δ L_in(Δ*; X, Y)⟩ with h = H⁻¹ ∇_Δ L_out, H = ∇²_Δ L_in.
 * Δ* and h come from Adam solves; the implicit term is clipped to the direct
 * term's norm (per tensor) and dropped when not finite.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../../core/rng.js';
import { solveSpd, solveSpdHost } from '../linalg.js';
import { makeModel, type Model, type ModelSpec } from '../models.js';
import { makeOptimizer } from '../optim.js';
import { addAll, softmaxCrossEntropy } from '../ops.js';
import {
  allFinite, clampPixels, DistillDivergedError, initialRows, loadTensor, norm, oneHotRows, oneHotTargets,
  realBatch, sampleRows, saveTensor, softmaxRows, tidyObject, type Distiller, type RealSet, type SavedState, type StepReport,
} from './common.js';
import { disposePrimal, primalPass, tangentOut, zeroTangents, type Primal } from './linearize.js';

export interface RcigSettings {
  ipc: number;
  seed: number;
  /** Adam learning rate of the images and labels (RCIG: AdaBelief 0.003). */
  lr: number;
  /** Real images per outer step. */
  batchSize: number;
  /** The pool models' architecture: a convnet, norm 'none' or 'instance' (ml/distill/linearize.ts). */
  net: ModelSpec;
  poolSize: number;
  innerSteps: number;
  hinvSteps: number;
  /** Ridge factor: λ = ridge · n · mean diag(K). */
  ridge: number;
  learnLabels: boolean;
  /** Adam learning rate of the pool models' own training (RCIG: 5e-5). */
  poolLr: number;
  /** Pool models train 1 .. maxPoolSteps − 1 steps after each use. */
  maxPoolSteps: number;
  /** Pool training steps after which a model is re-initialised. */
  poolReset: number;
  emaDecay: number;
}

const TEMP_LR = 0.03;
const MONITOR_EVERY = 50;
const TUNE_START_LR = 1e-4;
const TUNE_MAX_TRIES = 16;

// ---------------------------------------------------------------------------
// The pieces of the hypergradient, as pure functions (tested one by one).

/** The inner problem for one pool model and a fixed synthetic set. */
export interface InnerProblem {
  model: Model;
  params: tf.Tensor[];
  /** θ₀'s pass over the synthetic images. */
  primal: Primal;
  /** M = (K + λI)⁻¹ [n, n]. */
  inv: tf.Tensor2D;
  /** λ / (nC). */
  scale: number;
  ys: tf.Tensor2D;
}

function sumSquares(ts: readonly tf.Tensor[]): tf.Scalar {
  return addAll(ts.map((t) => tf.sum(tf.square(t)))) as tf.Scalar;
}

function dotAll(a: readonly tf.Tensor[], b: readonly tf.Tensor[]): tf.Scalar {
  return addAll(a.map((t, i) => tf.sum(tf.mul(t, b[i])))) as tf.Scalar;
}

/** L_in(Δ) = scale/2 · (tr(Eᵀ M E) + ‖Δ‖²), E = Y − JΔ. */
export function innerLoss(p: InnerProblem, delta: readonly tf.Tensor[]): tf.Scalar {
  return tf.tidy(() => {
    const e = tf.sub(p.ys, tangentOut(p.model, p.params, p.primal, delta));
    const quad = tf.sum(tf.mul(e, tf.matMul(p.inv, e)));
    return tf.mul(tf.add(quad, sumSquares(delta)), p.scale / 2) as tf.Scalar;
  });
}

/** H v = scale · (Jᵀ M J v + v), the Hessian of L_in (constant: L_in is quadratic). */
export function hessianVectorProduct(p: InnerProblem, v: readonly tf.Tensor[]): tf.Tensor[] {
  return tf.tidy(() => {
    const mjv = tf.matMul(p.inv, tangentOut(p.model, p.params, p.primal, v));
    // Jᵀc as the gradient of the linear map Δ ↦ ⟨JΔ, c⟩ (at any Δ).
    const jtc = tf.grads((...d: tf.Tensor[]) => tf.sum(tf.mul(tangentOut(p.model, p.params, p.primal, d), mjv)) as tf.Scalar)(v as tf.Tensor[]);
    return jtc.map((g, i) => tf.mul(tf.add(g, v[i]), p.scale));
  });
}

/** ½xᵀHx − xᵀg, whose minimiser is H⁻¹g. */
export function hinvObjective(p: InnerProblem, g: readonly tf.Tensor[], x: readonly tf.Tensor[]): tf.Scalar {
  return tf.tidy(() => {
    const jx = tangentOut(p.model, p.params, p.primal, x);
    const quad = tf.add(tf.sum(tf.mul(jx, tf.matMul(p.inv, jx))), sumSquares(x));
    return tf.sub(tf.mul(quad, p.scale / 2), dotAll(x, g)) as tf.Scalar;
  });
}

/**
 * Minimises `f` from `x0` with `steps` Adam steps at learning rate `lr`;
 * returns the last iterate and f before each step (for the monitors). Takes
 * ownership of `x0` (disposes it).
 */
export function adamMinimise(f: (x: tf.Tensor[]) => tf.Scalar, x0: tf.Tensor[], steps: number, lr: number): { x: tf.Tensor[]; losses: number[] } {
  const opt = makeOptimizer({ kind: 'adam', lr });
  let x = x0;
  let slots = opt.initSlots(x);
  const losses: number[] = [];
  for (let i = 0; i < steps; i++) {
    const { value, grads } = tf.valueAndGrads((...xs: tf.Tensor[]) => f(xs))(x);
    losses.push(value.dataSync()[0]);
    const next = tf.tidy(() => opt.update(x, grads, slots, lr, i));
    tf.dispose([value, ...grads, ...x, ...slots]);
    x = next.params;
    slots = next.slots;
  }
  tf.dispose(slots);
  return { x, losses };
}

/** 1: fell at every step; −1: ended above where it started; 0: in between (RCIG's monitor). */
export function classifyLosses(losses: readonly number[]): number {
  if (losses.length < 2 || losses.some((l) => !Number.isFinite(l))) return losses.length < 2 ? 0 : -1;
  if (losses.every((l, i) => i === 0 || l < losses[i - 1])) return 1;
  return losses[losses.length - 1] > losses[0] ? -1 : 0;
}

/**
 * direct + implicit, tensor by tensor, with the implicit term scaled down to the
 * direct term's norm when larger (RCIG's clip) and dropped when not finite (an
 * exploding H⁻¹ solve). `ratio`: the largest ‖implicit‖/‖direct‖ before clipping.
 */
export function combineGradients(direct: readonly tf.Tensor[], implicit: readonly tf.Tensor[]): { total: tf.Tensor[]; dropped: number; ratio: number } {
  let dropped = 0;
  let ratio = 0;
  const total = direct.map((d, i) => {
    const gi = implicit[i];
    const ni = norm(gi);
    const nd = norm(d);
    if (!Number.isFinite(ni)) {
      dropped++;
      return tf.clone(d);
    }
    ratio = Math.max(ratio, nd > 0 ? ni / nd : 0);
    const factor = ni > nd ? nd / ni : 1;
    return tf.tidy(() => tf.add(d, tf.mul(gi, factor)));
  });
  return { total, dropped, ratio };
}

/** θ₀'s kernel quantities on the synthetic set: φ, λ (absolute) and M on the host. */
export function kernelSetup(features: tf.Tensor2D, ridge: number): { lambda: number; inv: tf.Tensor2D } {
  const n = features.shape[0];
  const k = tf.tidy(() => tf.matMul(features, features, false, true).dataSync());
  let trace = 0;
  for (let i = 0; i < n; i++) trace += k[i * n + i];
  const lambda = ridge * n * (trace / n) + 1e-30;
  const a = Float64Array.from(k);
  for (let i = 0; i < n; i++) a[i * n + i] += lambda;
  const eye = new Float64Array(n * n);
  for (let i = 0; i < n; i++) eye[i * n + i] = 1;
  const inv = solveSpdHost(a, eye, n, n);
  return { lambda, inv: tf.tensor2d(Float32Array.from(inv), [n, n]) };
}

/**
 * The outer loss at Δ, differentiable in the synthetic images and labels, the
 * log-temperature and Δ: CE(exp(τ)·(J_t Δ + K_ts (K_ss + λI)⁻¹ (Y − J_s Δ)), y_t).
 */
export function outerLoss(
  model: Model, params: readonly tf.Tensor[], xs: tf.Tensor4D, ys: tf.Tensor2D, logTemp: tf.Tensor, delta: readonly tf.Tensor[],
  target: Primal, targets: tf.Tensor2D, lambda: number,
): tf.Scalar {
  return tf.tidy(() => {
    const ps = primalPass(model, params, xs);
    const n = xs.shape[0];
    const kss = tf.add(tf.matMul(ps.features, ps.features, false, true), tf.mul(tf.eye(n), lambda)) as tf.Tensor2D;
    const kts = tf.matMul(target.features, ps.features, false, true);
    const resid = tf.sub(ys, tangentOut(model, params, ps, delta)) as tf.Tensor2D;
    const preds = tf.add(tangentOut(model, params, target, delta), tf.matMul(kts, solveSpd(kss, resid)));
    return softmaxCrossEntropy(tf.mul(preds, tf.exp(logTemp)), targets);
  });
}

/**
 * −⟨h, ∇_Δ L_in(Δ; X, Y)⟩ up to terms constant in (X, Y): its gradient in
 * (X, Y) is the implicit term. With ∂L_in/∂(JΔ) = −scale·M E it is
 *   scale · ⟨(K(X) + λI)⁻¹ (Y − J(X)Δ), J(X) h⟩.
 */
export function implicitObjective(
  model: Model, params: readonly tf.Tensor[], xs: tf.Tensor4D, ys: tf.Tensor2D, delta: readonly tf.Tensor[], h: readonly tf.Tensor[],
  lambda: number, scale: number,
): tf.Scalar {
  return tf.tidy(() => {
    const ps = primalPass(model, params, xs);
    const n = xs.shape[0];
    const kss = tf.add(tf.matMul(ps.features, ps.features, false, true), tf.mul(tf.eye(n), lambda)) as tf.Tensor2D;
    const e = tf.sub(ys, tangentOut(model, params, ps, delta)) as tf.Tensor2D;
    return tf.mul(tf.sum(tf.mul(solveSpd(kss, e), tangentOut(model, params, ps, h))), scale) as tf.Scalar;
  });
}

// ---------------------------------------------------------------------------
// The distiller.

interface PoolModel {
  params: tf.Tensor[];
  slots: tf.Tensor[];
  trainIt: number;
  generation: number;
}

export function createRcigDistiller(real: RealSet, s: RcigSettings, saved?: SavedState): Distiller {
  const k = real.numClasses;
  const { rows, classes } = initialRows(real, s.ipc, s.seed);
  const n = rows.length;
  const model = makeModel(s.net, { inputShape: real.shape, numClasses: k });
  const np = model.paramShapes.length;
  const opt = makeOptimizer({ kind: 'adam', lr: s.lr });
  const tempOpt = makeOptimizer({ kind: 'adam', lr: TEMP_LR });
  const poolOpt = makeOptimizer({ kind: 'adam', lr: s.poolLr });
  const load = (name: string) => loadTensor(saved!, name);
  const sc = saved?.scalars ?? {};

  let xs = saved ? load('xs') : realBatch(real, rows);
  let ys = saved ? load('ys') : tf.tensor2d(oneHotRows(classes, k, 1 / k), [n, k]);
  let logTemp = saved ? load('logTemp') : tf.scalar(0);
  const learnedCount = s.learnLabels ? 2 : 1;
  let slots: tf.Tensor[] = saved ? Array.from({ length: 2 * learnedCount }, (_, j) => load(`slot${j}`)) : opt.initSlots(s.learnLabels ? [xs, ys] : [xs]);
  let tempSlots: tf.Tensor[] = saved ? [load('tempSlot0'), load('tempSlot1')] : tempOpt.initSlots([logTemp]);
  let ema: tf.Tensor[] = saved ? [load('emaX'), load('emaY'), load('emaT')] : [tf.zerosLike(xs), tf.zerosLike(ys), tf.zerosLike(logTemp)];
  let adamStep = sc.adamStep ?? 0;
  let innerLr = sc.innerLr ?? 0;
  let hvpLr = sc.hvpLr ?? 0;
  const monitor = {
    inner: [sc.innerFail ?? 0, sc.innerMono ?? 0, sc.innerCount ?? 0],
    hvp: [sc.hvpFail ?? 0, sc.hvpMono ?? 0, sc.hvpCount ?? 0],
  };
  let implicitDropped = sc.implicitDropped ?? 0;
  let innerSkipped = sc.innerSkipped ?? 0;
  const pool: (PoolModel | undefined)[] = Array.from({ length: s.poolSize }, (_, i) => {
    if (!saved || sc[`pool${i}.trainIt`] === undefined) return undefined;
    return {
      params: Array.from({ length: np }, (_, j) => load(`pool${i}.p${j}`)),
      slots: Array.from({ length: 2 * np }, (_, j) => load(`pool${i}.s${j}`)),
      trainIt: sc[`pool${i}.trainIt`],
      generation: sc[`pool${i}.generation`],
    };
  });

  const freshModel = (i: number, generation: number): PoolModel => {
    const params = model.init(Rng.derive(s.seed, `rcig/pool/${i}/${generation}`).nextUint32());
    return { params, slots: poolOpt.initSlots(params), trainIt: 0, generation };
  };
  const poolModel = (i: number): PoolModel => (pool[i] ??= freshModel(i, 0));

  /** Fixed per step: θ₀'s pass over the current synthetic set, λ and M. */
  const setupInner = (params: tf.Tensor[]): InnerProblem & { lambda: number } => {
    const primal = tidyObject(() => primalPass(model, params, xs as tf.Tensor4D));
    const { lambda, inv } = kernelSetup(primal.features, s.ridge);
    return { model, params, primal, inv, scale: lambda / (n * k), ys: ys as tf.Tensor2D, lambda };
  };
  const disposeInner = (p: InnerProblem) => {
    disposePrimal(p.primal);
    p.inv.dispose();
  };

  const solveInner = (p: InnerProblem, lr: number) =>
    adamMinimise((d) => innerLoss(p, d), zeroTangents(model, p.params), s.innerSteps, lr);
  const solveHinv = (p: InnerProblem, g: tf.Tensor[], lr: number) =>
    adamMinimise((x) => hinvObjective(p, g, x), g.map((t) => tf.zerosLike(t)), s.hinvSteps, lr);

  /** RCIG's start: the largest learning rate (×2 steps) whose losses still fall monotonically, × 0.7. */
  const tune = (run: (lr: number) => { x: tf.Tensor[]; losses: number[] }): number => {
    let lr = TUNE_START_LR;
    let good = 0;
    for (let i = 0; i < TUNE_MAX_TRIES; i++) {
      const r = run(lr);
      tf.dispose(r.x);
      if (classifyLosses(r.losses) === 1) {
        good = lr;
        lr *= 2;
      } else if (good > 0) break;
      else lr /= 4;
    }
    return 0.7 * (good || lr);
  };

  const adapt = (stats: number[], outcome: number, lr: number): number => {
    if (outcome === -1) stats[0]++;
    if (outcome === 1) stats[1]++;
    stats[2]++;
    if (stats[2] < MONITOR_EVERY) return lr;
    const [fail, mono, count] = stats;
    stats.fill(0);
    if (fail / count >= 0.29) return lr * 0.9;
    if (mono / count >= 0.7) return lr * 1.05;
    return lr;
  };

  const targetBatch = (rng: Rng, params: tf.Tensor[]) => {
    const idx = sampleRows(real, rng, s.batchSize);
    return tidyObject(() => ({ primal: primalPass(model, params, realBatch(real, idx)), targets: oneHotTargets(real, idx) }));
  };
  const disposeTarget = (t: { primal: Primal; targets: tf.Tensor2D }) => {
    tf.dispose([t.primal.layers[0].input, t.targets]);
    disposePrimal(t.primal);
  };

  /** Trains pool model i for `steps` plain Adam steps on the synthetic set (MSE), re-initialising it when due. */
  const trainPool = (i: number, steps: number) => {
    const m = poolModel(i);
    const mseLoss = (...p: tf.Tensor[]) => tf.div(tf.sum(tf.square(tf.sub(model.apply(p, xs), ys))), 2 * n * k) as tf.Scalar;
    for (let j = 0; j < steps; j++) {
      const grads = tf.grads(mseLoss)(m.params);
      const next = tf.tidy(() => poolOpt.update(m.params, grads, m.slots, s.poolLr, m.trainIt));
      tf.dispose([...grads, ...m.params, ...m.slots]);
      m.params = next.params;
      m.slots = next.slots;
      m.trainIt++;
    }
    if (m.trainIt >= s.poolReset || !allFinite(m.params)) {
      tf.dispose([...m.params, ...m.slots]);
      pool[i] = freshModel(i, m.generation + 1);
    }
  };

  return {
    step(t: number): StepReport {
      const rng = Rng.derive(s.seed, `rcig/step/${t}`);
      const slot = rng.int(s.poolSize);
      const m = poolModel(slot);
      const inner = setupInner(m.params);
      const target = targetBatch(rng, m.params);
      const held: tf.Tensor[] = [];
      try {
        if (innerLr === 0) innerLr = tune((lr) => solveInner(inner, lr));
        const innerRun = solveInner(inner, innerLr);
        const delta = innerRun.x;
        held.push(...delta);
        innerLr = adapt(monitor.inner, classifyLosses(innerRun.losses), innerLr);
        if (!allFinite(delta)) {
          // Too large an inner step: shrink it and try again next step; the synthetic set is untouched.
          innerLr *= 0.5;
          innerSkipped++;
          return { loss: NaN, skipped: 'the inner solve diverged; its learning rate is halved', details: { innerSkipped } };
        }

        // Direct term and ∇_Δ L_out, in one reverse pass.
        const learned = s.learnLabels ? [xs, ys] : [xs];
        const outer = (...p: tf.Tensor[]) => outerLoss(
          model, m.params, p[0] as tf.Tensor4D, (s.learnLabels ? p[1] : ys) as tf.Tensor2D, p[learned.length],
          p.slice(learned.length + 1), target.primal, target.targets, inner.lambda);
        const { value, grads } = tf.valueAndGrads(outer)([...learned, logTemp, ...delta]);
        held.push(value, ...grads);
        const loss = value.dataSync()[0];
        const direct = grads.slice(0, learned.length);
        const gTemp = grads[learned.length];
        const gDelta = grads.slice(learned.length + 1);
        if (!Number.isFinite(loss) || !allFinite(direct) || !allFinite([gTemp])) {
          throw new DistillDivergedError(t, `the outer loss or its direct gradient is not finite (loss ${loss})`);
        }

        // h = H⁻¹ ∇_Δ L_out, then the implicit term.
        if (hvpLr === 0) hvpLr = tune((lr) => solveHinv(inner, gDelta, lr));
        const hRun = solveHinv(inner, gDelta, hvpLr);
        held.push(...hRun.x);
        hvpLr = adapt(monitor.hvp, classifyLosses(hRun.losses), hvpLr);
        const implicitFn = (...p: tf.Tensor[]) => implicitObjective(
          model, m.params, p[0] as tf.Tensor4D, (s.learnLabels ? p[1] : ys) as tf.Tensor2D, delta, hRun.x, inner.lambda, inner.scale);
        const implicit = tf.grads(implicitFn)(learned);
        held.push(...implicit);
        const combined = combineGradients(direct, implicit);
        const total = combined.total;
        implicitDropped += combined.dropped;
        const ratio = combined.ratio;
        held.push(...total);

        const next = tf.tidy(() => opt.update(learned, total, slots, s.lr, adamStep));
        const nextTemp = tf.tidy(() => tempOpt.update([logTemp], [gTemp], tempSlots, TEMP_LR, adamStep));
        tf.dispose([...slots, ...tempSlots, logTemp, xs]);
        xs = clampPixels(real, next.params[0] as tf.Tensor4D);
        tf.dispose(next.params[0]);
        if (s.learnLabels) {
          ys.dispose();
          ys = next.params[1];
        }
        slots = next.slots;
        logTemp = nextTemp.params[0];
        tempSlots = nextTemp.slots;
        adamStep++;
        const d = s.emaDecay;
        const nextEma = tf.tidy(() => [xs, ys, logTemp].map((p, i) => tf.add(tf.mul(ema[i], d), tf.mul(p, 1 - d))));
        tf.dispose(ema);
        ema = nextEma;
        trainPool(slot, 1 + rng.int(Math.max(1, s.maxPoolSteps - 1)));
        return {
          loss,
          details: { innerLr, hvpLr, implicitRatio: ratio, implicitDropped, temperature: Math.exp(logTemp.dataSync()[0]) },
        };
      } finally {
        tf.dispose(held);
        disposeInner(inner);
        disposeTarget(target);
      }
    },

    save(): SavedState {
      const tensors: SavedState['tensors'] = {
        xs: saveTensor(xs), ys: saveTensor(ys), logTemp: saveTensor(logTemp),
        emaX: saveTensor(ema[0]), emaY: saveTensor(ema[1]), emaT: saveTensor(ema[2]),
      };
      slots.forEach((t, j) => { tensors[`slot${j}`] = saveTensor(t); });
      tempSlots.forEach((t, j) => { tensors[`tempSlot${j}`] = saveTensor(t); });
      const scalars: Record<string, number> = {
        adamStep, innerLr, hvpLr, implicitDropped, innerSkipped,
        innerFail: monitor.inner[0], innerMono: monitor.inner[1], innerCount: monitor.inner[2],
        hvpFail: monitor.hvp[0], hvpMono: monitor.hvp[1], hvpCount: monitor.hvp[2],
      };
      pool.forEach((pm, i) => {
        if (!pm) return;
        scalars[`pool${i}.trainIt`] = pm.trainIt;
        scalars[`pool${i}.generation`] = pm.generation;
        pm.params.forEach((t, j) => { tensors[`pool${i}.p${j}`] = saveTensor(t); });
        pm.slots.forEach((t, j) => { tensors[`pool${i}.s${j}`] = saveTensor(t); });
      });
      return { scalars, tensors };
    },

    result() {
      // The EMA with bias correction; before any step, the current set.
      const corr = adamStep > 0 ? 1 - s.emaDecay ** adamStep : 1;
      const pick = (i: number, cur: tf.Tensor) => (adamStep > 0 ? (ema[i].dataSync() as Float32Array).map((v) => v / corr) : Float32Array.from(cur.dataSync() as Float32Array));
      const x = pick(0, xs);
      const y = pick(1, ys);
      const temp = Math.exp(pick(2, logTemp)[0]);
      // The EMA of clamped images is inside the range too; clamp for rounding only.
      return { x, softLabels: softmaxRows(y, k, temp), classes };
    },

    evalLoss(seed: number): number {
      // The outer loss after an inner solve, for a fixed fresh model and batch.
      const params = model.init(Rng.derive(seed, 'rcig/eval-model').nextUint32());
      const p = setupInner(params);
      const target = targetBatch(Rng.derive(seed, 'rcig/eval-batch'), params);
      const lr = innerLr || tune((l) => solveInner(p, l));
      const r = solveInner(p, lr);
      try {
        return tf.tidy(() => outerLoss(model, params, xs as tf.Tensor4D, ys as tf.Tensor2D, logTemp, r.x, target.primal, target.targets, p.lambda).dataSync()[0]);
      } finally {
        tf.dispose([...r.x, ...params]);
        disposeInner(p);
        disposeTarget(target);
      }
    },

    dispose() {
      tf.dispose([xs, ys, logTemp, ...slots, ...tempSlots, ...ema]);
      for (const pm of pool) if (pm) tf.dispose([...pm.params, ...pm.slots]);
    },
  };
}
