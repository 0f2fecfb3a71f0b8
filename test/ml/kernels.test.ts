// The wasm kernel patches against the cpu backend (same inputs) and, for the
// convolution gradients, against central finite differences.
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../ml/backend.js';
import { checkGradient, compare, gradient, numericGradient, randn, type Arg } from './fd.js';

const t = (a: Arg) => tf.tensor(a.values, a.shape, 'float32');

/** Runs `f` on wasm and on cpu; returns both results as arrays. */
async function onBoth(f: () => tf.Tensor): Promise<{ wasm: Float32Array; cpu: Float32Array; shape: number[] }> {
  const run = () => tf.tidy(() => {
    const y = f();
    return { values: y.dataSync() as Float32Array, shape: y.shape };
  });
  await initBackend('cpu');
  const cpu = run();
  await initBackend('wasm');
  const before = tf.memory().numTensors;
  const wasm = run();
  expect(tf.memory().numTensors).toBe(before);
  expect(wasm.shape).toEqual(cpu.shape);
  return { wasm: wasm.values, cpu: cpu.values, shape: wasm.shape };
}

function expectClose(got: Float32Array, ref: Float32Array, tol = 1e-5): void {
  expect(got.length).toBe(ref.length);
  let scale = 0;
  let err = 0;
  for (let i = 0; i < ref.length; i++) {
    scale = Math.max(scale, Math.abs(ref[i]!));
    err = Math.max(err, Math.abs(got[i]! - ref[i]!));
  }
  expect(err).toBeLessThanOrEqual(tol * Math.max(scale, 1));
}

beforeAll(async () => {
  await initBackend('wasm');
  // Makes the engine check every kernel call for leaked data ids.
  tf.env().set('IS_TEST', true);
});

afterAll(() => {
  tf.env().set('IS_TEST', false);
});

describe('BatchMatMul with transposed inputs (wasm vs cpu)', () => {
  const cases: Array<[number[], number[], boolean, boolean]> = [
    [[5, 7], [7, 3], false, false],
    [[7, 5], [7, 3], true, false],
    [[5, 7], [3, 7], false, true],
    [[7, 5], [3, 7], true, true],
    [[4, 7, 5], [4, 7, 3], true, false],
    [[4, 5, 7], [1, 3, 7], false, true],
    [[2, 3, 7, 5], [2, 3, 4, 7], true, true],
    [[1, 64], [32, 64], false, true],
  ];
  for (const [as, bs, ta, tb] of cases) {
    it(`a[${as}] b[${bs}] transposeA=${ta} transposeB=${tb}`, async () => {
      const a = randn(as, 1);
      const b = randn(bs, 2);
      const r = await onBoth(() => tf.matMul(t(a), t(b), ta, tb));
      expectClose(r.wasm, r.cpu);
    });
  }

  it('fused matMul with bias and relu, transposed', async () => {
    const a = randn([6, 4], 3);
    const b = randn([5, 6], 4);
    const bias = randn([5], 5);
    const r = await onBoth(() => tf.fused.matMul({
      a: t(a) as tf.Tensor2D, b: t(b) as tf.Tensor2D, transposeA: true, transposeB: true, bias: t(bias), activation: 'relu',
    }));
    expectClose(r.wasm, r.cpu);
  });

  it('matMul gradients match cpu', async () => {
    const a = randn([8, 6], 6);
    const b = randn([6, 4], 7);
    const r = await onBoth(() => {
      const [ga, gb] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.square(tf.matMul(x, y))))([t(a), t(b)]);
      return tf.concat([ga!.flatten(), gb!.flatten()]);
    });
    expectClose(r.wasm, r.cpu);
  });
});

interface ConvCase {
  x: [number, number, number, number];
  f: [number, number, number, number];
  s: number | [number, number];
  p: 'same' | 'valid' | number;
}

const CONV_CASES: ConvCase[] = [
  { x: [2, 6, 6, 3], f: [3, 3, 3, 4], s: 1, p: 'same' },
  { x: [2, 6, 6, 3], f: [3, 3, 3, 4], s: 1, p: 'valid' },
  { x: [2, 7, 7, 3], f: [2, 2, 3, 4], s: 2, p: 'valid' },
  { x: [2, 7, 7, 3], f: [3, 3, 3, 4], s: 2, p: 'same' },
  { x: [2, 8, 5, 2], f: [3, 2, 2, 3], s: [2, 1], p: 'same' },
  { x: [1, 5, 5, 1], f: [1, 1, 1, 2], s: 1, p: 'valid' },
  { x: [2, 6, 6, 3], f: [3, 3, 3, 4], s: 1, p: 2 },
  { x: [2, 9, 9, 2], f: [5, 5, 2, 3], s: 3, p: 'valid' },
  { x: [3, 10, 10, 1], f: [3, 3, 1, 8], s: 1, p: 'same' },
];

const label = (c: ConvCase) => `x[${c.x}] f[${c.f}] stride ${c.s} pad ${c.p}`;

describe('Conv2DBackpropFilter / Conv2DBackpropInput (wasm vs cpu)', () => {
  for (const c of CONV_CASES) {
    it(label(c), async () => {
      const x = randn(c.x, 11);
      const w = randn(c.f, 12);
      const yShape = tf.tidy(() => tf.conv2d(t(x) as tf.Tensor4D, t(w) as tf.Tensor4D, c.s, c.p).shape);
      const dy = randn(yShape, 13);
      const bf = await onBoth(() => tf.engine().runKernel(tf.Conv2DBackpropFilter, { x: t(x), dy: t(dy) },
        { strides: c.s, pad: c.p, dataFormat: 'NHWC', filterShape: c.f }) as tf.Tensor);
      expectClose(bf.wasm, bf.cpu);
      const bi = await onBoth(() => tf.conv2dTranspose(t(dy) as tf.Tensor4D, t(w) as tf.Tensor4D, c.x, c.s, c.p));
      expectClose(bi.wasm, bi.cpu);
    });
  }

  it('rejects NCHW clearly', () => {
    expect(() => tf.tidy(() => tf.engine().runKernel(tf.Conv2DBackpropFilter,
      { x: tf.zeros([1, 2, 4, 4]), dy: tf.zeros([1, 2, 4, 4]) },
      { strides: 1, pad: 'same', dataFormat: 'NCHW', filterShape: [3, 3, 2, 2] }))).toThrow(/NHWC/);
  });
});

describe('conv2d gradients on wasm vs finite differences', () => {
  // f is bilinear in (x, w), so central differences are exact up to rounding.
  for (const c of CONV_CASES.slice(0, 5)) {
    it(label(c), () => {
      const x = randn(c.x, 21);
      const w = randn(c.f, 22);
      const yShape = tf.tidy(() => tf.conv2d(t(x) as tf.Tensor4D, t(w) as tf.Tensor4D, c.s, c.p).shape);
      const r = tf.tensor(randn(yShape, 23).values, yShape);
      const f = (xx: tf.Tensor, ww: tf.Tensor) => tf.sum(tf.mul(r, tf.conv2d(xx as tf.Tensor4D, ww as tf.Tensor4D, c.s, c.p))) as tf.Scalar;
      const cmp = checkGradient(f, [x, w], { h: 1e-2 });
      expect(cmp.relErr).toBeLessThan(2e-3);
      r.dispose();
    });
  }

  it('full coordinate-wise gradient, small same-padded conv', () => {
    const x = randn([1, 4, 4, 2], 31);
    const w = randn([3, 3, 2, 2], 32);
    const r = tf.tensor(randn([1, 4, 4, 2], 33).values, [1, 4, 4, 2]);
    const f = (xx: tf.Tensor, ww: tf.Tensor) => tf.sum(tf.mul(r, tf.conv2d(xx as tf.Tensor4D, ww as tf.Tensor4D, 1, 'same'))) as tf.Scalar;
    const cmp = compare(gradient(f, [x, w]), numericGradient(f, [x, w], 1e-2));
    expect(cmp.relErr).toBeLessThan(2e-3);
    r.dispose();
  });
});

describe('AvgPoolGrad (wasm vs cpu)', () => {
  const cases: Array<[number[], number | [number, number], number | [number, number], 'same' | 'valid']> = [
    [[2, 6, 6, 3], 2, 2, 'valid'],
    [[2, 7, 7, 3], 2, 2, 'valid'],
    [[2, 6, 6, 3], 2, 2, 'same'],
    [[2, 8, 8, 2], 4, 4, 'valid'],
    [[2, 6, 6, 3], 3, 1, 'same'],
    [[2, 7, 5, 2], [3, 2], [2, 1], 'valid'],
  ];
  for (const [xs, k, s, p] of cases) {
    it(`x[${xs}] filter ${k} stride ${s} ${p}`, async () => {
      const x = randn(xs, 41);
      const yShape = tf.tidy(() => tf.avgPool(t(x) as tf.Tensor4D, k, s, p).shape);
      const dy = randn(yShape, 42);
      const r = await onBoth(() => tf.engine().runKernel(tf.AvgPoolGrad, { dy: t(dy), input: t(x) },
        { filterSize: k, strides: s, pad: p }) as tf.Tensor);
      expectClose(r.wasm, r.cpu);
    });
  }
});

describe('MaxPoolGrad / MaxPoolWithArgmax (wasm vs cpu)', () => {
  // Stock wasm starts the running max at FLT_MIN: windows with max <= 0 broke.
  const negative = (shape: number[], seed: number): Arg => {
    const a = randn(shape, seed);
    return { shape, values: a.values.map((v, i) => (i % 3 === 0 ? -Math.abs(v) - 1 : v)) };
  };
  const cases: Array<[number[], number, number, 'same' | 'valid']> = [
    [[2, 6, 6, 3], 2, 2, 'valid'],
    [[2, 7, 7, 3], 3, 2, 'same'],
    [[1, 5, 5, 2], 3, 1, 'same'],
  ];
  for (const [xs, k, s, p] of cases) {
    it(`x[${xs}] filter ${k} stride ${s} ${p}, negative windows`, async () => {
      const x = negative(xs, 61);
      const allNeg: Arg = { shape: xs, values: x.values.map((v) => -Math.abs(v) - 0.1) };
      for (const input of [x, allNeg]) {
        const yShape = tf.tidy(() => tf.maxPool(t(input) as tf.Tensor4D, k, s, p).shape);
        const dy = randn(yShape, 62);
        const g = await onBoth(() => tf.engine().runKernel(tf.MaxPoolGrad, { dy: t(dy), input: t(input), output: tf.maxPool(t(input) as tf.Tensor4D, k, s, p) },
          { filterSize: k, strides: s, pad: p }) as tf.Tensor);
        expectClose(g.wasm, g.cpu);
        for (const includeBatchInIndex of [true, false]) {
          const r = await onBoth(() => {
            const { result, indexes } = tf.maxPoolWithArgmax(t(input) as tf.Tensor4D, k, s, p, includeBatchInIndex);
            return tf.concat([result.flatten(), tf.cast(indexes, 'float32').flatten()]);
          });
          expectClose(r.wasm, r.cpu, 0);
        }
      }
    });
  }
});

describe('UnsortedSegmentSum on wasm (gather gradient)', () => {
  it('matches cpu', async () => {
    const x = randn([6, 3], 51);
    const ids = [0, 2, 2, 4, -1, 0];
    const r = await onBoth(() => tf.unsortedSegmentSum(t(x), tf.tensor1d(ids, 'int32'), 5));
    expectClose(r.wasm, r.cpu);
  });

  it('gather is differentiable on wasm', async () => {
    const w = randn([10], 52);
    const r = await onBoth(() => tf.grad((v: tf.Tensor) => tf.sum(tf.square(tf.gather(v, tf.tensor1d([1, 3, 3, 7], 'int32')))))(t(w)));
    expectClose(r.wasm, r.cpu);
  });
});
