// The optimizers against hand computations, the LR schedules, and the trainer:
// determinism, learning, per-example weights, soft labels, divergence, and that a
// step can be differentiated with respect to the example weights (second order).
import * as tf from '@tensorflow/tfjs';
import { addAll } from '../../ml/ops.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { ExitCode } from '../../core/errors.js';
import type { Examples } from '../../data/batch.js';
import { initBackend } from '../../ml/backend.js';
import { evaluateModel, predict } from '../../ml/evaluate.js';
import type { ModelSpec } from '../../ml/models.js';
import { makeOptimizer } from '../../ml/optim.js';
import { makeSchedule, scheduleFactor } from '../../ml/schedule.js';
import { TrainingDivergedError, createTrainer, type TrainConfig } from '../../ml/train.js';

/** Separable toy images: class c lights up column band c (plus noise). */
function toy(n: number, seed: number, k = 3, size = 6): Examples {
  const len = size * size;
  const pixels = new Uint8Array(n * len);
  const labels = new Int32Array(n);
  let s = seed >>> 0;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
  for (let i = 0; i < n; i++) {
    const c = i % k;
    labels[i] = c;
    for (let j = 0; j < len; j++) {
      const inBand = Math.floor(((j % size) * k) / size) === c;
      pixels[i * len + j] = Math.round(255 * Math.min(1, 0.5 * rnd() + (inBand ? 0.5 : 0)));
    }
  }
  return {
    ids: Array.from({ length: n }, (_, i) => `r${i}`),
    pixels,
    shape: [size, size, 1],
    labels,
    numClasses: k,
    classNames: Array.from({ length: k }, (_, i) => `c${i}`),
  };
}

const values = (ts: tf.Tensor[]) => ts.map((t) => Array.from(t.dataSync()));
const mlpConfig = (over: Partial<TrainConfig> = {}): TrainConfig => ({
  model: { kind: 'mlp', hidden: [16] },
  optimizer: { kind: 'sgd', lr: 0.1, momentum: 0.9, weightDecay: 5e-4 },
  schedule: { kind: 'step', milestones: [0.5] },
  epochs: 3,
  batchSize: 8,
  seed: 1,
  ...over,
});

beforeAll(async () => {
  await initBackend('wasm');
});

describe('schedules', () => {
  it('constant, step, cosine and linear warmup/decay', () => {
    expect(scheduleFactor({ kind: 'constant' }, 7, 10)).toBe(1);
    const step = Array.from({ length: 10 }, (_, t) => scheduleFactor({ kind: 'step' }, t, 10));
    expect(step).toEqual([1, 1, 1, 1, 1, 0.1, 0.1, 0.1, 0.1, 0.1].map((v, i) => (i < 5 ? 1 : step[5])));
    expect(step[5]).toBeCloseTo(0.1, 12);
    expect(scheduleFactor({ kind: 'step', milestones: [0.5, 0.75], gamma: 0.5 }, 8, 10)).toBe(0.25);
    expect(scheduleFactor({ kind: 'cosine' }, 0, 11)).toBe(1);
    expect(scheduleFactor({ kind: 'cosine' }, 5, 11)).toBeCloseTo(0.5, 12);
    expect(scheduleFactor({ kind: 'cosine', minFactor: 0.1 }, 10, 11)).toBeCloseTo(0.1, 12);
    const lin = Array.from({ length: 10 }, (_, t) => scheduleFactor({ kind: 'linear', warmup: 0.2 }, t, 10));
    expect(lin[0]).toBe(0.5);
    expect(lin[1]).toBe(1);
    expect(lin[2]).toBe(1);
    expect(lin[9]).toBe(0);
    expect(lin[5]).toBeCloseTo(1 - 3 / 7, 12);
    const lr = makeSchedule({ kind: 'step' }, 0.01, 4);
    expect([lr(0), lr(1), lr(2), lr(3)].map((v) => Number(v.toPrecision(6)))).toEqual([0.01, 0.01, 0.001, 0.001]);
    expect(() => scheduleFactor({ kind: 'step', milestones: [1.5] }, 0, 10)).toThrow();
  });
});

describe('optimizers', () => {
  const p = () => [tf.tensor1d([1, -2])];
  const g = () => [tf.tensor1d([0.5, 0.5])];

  it('SGD with momentum and weight decay matches PyTorch by hand', () => {
    const opt = makeOptimizer({ kind: 'sgd', lr: 0.1, momentum: 0.9, weightDecay: 0.1 });
    expect(opt.slotsPerParam).toBe(1);
    // g' = g + wd·θ = [0.6, 0.3]; v = 0.9·[0.1, 0.2] + g' = [0.69, 0.48]; θ − 0.1·v.
    const r = opt.update(p(), g(), [tf.tensor1d([0.1, 0.2])], 0.1, 3);
    const v = r.slots[0].dataSync();
    expect(v[0]).toBeCloseTo(0.69, 6);
    expect(v[1]).toBeCloseTo(0.48, 6);
    const th = r.params[0].dataSync();
    expect(th[0]).toBeCloseTo(0.931, 6);
    expect(th[1]).toBeCloseTo(-2.048, 6);
    // Nesterov: θ − lr·(g' + μ·v) = [1 − 0.1·1.221, −2 − 0.1·0.732].
    const nes = makeOptimizer({ kind: 'sgd', lr: 0.1, momentum: 0.9, weightDecay: 0.1, nesterov: true });
    const rn = nes.update(p(), g(), [tf.tensor1d([0.1, 0.2])], 0.1, 3).params[0].dataSync();
    expect(rn[0]).toBeCloseTo(0.8779, 6);
    expect(rn[1]).toBeCloseTo(-2.0732, 6);
    // Plain SGD keeps no slots.
    const plain = makeOptimizer({ kind: 'sgd', lr: 0.1 });
    expect(plain.initSlots(p())).toEqual([]);
    expect(Array.from(plain.update(p(), g(), [], 0.5, 0).params[0].dataSync())).toEqual([0.75, -2.25]);
  });

  it('Adam and AdamW match a hand computation with bias correction', () => {
    const b1 = 0.9, b2 = 0.999, eps = 1e-8, lr = 0.01, wd = 0.1;
    const th = [1, -2], gr = [0.5, 0.5], m0 = [0.05, -0.1], v0 = [0.001, 0.004];
    const t = 1; // the second step: bias corrections 1 − β^2
    const expected = (decoupled: boolean) => th.map((x, i) => {
      const gi = decoupled ? gr[i] : gr[i] + wd * x;
      const xi = decoupled ? x * (1 - lr * wd) : x;
      const m = b1 * m0[i] + (1 - b1) * gi;
      const v = b2 * v0[i] + (1 - b2) * gi * gi;
      const mh = m / (1 - b1 ** 2);
      const vh = v / (1 - b2 ** 2);
      return xi - (lr * mh) / (Math.sqrt(vh) + eps);
    });
    for (const kind of ['adam', 'adamw'] as const) {
      const opt = makeOptimizer({ kind, lr, weightDecay: wd });
      expect(opt.slotsPerParam).toBe(2);
      const r = opt.update(p(), g(), [tf.tensor1d(m0), tf.tensor1d(v0)], lr, t);
      const got = r.params[0].dataSync();
      const want = expected(kind === 'adamw');
      expect(got[0]).toBeCloseTo(want[0], 6);
      expect(got[1]).toBeCloseTo(want[1], 6);
      expect(r.slots).toHaveLength(2);
    }
  });
});

describe('trainer', () => {
  it('is deterministic: same seed, bit-identical parameters; another seed differs', async () => {
    const ex = toy(40, 1);
    for (const model of [{ kind: 'mlp', hidden: [16] }, { kind: 'convnet', width: 4, depth: 1 }] as ModelSpec[]) {
      const a = await createTrainer(mlpConfig({ model }), ex).run();
      const b = await createTrainer(mlpConfig({ model }), ex).run();
      const c = await createTrainer(mlpConfig({ model, seed: 2 }), ex).run();
      expect(values(a.params)).toEqual(values(b.params));
      expect(Array.from(a.losses)).toEqual(Array.from(b.losses));
      expect(values(a.params)[0]).not.toEqual(values(c.params)[0]);
      tf.dispose([...a.params, ...b.params, ...c.params]);
    }
  });

  it('learns a separable problem, and keeps memory flat', async () => {
    const train = toy(90, 1);
    const test = toy(60, 2);
    const before = tf.memory().numTensors;
    const tr = createTrainer(mlpConfig({ epochs: 10 }), train);
    expect(tr.steps).toBe(10 * Math.ceil(90 / 8));
    const { params, losses } = await tr.run();
    expect(tf.memory().numTensors).toBe(before + params.length);
    const first = losses.slice(0, 5).reduce((a, b) => a + b) / 5;
    const last = losses.slice(-5).reduce((a, b) => a + b) / 5;
    expect(last).toBeLessThan(first / 3);
    const result = evaluateModel(tr.model, params, test, 16);
    expect(result.accuracy).toBeGreaterThan(0.95);
    expect(result.loss).toBeLessThan(losses[0]);
    // predict gives the logits behind that accuracy, whatever the batch size.
    const logits = predict(tr.model, params, test, 7);
    expect(logits).toHaveLength(60 * 3);
    let correct = 0;
    for (let i = 0; i < 60; i++) {
      const row = Array.from(logits.subarray(i * 3, i * 3 + 3));
      if (row.indexOf(Math.max(...row)) === test.labels![i]) correct++;
    }
    expect(correct / 60).toBe(result.accuracy);
    tf.dispose(params);
  });

  it('run equals replaying step from initState (what the metagradient engine relies on)', async () => {
    const ex = toy(20, 3);
    const tr = createTrainer(mlpConfig({ optimizer: { kind: 'adam', lr: 0.01 }, epochs: 2 }), ex);
    const { params } = await tr.run();
    let s = tr.initState();
    expect(s).toHaveLength(tr.numParams * 3);
    for (let t = 0; t < tr.steps; t++) {
      const next = tf.tidy(() => tr.step(s, tr.batchWeights(t), t));
      tf.dispose(s);
      s = next;
    }
    expect(values(s.slice(0, tr.numParams))).toEqual(values(params));
    tf.dispose([...s, ...params]);
  });

  it('weights the loss as Σ w_i ℓ_i / B', () => {
    const ex = toy(8, 4);
    const cfg = mlpConfig({ optimizer: { kind: 'sgd', lr: 0.1 }, epochs: 1, batchSize: 8 });
    const tr = createTrainer(cfg, ex);
    const s0 = tr.initState();
    const delta = (w: number[]) => tf.tidy(() => {
      const s1 = tr.step(s0, tf.tensor1d(w), 0);
      return tf.sub(s1[0], s0[0]).dataSync();
    });
    const one = delta(new Array(8).fill(1));
    const two = delta(new Array(8).fill(2));
    const zero = delta(new Array(8).fill(0));
    expect(Math.max(...zero.map(Math.abs))).toBe(0);
    for (let i = 0; i < one.length; i += 97) expect(two[i]).toBeCloseTo(2 * one[i], 6);
    // Trainer-level weights feed batchWeights.
    const weights = new Float32Array(8).map((_, i) => i);
    const tw = createTrainer(cfg, ex, { weights });
    const wb = tw.batchWeights(0).dataSync();
    expect(Array.from(wb)).toEqual(Array.from(tw.batches[0]));
    expect(() => createTrainer(cfg, ex, { weights: new Float32Array(3) })).toThrow(/3 example weights for 8/);
    tf.dispose(s0);
  });

  it('honours soft labels', async () => {
    const ex = toy(12, 5);
    const k = ex.numClasses;
    const oneHot = new Float32Array(12 * k);
    ex.labels!.forEach((l, i) => { oneHot[i * k + l] = 1; });
    const cfg = mlpConfig({ epochs: 2 });
    const hard = await createTrainer(cfg, ex).run();
    const softOneHot = await createTrainer(cfg, { ...ex, labels: undefined, softLabels: oneHot }).run();
    expect(values(softOneHot.params)).toEqual(values(hard.params));
    const uniform = await createTrainer(cfg, { ...ex, labels: undefined, softLabels: new Float32Array(12 * k).fill(1 / k) }).run();
    // Uniform targets: the first loss is logSumExp(z) − mean(z) ≠ the hard-label loss.
    expect(uniform.losses[0]).not.toBeCloseTo(hard.losses[0], 3);
    expect(uniform.losses[uniform.losses.length - 1]).toBeGreaterThan(Math.log(k) - 0.05);
    tf.dispose([...hard.params, ...softOneHot.params, ...uniform.params]);
  });

  it('throws TrainingDivergedError naming the step when the loss blows up', async () => {
    const ex = toy(32, 6);
    const before = tf.memory().numTensors;
    const tr = createTrainer(mlpConfig({ optimizer: { kind: 'sgd', lr: 1e12 } }), ex);
    const err = await tr.run().catch((e) => e);
    expect(err).toBeInstanceOf(TrainingDivergedError);
    expect(err.exitCode).toBe(ExitCode.dataError);
    expect(err.step).toBeGreaterThan(0);
    expect(err.message).toMatch(new RegExp(`at step ${err.step} \\(learning rate 1\\.00e\\+12\\)`));
    expect(err.message).toMatch(/Lower the learning rate/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses data it cannot train on', () => {
    const ex = toy(4, 7);
    expect(() => createTrainer(mlpConfig(), { ...ex, labels: undefined })).toThrow(/no labels/);
    expect(() => createTrainer(mlpConfig(), { ...ex, ids: [], pixels: new Uint8Array(0), labels: new Int32Array(0) })).toThrow(/empty/);
    expect(() => createTrainer({ ...mlpConfig(), epochs: 0 }, ex)).toThrow();
  });

  it('a step is differentiable with respect to the example weights (nested tf.grads)', () => {
    // SGD with momentum: the step is linear in w, so central differences are exact up to rounding.
    // The last case sums the gradient over 4 slices of the batch (data-parallel training's form of a step).
    const cases: [ModelSpec, number][] = [[{ kind: 'mlp', hidden: [8] }, 1], [{ kind: 'convnet', width: 3, depth: 1, norm: 'instance' }, 1], [{ kind: 'mlp', hidden: [8] }, 4]];
    for (const [model, slices] of cases) {
      const ex = toy(6, 8);
      const tr = createTrainer(mlpConfig({ model, batchSize: 6, epochs: 1, slices }), ex);
      const s0 = tr.initState();
      const inputs = tr.batchInputs(0);
      const probe = s0.map((t, i) => tf.randomNormal(t.shape, 0, 1, 'float32', 100 + i));
      const phi = (w: tf.Tensor): tf.Scalar => {
        const s1 = tr.step(s0, w as tf.Tensor1D, 0, inputs);
        return addAll(s1.map((t, i) => tf.sum(tf.mul(t, probe[i])))) as tf.Scalar;
      };
      const w0 = [1, 0.5, 2, 1, 0, 1.5];
      const analytic = tf.tidy(() => tf.grad(phi)(tf.tensor1d(w0)).dataSync());
      const h = 0.25;
      for (let i = 0; i < w0.length; i++) {
        const at = (d: number) => tf.tidy(() => phi(tf.tensor1d(w0.map((v, j) => (j === i ? v + d : v)))).dataSync()[0]);
        const fd = (at(h) - at(-h)) / (2 * h);
        expect(Math.abs(analytic[i] - fd)).toBeLessThan(1e-3 * Math.max(1, Math.abs(fd)));
      }
      expect(Math.max(...analytic.map(Math.abs))).toBeGreaterThan(0.1);
      tf.dispose([...s0, ...probe, inputs.x, inputs.y]);
    }
  });
});
