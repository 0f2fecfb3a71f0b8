/**
 * The plant stage: a copy of a labelled dataset with known problems planted in
 * it, so a user can see on their own data which scores find which problem and
 * what each selection keeps of it. Seeded; each row gets at most one problem:
 *
 * - off-domain: a fraction `offDomain` of the rows get their pixels transformed
 *   away from the domain (`transform`: invert, flip, blur, noise), label kept;
 * - label-noise: a fraction `labelNoise` of the other rows get a label drawn
 *   uniformly from the other classes;
 * - duplicate: `duplicates` × rows extra rows, exact copies of clean rows, with
 *   new ids (`<id>#dup`).
 *
 * Columns: the parent's own, plus `planted` (clean | label-noise | off-domain |
 * duplicate) and `original_label`. The score and select stages report per kind
 * what they found and kept whenever a `planted` column is present.
 */
import { z } from 'zod';
import { DataError } from '../core/errors.js';
import { Rng } from '../core/rng.js';
import { numericValues } from '../data/columns.js';
import type { ColumnSpec } from '../data/format.js';
import { PERTURBATIONS, perturb } from '../data/perturb.js';
import { openDataset, type Dataset } from '../data/reader.js';
import type { StageContext, StageResult } from './context.js';
import { defineStage, parentOf } from './define.js';
import { rowReader } from './select/rows.js';

export const PLANT_VERSION = '1';
export const PLANTED_COLUMN = 'planted';
export const PLANTED_KINDS = ['clean', 'label-noise', 'off-domain', 'duplicate'] as const;
export type PlantedKind = (typeof PLANTED_KINDS)[number];

const fraction = z.number().min(0).max(1);

export const plantOptions = z.object({
  out: z.string().min(1).describe('output dataset directory'),
  labelNoise: fraction.default(0).describe('fraction of the in-domain rows whose label moves to a uniformly drawn other class'),
  offDomain: fraction.default(0).describe('fraction of the rows whose pixels are transformed away from the domain, label kept'),
  transform: z.enum(PERTURBATIONS).default('invert').describe('how off-domain rows are transformed'),
  duplicates: z.number().min(0).max(1).default(0).describe('extra rows, as a fraction of the rows: exact copies of clean rows under new ids'),
  seed: z.number().int().min(0).default(0).describe('seed of every draw'),
  overwrite: z.boolean().default(false).describe('replace the output if it exists'),
}).strict();

export type PlantOptions = z.input<typeof plantOptions>;

/** The class list of the label column; refuses data this cannot plant into. */
function labelClasses(ds: Dataset): string[] {
  const label = ds.column('label');
  if (!label || label.kind !== 'classLabel' || label.names.length < 2) {
    throw new DataError('planting needs a label column with a class list of at least 2 classes', { file: ds.dir, hint: 'Ingest with class names (a ClassLabel feature)' });
  }
  if (!ds.pixelShape || !ds.column('pixels')) throw new DataError('the dataset has no pixels column', { file: ds.dir, hint: 'Ingest the images first' });
  if (ds.column(PLANTED_COLUMN)) throw new DataError(`the dataset already has a "${PLANTED_COLUMN}" column`, { file: ds.dir, hint: 'Plant into the clean dataset instead' });
  return label.names;
}

/** Which rows get which problem: disjoint sets drawn from seeded streams. */
export function plantPlan(n: number, o: { labelNoise: number; offDomain: number; duplicates: number; seed: number }) {
  const kind = new Uint8Array(n); // index into PLANTED_KINDS
  const order = Rng.derive(o.seed, 'plant/rows').permutation(n);
  const off = Math.round(o.offDomain * n);
  const noisy = Math.round(o.labelNoise * (n - off));
  for (let j = 0; j < off; j++) kind[order[j]] = 2;
  for (let j = off; j < off + noisy; j++) kind[order[j]] = 1;
  const clean = order.subarray(off + noisy);
  const dups = Math.min(clean.length, Math.round(o.duplicates * n));
  // The copies go right after their originals, so a selection sees them as neighbours do in scraped data.
  const duplicated = new Uint8Array(n);
  for (const i of clean.subarray(0, dups)) duplicated[i] = 1;
  return { kind, duplicated, counts: { 'label-noise': noisy, 'off-domain': off, duplicate: dups } };
}

export const plantStage = defineStage({
  name: 'plant',
  version: PLANT_VERSION,
  description: 'Copy a labelled dataset with known problems planted in it (label noise, off-domain rows, duplicates) and a `planted` truth column',
  options: plantOptions,
  inputs: [{ name: 'dataset', description: 'the labelled dataset to plant problems into' }],
  async plan(inputs, o) {
    const ds = await openDataset(inputs.dataset[0]);
    labelClasses(ds);
    const { out: _o, overwrite: _w, seed: _s, ...options } = o;
    return { ds, options, seed: o.seed, parents: [parentOf({ dir: ds.dir, ds }, 'dataset')] };
  },
  async run(ctx, plan, o, out) {
    const { ds } = plan;
    const names = labelClasses(ds);
    const K = names.length;
    const shape = ds.pixelShape!;
    const n = await ds.countRows();
    const p = plantPlan(n, o);
    const relabel = Rng.derive(o.seed, 'plant/labels');
    const pixelNoise = Rng.derive(o.seed, 'plant/pixels');
    const columns: ColumnSpec[] = [...ds.ownColumns, { name: PLANTED_COLUMN, kind: 'string' }, { name: 'original_label', kind: 'int64' }];
    const writer = await out.dataset({
      columns,
      pixelShape: shape,
      description: `${ds.info?.description ?? 'a dataset'} with planted problems (seed ${o.seed})`,
      license: ds.info?.license,
    });
    const progress = ctx.progress('plant', n);
    for await (const block of ds.blocks()) {
      ctx.signal?.throwIfAborted();
      const read = rowReader(block, ds.ownColumns);
      const labels = numericValues(block.column('label'));
      for (let r = 0; r < block.length; r++) {
        const i = block.offset + r;
        const label = labels[r];
        if (!(Number.isInteger(label) && label >= 0 && label < K)) throw new DataError(`label ${label} is outside the ${K} classes`, { file: ds.dir, row: i });
        const row: Record<string, unknown> = { ...read(r), original_label: label, [PLANTED_COLUMN]: PLANTED_KINDS[p.kind[i]] };
        if (p.kind[i] === 1) row.label = (label + 1 + relabel.int(K - 1)) % K;
        if (p.kind[i] === 2) row.pixels = perturb(o.transform, shape, row.pixels as Uint8Array, pixelNoise);
        await writer.writeRow(row);
        if (p.duplicated[i]) await writer.writeRow({ ...row, id: `${String(row.id)}#dup`, [PLANTED_COLUMN]: 'duplicate' });
      }
      progress.tick(block.length);
    }
    progress.done();
    ctx.log.info({ ...p.counts, rows: n }, 'plant: done');
    return { summary: { rows_in: n, rows: n + p.counts.duplicate, planted: p.counts, transform: o.transform } };
  },
});

/** Plants problems into the dataset at `dir` (the library form of `metacurate plant`). */
export async function plant(dir: string, options: PlantOptions, ctx?: StageContext): Promise<StageResult> {
  return plantStage.run(ctx, { dataset: dir }, options);
}
