// Models: parameter shapes and counts, output shapes, seeded init, and the
// metasmoothness options (output scale, input normalisation, norm order).
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../core/errors.js';
import { initBackend } from '../../ml/backend.js';
import { convnet, logreg, makeModel, mlp, type Model } from '../../ml/models.js';

function input(b: number, shape: [number, number, number], seed = 1): tf.Tensor4D {
  const n = b * shape[0] * shape[1] * shape[2];
  const v = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    v[i] = s / 4294967296;
  }
  return tf.tensor4d(v, [b, ...shape]);
}

function logitsOf(m: Model, params: tf.Tensor[], x: tf.Tensor): Float32Array {
  return tf.tidy(() => m.apply(params, x).dataSync() as Float32Array);
}

beforeAll(async () => {
  await initBackend('wasm');
});

describe('models', () => {
  it('logreg: one dense layer on the flattened pixels', () => {
    const m = logreg({ inputShape: [28, 28, 1], numClasses: 10 });
    expect(m.paramShapes).toEqual([{ name: 'fc.w', shape: [784, 10] }, { name: 'fc.b', shape: [10] }]);
    expect(m.size).toBe(7850);
    const p = m.init(0);
    const x = input(5, [28, 28, 1]);
    expect(m.apply(p, x).shape).toEqual([5, 10]);
  });

  it('mlp: hidden layers and the output layer', () => {
    const m = mlp({ inputShape: [8, 8, 1], numClasses: 3 }, { hidden: [32, 16] });
    expect(m.paramShapes.map((s) => s.shape)).toEqual([[64, 32], [32], [32, 16], [16], [16, 3], [3]]);
    expect(m.size).toBe(64 * 32 + 32 + 32 * 16 + 16 + 16 * 3 + 3);
    expect(m.name).toBe('mlp-64-32-16-3');
    expect(m.apply(m.init(0), input(4, [8, 8, 1])).shape).toEqual([4, 3]);
  });

  it('convnet: conv → norm → relu → avg-pool per layer, then dense', () => {
    const m = convnet({ inputShape: [8, 8, 3], numClasses: 4 }, { width: 8, depth: 2 });
    expect(m.paramShapes).toEqual([
      { name: 'conv0.w', shape: [3, 3, 3, 8] },
      { name: 'norm0.gamma', shape: [8] },
      { name: 'norm0.beta', shape: [8] },
      { name: 'conv1.w', shape: [3, 3, 8, 8] },
      { name: 'norm1.gamma', shape: [8] },
      { name: 'norm1.beta', shape: [8] },
      { name: 'fc.w', shape: [2 * 2 * 8, 4] },
      { name: 'fc.b', shape: [4] },
    ]);
    expect(m.apply(m.init(0), input(3, [8, 8, 3])).shape).toEqual([3, 4]);
    // Without a norm layer, the convolutions keep their bias.
    const plain = convnet({ inputShape: [8, 8, 3], numClasses: 4 }, { width: 8, depth: 2, norm: 'none' });
    expect(plain.paramShapes.map((s) => s.name)).toEqual(['conv0.w', 'conv0.b', 'conv1.w', 'conv1.b', 'fc.w', 'fc.b']);
    // DC-bench: width 128, depth 3 on 28×28 → 3×3×128 features.
    const dc = convnet({ inputShape: [28, 28, 1], numClasses: 10 });
    expect(dc.paramShapes.at(-2)).toEqual({ name: 'fc.w', shape: [3 * 3 * 128, 10] });
    expect(dc.size).toBe(9 * 128 + 2 * 128 + 2 * (9 * 128 * 128 + 2 * 128) + 1152 * 10 + 10);
  });

  it('refuses a convnet deeper than the image allows', () => {
    expect(() => convnet({ inputShape: [8, 8, 1], numClasses: 2 }, { depth: 4 })).toThrow(ConfigError);
    expect(() => convnet({ inputShape: [8, 8, 1], numClasses: 2 }, { depth: 4 })).toThrow(/depth ≤ 3/);
  });

  it('makeModel builds the same model from a JSON spec, and validates it', () => {
    const io = { inputShape: [8, 8, 1] as [number, number, number], numClasses: 3 };
    const a = makeModel(JSON.parse(JSON.stringify({ kind: 'convnet', width: 4, depth: 2, norm: 'batch' })), io);
    const b = convnet(io, { width: 4, depth: 2, norm: 'batch' });
    expect(a.paramShapes).toEqual(b.paramShapes);
    const x = input(4, [8, 8, 1]);
    expect(logitsOf(a, a.init(3), x)).toEqual(logitsOf(b, b.init(3), x));
    expect(() => makeModel({ kind: 'convnet', norm: 'group' } as never, io)).toThrow();
    expect(() => makeModel({ kind: 'mlp', hidden: [0] }, io)).toThrow();
  });
});

describe('init', () => {
  it('is a function of the seed, per parameter', () => {
    const io = { inputShape: [8, 8, 1] as [number, number, number], numClasses: 3 };
    const m = mlp(io, { hidden: [16] });
    const a = m.init(7).map((t) => t.dataSync());
    const b = m.init(7).map((t) => t.dataSync());
    const c = m.init(8).map((t) => t.dataSync());
    expect(a).toEqual(b);
    expect(a[0]).not.toEqual(c[0]);
    // Each parameter has its own stream: changing a later layer leaves earlier ones alone.
    const other = mlp(io, { hidden: [16, 5] }).init(7);
    expect(other[0].dataSync()).toEqual(a[0]);
    // PyTorch's default bound, U(−1/√fanIn, 1/√fanIn), and not degenerate.
    const w = a[0];
    const bound = 1 / Math.sqrt(64);
    expect(Math.max(...w.map(Math.abs))).toBeLessThanOrEqual(bound);
    expect(Math.max(...w.map(Math.abs))).toBeGreaterThan(0.9 * bound);
    // Norm layers start as the identity.
    const cn = convnet(io, { width: 4, depth: 1 }).init(0);
    expect(Array.from(cn[1].dataSync())).toEqual([1, 1, 1, 1]);
    expect(Array.from(cn[2].dataSync())).toEqual([0, 0, 0, 0]);
  });

  it('gives bit-identical values on the cpu and wasm backends', async () => {
    const m = convnet({ inputShape: [8, 8, 1], numClasses: 3 }, { width: 4, depth: 2 });
    await initBackend('cpu');
    const cpu = m.init(5).map((t) => t.dataSync());
    await initBackend('wasm');
    const wasm = m.init(5).map((t) => t.dataSync());
    expect(wasm).toEqual(cpu);
  });
});

describe('metasmoothness options', () => {
  const io = { inputShape: [8, 8, 1] as [number, number, number], numClasses: 3 };
  let x: tf.Tensor4D;
  beforeAll(() => {
    x = input(6, [8, 8, 1]);
  });

  it('outputScale multiplies the logits', () => {
    const base = convnet(io, { width: 4, depth: 2 });
    const scaled = convnet(io, { width: 4, depth: 2, outputScale: 0.1 });
    const p = base.init(0);
    const a = logitsOf(base, p, x);
    const b = logitsOf(scaled, p, x);
    for (let i = 0; i < a.length; i++) expect(b[i]).toBeCloseTo(a[i] * 0.1, 6);
  });

  it('inputNorm normalises inside the model', () => {
    const plain = mlp(io, { hidden: [8] });
    const normed = mlp(io, { hidden: [8], inputNorm: { mean: [0.5], std: [0.25] } });
    const p = plain.init(0);
    const a = logitsOf(normed, p, x);
    const b = tf.tidy(() => logitsOf(plain, p, tf.div(tf.sub(x, 0.5), 0.25)));
    for (let i = 0; i < a.length; i++) expect(a[i]).toBeCloseTo(b[i], 5);
    expect(() => mlp(io, { inputNorm: { mean: [0.5, 0.5], std: [1, 1] } })).toThrow(ConfigError);
  });

  it('normBeforeActivation changes the order of norm and ReLU', () => {
    const before = convnet(io, { width: 4, depth: 2 });
    const after = convnet(io, { width: 4, depth: 2, normBeforeActivation: false });
    const p = before.init(0);
    expect(logitsOf(after, p, x)).not.toEqual(logitsOf(before, p, x));
  });

  it('instance norm is per example; batch norm uses the batch statistics', () => {
    for (const norm of ['instance', 'batch'] as const) {
      const m = convnet(io, { width: 4, depth: 2, norm });
      const p = m.init(0);
      const whole = logitsOf(m, p, x);
      const firstAlone = logitsOf(m, p, tf.slice(x, 0, 2));
      const same = firstAlone.every((v, i) => Math.abs(v - whole[i]) < 1e-5);
      expect(same).toBe(norm === 'instance');
    }
  });
});
