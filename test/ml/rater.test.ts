/**
 * The rater (ml/rater/): forward shapes and the instance × group weighting,
 * label conditioning, files written and read back (tfjs-compatible), refusals of
 * broken or incompatible raters, and both training modes on toy problems with a
 * known answer: regress recovers a monotone score, meta puts flipped labels low.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, DataError, MissingInputError } from '../../core/errors.js';
import { auroc, spearman } from '../../core/metrics.js';
import { Rng } from '../../core/rng.js';
import { gatherPixels, gatherTargets, type Examples } from '../../data/batch.js';
import { initBackend } from '../../ml/backend.js';
import { modelSpecSchema } from '../../ml/models.js';
import {
  RATER_FORMAT_VERSION, RATER_META_FILE, RATER_MODEL_FILE, RATER_WEIGHTS_FILE, checkRaterFits, loadRater, makeRater,
  pixelStats, rankTargets, rateExamples, readRater, trainRater, writeRaterFiles, type RaterArch, type RaterProvenance,
} from '../../ml/rater/index.js';
import { useTmpDir } from '../helpers/tmp.js';

const tmp = useTmpDir('metacurate-rater-');

beforeAll(async () => {
  await initBackend('wasm');
});

const S = 8;

/**
 * K classes of 8×8 images: class c is bright in quadrant c, plus Gaussian noise.
 * A fraction `noise` of the rows get another class's label (`flipped`).
 */
function toy(n: number, seed: number, noise = 0, k = 4): { ex: Examples; flipped: Uint8Array; brightness: Float32Array } {
  const rng = new Rng(seed);
  const len = S * S;
  const pixels = new Uint8Array(n * len);
  const labels = new Int32Array(n);
  const flipped = new Uint8Array(n);
  const brightness = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const c = rng.int(k);
    labels[i] = c;
    for (let j = 0; j < len; j++) {
      const quad = (Math.floor(j / S) < S / 2 ? 0 : 2) + (j % S < S / 2 ? 0 : 1);
      const v = Math.max(0, Math.min(255, Math.round(255 * ((quad === c ? 0.6 : 0.2) + 0.25 * rng.normal()))));
      pixels[i * len + j] = v;
      brightness[i] += v / len;
    }
    if (rng.next() < noise) {
      flipped[i] = 1;
      labels[i] = (c + 1 + rng.int(k - 1)) % k;
    }
  }
  const ex: Examples = {
    ids: Array.from({ length: n }, (_, i) => `r${seed}-${i}`), pixels, shape: [S, S, 1], labels, numClasses: k,
    classNames: Array.from({ length: k }, (_, c) => `c${c}`),
  };
  return { ex, flipped, brightness };
}

function arch(over: Partial<RaterArch> = {}): RaterArch {
  return {
    inputShape: [S, S, 1], numClasses: 4, classNames: ['c0', 'c1', 'c2', 'c3'], labelConditioned: true,
    body: modelSpecSchema.parse({ kind: 'mlp', hidden: [16], inputNorm: { mean: [0.3], std: [0.25] } }),
    featureDim: 8, instanceHidden: 64, groupHidden: 64, ...over,
  };
}

/** Parameters away from init (the label embedding starts at zero). */
function randomParams(shapes: { shape: number[] }[], seed: number): tf.Tensor[] {
  const rng = new Rng(seed);
  return shapes.map((s) => tf.tensor(Float32Array.from({ length: s.shape.reduce((a, b) => a * b, 1) }, () => 0.3 * rng.normal()), s.shape));
}

function batch(ex: Examples, n: number): { x: tf.Tensor4D; y: tf.Tensor2D } {
  const idx = Int32Array.from({ length: n }, (_, i) => i);
  return { x: tf.tensor4d(gatherPixels(ex, idx), [n, ...ex.shape]), y: tf.tensor2d(gatherTargets(ex, idx), [n, ex.numClasses]) };
}

const prov: RaterProvenance = { fingerprint: 'feedfacefeedface', mode: 'meta', settings: {}, parents: [{ role: 'train', fingerprint: 'abc' }] };

describe('rater model', () => {
  it('has the Alchemist heads: weights are softmax(sigmoid(z)) over the batch times one group scalar', () => {
    const r = makeRater(arch());
    expect(r.paramShapes.map((p) => p.name)).toEqual([
      'body.fc0.w', 'body.fc0.b', 'body.out.w', 'body.out.b', 'label.embed',
      'instance.fc1.w', 'instance.fc1.b', 'instance.fc2.w', 'instance.fc2.b',
      'group.fc1.w', 'group.fc1.b', 'group.fc2.w', 'group.fc2.b',
    ]);
    expect(r.paramShapes.find((p) => p.name === 'instance.fc1.w')!.shape).toEqual([8, 64]);
    expect(r.paramShapes.find((p) => p.name === 'group.fc1.w')!.shape).toEqual([16, 64]);
    const params = randomParams(r.paramShapes, 1);
    const { x, y } = batch(toy(10, 1).ex, 10);
    const f = r.features(params, x);
    expect(f.shape).toEqual([10, 8]);
    const { weights, instance, group } = r.batchWeights(params, x, y);
    expect(instance.shape).toEqual([10]);
    expect(group.shape).toEqual([]);
    const z = Array.from(instance.dataSync());
    const g = group.dataSync()[0];
    expect(g).toBeGreaterThan(0);
    expect(g).toBeLessThan(1);
    const e = z.map((v) => Math.exp(1 / (1 + Math.exp(-v))));
    const sum = e.reduce((a, b) => a + b, 0);
    const w = weights.dataSync();
    for (let i = 0; i < 10; i++) expect(w[i]).toBeCloseTo((e[i] / sum) * g, 6);
    // The rating is the instance logit itself.
    expect(Array.from(r.rate(params, x, y).dataSync())).toEqual(z);
  });

  it('rates a row the same whatever it is batched with, and conditions on its label', () => {
    const r = makeRater(arch());
    const params = randomParams(r.paramShapes, 2);
    const { ex } = toy(40, 2);
    const all = rateExamples(r, params, ex, undefined, 40);
    const alone = rateExamples(r, params, ex, [7, 3], 2);
    expect(alone[0]).toBeCloseTo(all[7], 5);
    expect(alone[1]).toBeCloseTo(all[3], 5);
    const relabelled = { ...ex, labels: ex.labels!.map((c) => (c + 1) % 4) };
    const other = rateExamples(r, params, relabelled);
    expect(other.some((v, i) => Math.abs(v - all[i]) > 1e-3)).toBe(true);
    // Unconditioned: no labels needed, and labels change nothing.
    const u = makeRater(arch({ labelConditioned: false }));
    expect(u.paramShapes.some((p) => p.name === 'label.embed')).toBe(false);
    const up = randomParams(u.paramShapes, 3);
    const { labels: _l, ...unlabelled } = ex;
    expect(Array.from(rateExamples(u, up, unlabelled))).toEqual(Array.from(rateExamples(u, up, relabelled)));
    expect(() => rateExamples(r, params, unlabelled)).toThrow(/labels/);
  });

  it('refuses a batch-norm body (a rating would depend on the batch)', () => {
    expect(() => makeRater(arch({ body: modelSpecSchema.parse({ kind: 'convnet', width: 4, depth: 1, norm: 'batch' }) }))).toThrow(ConfigError);
  });
});

describe('rater files', () => {
  it('round-trips: the files load back to the same parameters and ratings, and tfjs decodes the weights', async () => {
    const r = makeRater(arch());
    const params = randomParams(r.paramShapes, 4);
    const weights = params.map((p, i) => ({ name: r.paramShapes[i].name, shape: p.shape, values: p.dataSync() as Float32Array }));
    const dir = path.join(tmp(), 'roundtrip');
    await fsp.mkdir(dir);
    const meta = await writeRaterFiles(dir, arch(), weights, prov);
    expect(meta.format_version).toBe(RATER_FORMAT_VERSION);
    expect(meta.input).toEqual({ pixel_shape: [8, 8, 1], channels: 1, num_classes: 4, class_names: ['c0', 'c1', 'c2', 'c3'], label_conditioned: true });
    expect(meta.normalisation.mean).toEqual([0.3]);
    expect(meta.heads).toEqual({ feature_dim: 8, instance_hidden: 64, group_hidden: 64 });
    expect(meta.training.mode).toBe('meta');

    const loaded = await loadRater(dir);
    const { ex } = toy(30, 5);
    expect(Array.from(rateExamples(loaded.rater, loaded.params, ex))).toEqual(Array.from(rateExamples(r, params, ex)));

    // The weights-manifest layout tfjs reads.
    const manifest = JSON.parse(await fsp.readFile(path.join(dir, RATER_MODEL_FILE), 'utf8'));
    const bin = await fsp.readFile(path.join(dir, RATER_WEIGHTS_FILE));
    const decoded = tf.io.decodeWeights(new Uint8Array(bin).buffer, manifest.weightsManifest[0].weights);
    for (const w of weights) expect(Array.from(decoded[w.name].dataSync())).toEqual(Array.from(w.values));
  });

  it('refuses missing, corrupt, foreign-version and incompatible raters with the reason', async () => {
    const r = makeRater(arch());
    const weights = randomParams(r.paramShapes, 6).map((p, i) => ({ name: r.paramShapes[i].name, shape: p.shape, values: p.dataSync() as Float32Array }));
    const fresh = async (name: string) => {
      const dir = path.join(tmp(), name);
      await fsp.mkdir(dir);
      await writeRaterFiles(dir, arch(), weights, prov);
      return dir;
    };
    await expect(readRater(path.join(tmp(), 'nothing-here'))).rejects.toBeInstanceOf(MissingInputError);
    const emptyDir = path.join(tmp(), 'empty');
    await fsp.mkdir(emptyDir);
    await expect(readRater(emptyDir)).rejects.toThrow(/not a rater directory/);

    const noWeights = await fresh('no-weights');
    await fsp.rm(path.join(noWeights, RATER_WEIGHTS_FILE));
    await expect(readRater(noWeights)).rejects.toBeInstanceOf(MissingInputError);

    const oldVersion = await fresh('old-version');
    const metaFile = path.join(oldVersion, RATER_META_FILE);
    const meta = JSON.parse(await fsp.readFile(metaFile, 'utf8'));
    await fsp.writeFile(metaFile, JSON.stringify({ ...meta, format_version: RATER_FORMAT_VERSION + 1 }));
    const err = await readRater(oldVersion).catch((e) => e);
    expect(err).toBeInstanceOf(DataError);
    expect(err.message).toContain(oldVersion);
    expect(err.message).toMatch(new RegExp(`format version ${RATER_FORMAT_VERSION + 1}.*reads version ${RATER_FORMAT_VERSION}`));

    // Names in rater.json that leave the rater's folder are refused before anything is read there.
    for (const [field, name] of [['file', '../weights.bin'], ['manifest', '/etc/hostname'], ['file', '.']] as const) {
      const escaping = await fresh(`escape-${field}-${name.replace(/\W+/g, '')}`);
      const escFile = path.join(escaping, RATER_META_FILE);
      const m = JSON.parse(await fsp.readFile(escFile, 'utf8'));
      await fsp.copyFile(path.join(escaping, RATER_WEIGHTS_FILE), path.join(tmp(), 'weights.bin'));
      await fsp.writeFile(escFile, JSON.stringify({ ...m, weights: { ...m.weights, [field]: name } }));
      const e = await readRater(escaping).catch((x) => x);
      expect(e, name).toBeInstanceOf(DataError);
      expect(e.message).toMatch(/lies outside its folder/);
    }

    const edited = await fresh('edited');
    const bin = await fsp.readFile(path.join(edited, RATER_WEIGHTS_FILE));
    bin[10] ^= 0xff;
    await fsp.writeFile(path.join(edited, RATER_WEIGHTS_FILE), bin);
    await expect(readRater(edited)).rejects.toThrow(/sha256/);

    const ok = await readRater(await fresh('ok'));
    const data = { dir: 'some/data', shape: [8, 8, 1] as [number, number, number], numClasses: 4, classNames: ['c0', 'c1', 'c2', 'c3'], hasLabels: true, hasSoftLabels: false };
    expect(() => checkRaterFits(ok, data)).not.toThrow();
    expect(() => checkRaterFits(ok, { ...data, shape: [28, 28, 1] })).toThrow(new RegExp(`rater ${ok.dir} takes 8×8×1 images but this dataset's are 28×28×1`));
    expect(() => checkRaterFits(ok, { ...data, numClasses: 10, classNames: [] })).toThrow(/trained on 4 classes/);
    expect(() => checkRaterFits(ok, { ...data, hasLabels: false })).toThrow(/conditioned on labels/);
    expect(() => checkRaterFits(ok, { ...data, classNames: ['c0', 'c1', 'zz', 'c3'] })).toThrow(/class 2/);
  });
});

describe('rater training', () => {
  it('rank targets are monotone in the scores, ties shared, within [-2, 2]', () => {
    const t = rankTargets([5, -1, 3, 3]);
    expect(t[1]).toBeLessThan(t[2]);
    expect(t[2]).toBe(t[3]);
    expect(t[0]).toBeGreaterThan(t[2]);
    for (const v of t) expect(Math.abs(v)).toBeLessThanOrEqual(2);
  });

  it('regress: learns a monotone relation (Spearman > 0.8 on rows it never saw)', async () => {
    // The score is the image's mean brightness: smooth in the pixels, so it generalises.
    const { ex, brightness } = toy(500, 7);
    const out = await trainRater(ex, { scores: brightness }, { mode: 'regress', epochs: 15, batchSize: 50, seed: 1, holdout: 0.2 });
    expect(out.details.heldOutRows).toBe(100);
    expect(out.details.heldOutSpearman as number).toBeGreaterThan(0.8);
    const fresh = toy(200, 8);
    const loaded = { rater: makeRater(out.arch), params: out.weights.map((w) => tf.tensor(w.values, w.shape)) };
    const rho = spearman(rateExamples(loaded.rater, loaded.params, fresh.ex), fresh.brightness);
    expect(rho).toBeGreaterThan(0.8);
    // The group head is not trained in this mode: it keeps its initial values.
    const init = makeRater(out.arch).init(1);
    const gi = out.weights.findIndex((w) => w.name === 'group.fc2.w');
    expect(Array.from(out.weights[gi].values)).toEqual(Array.from(init[gi].dataSync()));
  });

  it('meta: puts the rows with flipped labels low (AUROC > 0.7), deterministically', async () => {
    const { ex, flipped } = toy(600, 11, 0.2);
    const { ex: target } = toy(200, 12);
    expect(pixelStats(ex).mean[0]).toBeGreaterThan(0.2);
    const settings = { mode: 'meta' as const, epochs: 6, batchSize: 32, seed: 3 };
    const out = await trainRater(ex, { target }, settings);
    const rater = makeRater(out.arch);
    const params = out.weights.map((w) => tf.tensor(w.values, w.shape));
    const ratings = rateExamples(rater, params, ex);
    const clean = Array.from(flipped, (f) => 1 - f);
    expect(flipped.reduce((a, b) => a + b, 0)).toBeGreaterThan(90);
    expect(auroc(ratings, clean)).toBeGreaterThan(0.7);
    const epochs = out.details.epochs as { raterLoss: number }[];
    expect(epochs).toHaveLength(6);
    const again = await trainRater(ex, { target }, settings);
    expect(again.weights.map((w) => Array.from(w.values))).toEqual(out.weights.map((w) => Array.from(w.values)));
  });
});
