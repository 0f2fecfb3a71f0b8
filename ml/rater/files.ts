/**
 * A rater on disk: `model.json` + `weights.bin` in the tfjs weights-manifest
 * layout (float32 little-endian, tensors concatenated in manifest order, so
 * `tf.io.decodeWeights` reads them) and `rater.json` with the architecture,
 * input shape, classes, normalisation and training provenance. Reading checks
 * everything before a rater rates anything: a wrong rater fails with a DataError
 * naming the file, never with wrong ratings.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';
import { DataError, MissingInputError, UsageError } from '../../core/errors.js';
import { sha256Hex } from '../../core/hash.js';
import { fileNamedIn } from '../../core/paths.js';
import { CODE_VERSION } from '../../core/version.js';
import type { PixelShape } from '../../data/format.js';
import { sizeOf } from '../init.js';
import { modelSpecSchema } from '../models.js';
import { RATER_MODES, type NamedWeights, type RaterMode } from './common.js';
import { makeRater, type Rater, type RaterArch } from './model.js';

export const RATER_FORMAT = 'metacurate-rater';
/** Bumped whenever the files or the forward pass change meaning; older raters are refused. */
export const RATER_FORMAT_VERSION = 1;
export const RATER_META_FILE = 'rater.json';
export const RATER_MODEL_FILE = 'model.json';
export const RATER_WEIGHTS_FILE = 'weights.bin';

const positiveInt = z.number().int().positive();
const pixelShapeSchema = z.tuple([positiveInt, positiveInt, positiveInt]);

/** rater.json. */
export const raterMetaSchema = z.object({
  format: z.literal(RATER_FORMAT),
  format_version: z.number().int(),
  fingerprint: z.string(),
  code_version: z.string(),
  created_at: z.string(),
  input: z.object({
    pixel_shape: pixelShapeSchema,
    channels: positiveInt,
    num_classes: z.number().int().min(0),
    class_names: z.array(z.string()),
    label_conditioned: z.boolean(),
  }),
  /** x = (pixel · pixel_scale − mean[c]) / std[c], per channel c. */
  normalisation: z.object({ pixel_scale: z.number(), mean: z.array(z.number()), std: z.array(z.number()) }),
  body: modelSpecSchema,
  heads: z.object({ feature_dim: positiveInt, instance_hidden: positiveInt, group_hidden: positiveInt }),
  rating: z.object({ column: z.string(), definition: z.string() }),
  training: z.object({
    mode: z.enum(RATER_MODES),
    settings: z.record(z.string(), z.unknown()),
    parents: z.array(z.object({ role: z.string(), fingerprint: z.string(), path: z.string().optional(), rows: z.number().optional() })),
    seconds: z.number().optional(),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
  weights: z.object({ manifest: z.string(), file: z.string(), bytes: z.number().int(), sha256: z.string() }),
});
export type RaterMeta = z.output<typeof raterMetaSchema>;

export const RATING_DEFINITION =
  'instance-head logit z (before the sigmoid); higher = more valuable to keep; in a batch the weight is softmax(sigmoid(z)) x group';

/** What training adds to the metadata. */
export interface RaterProvenance {
  fingerprint: string;
  mode: RaterMode;
  settings: Record<string, unknown>;
  parents: { role: string; fingerprint: string; path?: string; rows?: number }[];
  seconds?: number;
  details?: Record<string, unknown>;
}

function metaOf(arch: RaterArch, prov: RaterProvenance, weights: { bytes: number; sha256: string }): RaterMeta {
  const { inputNorm, ...body } = arch.body;
  return {
    format: RATER_FORMAT,
    format_version: RATER_FORMAT_VERSION,
    fingerprint: prov.fingerprint,
    code_version: CODE_VERSION,
    created_at: new Date().toISOString(),
    input: {
      pixel_shape: arch.inputShape,
      channels: arch.inputShape[2],
      num_classes: arch.numClasses,
      class_names: arch.classNames,
      label_conditioned: arch.labelConditioned,
    },
    normalisation: { pixel_scale: 1 / 255, mean: inputNorm?.mean ?? [0], std: inputNorm?.std ?? [1] },
    body: body as RaterMeta['body'],
    heads: { feature_dim: arch.featureDim, instance_hidden: arch.instanceHidden, group_hidden: arch.groupHidden },
    rating: { column: 'rating', definition: RATING_DEFINITION },
    training: { mode: prov.mode, settings: prov.settings, parents: prov.parents, seconds: prov.seconds, details: prov.details },
    weights: { manifest: RATER_MODEL_FILE, file: RATER_WEIGHTS_FILE, ...weights },
  };
}

/** The architecture a rater.json describes. */
export function archOf(meta: RaterMeta): RaterArch {
  const { mean, std } = meta.normalisation;
  return {
    inputShape: meta.input.pixel_shape as PixelShape,
    numClasses: meta.input.num_classes,
    classNames: meta.input.class_names,
    labelConditioned: meta.input.label_conditioned,
    body: modelSpecSchema.parse({ ...meta.body, inputNorm: { mean, std } }),
    featureDim: meta.heads.feature_dim,
    instanceHidden: meta.heads.instance_hidden,
    groupHidden: meta.heads.group_hidden,
  };
}

/**
 * Writes a rater's three files into `dir` (an existing, empty directory: the
 * caller makes the write atomic). The weights go in manifest
 * order as float32 little-endian, which is tfjs's layout.
 */
export async function writeRaterFiles(dir: string, arch: RaterArch, weights: readonly NamedWeights[], prov: RaterProvenance): Promise<RaterMeta> {
  const expected = makeRater(arch).paramShapes;
  if (weights.length !== expected.length || weights.some((w, i) => w.name !== expected[i].name || w.shape.join() !== expected[i].shape.join() || w.values.length !== sizeOf(w.shape))) {
    throw new UsageError('the weights do not match the rater\'s parameters');
  }
  const total = weights.reduce((a, w) => a + w.values.length, 0);
  const bin = new Float32Array(total);
  let o = 0;
  for (const w of weights) {
    bin.set(w.values, o);
    o += w.values.length;
  }
  const bytes = new Uint8Array(bin.buffer);
  const manifest = {
    format: RATER_FORMAT,
    generatedBy: `metacurate ${CODE_VERSION}`,
    convertedBy: null,
    modelTopology: null,
    weightsManifest: [{ paths: [RATER_WEIGHTS_FILE], weights: weights.map((w) => ({ name: w.name, shape: w.shape, dtype: 'float32' })) }],
    userDefinedMetadata: { architecture: RATER_META_FILE },
  };
  const meta = metaOf(arch, prov, { bytes: bytes.length, sha256: sha256Hex(bytes) });
  const json = (v: unknown) => JSON.stringify(v, null, 2) + '\n';
  await fsp.writeFile(path.join(dir, RATER_WEIGHTS_FILE), bytes);
  await fsp.writeFile(path.join(dir, RATER_MODEL_FILE), json(manifest));
  // rater.json last: its presence marks a complete rater.
  await fsp.writeFile(path.join(dir, RATER_META_FILE), json(meta));
  return meta;
}

async function exists(p: string): Promise<boolean> {
  return fsp.access(p).then(() => true, () => false);
}

/**
 * The rater directory `dir` names: `dir` itself when it holds rater.json, or its
 * `rater/` subdirectory (a ratings sidecar written by training keeps its rater there).
 */
export async function resolveRaterDir(dir: string): Promise<string> {
  if (await exists(path.join(dir, RATER_META_FILE))) return dir;
  const nested = path.join(dir, 'rater');
  if (await exists(path.join(nested, RATER_META_FILE))) return nested;
  const st = await fsp.stat(dir).catch(() => undefined);
  throw new MissingInputError(st?.isDirectory() ? `no ${RATER_META_FILE} here: not a rater directory` : 'no rater directory here', {
    file: dir,
    hint: 'Train a rater first: metacurate rate <train> --train-rater --target <dir> --out <dir>',
  });
}

export interface SavedRater {
  dir: string;
  meta: RaterMeta;
  arch: RaterArch;
  weights: NamedWeights[];
}

/**
 * Reads and checks a rater directory (or a ratings sidecar holding one): format
 * and version, the manifest against the architecture, and the weights' size and
 * sha256. Missing files are a MissingInputError; wrong content a DataError.
 */
export async function readRater(dirOrSidecar: string): Promise<SavedRater> {
  const dir = await resolveRaterDir(dirOrSidecar);
  const metaFile = path.join(dir, RATER_META_FILE);
  const raw = await readJsonFile(metaFile, dir);
  if (raw?.format !== RATER_FORMAT) {
    throw new DataError(`not a metacurate rater (format ${JSON.stringify(raw?.format)}, expected "${RATER_FORMAT}")`, { file: metaFile });
  }
  if (raw.format_version !== RATER_FORMAT_VERSION) {
    throw new DataError(`the rater has format version ${raw.format_version}, but this metacurate (${CODE_VERSION}) reads version ${RATER_FORMAT_VERSION}`, {
      file: dir,
      hint: 'Retrain the rater with this version: metacurate rate <train> --train-rater ...',
    });
  }
  const parsed = raterMetaSchema.safeParse(raw);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    throw new DataError(`${RATER_META_FILE} is invalid at ${i.path.join('.') || '(top level)'}: ${i.message}`, { file: metaFile, hint: 'The rater is corrupt; retrain it' });
  }
  const meta = parsed.data;
  if (meta.input.channels !== meta.input.pixel_shape[2]) {
    throw new DataError(`${RATER_META_FILE} says ${meta.input.channels} channels but its pixel shape is ${meta.input.pixel_shape.join('×')}`, { file: metaFile });
  }
  let arch: RaterArch;
  let expected: { name: string; shape: number[] }[];
  try {
    arch = archOf(meta);
    expected = makeRater(arch).paramShapes;
  } catch (err) {
    throw new DataError(`${RATER_META_FILE} describes no valid rater: ${(err as Error).message}`, { file: metaFile, hint: 'The rater is corrupt; retrain it' });
  }
  const manifestFile = fileNamedIn(dir, meta.weights.manifest, metaFile, 'the weights manifest');
  const manifest = await readJsonFile(manifestFile, dir);
  const entries: { name: string; shape: number[]; dtype: string }[] = manifest?.weightsManifest?.[0]?.weights ?? [];
  const mismatch = expected.findIndex((e, i) => entries[i]?.name !== e.name || (entries[i]?.shape ?? []).join() !== e.shape.join() || entries[i]?.dtype !== 'float32');
  if (entries.length !== expected.length || mismatch >= 0) {
    const at = mismatch >= 0 ? mismatch : Math.min(entries.length, expected.length);
    throw new DataError(`${meta.weights.manifest} does not match the architecture in ${RATER_META_FILE} (tensor ${at}: ${JSON.stringify(entries[at] ?? null)}, expected ${JSON.stringify(expected[at] ?? null)})`, {
      file: manifestFile,
      hint: 'The rater is corrupt or its files come from different raters; retrain it',
    });
  }
  const binFile = fileNamedIn(dir, meta.weights.file, metaFile, 'the weights file');
  let bytes: Buffer;
  try {
    bytes = await fsp.readFile(binFile);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new MissingInputError('the rater\'s weights file is missing', { file: binFile, hint: 'Copy the whole rater directory, or retrain it' });
    throw err;
  }
  const total = expected.reduce((a, e) => a + sizeOf(e.shape), 0);
  if (bytes.length !== total * 4 || bytes.length !== meta.weights.bytes) {
    throw new DataError(`the weights file has ${bytes.length} bytes, expected ${total * 4}`, { file: binFile, hint: 'It was truncated or replaced; retrain the rater' });
  }
  if (sha256Hex(bytes) !== meta.weights.sha256) {
    throw new DataError('the weights file\'s sha256 does not match rater.json', { file: binFile, hint: 'It was edited or corrupted; retrain the rater' });
  }
  // Copy into an aligned buffer (a Buffer may sit at any offset of a shared pool).
  const all = new Float32Array(new Uint8Array(bytes).buffer);
  const weights: NamedWeights[] = [];
  let o = 0;
  for (const e of expected) {
    const size = sizeOf(e.shape);
    weights.push({ name: e.name, shape: e.shape, values: all.slice(o, o + size) });
    o += size;
  }
  return { dir, meta, arch, weights };
}

async function readJsonFile(file: string, dir: string): Promise<any> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new MissingInputError(`the rater's ${path.basename(file)} is missing`, { file, hint: `Copy the whole rater directory (${dir}), or retrain it` });
    }
    throw err;
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new DataError(`cannot parse ${path.basename(file)}: ${(err as Error).message}`, { file, hint: 'The rater is corrupt; retrain it' });
  }
}

export interface LoadedRater extends SavedRater {
  rater: Rater;
  params: tf.Tensor[];
}

const loaded = new Map<string, LoadedRater>();

/**
 * A rater ready to rate: read, checked and turned into tensors. Cached per
 * directory and weights hash for the life of the thread (a worker rates many
 * ranges with one rater); call after initBackend.
 */
export async function loadRater(dir: string): Promise<LoadedRater> {
  const saved = await readRater(dir);
  const key = `${path.resolve(saved.dir)}#${saved.meta.weights.sha256}`;
  const hit = loaded.get(key);
  if (hit) return hit;
  const rater = makeRater(saved.arch);
  const params = saved.weights.map((w) => tf.tensor(w.values, w.shape, 'float32'));
  const out = { ...saved, rater, params };
  loaded.set(key, out);
  return out;
}

/** Where a dataset does not fit a rater: the first mismatch, naming both (DataError). */
export function checkRaterFits(
  rater: { dir: string; meta: RaterMeta },
  data: { dir: string; shape: PixelShape; numClasses: number; classNames: string[]; hasLabels: boolean; hasSoftLabels: boolean },
): void {
  const want = rater.meta.input;
  if (want.pixel_shape.join() !== data.shape.join()) {
    throw new DataError(`the rater ${rater.dir} takes ${want.pixel_shape.join('×')} images but this dataset's are ${data.shape.join('×')}`, {
      file: data.dir,
      hint: 'Ingest the data at the rater\'s working resolution and channels (ingest --size/--channels), or train a rater for this shape',
    });
  }
  if (!want.label_conditioned) return;
  if (!data.hasLabels && !data.hasSoftLabels) {
    throw new DataError(`the rater ${rater.dir} is conditioned on labels but this dataset has none`, {
      file: data.dir,
      hint: 'Rate labelled data, or train an unconditioned rater (--no-labels)',
    });
  }
  if (data.numClasses !== want.num_classes) {
    throw new DataError(`the rater ${rater.dir} was trained on ${want.num_classes} classes but this dataset has ${data.numClasses}`, {
      file: data.dir,
      hint: 'Rate data with the same class list, or train a rater on it',
    });
  }
  const a = want.class_names;
  const b = data.classNames;
  const differs = a.length > 0 && b.length > 0 && a.findIndex((name, i) => name !== b[i]);
  if (typeof differs === 'number' && differs >= 0) {
    throw new DataError(`class ${differs} is "${b[differs]}" here but "${a[differs]}" for the rater ${rater.dir}`, {
      file: data.dir,
      hint: 'Ingest with the rater\'s class list (ingest --class-names)',
    });
  }
}
