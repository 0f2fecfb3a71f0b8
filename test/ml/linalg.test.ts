// The host Cholesky solve and the differentiable solveSpd: values against the
// definition, gradients against central finite differences (float32), alone and
// through a small kernel ridge regression loss.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../ml/backend.js';
import { krrPredict, randomFeatureNets, randomFeatures, ridged } from '../../ml/krr.js';
import { cholesky, choleskySolve, NotPositiveDefiniteError, solveSpd, solveSpdHost } from '../../ml/linalg.js';
import { softmaxCrossEntropy } from '../../ml/ops.js';
import { checkGradient, randn, type Arg } from './fd.js';

const t = (a: Arg) => tf.tensor(a.values, a.shape, 'float32');

/** A well-conditioned SPD matrix P Pᵀ / n + I, n×n (host, row-major). */
function spd(n: number, seed: number): Float64Array {
  const p = randn([n, n], seed).values;
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += p[i * n + k] * p[j * n + k];
      a[i * n + j] = s / n + (i === j ? 1 : 0);
    }
  }
  return a;
}

function matMulHost(a: ArrayLike<number>, b: ArrayLike<number>, n: number, m: number): Float64Array {
  const out = new Float64Array(n * m);
  for (let i = 0; i < n; i++) for (let k = 0; k < n; k++) for (let c = 0; c < m; c++) out[i * m + c] += a[i * n + k] * b[k * m + c];
  return out;
}

beforeAll(async () => {
  await initBackend('wasm');
});

describe('host Cholesky', () => {
  it('factorises and solves: L Lᵀ = A and A X = B', () => {
    const n = 7;
    const m = 3;
    const a = spd(n, 1);
    const L = cholesky(a, n);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let k = 0; k < n; k++) s += L[i * n + k] * L[j * n + k];
        expect(s).toBeCloseTo(a[i * n + j], 10);
        if (j > i) expect(L[i * n + j]).toBe(0);
      }
    }
    const b = randn([n, m], 2).values;
    const x = choleskySolve(L, b, n, m);
    const back = matMulHost(a, x, n, m);
    back.forEach((v, i) => expect(v).toBeCloseTo(b[i], 9));
  });

  it('refuses a matrix that is not positive definite, naming the pivot', () => {
    const a = [1, 2, 2, 1]; // eigenvalues 3 and −1
    expect(() => cholesky(a, 2)).toThrow(NotPositiveDefiniteError);
    expect(() => cholesky(a, 2)).toThrow(/pivot 1/);
    expect(() => cholesky([NaN, 0, 0, 1], 2)).toThrow(/pivot 0 is NaN/);
  });
});

describe('solveSpd', () => {
  it('matches the host solve', () => {
    const n = 6;
    const a = spd(n, 3);
    const b = randn([n, 2], 4);
    const y = tf.tidy(() => solveSpd(tf.tensor2d(Float32Array.from(a), [n, n]), t(b) as tf.Tensor2D).dataSync());
    const ref = solveSpdHost(a, b.values, n, 2);
    Array.from(y).forEach((v, i) => expect(v).toBeCloseTo(ref[i], 5));
  });

  it('has the exact gradient in A and B (central differences)', () => {
    const n = 5;
    const base = spd(n, 5);
    const w = t(randn([n, 3], 6));
    // A = base + (S + Sᵀ)/2 keeps every perturbation symmetric and A well-conditioned.
    const f = (s: tf.Tensor, b: tf.Tensor) => tf.tidy(() => {
      const a = tf.add(tf.tensor2d(Float32Array.from(base), [n, n]), tf.mul(tf.add(s, tf.transpose(s)), 0.5)) as tf.Tensor2D;
      return tf.sum(tf.mul(solveSpd(a, b as tf.Tensor2D), w)) as tf.Scalar;
    });
    const r = checkGradient(f, [randn([n, n], 7, 0.1), randn([n, 3], 8)], { h: 1e-2, nDirs: 4 });
    expect(r.relErr).toBeLessThan(1e-2);
    expect(r.cosine).toBeGreaterThan(0.9999);
  });

  it('has the exact gradient through Φ when A = ΦΦᵀ + λI (the kernel case)', () => {
    const f = (phi: tf.Tensor, b: tf.Tensor) => tf.tidy(() => {
      const k = tf.matMul(phi as tf.Tensor2D, phi as tf.Tensor2D, false, true);
      return tf.sum(tf.square(solveSpd(tf.add(k, tf.mul(tf.eye(4), 0.5)) as tf.Tensor2D, b as tf.Tensor2D))) as tf.Scalar;
    });
    const r = checkGradient(f, [randn([4, 6], 9, 0.5), randn([4, 2], 10)], { h: 1e-2, nDirs: 4 });
    expect(r.relErr).toBeLessThan(1e-2);
  });

  it('gives an exact gradient through a KRR loss on random ConvNet features (images and labels)', () => {
    const io = { inputShape: [6, 6, 1] as [number, number, number], numClasses: 3 };
    const nets = randomFeatureNets({ kind: 'convnet', width: 4, depth: 1, norm: 'none' }, io, 2, 11);
    const xt = t(randn([8, 6, 6, 1], 12)) as tf.Tensor4D;
    const yt = tf.oneHot(tf.tensor1d([0, 1, 2, 0, 1, 2, 0, 1], 'int32'), 3);
    const phiT = randomFeatures(nets, xt);
    const loss = (xs: tf.Tensor, ys: tf.Tensor) => tf.tidy(() => {
      const pred = krrPredict(randomFeatures(nets, xs as tf.Tensor4D), phiT, ys as tf.Tensor2D, 0.01);
      return softmaxCrossEntropy(tf.mul(pred, 3), yt);
    });
    const xs = randn([3, 6, 6, 1], 13);
    const ys = randn([3, 3], 14);
    // Labels: a smooth path, so central differences are exact to float32 noise.
    const rY = checkGradient((y) => loss(t(xs), y!), [ys], { h: 1e-3, nDirs: 4 });
    expect(rY.relErr).toBeLessThan(2e-3);
    // Images: through ReLUs, whose kinks some of the 432 pre-activations straddle at any step.
    const rX = checkGradient((x) => loss(x!, t(ys)), [xs], { h: 1e-3, nDirs: 6 });
    expect(rX.relErr).toBeLessThan(3e-2);
    expect(rX.cosine).toBeGreaterThan(0.999);
    tf.dispose([xt, yt, phiT, ...nets.flatMap((n) => n.params)]);
  });

  it('ridged adds λ times the mean diagonal', () => {
    const k = tf.tensor2d([[2, 1], [1, 4]]);
    expect(Array.from(ridged(k, 0.5).dataSync())).toEqual([3.5, 1, 1, 5.5]);
  });
});
