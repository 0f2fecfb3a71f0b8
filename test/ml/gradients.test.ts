// Second-order correctness: for every gradient registered in ml/patches and
// every op in ml/ops.ts, (a) the gradient and (b) the nested-grad
// Hessian-vector product against central finite differences; then whole
// models and the one-SGD-step metagradient against its closed form.
import * as tf from '@tensorflow/tfjs';
import { expect, it } from 'vitest';
import * as ops from '../../ml/ops.js';
import { MAX_POOL_JVP, PATCHED_GRADIENTS, STOP_GRADIENT } from '../../ml/patches/index.js';
import { FD_BACKENDS, TOLERANCE_SCALE, describeOn, type FdBackend } from './backends.js';
import { checkGradient, checkHvp, compare, concat, dot, gradient, randn, type Arg, type Fn } from './fd.js';

const t = (a: Arg) => tf.tensor(a.values, a.shape, 'float32');
const t4 = (a: Arg) => t(a) as tf.Tensor4D;

/** Values bounded away from 0 (kinks of relu/elu/comparisons sit there). */
function awayFromZero(shape: number[], seed: number, gap = 0.1): Arg {
  const a = randn(shape, seed);
  return { shape, values: a.values.map((v) => Math.sign(v || 1) * (Math.abs(v) + gap)) };
}

function positive(shape: number[], seed: number): Arg {
  const a = randn(shape, seed);
  return { shape, values: a.values.map((v) => 0.5 + Math.abs(v)) };
}

/** sum(r * y) with a fixed random r, so every output element matters. */
function project(y: tf.Tensor, seed: number): tf.Scalar {
  return tf.sum(tf.mul(y, t(randn(y.shape, seed)))) as tf.Scalar;
}

interface Case {
  name: string;
  f: Fn;
  args: () => Arg[];
  h?: number;
  /** Skip the HVP check (linear functions: both sides are ~0). */
  firstOrderOnly?: boolean;
}

const run = (name: string, inputs: Record<string, tf.Tensor>, attrs: Record<string, unknown>) =>
  tf.engine().runKernel(name, inputs as tf.NamedTensorMap, attrs as tf.NamedAttrMap) as tf.Tensor;

const POOL = { filterSize: 3, strides: 1, pad: 'same' };

/** Functions that exercise each registered gradient (and, in the HVP, its gradient). */
const PATCH_CASES: Record<string, Case[]> = {
  Exp: [{ name: 'exp', f: (x) => project(tf.exp(x!), 1), args: () => [randn([3, 4], 2, 0.7)] }],
  Tanh: [{ name: 'tanh', f: (x) => project(tf.tanh(x!), 1), args: () => [randn([3, 4], 3)] }],
  Sigmoid: [{ name: 'sigmoid', f: (x) => project(tf.sigmoid(x!), 1), args: () => [randn([3, 4], 4)] }],
  Softmax: [{ name: 'softmax', f: (x) => project(tf.softmax(x!), 1), args: () => [randn([3, 5], 5)] }],
  Elu: [{ name: 'elu', f: (x) => project(tf.elu(x!), 1), args: () => [awayFromZero([3, 4], 6)] }],
  EluGrad: [{
    name: 'EluGrad kernel',
    f: (dy, y) => project(tf.square(run(tf.EluGrad, { dy: dy!, y: y! }, {})), 1),
    args: () => [randn([3, 4], 7), awayFromZero([3, 4], 8)],
  }],
  Pow: [{ name: 'pow(a, b)', f: (a, b) => project(tf.pow(a!, b!), 1), args: () => [positive([3, 4], 9), randn([3, 4], 10, 0.5)] }],
  AvgPool: [
    { name: "3x3 stride 1 'same' (partial windows)", f: (x) => project(tf.square(tf.avgPool(t4AsIs(x!), 3, 1, 'same')), 1), args: () => [randn([2, 5, 5, 2], 11)] },
    { name: "2x2 stride 2 'valid', odd size", f: (x) => project(tf.square(tf.avgPool(t4AsIs(x!), 2, 2, 'valid')), 1), args: () => [randn([2, 5, 5, 2], 12)] },
    { name: "2x2 stride 2 'same', odd size", f: (x) => project(tf.square(tf.avgPool(t4AsIs(x!), 2, 2, 'same')), 1), args: () => [randn([2, 5, 5, 2], 13)] },
  ],
  AvgPoolGrad: [
    {
      name: "kernel, 3x3 'same'",
      f: (dy) => project(tf.square(run(tf.AvgPoolGrad, { dy: dy!, input: tf.zeros([2, 5, 5, 2]) }, POOL)), 1),
      args: () => [randn([2, 5, 5, 2], 14)],
    },
    {
      name: "kernel, 2x2 stride 2 'valid'",
      f: (dy) => project(tf.square(run(tf.AvgPoolGrad, { dy: dy!, input: tf.zeros([2, 6, 6, 2]) }, { filterSize: 2, strides: 2, pad: 'valid' })), 1),
      args: () => [randn([2, 3, 3, 2], 15)],
    },
  ],
  MaxPoolGrad: [
    { name: 'through maxPool 2x2', f: (x) => project(tf.square(tf.maxPool(t4AsIs(x!), 2, 2, 'valid')), 1), args: () => [randn([2, 6, 6, 2], 16)] },
    {
      name: "kernel, 3x3 stride 2 'same'",
      f: (dy) => {
        const x = t4(randn([2, 5, 5, 2], 17));
        const y = tf.maxPool(x, 3, 2, 'same');
        return project(tf.square(run(tf.MaxPoolGrad, { dy: dy!, input: x, output: y }, { filterSize: 3, strides: 2, pad: 'same' })), 1);
      },
      args: () => [randn([2, 3, 3, 2], 18)],
    },
  ],
  [MAX_POOL_JVP]: [{
    name: 'max-pool JVP kernel (x, v)',
    f: (x, v) => project(tf.square(run(MAX_POOL_JVP, { x: x!, v: v! }, { filterSize: 2, strides: 2, pad: 'valid' })), 1),
    args: () => [randn([2, 4, 4, 2], 26), randn([2, 4, 4, 2], 27)],
  }],
  MaxPoolWithArgmax: [{
    name: 'result output',
    f: (x) => project(tf.square(tf.maxPoolWithArgmax(t4AsIs(x!), 2, 2, 'valid').result), 1),
    args: () => [randn([1, 4, 4, 3], 19)],
  }],
  Conv2DBackpropFilter: [
    {
      name: "kernel, 3x3 'same'",
      f: (x, dy) => project(tf.square(run(tf.Conv2DBackpropFilter, { x: x!, dy: dy! }, { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 2, 3] })), 1),
      args: () => [randn([2, 5, 5, 2], 20, 0.5), randn([2, 5, 5, 3], 21, 0.5)],
    },
    {
      name: "kernel, 2x2 stride 2 'valid'",
      f: (x, dy) => project(tf.square(run(tf.Conv2DBackpropFilter, { x: x!, dy: dy! }, { strides: 2, pad: 'valid', dataFormat: 'NHWC', filterShape: [2, 2, 2, 3] })), 1),
      args: () => [randn([2, 5, 5, 2], 22, 0.5), randn([2, 2, 2, 3], 23, 0.5)],
    },
  ],
  Conv2DBackpropInput: [{
    name: "kernel, 3x3 'same'",
    f: (dy, w) => project(tf.square(tf.conv2dTranspose(t4AsIs(dy!), t4AsIs(w!), [2, 5, 5, 2], 1, 'same')), 1),
    args: () => [randn([2, 5, 5, 3], 24, 0.5), randn([3, 3, 2, 3], 25, 0.5)],
  }],
  [STOP_GRADIENT]: [], // checked separately (its gradient is zero by design)
};

function t4AsIs(x: tf.Tensor): tf.Tensor4D {
  return x as tf.Tensor4D;
}

/** Comparisons / logical ops: zero gradients, so piecewise functions built from them differentiate twice. */
const ZERO_GRAD_CASE: Case = {
  name: 'comparisons and logical ops in masks, where, max, leakyRelu, clipByValue',
  f: (x) => {
    const m1 = tf.logicalOr(tf.less(x!, -0.5), tf.equal(x!, 2));
    const m2 = tf.logicalAnd(tf.notEqual(x!, 3), tf.lessEqual(x!, 0.5));
    const mask = tf.cast(tf.logicalNot(tf.logicalXor(m1, m2)), 'float32');
    const picked = tf.where(tf.greater(x!, 0.2), tf.square(x!), tf.mul(x!, 0.3));
    return ops.addAll([
      project(tf.mul(mask, tf.square(x!)), 1),
      project(picked, 2),
      project(tf.square(tf.max(x!, 1)), 3),
      project(tf.square(tf.leakyRelu(x!, 0.2)), 4),
      project(tf.square(tf.clipByValue(x!, -0.7, 0.7)), 5),
      project(tf.logSumExp(x!, 1), 6),
    ]) as tf.Scalar;
  },
  // Bounded away from every threshold used above.
  args: () => [{ shape: [4, 5], values: Float32Array.from([
    -1.3, -0.9, -0.6, -0.3, -0.1, 0.1, 0.3, 0.4, 0.6, 0.9, 1.2, 1.5, -1.1, 0.05, 0.8, -0.4, 0.35, -0.75, 1.05, -0.15,
  ]) }],
};

const OPS_CASES: Case[] = [
  { name: 'logSumExp', f: (z) => project(ops.logSumExp(z!), 1), args: () => [randn([4, 6], 31, 2)] },
  { name: 'logSumExp axis 0 keepDims', f: (z) => project(ops.logSumExp(z!, 0, true), 1), args: () => [randn([4, 6], 32, 2)] },
  { name: 'logSoftmax', f: (z) => project(ops.logSoftmax(z!), 1), args: () => [randn([4, 6], 33, 2)] },
  { name: 'softmax', f: (z) => project(ops.softmax(z!), 1), args: () => [randn([4, 6], 34, 2)] },
  {
    name: 'perExampleCrossEntropy, soft labels not summing to 1',
    f: (z, y) => project(ops.perExampleCrossEntropy(z!, y!), 1),
    args: () => [randn([4, 6], 35, 2), positive([4, 6], 36)],
  },
  {
    name: 'softmaxCrossEntropy, class indices, per-example weights',
    f: (z, w) => ops.softmaxCrossEntropy(z!, tf.tensor1d([0, 5, 2, 2], 'int32'), w!),
    args: () => [randn([4, 6], 37, 2), positive([4], 38)],
  },
  {
    name: 'softmaxCrossEntropy, one-hot',
    f: (z) => ops.softmaxCrossEntropy(z!, tf.oneHot(tf.tensor1d([1, 0, 3, 5], 'int32'), 6)),
    args: () => [randn([4, 6], 39, 2)],
  },
  { name: 'mse', f: (p, q) => tf.mul(ops.mse(p!, q!), tf.sum(p!)) as tf.Scalar, args: () => [randn([3, 4], 40), randn([3, 4], 41)] },
  { name: 'perExampleMse', f: (p, q) => project(tf.square(ops.perExampleMse(p!, q!)), 1), args: () => [randn([3, 2, 2], 42), randn([3, 2, 2], 43)] },
  { name: 'relu', f: (x) => project(tf.square(ops.relu(x!)), 1), args: () => [awayFromZero([3, 4], 44)] },
  { name: 'sigmoid', f: (x) => project(ops.sigmoid(x!), 1), args: () => [randn([3, 4], 45)] },
  { name: 'tanh', f: (x) => project(ops.tanh(x!), 1), args: () => [randn([3, 4], 46)] },
  { name: 'gelu', f: (x) => project(ops.gelu(x!), 1), args: () => [randn([3, 4], 47)] },
  {
    name: 'dense',
    f: (x, w, b) => project(tf.tanh(ops.dense(x!, w!, b!)), 1),
    args: () => [randn([4, 5], 48), randn([5, 3], 49, 0.5), randn([3], 50)],
  },
  {
    name: 'conv2dSame',
    f: (x, w, b) => project(tf.tanh(ops.conv2dSame(t4AsIs(x!), t4AsIs(w!), b!)), 1),
    args: () => [randn([2, 5, 5, 2], 51), randn([3, 3, 2, 3], 52, 0.4), randn([3], 53)],
  },
  { name: 'avgPool2x2', f: (x) => project(tf.square(ops.avgPool2x2(t4AsIs(x!))), 1), args: () => [randn([2, 5, 5, 2], 54)] },
  { name: 'flatten', f: (x) => project(tf.square(ops.flatten(x!)), 1), args: () => [randn([2, 2, 2, 3], 55)] },
  {
    name: 'instanceNorm with gamma, beta',
    f: (x, g, b) => project(ops.instanceNorm(t4AsIs(x!), { gamma: g!, beta: b! }), 1),
    args: () => [randn([2, 3, 3, 2], 56), randn([2], 57), randn([2], 58)],
  },
  { name: 'batchNorm 2D', f: (x) => project(ops.batchNorm(x!), 1), args: () => [randn([5, 3], 59)] },
  { name: 'batchNorm NHWC', f: (x) => project(ops.batchNorm(x!, { eps: 1e-3 }), 1), args: () => [randn([2, 3, 3, 2], 60)] },
];

function expectCase(c: Case, backend: FdBackend): void {
  const tol = 1e-2 * TOLERANCE_SCALE[backend];
  const g = checkGradient(c.f, c.args(), { h: c.h ?? 1e-3 });
  expect(g.relErr, `${c.name}: gradient vs FD`).toBeLessThan(tol);
  if (c.firstOrderOnly) return;
  const h = checkHvp(c.f, c.args(), { h: c.h ?? 1e-3 });
  expect(h.normRef, `${c.name}: HVP is trivially zero`).toBeGreaterThan(1e-3);
  expect(h.relErr, `${c.name}: HVP vs FD (cos ${h.cosine})`).toBeLessThan(tol);
  expect(h.cosine).toBeGreaterThan(1 - 1e-3 * TOLERANCE_SCALE[backend]);
}

for (const backend of FD_BACKENDS) {
  describeOn(backend, `registered gradients on ${backend}`, () => {
    it('every patched gradient has a case here', () => {
      const covered = new Set([...Object.keys(PATCH_CASES), 'Equal', 'NotEqual', 'Greater', 'GreaterEqual', 'Less', 'LessEqual',
        'LogicalAnd', 'LogicalOr', 'LogicalXor', 'LogicalNot']);
      expect(PATCHED_GRADIENTS.filter((k) => !covered.has(k))).toEqual([]);
    });

    for (const [kernel, cases] of Object.entries(PATCH_CASES)) {
      for (const c of cases) it(`${kernel}: ${c.name}`, () => expectCase(c, backend));
    }
    it(ZERO_GRAD_CASE.name, () => expectCase(ZERO_GRAD_CASE, backend));

    it('stopGradient: identity forward, zero gradient', () => {
      const x = randn([3, 4], 70);
      const g = gradient((v) => tf.sum(tf.mul(v!, ops.stopGradient(v!))) as tf.Scalar, [x]);
      expect(compare(g, x.values).relErr).toBeLessThan(1e-6); // d/dx sum(x * sg(x)) = x, not 2x
    });
  });

  describeOn(backend, `ml/ops on ${backend}`, () => {
    for (const c of OPS_CASES) it(c.name, () => expectCase(c, backend));

    it('logSumExp and cross-entropy are stable for large logits', () => {
      const z = tf.tensor2d([[1000, 999, -1000], [-1000, -1001, -999]]);
      const ce = ops.perExampleCrossEntropy(z, tf.tensor1d([0, 2], 'int32')).arraySync();
      expect(ce[0]).toBeCloseTo(Math.log(1 + Math.exp(-1) + 0), 4);
      expect(ce[1]).toBeCloseTo(Math.log(1 + Math.exp(-1) + Math.exp(-2)), 4);
      tf.dispose(z);
    });

    it('addAll sums many tensors (tf.addN gives a stale result past 7 inputs on webgpu)', () => {
      for (const n of [1, 2, 7, 8, 14]) {
        const ts = Array.from({ length: n }, (_, i) => tf.fill([3], i + 1));
        expect(Array.from(ops.addAll(ts).dataSync())).toEqual([0, 1, 2].map(() => (n * (n + 1)) / 2));
        tf.dispose(ts);
      }
    });
  });
}

// ---- end to end ----

interface Mlp {
  x: Arg;
  labels: number[];
  params: Arg[];
}

function tinyMlp(seed: number, n = 8, d = 6, hidden = 7, classes = 3): Mlp {
  return {
    x: randn([n, d], seed),
    labels: Array.from({ length: n }, (_, i) => (i * 7 + seed) % classes),
    params: [randn([d, hidden], seed + 1, 0.6), randn([hidden], seed + 2, 0.3), randn([hidden, classes], seed + 3, 0.6), randn([classes], seed + 4, 0.3)],
  };
}

function mlpLogits(x: tf.Tensor, [w1, b1, w2, b2]: tf.Tensor[]): tf.Tensor {
  return ops.dense(ops.relu(ops.dense(x, w1!, b1!)), w2!, b2!);
}

function convLogits(x: tf.Tensor, [k, g, b, w, c]: tf.Tensor[]): tf.Tensor {
  const h = ops.relu(ops.instanceNorm(ops.conv2dSame(x as tf.Tensor4D, k as tf.Tensor4D), { gamma: g!, beta: b! }));
  return ops.dense(ops.flatten(ops.avgPool2x2(h)), w!, c!);
}

for (const backend of FD_BACKENDS) describeOn(backend, `end to end on ${backend}`, () => {
  const scale = TOLERANCE_SCALE[backend];

  it('HVP of the cross-entropy of a tiny MLP matches FD', () => {
    const m = tinyMlp(100);
    const f: Fn = (...p) => ops.softmaxCrossEntropy(mlpLogits(t(m.x), p), tf.tensor1d(m.labels, 'int32'));
    const g = checkGradient(f, m.params);
    expect(g.relErr).toBeLessThan(1e-3 * scale);
    const h = checkHvp(f, m.params);
    expect(h.relErr).toBeLessThan(2e-3 * scale);
    expect(h.cosine).toBeGreaterThan(1 - 1e-4 * scale);
  });

  const convArgs = (): Arg[] => [
    randn([3, 3, 1, 4], 201, 0.5), positive([4], 202), randn([4], 203, 0.2), randn([4 * 3 * 3, 3], 204, 0.3), randn([3], 205, 0.1),
  ];
  const convX = randn([4, 6, 6, 1], 206);
  const convLabels = [0, 1, 2, 1];
  const convLoss: Fn = (...p) => ops.softmaxCrossEntropy(convLogits(t(convX), p), tf.tensor1d(convLabels, 'int32'));

  it('HVP of the cross-entropy of a tiny ConvNet (conv, instance norm, relu, avg pool, dense) matches FD', () => {
    const g = checkGradient(convLoss, convArgs());
    expect(g.relErr).toBeLessThan(1e-3 * scale);
    // h = 1e-3 moves some of the 576 relu inputs across 0 here (FD then measures
    // the kink, not the Hessian); 1e-4 stays inside one linear piece.
    const h = checkHvp(convLoss, convArgs(), { h: 1e-4 });
    expect(h.relErr).toBeLessThan(5e-3 * scale);
    expect(h.cosine).toBeGreaterThan(1 - 1e-4 * scale);
  });

  it('nested gradients do not leak tensors', () => {
    const p = convArgs().map(t);
    const v = convArgs().map((a, i) => t(randn(a.shape, 300 + i)));
    const step = () => tf.tidy(() => {
      const hv = tf.grads((...q: tf.Tensor[]) => {
        const gs = tf.grads(convLoss)(q);
        return ops.addAll(gs.map((gi, i) => tf.sum(tf.mul(gi, v[i]!))));
      })(p);
      return hv.map((x) => x.dataSync()[0]);
    });
    step();
    const before = tf.memory().numTensors;
    step();
    step();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([...p, ...v]);
  });

  it('metagradient through one SGD step matches -lr/n <grad l_i(theta), grad L_val(theta\')>', () => {
    const m = tinyMlp(400);
    const xv = randn([5, 6], 410);
    const yv = [0, 2, 1, 1, 0];
    const lr = 0.5;
    const n = m.labels.length;
    const theta = m.params.map(t);
    const w = tf.ones([n]);
    const trainLoss = (p: tf.Tensor[], weights: tf.Tensor) =>
      ops.softmaxCrossEntropy(mlpLogits(t(m.x), p), tf.tensor1d(m.labels, 'int32'), weights);
    const valLoss = (p: tf.Tensor[]) => ops.softmaxCrossEntropy(mlpLogits(t(xv), p), tf.tensor1d(yv, 'int32'));
    const step = (weights: tf.Tensor) => {
      const gs = tf.grads((...p: tf.Tensor[]) => trainLoss(p, weights))(theta);
      return theta.map((p, i) => tf.sub(p, tf.mul(lr, gs[i]!)));
    };

    // Reverse mode through the step.
    const metagrad = tf.tidy(() => tf.grad((weights: tf.Tensor) => valLoss(step(weights)))(w).dataSync());

    // Closed form with per-example gradients at theta and the validation gradient at theta'.
    const closed = tf.tidy(() => {
      const thetaNext = step(w);
      const gVal = concat(tf.grads((...p: tf.Tensor[]) => valLoss(p))(thetaNext).map((g) => g.dataSync()));
      return Array.from({ length: n }, (_, i) => {
        const one = tf.oneHot(tf.tensor1d([i], 'int32'), n).reshape([n]).mul(n); // l_i alone: w = n e_i
        const gi = concat(tf.grads((...p: tf.Tensor[]) => trainLoss(p, one))(theta).map((g) => g.dataSync()));
        return (-lr / n) * dot(gi, gVal);
      });
    });
    const cmp = compare(metagrad, closed);
    expect(cmp.relErr).toBeLessThan(1e-3 * scale);
    tf.dispose([...theta, w]);
  });
});
