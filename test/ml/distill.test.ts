// The distillation methods' mathematics on tiny problems: the linearised
// ConvNet against finite differences, RCIG's Hessian-vector product, Adam
// H⁻¹ solve and whole hypergradient (direct + implicit term) against a direct
// solve and finite differences; then each method's own objective falls over a
// few steps, and a saved state continues exactly.
import * as tf from '@tensorflow/tfjs';
import { addAll } from '../../ml/ops.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../core/rng.js';
import { initBackend } from '../../ml/backend.js';
import { makeRealSet, type RealSet } from '../../ml/distill/common.js';
import { createDistiller, type MethodSettings } from '../../ml/distill/index.js';
import { disposePrimal, primalPass, tangentIndices, tangentOut, type Primal } from '../../ml/distill/linearize.js';
import {
  adamMinimise, classifyLosses, combineGradients, hessianVectorProduct, hinvObjective, implicitObjective, innerLoss, outerLoss, type InnerProblem,
} from '../../ml/distill/rcig.js';
import { solveSpdHost } from '../../ml/linalg.js';
import { makeModel, type Model } from '../../ml/models.js';
import { compare, concat, dot, randn, type Arg } from './fd.js';

const t = (a: Arg) => tf.tensor(a.values, a.shape, 'float32');
const IO = { inputShape: [6, 6, 1] as [number, number, number], numClasses: 2 };

beforeAll(async () => {
  await initBackend('wasm');
});

function tinyModel(norm: 'none' | 'instance' = 'none'): { model: Model; params: tf.Tensor[] } {
  const model = makeModel({ kind: 'convnet', width: 3, depth: norm === 'none' ? 1 : 2, norm }, IO);
  const params = model.init(5);
  // Non-trivial norm scales and shifts (init: ones and zeros).
  return { model, params: params.map((p, i) => (model.paramShapes[i].name.includes('norm') ? tf.add(p, t(randn(p.shape, 80 + i, 0.3))) : p)) };
}

function tangentArgs(model: Model, seed: number, scale = 1): Arg[] {
  return tangentIndices(model).map((i, k) => randn(model.paramShapes[i].shape, seed + k, scale));
}

const flat = (ts: readonly tf.Tensor[]) => concat(ts.map((x) => x.dataSync()));

describe('linearised ConvNet', () => {
  it.each(['none', 'instance'] as const)('norm %s: its primal pass is the model, and its tangent is the directional derivative', (norm) => {
    const { model, params } = tinyModel(norm);
    const x = t(randn([4, 6, 6, 1], 1)) as tf.Tensor4D;
    const primal = primalPass(model, params, x);
    const apply = model.apply(params, x).dataSync();
    Array.from(primal.out.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(apply[i], 5));
    const feats = model.features(params, x).dataSync();
    Array.from(primal.features.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(feats[i], 5));

    const delta = tangentArgs(model, 10).map(t);
    const jvp = tangentOut(model, params, primal, delta).dataSync();
    const idx = tangentIndices(model);
    const h = 1e-3;
    const shifted = (sign: number) => params.map((p, i) => {
      const k = idx.indexOf(i);
      return k < 0 ? p : tf.add(p, tf.mul(delta[k], sign * h));
    });
    const plus = model.apply(shifted(1), x).dataSync();
    const minus = model.apply(shifted(-1), x).dataSync();
    const fd = Array.from(plus, (v, i) => (v - minus[i]) / (2 * h));
    // Central differences straddle a few ReLU kinks; the nested-reverse-mode JVP,
    // d/du ⟨Jᵀu, Δ⟩ (exact with the patched second derivatives), has none.
    expect(compare(jvp, fd).relErr).toBeLessThan(3e-2);
    const u0 = tf.zeros(primal.out.shape);
    const exact = tf.grad((u: tf.Tensor) => {
      const jtu = tf.grads((...p: tf.Tensor[]) => tf.sum(tf.mul(model.apply(p, x), u)) as tf.Scalar)(params);
      return addAll(idx.map((i, k) => tf.sum(tf.mul(jtu[i], delta[k])))) as tf.Scalar;
    })(u0).dataSync();
    expect(compare(jvp, exact).relErr).toBeLessThan(1e-4);
    disposePrimal(primal);
  });
});

/** The inner problem for a fixed ridge λ (setupInner would derive it from K). */
function innerProblem(model: Model, params: tf.Tensor[], xs: tf.Tensor4D, ys: tf.Tensor2D, lambda: number): InnerProblem {
  const primal = primalPass(model, params, xs);
  const n = xs.shape[0];
  const k = tf.matMul(primal.features, primal.features, false, true).dataSync();
  const a = Float64Array.from(k);
  for (let i = 0; i < n; i++) a[i * n + i] += lambda;
  const eye = new Float64Array(n * n);
  for (let i = 0; i < n; i++) eye[i * n + i] = 1;
  const inv = tf.tensor2d(Float32Array.from(solveSpdHost(a, eye, n, n)), [n, n]);
  return { model, params, primal, inv, scale: lambda / (n * IO.numClasses), ys };
}

/** H as a dense matrix, column by column from Hessian-vector products. */
function denseHessian(p: InnerProblem): { h: Float64Array; dim: number; shapes: number[][] } {
  const shapes = tangentIndices(p.model).map((i) => p.model.paramShapes[i].shape);
  const sizes = shapes.map((s) => s.reduce((a, b) => a * b, 1));
  const dim = sizes.reduce((a, b) => a + b, 0);
  const h = new Float64Array(dim * dim);
  for (let j = 0; j < dim; j++) {
    const e = new Float32Array(dim);
    e[j] = 1;
    let o = 0;
    const v = shapes.map((s, k) => { const part = tf.tensor(e.slice(o, o + sizes[k]), s); o += sizes[k]; return part; });
    const col = flat(hessianVectorProduct(p, v));
    for (let i = 0; i < dim; i++) h[i * dim + j] = col[i];
  }
  return { h, dim, shapes };
}

function unflatten(values: ArrayLike<number>, shapes: number[][]): tf.Tensor[] {
  let o = 0;
  return shapes.map((s) => {
    const size = s.reduce((a, b) => a * b, 1);
    const part = tf.tensor(Float32Array.from(Array.from(values).slice(o, o + size)), s);
    o += size;
    return part;
  });
}

/** Δ* = H⁻¹(−∇L_in(0)) exactly: L_in is quadratic. */
function exactInner(p: InnerProblem): tf.Tensor[] {
  const { h, dim, shapes } = denseHessian(p);
  const zeros = unflatten(new Float32Array(dim), shapes);
  const g0 = flat(tf.grads((...d: tf.Tensor[]) => innerLoss(p, d))(zeros));
  return unflatten(solveSpdHost(h, g0.map((v) => -v), dim, 1), shapes);
}

describe('RCIG hypergradient', () => {
  let model: Model;
  let params: tf.Tensor[];
  beforeAll(() => {
    ({ model, params } = tinyModel());
  });
  const lambda = 0.05;
  const xs0 = randn([4, 6, 6, 1], 21);
  const ys0: Arg = { shape: [4, 2], values: Float32Array.from([0.5, -0.5, -0.5, 0.5, 0.5, -0.5, -0.5, 0.5]) };
  const xt = () => t(randn([6, 6, 6, 1], 22)) as tf.Tensor4D;
  const targets = () => tf.oneHot(tf.tensor1d([0, 1, 0, 1, 1, 0], 'int32'), 2) as tf.Tensor2D;

  it('the Hessian-vector product is the derivative of the inner gradient', () => {
    tf.tidy(() => {
      const p = innerProblem(model, params, t(xs0) as tf.Tensor4D, t(ys0) as tf.Tensor2D, lambda);
      const at = tangentArgs(model, 30, 0.3).map(t);
      const v = tangentArgs(model, 40).map(t);
      const grad = (d: tf.Tensor[]) => flat(tf.grads((...dd: tf.Tensor[]) => innerLoss(p, dd))(d));
      const eps = 1e-2;
      const gp = grad(at.map((a, i) => tf.add(a, tf.mul(v[i], eps))));
      const gm = grad(at.map((a, i) => tf.sub(a, tf.mul(v[i], eps))));
      const fd = gp.map((g, i) => (g - gm[i]) / (2 * eps));
      expect(compare(flat(hessianVectorProduct(p, v)), fd).relErr).toBeLessThan(1e-2);
    });
  });

  it('Adam on ½hᵀHh − hᵀg approaches H⁻¹g (the direct solve)', () => {
    tf.tidy(() => {
      const p = innerProblem(model, params, t(xs0) as tf.Tensor4D, t(ys0) as tf.Tensor2D, lambda);
      const g = tangentArgs(model, 50).map(t);
      const { h, dim } = denseHessian(p);
      const exact = solveSpdHost(h, flat(g), dim, 1);
      const lr = 0.05 * Math.max(...Array.from(exact, Math.abs));
      const run = adamMinimise((x) => hinvObjective(p, g, x), g.map((x) => tf.zerosLike(x)), 300, lr);
      const r = compare(flat(run.x), exact);
      expect(r.cosine).toBeGreaterThan(0.99);
      expect(r.relErr).toBeLessThan(0.1);
      // The objective's minimum is −½gᵀH⁻¹g; Adam gets most of the way there.
      const qStar = -0.5 * dot(flat(g), exact);
      expect(run.losses[run.losses.length - 1] / qStar).toBeGreaterThan(0.98);
    });
  });

  it('direct + implicit term = the derivative of the outer loss at the inner optimum (finite differences)', () => {
    tf.tidy(() => {
      const primalT: Primal = primalPass(model, params, xt());
      const tg = targets();
      const logTemp = tf.scalar(0.3);
      /** F(X, Y) = L_out(X, Y, Δ*(X, Y)), with the inner problem solved exactly. */
      const F = (x: tf.Tensor, y: tf.Tensor): number => tf.tidy(() => {
        const p = innerProblem(model, params, x as tf.Tensor4D, y as tf.Tensor2D, lambda);
        const d = exactInner(p);
        return outerLoss(model, params, x as tf.Tensor4D, y as tf.Tensor2D, logTemp, d, primalT, tg, lambda).dataSync()[0];
      });
      const xs = t(xs0) as tf.Tensor4D;
      const ys = t(ys0) as tf.Tensor2D;
      const p = innerProblem(model, params, xs, ys, lambda);
      const delta = exactInner(p);
      const grads = tf.grads((...a: tf.Tensor[]) =>
        outerLoss(model, params, a[0] as tf.Tensor4D, a[1] as tf.Tensor2D, logTemp, a.slice(2), primalT, tg, lambda))([xs, ys, ...delta]);
      const gDelta = grads.slice(2);
      const { h, dim, shapes } = denseHessian(p);
      const hv = unflatten(solveSpdHost(h, flat(gDelta), dim, 1), shapes);
      const implicit = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
        implicitObjective(model, params, a as tf.Tensor4D, b as tf.Tensor2D, delta, hv, lambda, p.scale))([xs, ys]);
      const total = [tf.add(grads[0], implicit[0]), tf.add(grads[1], implicit[1])];
      // The implicit term matters here: without it the check would fail.
      expect(Math.sqrt(tf.sum(tf.square(implicit[1])).dataSync()[0])).toBeGreaterThan(1e-3);

      const analytic: number[] = [];
      const numeric: number[] = [];
      const directOnly: number[] = [];
      const eps = 1e-3;
      for (let k = 0; k < 4; k++) {
        const dx = t(randn([4, 6, 6, 1], 60 + k));
        const dy = t(randn([4, 2], 70 + k));
        analytic.push(tf.sum(tf.mul(total[0], dx)).dataSync()[0] + tf.sum(tf.mul(total[1], dy)).dataSync()[0]);
        directOnly.push(tf.sum(tf.mul(grads[0], dx)).dataSync()[0] + tf.sum(tf.mul(grads[1], dy)).dataSync()[0]);
        numeric.push((F(tf.add(xs, tf.mul(dx, eps)), tf.add(ys, tf.mul(dy, eps))) - F(tf.sub(xs, tf.mul(dx, eps)), tf.sub(ys, tf.mul(dy, eps)))) / (2 * eps));
      }
      const r = compare(analytic, numeric);
      expect(r.relErr).toBeLessThan(3e-2);
      expect(compare(directOnly, numeric).relErr).toBeGreaterThan(5 * r.relErr);
    });
  });

  it('clips the implicit term to the direct term\'s norm and drops it when not finite', () => {
    tf.tidy(() => {
      const direct = [tf.tensor1d([3, 4]), tf.tensor1d([1, 0]), tf.tensor1d([0, 2])];
      const implicit = [tf.tensor1d([0, 50]), tf.tensor1d([NaN, 1]), tf.tensor1d([0, 1])];
      const r = combineGradients(direct, implicit);
      expect(Array.from(r.total[0].dataSync())).toEqual([3, 9]); // ‖(0, 50)‖ clipped to 5
      expect(Array.from(r.total[1].dataSync())).toEqual([1, 0]); // NaN: direct only
      expect(Array.from(r.total[2].dataSync())).toEqual([0, 3]); // smaller: kept
      expect(r.dropped).toBe(1);
      expect(r.ratio).toBe(10);
    });
  });

  it('classifies solver runs as RCIG does', () => {
    expect(classifyLosses([3, 2, 1])).toBe(1);
    expect(classifyLosses([3, 1, 2])).toBe(0);
    expect(classifyLosses([1, 0.5, 2])).toBe(-1);
    expect(classifyLosses([1, NaN])).toBe(-1);
  });
});

/** Separable toy images: class c lights up column band c (6×6, 3 classes, 12 per class). */
function toyReal(): RealSet {
  const k = 3;
  const n = 36;
  const rng = new Rng(3);
  const pixels = new Uint8Array(n * 36);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % k;
    labels[i] = c;
    for (let j = 0; j < 36; j++) {
      const inBand = Math.floor(((j % 6) * k) / 6) === c;
      pixels[i * 36 + j] = Math.round(255 * Math.min(1, 0.6 * rng.next() + (inBand ? 0.4 : 0)));
    }
  }
  return makeRealSet(pixels, [6, 6, 1], labels, k);
}

const NET = { kind: 'convnet' as const, width: 4, depth: 1, norm: 'none' as const };
const SETTINGS: MethodSettings[] = [
  { method: 'krr', ipc: 2, seed: 1, lr: 0.05, batchSize: 24, net: NET, nets: 2, renewEvery: 100, ridge: 1e-2, learnLabels: true, loss: 'ce' },
  { method: 'krr', ipc: 2, seed: 2, lr: 0.05, batchSize: 24, net: NET, nets: 1, renewEvery: 1, ridge: 1e-2, learnLabels: false, loss: 'mse' },
  { method: 'dm', ipc: 2, seed: 1, lr: 1, batchSize: 8, net: { ...NET, norm: 'instance' } },
  {
    method: 'rcig', ipc: 2, seed: 1, lr: 0.03, batchSize: 24, net: NET, poolSize: 1, innerSteps: 5, hinvSteps: 5, ridge: 5e-4,
    learnLabels: true, poolLr: 5e-5, maxPoolSteps: 3, poolReset: 1000, emaDecay: 0.9,
  },
  {
    method: 'rcig', ipc: 1, seed: 3, lr: 0.03, batchSize: 24, net: { ...NET, norm: 'instance' }, poolSize: 2, innerSteps: 4, hinvSteps: 4, ridge: 5e-4,
    learnLabels: false, poolLr: 1e-3, maxPoolSteps: 3, poolReset: 4, emaDecay: 0.9,
  },
];

describe('distillers', () => {
  for (const settings of SETTINGS) {
    it(`${settings.method} (${settings.method === 'krr' ? settings.loss : 'default'}, ${settings.net.kind === 'convnet' ? settings.net.norm : ''} norm): a few steps lower its own objective, and a saved state continues exactly`, () => {
      const real = toyReal();
      const d = createDistiller(real, settings);
      const before = d.evalLoss(99);
      for (let s = 0; s < 5; s++) expect(Number.isFinite(d.step(s).loss)).toBe(true);
      // No tensor leaks from one step to the next.
      const live = tf.memory().numTensors;
      d.step(5);
      expect(tf.memory().numTensors).toBe(live);
      const after = d.evalLoss(99);
      expect(after).toBeLessThan(before);

      // Continue from a saved state: the same as continuing in place.
      const saved = d.save();
      const resumed = createDistiller(real, settings, saved);
      for (let s = 6; s < 8; s++) {
        expect(resumed.step(s).loss).toBe(d.step(s).loss);
      }
      const a = d.result();
      const b = resumed.result();
      expect(Array.from(b.x)).toEqual(Array.from(a.x));
      expect(Array.from(b.softLabels)).toEqual(Array.from(a.softLabels));
      for (let r = 0; r < a.classes.length; r++) {
        const row = a.softLabels.slice(r * 3, r * 3 + 3);
        expect(row.reduce((x, y) => x + y, 0)).toBeCloseTo(1, 5);
      }
      expect(a.x.every(Number.isFinite)).toBe(true);
      d.dispose();
      resumed.dispose();
    });
  }
});
