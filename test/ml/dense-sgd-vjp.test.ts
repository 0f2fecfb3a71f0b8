/**
 * The written-out VJP of a dense ReLU network's SGD step (ml/dense-sgd-vjp.ts)
 * against the tape's backward over backward, and against central finite
 * differences of the step itself, on every backend; then a whole metagradient
 * through it against the taped one.
 */
import * as tf from '@tensorflow/tfjs';
import { addAll } from '../../ml/ops.js';
import { expect, it } from 'vitest';
import { denseSgdVjp } from '../../ml/dense-sgd-vjp.js';
import { meanCrossEntropyTarget, metagradient } from '../../ml/metagrad.js';
import { makeModel } from '../../ml/models.js';
import { createTrainer, type TrainConfig, type Trainer } from '../../ml/train.js';
import { toyExamples } from '../helpers/toy.js';
import { FD_BACKENDS, TOLERANCE_SCALE, describeOn } from './backends.js';
import { dot, randn } from './fd.js';

type State = tf.Tensor[];

const CASES: Array<{ name: string; cfg: TrainConfig; soft?: boolean }> = [
  { name: 'logreg, plain SGD', cfg: { model: { kind: 'logreg' }, optimizer: { kind: 'sgd', lr: 0.3 }, epochs: 1, batchSize: 8, seed: 1 } },
  {
    name: 'MLP [12], momentum, weight decay, logits scaled by 0.1',
    cfg: { model: { kind: 'mlp', hidden: [12], outputScale: 0.1 }, optimizer: { kind: 'sgd', lr: 0.2, momentum: 0.9, weightDecay: 5e-3 }, epochs: 1, batchSize: 8, seed: 2 },
  },
  {
    name: 'MLP [10, 7], Nesterov, input normalisation, soft labels summing to 1.3',
    cfg: {
      model: { kind: 'mlp', hidden: [10, 7], inputNorm: { mean: [0.4], std: [0.3] } },
      optimizer: { kind: 'sgd', lr: 0.1, momentum: 0.5, nesterov: true, weightDecay: 1e-2 },
      epochs: 1, batchSize: 8, seed: 3,
    },
    soft: true,
  },
];

/** A state a few steps into training (so ReLUs and the softmax are not at their initial values), and non-unit row weights. */
function setup(cfg: TrainConfig, soft: boolean | undefined): { trainer: Trainer; state: State } {
  const train = toyExamples(24, 11, [6, 6, 1], { soft });
  const weights = Float32Array.from({ length: 24 }, (_, i) => 0.5 + (i % 5) * 0.25);
  const trainer = createTrainer(cfg, train, { weights });
  let state = trainer.initState();
  for (let t = 0; t < 2; t++) {
    const next = tf.tidy(() => trainer.step(state, trainer.batchWeights(t), t));
    tf.dispose(state);
    state = next;
  }
  return { trainer, state };
}

/** The tape's VJP of step t: tf.grads of ⟨step(s, w), v⟩, as the metagradient engine takes it without the written-out one. */
function tapeVjp(trainer: Trainer, s: State, t: number, v: State): { vPrev: Float32Array[]; dw: Float32Array } {
  return tf.tidy(() => {
    const S = s.length;
    const inputs = trainer.batchInputs(t);
    const f = (...args: tf.Tensor[]) => {
      const next = trainer.step(args.slice(0, S), args[S] as tf.Tensor1D, t, inputs);
      return addAll(next.map((x, j) => tf.sum(tf.mul(x, v[j])))) as tf.Scalar;
    };
    const g = tf.grads(f)([...s, trainer.batchWeights(t)]);
    return { vPrev: g.slice(0, S).map((x) => x.dataSync() as Float32Array), dw: g[S].dataSync() as Float32Array };
  });
}

function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let scale = 0;
  let diff = 0;
  for (let i = 0; i < a.length; i++) {
    scale = Math.max(scale, Math.abs(b[i]));
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
  }
  return diff / scale;
}

for (const backend of FD_BACKENDS) describeOn(backend, `written-out SGD step VJP on ${backend}`, () => {
  for (const { name, cfg, soft } of CASES) {
    it(`equals the tape's VJP and finite differences of the step: ${name}`, () => {
      const { trainer, state } = setup(cfg, soft);
      const vjp = denseSgdVjp(trainer)!;
      expect(vjp).not.toBeNull();
      const t = 2;
      const v = state.map((x, j) => tf.tensor(randn(x.shape, 100 + j).values, x.shape));
      const before = tf.memory().numTensors;
      const fused = tf.tidy(() => {
        const r = vjp(state, t, v);
        return { vPrev: r.vPrev.map((x) => x.dataSync() as Float32Array), dw: r.dw.dataSync() as Float32Array };
      });
      expect(tf.memory().numTensors).toBe(before);
      const taped = tapeVjp(trainer, state, t, v);
      const tol = 1e-4 * TOLERANCE_SCALE[backend];
      fused.vPrev.forEach((x, j) => expect(maxRelDiff(x, taped.vPrev[j]), `state tensor ${j}`).toBeLessThan(tol));
      expect(maxRelDiff(fused.dw, taped.dw)).toBeLessThan(tol);

      // Central differences of ⟨v, step(s + h·d, w + h·e)⟩ along random d, e against ⟨vPrev, d⟩ + ⟨dw, e⟩.
      // The step holds ReLU's derivative, a jump: the state moves by 1e-5 per value, too little to
      // flip a ReLU here, while the row weights (which flip none) move by 1e-3.
      const d = state.map((x, j) => randn(x.shape, 200 + j, 0.01).values);
      const e = randn([8], 300).values;
      const w0 = trainer.batchWeights(t).dataSync();
      const along = (h: number) => tf.tidy(() => {
        const s = state.map((x, j) => tf.add(x, tf.mul(tf.tensor(d[j], x.shape), h)));
        const w = tf.tensor1d(Float32Array.from(w0, (wi, i) => wi + h * e[i]));
        const next = trainer.step(s, w, t);
        return addAll(next.map((x, j) => tf.sum(tf.mul(x, v[j])))).dataSync()[0];
      });
      const h = 1e-3;
      const fd = (along(h) - along(-h)) / (2 * h);
      const predicted = fused.vPrev.reduce((a, x, j) => a + dot(x, d[j]), 0) + dot(fused.dw, e);
      expect(Math.abs(fd - predicted) / Math.abs(predicted)).toBeLessThan(2e-2 * TOLERANCE_SCALE[backend]);
      tf.dispose([...state, ...v]);
    });
  }

  it('gives the whole metagradient the tape gives, and is the default where it applies', async () => {
    const cfg = CASES[1].cfg;
    const train = toyExamples(24, 5);
    const target = meanCrossEntropyTarget(makeModel(cfg.model, { inputShape: train.shape, numClasses: 3 }), toyExamples(30, 6), 7);
    const threeEpochs = { ...cfg, epochs: 3 };
    const fused = await metagradient(createTrainer(threeEpochs, train), target, { k: 2, storeAll: false });
    const taped = await metagradient(createTrainer(threeEpochs, train), target, { k: 2, storeAll: false, tape: true });
    expect(fused.stats.fused).toBe(true);
    expect(taped.stats.fused).toBe(false);
    expect(fused.targetLoss).toBe(taped.targetLoss);
    expect(maxRelDiff(fused.grad, taped.grad)).toBeLessThan(1e-4 * TOLERANCE_SCALE[backend]);
  });

  it('declines the models and optimizers it does not cover', () => {
    const train = toyExamples(12, 1);
    const convnet = createTrainer({ model: { kind: 'convnet', width: 2, depth: 1 }, optimizer: { kind: 'sgd', lr: 0.1 }, epochs: 1, batchSize: 4, seed: 0 }, train);
    const adam = createTrainer({ model: { kind: 'mlp', hidden: [4] }, optimizer: { kind: 'adam', lr: 0.01 }, epochs: 1, batchSize: 4, seed: 0 }, train);
    expect(denseSgdVjp(convnet)).toBeNull();
    expect(denseSgdVjp(adam)).toBeNull();
  });
});
