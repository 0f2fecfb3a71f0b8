/**
 * The metagradient must equal finite differences of the *whole training run*:
 * perturb one example's weight, retrain from scratch, difference the target loss.
 */
import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../../ml/backend.js';
import { TOLERANCE_SCALE, describeOn } from './backends.js';
import { TrainingDivergedError, createTrainer, type TrainConfig } from '../../ml/train.js';
import { makeModel } from '../../ml/models.js';
import { meanCrossEntropyTarget, metagradient, metasmoothness, replayPlan, shallowestK } from '../../ml/metagrad.js';
import type { Examples } from '../../data/batch.js';
import { toyExamples } from '../helpers/toy.js';

/** φ: the mean target cross-entropy, in chunks of 7 rows so chunk summation is exercised too. */
function targetLossFor(cfg: TrainConfig, target: Examples) {
  const model = makeModel(cfg.model, { inputShape: target.shape, numClasses: target.numClasses });
  return meanCrossEntropyTarget(model, target, 7);
}

/** φ(w): train from scratch with weights w, return the target loss (float64 accumulation on the host). */
async function phiAt(cfg: TrainConfig, train: Examples, target: ReturnType<typeof targetLossFor>, w: Float32Array): Promise<number> {
  const trainer = createTrainer(cfg, train, { weights: w });
  const { params } = await trainer.run();
  let v = 0;
  for (let c = 0; c < target.chunks; c++) v += tf.tidy(() => target.loss(params, c).dataSync()[0]);
  tf.dispose(params);
  return v;
}

async function checkAgainstFiniteDifferences(cfg: TrainConfig, n: number, probe: number[], k: number, h: number) {
  const train = toyExamples(n, 1);
  const target = toyExamples(30, 2);
  const tl = targetLossFor(cfg, target);
  const ones = new Float32Array(n).fill(1);
  const trainer = createTrainer(cfg, train, { weights: ones });
  const before = tf.memory().numTensors;
  const res = await metagradient(trainer, tl, { k, storeAll: false });
  expect(tf.memory().numTensors).toBe(before); // nothing leaks through the replay tree
  expect(res.stats.backwardSteps).toBe(trainer.steps);
  // Every state stored (they fit): no replay, one forward step per step, the same metagradient bit for bit.
  const all = await metagradient(createTrainer(cfg, train, { weights: ones }), tl, { k });
  expect(tf.memory().numTensors).toBe(before);
  expect(all.stats).toMatchObject({ storedAll: true, depth: 0, forwardSteps: trainer.steps, backwardSteps: trainer.steps });
  expect(res.stats.forwardSteps).toBeGreaterThan(trainer.steps);
  expect(Array.from(all.grad)).toEqual(Array.from(res.grad));
  const fd: number[] = [];
  for (const i of probe) {
    const wp = ones.slice(); wp[i] += h;
    const wm = ones.slice(); wm[i] -= h;
    fd.push(((await phiAt(cfg, train, tl, wp)) - (await phiAt(cfg, train, tl, wm))) / (2 * h));
  }
  const mg = probe.map((i) => res.grad[i]);
  return { fd, mg, res };
}

function cosine(a: number[], b: number[]): number {
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < a.length; i++) { ab += a[i] * b[i]; aa += a[i] * a[i]; bb += b[i] * b[i]; }
  return ab / Math.sqrt(aa * bb);
}

function relErr(a: number[], b: number[]): number {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += b[i] ** 2; }
  return Math.sqrt(num / den);
}

// Weight steps h: small enough not to cross ReLU kinks (h = 0.05 already does on
// the MLP; instance norm centres the ConvNet's activations at the kink, so it
// needs a smaller step), large enough for float32 differences.
for (const backend of ['wasm', 'webgpu'] as const) describeOn(backend, `metagradient (REPLAY) vs whole-run finite differences on ${backend}`, () => {
  /** Error bounds, scaled for the backend; `cos` is the bound on 1 - cosine. */
  const within = (mg: number[], fd: number[], cos: number, rel: number) => {
    expect(1 - cosine(mg, fd)).toBeLessThan(cos * TOLERANCE_SCALE[backend]);
    expect(relErr(mg, fd)).toBeLessThan(rel * TOLERANCE_SCALE[backend]);
  };

  it('plans a logarithmic number of stored states', () => {
    expect(replayPlan(100, 4).peakStates).toBeLessThan(replayPlan(1600, 4).peakStates);
    // 16× the steps costs only two more tree levels (k states each) at k = 4.
    expect(replayPlan(1600, 4).peakStates - replayPlan(100, 4).peakStates).toBeLessThanOrEqual(8);
  });

  it('with weights entering late (from step t0), matches finite differences of the late weights only', async () => {
    const cfg: TrainConfig = { model: { kind: 'mlp', hidden: [16] }, optimizer: { kind: 'sgd', lr: 0.2, momentum: 0.5 }, epochs: 3, batchSize: 8, seed: 4 };
    const train = toyExamples(24, 5);
    const target = toyExamples(30, 6);
    const tl = targetLossFor(cfg, target);
    const trainer = createTrainer(cfg, train);
    const from = 4;
    const before = tf.memory().numTensors;
    const res = await metagradient(trainer, tl, { k: 2, from, storeAll: false });
    expect(tf.memory().numTensors).toBe(before);
    expect(res.stats.backwardSteps).toBe(trainer.steps - from);
    // φ when rows train with weight 1 before `from` and w after it.
    const phiLate = (w: Float32Array): number => {
      let state = trainer.initState();
      for (let t = 0; t < trainer.steps; t++) {
        const wb = t < from ? trainer.batchWeights(t) : tf.tensor1d(Float32Array.from(trainer.batches[t], (i) => w[i]));
        const next = tf.tidy(() => trainer.step(state, wb, t));
        tf.dispose([...state, wb]);
        state = next;
      }
      const params = state.slice(0, trainer.numParams);
      let v = 0;
      for (let c = 0; c < tl.chunks; c++) v += tf.tidy(() => tl.loss(params, c).dataSync()[0]);
      tf.dispose(state);
      return v;
    };
    const h = 0.01;
    const probe = [0, 3, 7, 11, 19, 23];
    const fd = probe.map((i) => {
      const wp = new Float32Array(24).fill(1); wp[i] += h;
      const wm = new Float32Array(24).fill(1); wm[i] -= h;
      return (phiLate(wp) - phiLate(wm)) / (2 * h);
    });
    const mg = probe.map((i) => res.grad[i]);
    within(mg, fd, 1e-4, 0.01);
    // The full metagradient is the late part plus the early part: they differ.
    const full = await metagradient(createTrainer(cfg, train), tl, { k: 2, storeAll: false });
    expect(relErr(mg, probe.map((i) => full.grad[i]))).toBeGreaterThan(0.1);
  });

  it('matches for an MLP trained with plain SGD', async () => {
    const cfg: TrainConfig = { model: { kind: 'mlp', hidden: [16] }, optimizer: { kind: 'sgd', lr: 0.2 }, epochs: 3, batchSize: 8, seed: 3 };
    const probe = [0, 1, 2, 5, 9, 13, 17, 22];
    const { fd, mg } = await checkAgainstFiniteDifferences(cfg, 24, probe, 2, 0.01);
    within(mg, fd, 1e-4, 0.005);
  });

  it('matches for an MLP with SGD + momentum + weight decay and a step schedule', async () => {
    const cfg: TrainConfig = {
      model: { kind: 'mlp', hidden: [16] },
      optimizer: { kind: 'sgd', lr: 0.1, momentum: 0.9, weightDecay: 5e-3 },
      schedule: { kind: 'step', milestones: [0.5], gamma: 0.1 },
      epochs: 3, batchSize: 8, seed: 4,
    };
    const probe = [0, 3, 4, 8, 11, 15, 20, 23];
    const { fd, mg } = await checkAgainstFiniteDifferences(cfg, 24, probe, 3, 0.01);
    within(mg, fd, 1e-4, 0.005);
  });

  it('matches for a ConvNet (conv → instance norm → ReLU → avg pool) with SGD + momentum', async () => {
    const cfg: TrainConfig = {
      model: { kind: 'convnet', width: 4, depth: 1, norm: 'instance', outputScale: 1 },
      optimizer: { kind: 'sgd', lr: 0.1, momentum: 0.5 },
      epochs: 2, batchSize: 6, seed: 5,
    };
    const probe = [0, 1, 2, 7, 10, 14];
    const { fd, mg } = await checkAgainstFiniteDifferences(cfg, 18, probe, 2, 0.002);
    within(mg, fd, 1e-3, 0.02);
  });

  it('gives the same metagradient whatever the REPLAY branching factor', async () => {
    const cfg: TrainConfig = { model: { kind: 'logreg' }, optimizer: { kind: 'sgd', lr: 0.3, momentum: 0.9 }, epochs: 4, batchSize: 6, seed: 6 };
    const train = toyExamples(24, 7);
    const tl = targetLossFor(cfg, toyExamples(12, 8));
    const a = await metagradient(createTrainer(cfg, train), tl, { k: 2, storeAll: false });
    const b = await metagradient(createTrainer(cfg, train), tl, { k: 16, storeAll: false });
      expect(a.stats.depth).toBeGreaterThan(b.stats.depth);
    expect(a.stats.peakStoredStates).toBeLessThan(b.stats.peakStoredStates);
    for (let i = 0; i < 24; i++) expect(a.grad[i]).toBeCloseTo(b.grad[i], 6);
  });

  it('sizes the REPLAY tree to the budget by default: the shallowest that fits', async () => {
    expect(shallowestK(1600, 1000)).toBe(40); // depth 1: 40 segments of 40, 81 states
    expect(replayPlan(1600, 40)).toEqual({ depth: 1, peakStates: 81 });
    expect(shallowestK(1600, 50)).toBe(12); // 81 states do not fit; depth 2: 12³ ≥ 1600, 37 states
    expect(replayPlan(1600, 12).peakStates).toBeLessThanOrEqual(50);
    expect(shallowestK(1600, 3)).toBe(2); // nothing fits: the budget check refuses
    const cfg: TrainConfig = { model: { kind: 'logreg' }, optimizer: { kind: 'sgd', lr: 0.3, momentum: 0.9 }, epochs: 4, batchSize: 2, seed: 6 };
    const train = toyExamples(24, 7);
    const tl = targetLossFor(cfg, toyExamples(12, 8));
    const stored = await metagradient(createTrainer(cfg, train), tl);
    const trainer = createTrainer(cfg, train);
    const bytes = stored.stats.stateBytes;
    // A budget for 20 of the 48 states: not all, so REPLAY, one level deep (k = 7: 15 states).
    const sized = await metagradient(trainer, tl, { maxStateBytes: 20 * bytes });
    expect(stored.stats.storedAll).toBe(true);
    expect(sized.stats).toMatchObject({ storedAll: false, k: 7, depth: 1, forwardSteps: 2 * trainer.steps - 7 });
    expect(sized.stats.peakStoredStates).toBeLessThanOrEqual(20);
    expect(Array.from(sized.grad)).toEqual(Array.from(stored.grad));
  });

  it('refuses, before any work, a run whose states do not fit the memory budget', async () => {
    const cfg: TrainConfig = { model: { kind: 'mlp', hidden: [64] }, optimizer: { kind: 'sgd', lr: 0.1 }, epochs: 50, batchSize: 4, seed: 1 };
    const trainer = createTrainer(cfg, toyExamples(24, 1));
    const before = tf.memory().numTensors;
    await expect(metagradient(trainer, { chunks: 1, loss: () => tf.scalar(0) }, { maxStateBytes: 100_000 })).rejects.toThrow(/stored states.*over the/);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('metasmoothness diagnostic', () => {
  it('finds a smooth run smooth, and the metagradient predicts the change along the probe', async () => {
    await initBackend('wasm');
    const cfg: TrainConfig = { model: { kind: 'mlp', hidden: [16], outputScale: 0.1 }, optimizer: { kind: 'sgd', lr: 0.5, momentum: 0.5 }, epochs: 3, batchSize: 8, seed: 9 };
    const train = toyExamples(24, 10);
    const tl = targetLossFor(cfg, toyExamples(15, 11));
    const { grad } = await metagradient(createTrainer(cfg, train), tl, { k: 3, storeAll: false });
    const report = await metasmoothness((w) => phiAt(cfg, train, tl, w), 24, { h: 0.01, grad, seed: 1 });
      expect(report.roughness).toBeLessThan(0.2);
    expect(report.predictedOverActual).toBeGreaterThan(0.9);
    expect(report.predictedOverActual).toBeLessThan(1.1);
  });
});

describe('metagradient on a diverging run', () => {
  it('stops with TrainingDivergedError naming the first non-finite step, leaking nothing', async () => {
    await initBackend('wasm');
    const cfg: TrainConfig = { model: { kind: 'mlp', hidden: [8] }, optimizer: { kind: 'sgd', lr: 1e20 }, epochs: 3, batchSize: 8, seed: 1 };
    const train = toyExamples(24, 1);
    const trainer = createTrainer(cfg, train);
    const before = tf.memory().numTensors;
    const err = await metagradient(trainer, targetLossFor(cfg, toyExamples(9, 2)), { k: 2, storeAll: false }).catch((e) => e);
    expect(err).toBeInstanceOf(TrainingDivergedError);
    // Plain training, which checks every step, names the same step.
    const plain = await createTrainer(cfg, train).run().catch((e) => e);
    expect(plain).toBeInstanceOf(TrainingDivergedError);
    expect(err.step).toBeLessThanOrEqual(plain.step + 1);
    expect(tf.memory().numTensors).toBe(before);
  });
});
