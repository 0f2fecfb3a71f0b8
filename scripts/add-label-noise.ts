/**
 * Writes a copy of a labelled dataset with symmetric label noise, for measuring
 * how well scores find mislabelled rows (scripts/bench/noise-auroc.ts).
 *
 *   npm run build && node dist/scripts/add-label-noise.js <dataset> --out <dir> --rate 0.2 --seed 0 [--overwrite]
 *
 * "Symmetric" noise: exactly round(rate · n) rows (halves round up) are chosen
 * uniformly at random without replacement, and each gets a label drawn uniformly
 * from the *other* K − 1 classes, so a flipped label always differs from the
 * clean one. Both draws come from the seeded Rng: the same dataset, rate and
 * seed give the same output.
 *
 * Output: a full dataset (stage 'label-noise') with the parent's own columns,
 * `label` replaced by the noisy label, plus `noisy` (bool, true where flipped)
 * and `clean_label` (int64, the original label); `flipped.jsonl` lists every
 * flipped row as {"id", "row", "label", "clean_label"} in row order; the count
 * is in curation.json's summary.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { DataError, UsageError, exitCodeOf } from '../core/errors.js';
import { fingerprint as computeFingerprint } from '../core/hash.js';
import { Rng } from '../core/rng.js';
import { numericValues } from '../data/columns.js';
import type { ColumnSpec } from '../data/format.js';
import { openDataset, type Dataset } from '../data/reader.js';
import { DatasetWriter, type DatasetMeta } from '../data/writer.js';
import { rowReader } from '../stages/select/rows.js';

export const LABEL_NOISE_STAGE = 'label-noise';
export const LABEL_NOISE_VERSION = '1';
export const FLIPPED_FILE = 'flipped.jsonl';

export interface LabelNoiseOptions {
  /** Output dataset directory. */
  out: string;
  /** Fraction of rows whose label is flipped, in [0, 1]. */
  rate: number;
  seed: number;
  overwrite?: boolean;
}

export interface LabelNoiseSummary extends Record<string, unknown> {
  noise: 'symmetric';
  rate: number;
  rows: number;
  flipped: number;
  classes: number;
}

export interface LabelNoiseResult {
  dir: string;
  fingerprint: string;
  numRows: number;
  summary: LabelNoiseSummary;
}

function checkOptions(o: LabelNoiseOptions): void {
  if (!(typeof o.rate === 'number' && o.rate >= 0 && o.rate <= 1)) {
    throw new UsageError(`--rate must be a number in [0, 1], got ${o.rate}`);
  }
  if (!(Number.isInteger(o.seed) && o.seed >= 0)) throw new UsageError(`--seed must be a non-negative integer, got ${o.seed}`);
  if (!o.out) throw new UsageError('--out is required');
}

/** The class names of the dataset's `label` column; refuses data this cannot flip. */
function labelClasses(ds: Dataset): string[] {
  const label = ds.column('label');
  if (!label) throw new DataError('the dataset has no label column', { file: ds.dir, hint: 'Label noise needs labelled data; ingest with labels' });
  if (label.kind !== 'classLabel' || label.names.length < 2) {
    throw new DataError('the label column has no class list of at least 2 classes, so the other classes are unknown', {
      file: ds.dir,
      hint: 'Ingest with class names (a ClassLabel feature)',
    });
  }
  for (const name of ['noisy', 'clean_label']) {
    if (ds.column(name)) {
      throw new DataError(`the dataset already has a "${name}" column: it looks noised already`, { file: ds.dir, hint: 'Add noise to the clean dataset instead' });
    }
  }
  return label.names;
}

/** Options as recorded in curation.json and hashed into the fingerprint. */
function canonicalOptions(o: LabelNoiseOptions): Record<string, unknown> {
  return { noise: 'symmetric', rate: o.rate };
}

function meta(ds: Dataset, o: LabelNoiseOptions): DatasetMeta {
  return {
    stage: LABEL_NOISE_STAGE,
    stageVersion: LABEL_NOISE_VERSION,
    options: canonicalOptions(o),
    seed: o.seed,
    parents: [{ fingerprint: ds.fingerprint, path: ds.dir, role: 'source' }],
    description: `${ds.curation?.stage ?? 'dataset'} with ${o.rate * 100}% symmetric label noise (seed ${o.seed})`,
  };
}

/** The fingerprint `addLabelNoise(dir, o)` would give its output, without doing the work. */
export async function labelNoiseFingerprint(dir: string, o: LabelNoiseOptions): Promise<string> {
  checkOptions(o);
  const m = meta(await openDataset(dir), o);
  return computeFingerprint({ stage: m.stage, stageVersion: m.stageVersion, options: m.options, seed: m.seed, parents: m.parents.map((p) => p.fingerprint) });
}

/**
 * The noise plan for n rows and K classes: which rows flip (exactly round(rate·n))
 * and, for each, an offset in 1..K−1 added to the clean label mod K, which is a
 * uniform draw from the other classes whatever the clean label is.
 */
export function planLabelNoise(n: number, classes: number, rate: number, seed: number): { flip: Uint8Array; offset: Int32Array; count: number } {
  const count = Math.round(rate * n);
  const flip = new Uint8Array(n);
  const offset = new Int32Array(n);
  const chosen = Rng.derive(seed, 'label-noise/rows').permutation(n).subarray(0, count);
  for (const i of chosen) flip[i] = 1;
  // Offsets drawn in row order, so they do not depend on the permutation's order.
  const draw = Rng.derive(seed, 'label-noise/labels');
  for (let i = 0; i < n; i++) if (flip[i]) offset[i] = 1 + draw.int(classes - 1);
  return { flip, offset, count };
}

/** Writes `dir` with symmetric label noise to `o.out` (see the top of the file). */
export async function addLabelNoise(dir: string, o: LabelNoiseOptions): Promise<LabelNoiseResult> {
  checkOptions(o);
  const ds = await openDataset(dir);
  const names = labelClasses(ds);
  const K = names.length;
  const n = await ds.countRows();
  const plan = planLabelNoise(n, K, o.rate, o.seed);
  const columns: ColumnSpec[] = [
    ...ds.ownColumns,
    { name: 'noisy', kind: 'bool' },
    { name: 'clean_label', kind: 'int64' },
  ];
  const writer = await DatasetWriter.create(o.out, {
    columns,
    pixelShape: ds.pixelShape,
    meta: meta(ds, o),
    overwrite: o.overwrite,
  });
  const flipped: string[] = [];
  try {
    for await (const block of ds.blocks()) {
      const read = rowReader(block, ds.ownColumns);
      const labels = numericValues(block.column('label'));
      for (let r = 0; r < block.length; r++) {
        const i = block.offset + r;
        const clean = labels[r];
        if (!(Number.isInteger(clean) && clean >= 0 && clean < K)) {
          throw new DataError(`label ${clean} is outside the ${K} classes`, { file: ds.dir, row: i });
        }
        const row = read(r);
        const label = plan.flip[i] ? (clean + plan.offset[i]) % K : clean;
        if (plan.flip[i]) flipped.push(JSON.stringify({ id: String(row.id), row: i, label, clean_label: clean }));
        await writer.writeRow({ ...row, label, noisy: plan.flip[i] === 1, clean_label: clean });
      }
    }
    // Inside the atomic commit: the list appears together with the dataset or not at all.
    await fsp.writeFile(path.join(writer.tempDir, FLIPPED_FILE), flipped.length ? flipped.join('\n') + '\n' : '');
  } catch (err) {
    await writer.abort();
    throw err;
  }
  const summary: LabelNoiseSummary = { noise: 'symmetric', rate: o.rate, rows: n, flipped: plan.count, classes: K };
  const res = await writer.finish(summary);
  return { dir: res.dir, fingerprint: res.fingerprint, numRows: res.numRows, summary };
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      out: { type: 'string' },
      rate: { type: 'string', default: '0.2' },
      seed: { type: 'string', default: '0' },
      overwrite: { type: 'boolean', default: false },
    },
  });
  if (positionals.length !== 1) throw new UsageError(`expected one dataset directory, got ${positionals.length}`, { hint: 'Usage: add-label-noise <dataset> --out <dir> --rate 0.2 --seed 0 [--overwrite]' });
  const res = await addLabelNoise(positionals[0], {
    out: values.out ?? '',
    rate: Number(values.rate),
    seed: Number(values.seed),
    overwrite: values.overwrite,
  });
  console.log(`label-noise: flipped ${res.summary.flipped} of ${res.summary.rows} labels (rate ${res.summary.rate}, seed ${Number(values.seed)}) → ${res.dir}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => {
    console.error(`add-label-noise: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(exitCodeOf(err));
  });
}
