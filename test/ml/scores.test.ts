/**
 * Baseline per-example scores: the vectorised per-example gradient quantities
 * against loops of single-example gradients, the forgetting counter on a
 * hand-made sequence, every method end to end, and a label-noise check.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../core/rng.js';
import { gatherPixels, gatherTargets, type Examples } from '../../data/batch.js';
import type { PixelShape } from '../../data/format.js';
import { initBackend } from '../../ml/backend.js';
import { makeModel, type Model, type ModelSpec } from '../../ml/models.js';
import { perExampleCrossEntropy } from '../../ml/ops.js';
import {
  ForgettingTracker, el2n, forwardWithTaps, perExampleGradDots, perExampleGradNorms, scoreSeeds, type ScorerSettings,
} from '../../ml/scores/index.js';
import { createTrainer, type TrainConfig } from '../../ml/train.js';

const BASELINE_METHODS = ['loss', 'el2n', 'grand', 'forgetting', 'tracin'] as const;

/** Several seeds of one method, in this thread; the first run's details at the top level. */
async function scoreBaseline(
  method: string,
  train: Examples,
  o: ScorerSettings & { train: TrainConfig; target?: Examples; seeds?: number; onProgress?: (d: number, t: number) => void; signal?: AbortSignal },
) {
  const { train: cfg, target, onProgress, signal, ...settings } = o;
  const r = await scoreSeeds(train, target, { method, train: cfg, ...settings }, { onProgress, signal });
  return { ...r, details: { ...r.runs[0].details, seeds: r.details.seeds } as Record<string, any> };
}

beforeAll(async () => {
  await initBackend('wasm');
});

/** K classes: class c brightens pixels j ≡ c (mod K), plus Gaussian noise. */
function toyExamples(n: number, seed: number, shape: PixelShape = [6, 6, 1], k = 3, noise = 40): Examples {
  const rng = new Rng(seed);
  const len = shape[0] * shape[1] * shape[2];
  const pixels = new Uint8Array(n * len);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % k;
    labels[i] = c;
    for (let j = 0; j < len; j++) {
      const v = (j % k === c ? 150 : 60) + noise * rng.normal();
      pixels[i * len + j] = Math.max(0, Math.min(255, Math.round(v)));
    }
  }
  return {
    ids: Array.from({ length: n }, (_, i) => `r${i}`), pixels, shape, labels, numClasses: k,
    classNames: Array.from({ length: k }, (_, c) => `c${c}`),
  };
}

function batchOf(ex: Examples): { x: tf.Tensor4D; y: tf.Tensor2D } {
  const idx = Int32Array.from(ex.ids.keys());
  return {
    x: tf.tensor4d(gatherPixels(ex, idx), [idx.length, ...ex.shape]),
    y: tf.tensor2d(gatherTargets(ex, idx), [idx.length, ex.numClasses]),
  };
}

/** Parameters away from init: small random perturbation, so no layer sits at a symmetric point. */
function paramsFor(model: Model, seed: number): tf.Tensor[] {
  const rng = new Rng(seed);
  return model.init(seed).map((p) => {
    const noise = Float32Array.from({ length: p.size }, () => 0.1 * rng.normal());
    const out = tf.add(p, tf.tensor(noise, p.shape));
    p.dispose();
    return out;
  });
}

/** The gradient of row i's loss term l(p)[i] w.r.t. the parameters, one row at a time (the reference). */
function loopedGrads(params: tf.Tensor[], b: number, rowLosses: (p: tf.Tensor[]) => tf.Tensor1D): tf.Tensor[][] {
  const out: tf.Tensor[][] = [];
  for (let i = 0; i < b; i++) {
    out.push(tf.grads((...p: tf.Tensor[]) => tf.sum(tf.slice(rowLosses(p), [i], [1])) as tf.Scalar)(params));
  }
  return out;
}

const normOf = (g: tf.Tensor[]) => Math.sqrt(g.reduce((a, t) => a + tf.sum(tf.square(t)).dataSync()[0], 0));
const dotOf = (g: tf.Tensor[], h: tf.Tensor[]) => g.reduce((a, t, j) => a + tf.sum(tf.mul(t, h[j])).dataSync()[0], 0);

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rel: number): void {
  expect(actual.length).toBe(expected.length);
  const scale = Math.max(...Array.from(expected, Math.abs));
  for (let i = 0; i < expected.length; i++) {
    expect(Math.abs(actual[i] - expected[i]), `row ${i}: ${actual[i]} vs ${expected[i]}`).toBeLessThanOrEqual(rel * scale);
  }
}

const io = (shape: PixelShape, k: number) => ({ inputShape: shape, numClasses: k });

const MODELS: { name: string; spec: ModelSpec; shape: PixelShape }[] = [
  { name: 'logreg', spec: { kind: 'logreg' }, shape: [6, 6, 1] },
  { name: 'mlp, input norm, output scale', spec: { kind: 'mlp', hidden: [7, 5], inputNorm: { mean: [0.4], std: [0.3] }, outputScale: 0.1 }, shape: [6, 6, 1] },
  { name: 'convnet w4 d1 instance', spec: { kind: 'convnet', width: 4, depth: 1 }, shape: [6, 6, 2] },
  { name: 'convnet w4 d2 instance, relu before norm', spec: { kind: 'convnet', width: 4, depth: 2, normBeforeActivation: false }, shape: [7, 7, 1] },
  { name: 'convnet w4 d2 no norm (conv bias)', spec: { kind: 'convnet', width: 4, depth: 2, norm: 'none' }, shape: [6, 6, 2] },
];
const BATCH_NORM: { name: string; spec: ModelSpec; shape: PixelShape } = {
  name: 'convnet w4 d2 batch norm', spec: { kind: 'convnet', width: 4, depth: 2, norm: 'batch' }, shape: [6, 6, 1],
};

describe('forwardWithTaps', () => {
  it.each([...MODELS, BATCH_NORM])('gives Model.apply’s logits: $name', ({ spec, shape }) => {
    const model = makeModel(spec, io(shape, 3));
    const params = paramsFor(model, 3);
    const { x, y } = batchOf(toyExamples(5, 4, shape));
    const [a, b] = [model.apply(params, x).dataSync(), forwardWithTaps(model, params, x).dataSync()];
    expectClose(b, a, 1e-6);
    tf.dispose([...params, x, y]);
  });
});

describe('perExampleGradNorms', () => {
  it.each(MODELS)('equals a loop of single-example gradients: $name', ({ spec, shape }) => {
    const model = makeModel(spec, io(shape, 3));
    const params = paramsFor(model, 5);
    const { x, y } = batchOf(toyExamples(6, 6, shape));
    const before = tf.memory().numTensors;
    const norms = perExampleGradNorms(model, params, x, y);
    expect(tf.memory().numTensors).toBe(before + 1); // nothing leaks, x is not disposed
    const expected = tf.tidy(() => {
      const rows = Array.from({ length: 6 }, (_, i) => [tf.slice(x, i, 1), tf.slice(y, i, 1)] as const);
      return rows.map(([xi, yi]) => normOf(tf.grads((...p: tf.Tensor[]) => tf.sum(perExampleCrossEntropy(model.apply(p, xi), yi)) as tf.Scalar)(params)));
    });
    expectClose(norms.dataSync(), expected, 1e-4);
    tf.dispose([...params, x, y, norms]);
  });

  it('with batch norm, equals the looped gradients with the batch statistics held constant', () => {
    const model = makeModel(BATCH_NORM.spec, io(BATCH_NORM.shape, 3));
    const params = paramsFor(model, 7);
    const { x, y } = batchOf(toyExamples(6, 8, BATCH_NORM.shape));
    const norms = perExampleGradNorms(model, params, x, y);
    // Generic autodiff through the frozen-statistics forward, one row at a time: checks the closed forms.
    const expected = tf.tidy(() => loopedGrads(params, 6, (p) => perExampleCrossEntropy(forwardWithTaps(model, p, x), y)).map(normOf));
    expectClose(norms.dataSync(), expected, 1e-4);
    tf.dispose([...params, x, y, norms]);
  });

  it('gives the same norms when conv layers are split into sub-batches', () => {
    const { spec, shape } = MODELS[4];
    const model = makeModel(spec, io(shape, 3));
    const params = paramsFor(model, 9);
    const { x, y } = batchOf(toyExamples(7, 10, shape));
    const whole = perExampleGradNorms(model, params, x, y).dataSync();
    // Room for 2 rows of either layer's largest per-row tensor (144 floats): sub-batches of 2, 2, 2, 1.
    const split = perExampleGradNorms(model, params, x, y, 2 * 144).dataSync();
    expectClose(split, whole, 1e-6);
    tf.dispose([...params, x, y]);
  });
});

describe('perExampleGradDots', () => {
  it.each([MODELS[1], MODELS[3], BATCH_NORM])('equals a loop of single-example gradient dots: $name', ({ spec, shape }) => {
    const model = makeModel(spec, io(shape, 3));
    const params = paramsFor(model, 11);
    const { x, y } = batchOf(toyExamples(6, 12, shape));
    const rng = new Rng(13);
    const g = params.map((p) => tf.tensor(Float32Array.from({ length: p.size }, () => rng.normal()), p.shape));
    const dots = perExampleGradDots(model, params, x, y, g);
    // ℓ_i as the trainer computes it on the whole batch (batch statistics included).
    const expected = tf.tidy(() => loopedGrads(params, 6, (p) => perExampleCrossEntropy(model.apply(p, x), y)).map((gi) => dotOf(gi, g)));
    expectClose(dots.dataSync(), expected, 1e-4);
    tf.dispose([...params, ...g, x, y, dots]);
  });
});

describe('el2n', () => {
  it('is the distance between the softmax and the target', () => {
    const v = tf.tidy(() => el2n(tf.tensor2d([[0, 0], [Math.log(3), 0]]), tf.tensor2d([[1, 0], [0, 1]])).dataSync());
    expect(v[0]).toBeCloseTo(Math.SQRT2 * 0.5, 6); // p = (½, ½)
    expect(v[1]).toBeCloseTo(Math.SQRT2 * 0.75, 6); // p = (¾, ¼)
  });
});

describe('ForgettingTracker', () => {
  it('counts correct→incorrect transitions; never-learned rows get the given count', () => {
    const t = new ForgettingTracker(4);
    const seq = [
      // presentations of rows 0..3 (row 3 only twice)
      [1, 0, 0, 1],
      [0, 1, 0, 0],
      [1, 0, 0],
      [0, 1, 0],
    ];
    for (const c of seq) t.update(c.map((_, i) => i), c);
    // row 0: 1 0 1 0 → 2 forgets; row 1: 0 1 0 1 → 1; row 2: never correct; row 3: 1 0 → 1.
    expect(Array.from(t.forgets)).toEqual([2, 1, 0, 1]);
    expect(Array.from(t.presentations)).toEqual([4, 4, 4, 2]);
    expect(Array.from(t.counts(9))).toEqual([2, 1, 9, 1]);
  });
});

const tinyCfg = (over: Partial<TrainConfig> = {}): TrainConfig => ({
  model: { kind: 'mlp', hidden: [8] },
  optimizer: { kind: 'sgd', lr: 0.5, momentum: 0.9 },
  epochs: 3,
  batchSize: 8,
  seed: 1,
  ...over,
});

describe('scoreBaseline', () => {
  it.each(BASELINE_METHODS)('%s: runs end to end, finite, oriented, deterministic', async (method) => {
    const train = toyExamples(20, 21);
    const target = toyExamples(9, 22);
    const cfg = tinyCfg(method === 'grand' || method === 'tracin' ? { model: { kind: 'convnet', width: 4, depth: 1 } } : {});
    const progress: number[] = [];
    const before = tf.memory().numTensors;
    const r = await scoreBaseline(method, train, { train: cfg, target, seeds: 2, onProgress: (d, total) => progress.push(total - d) });
    expect(tf.memory().numTensors).toBe(before);
    expect(r.scores).toHaveLength(20);
    expect(r.scores.every(Number.isFinite)).toBe(true);
    expect(progress[progress.length - 1]).toBe(0);
    expect(r.details.seeds).toEqual([1, 2]);
    const sign = method === 'tracin' ? 1 : -1;
    for (let i = 0; i < 20; i++) expect(r.scores[i]).toBe(sign * r.raw[i] + 0);
    expect(new Set(r.raw).size).toBeGreaterThan(1);
    if (method === 'forgetting') {
      // Three presentations: at most one forget, or 3 = never learned.
      for (const v of r.raw) expect([0, 0.5, 1, 1.5, 2, 3]).toContain(v);
    }
    const again = await scoreBaseline(method, train, { train: cfg, target, seeds: 2 });
    expect(again.raw).toEqual(r.raw);
  });

  it('grand at initialisation is the per-example gradient norm under the initial parameters', async () => {
    const train = toyExamples(10, 31);
    const cfg = tinyCfg();
    const r = await scoreBaseline('grand', train, { train: cfg, seeds: 1, epochsForScore: 0, scoreBatchSize: 4 });
    expect(r.details.stepsTrained).toBe(0);
    const model = makeModel(cfg.model, io(train.shape, 3));
    const params = model.init(cfg.seed);
    const { x, y } = batchOf(train);
    const expected = tf.tidy(() => loopedGrads(params, 10, (p) => perExampleCrossEntropy(model.apply(p, x), y)).map(normOf));
    expectClose(r.raw, expected, 1e-4);
    tf.dispose([...params, x, y]);
  });

  it('tracin is lr × ⟨∇ mean target loss, ∇ℓ_i⟩ at the checkpoint', async () => {
    const train = toyExamples(12, 41);
    const target = toyExamples(7, 42);
    const cfg = tinyCfg({ epochs: 2, schedule: { kind: 'cosine' } });
    const r = await scoreBaseline('tracin', train, { train: cfg, target, checkpoints: [2] });
    // Steps 0 and 1 (batches of 8 then 4 rows) at the cosine schedule's learning rates.
    const trainer = createTrainer(cfg, train);
    expect(r.details.checkpointLrs[0]).toBeCloseTo((trainer.lr(0) + trainer.lr(1)) / 2, 7);
    let state = trainer.initState();
    for (let t = 0; t < 2; t++) {
      const next = tf.tidy(() => trainer.step(state, trainer.batchWeights(t), t));
      tf.dispose(state);
      state = next;
    }
    const params = state.slice(0, trainer.numParams);
    const expected = tf.tidy(() => {
      const tb = batchOf(target);
      const g = tf.grads((...p: tf.Tensor[]) => tf.mean(perExampleCrossEntropy(trainer.model.apply(p, tb.x), tb.y)) as tf.Scalar)(params);
      const { x, y } = batchOf(train);
      // Scoring batches are the training batch size (8): rows 0..7, then 8..11.
      const first = loopedGrads(params, 8, (p) => perExampleCrossEntropy(trainer.model.apply(p, tf.slice(x, 0, 8)), tf.slice(y, 0, 8)));
      const rest = loopedGrads(params, 4, (p) => perExampleCrossEntropy(trainer.model.apply(p, tf.slice(x, 8, 4)), tf.slice(y, 8, 4)));
      return [...first, ...rest].map((gi) => r.details.checkpointLrs[0] * dotOf(gi, g));
    });
    expectClose(r.raw, expected, 1e-4);
    tf.dispose(state);
  });

  it('stops on abort without leaking tensors', async () => {
    const train = toyExamples(20, 55);
    const ctl = new AbortController();
    const before = tf.memory().numTensors;
    const run = scoreBaseline('tracin', train, {
      train: tinyCfg(), target: train, signal: ctl.signal, onProgress: (done) => { if (done === 4) ctl.abort(); },
    });
    await expect(run).rejects.toThrow(/abort/i);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('rejects tracin without a target, and bad options', async () => {
    const train = toyExamples(6, 51);
    await expect(scoreBaseline('tracin', train, { train: tinyCfg() })).rejects.toThrow(/target/);
    await expect(scoreBaseline('el2n', train, { train: tinyCfg(), epochsForScore: 7 })).rejects.toThrow(/epochsForScore/);
    await expect(scoreBaseline('tracin', train, { train: tinyCfg(), target: train, checkpoints: [2, 1] })).rejects.toThrow(/checkpoints/);
    await expect(scoreBaseline('el2n', train, { train: tinyCfg(), seeds: 0 })).rejects.toThrow(/seeds/);
  });
});

/** Area under the ROC curve of `score` separating positives (true) from negatives: P(score_pos > score_neg). */
function auroc(score: Float32Array, positive: boolean[]): number {
  let wins = 0;
  let pairs = 0;
  for (let i = 0; i < score.length; i++) {
    if (!positive[i]) continue;
    for (let j = 0; j < score.length; j++) {
      if (positive[j]) continue;
      pairs++;
      wins += score[i] > score[j] ? 1 : score[i] === score[j] ? 0.5 : 0;
    }
  }
  return wins / pairs;
}

describe('label noise', () => {
  it('flipped labels score lower than clean ones under loss, el2n, grand and forgetting', async () => {
    // Three separable classes, 8% of the labels moved to another class at random.
    const train = toyExamples(150, 61, [6, 6, 1], 3, 50);
    const rng = new Rng(62);
    const flipped: boolean[] = new Array(150).fill(false);
    for (const i of rng.permutation(150).subarray(0, 12)) {
      train.labels![i] = (train.labels![i] + 1 + rng.int(2)) % 3;
      flipped[i] = true;
    }
    const cfg: TrainConfig = { model: { kind: 'mlp', hidden: [16] }, optimizer: { kind: 'adam', lr: 0.01 }, epochs: 10, batchSize: 16, seed: 3 };
    const clean = flipped.map((f) => !f);
    for (const method of ['loss', 'el2n', 'grand', 'forgetting'] as const) {
      const r = await scoreBaseline(method, train, { train: cfg, seeds: 2, epochsForScore: 2 });
      expect(auroc(r.scores, clean), method).toBeGreaterThan(0.8);
    }
  });
});
