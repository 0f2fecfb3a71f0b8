/**
 * plant: a seeded copy with known problems and the truth beside them; score and
 * select then report, per planted kind, what they found and kept.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fixedListValues, numericValues } from '../../data/columns.js';
import { openDataset, readStrings } from '../../data/reader.js';
import { Rng } from '../../core/rng.js';
import { PERTURBATIONS, perturb } from '../../data/perturb.js';
import { ingest } from '../../stages/ingest.js';
import { plant, plantPlan } from '../../stages/plant.js';
import { score } from '../../stages/score.js';
import { select } from '../../stages/select/index.js';
import { detection, keptByKind } from '../../stages/planted.js';
import { REPO, assertBuilt, cli, tempDir } from '../pipeline/helpers.js';

let dir: string;
let clean: string;
beforeAll(async () => {
  assertBuilt();
  dir = await tempDir();
  clean = path.join(dir, 'clean');
  await ingest(path.join(REPO, 'data/builtin/fashion-mnist'), { split: 'test', preset: 'fashion-mnist', limit: 400, out: clean });
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

async function rows(ds: string) {
  const d = await openDataset(ds);
  const labels: number[] = [];
  const original: number[] = [];
  const pixels: Uint8Array[] = [];
  for await (const b of d.blocks()) {
    labels.push(...numericValues(b.column('label')));
    if (d.column('original_label')) original.push(...numericValues(b.column('original_label')));
    const px = fixedListValues<Uint8Array>(b.column('pixels'));
    for (let i = 0; i < b.length; i++) pixels.push(px.slice(i * 784, (i + 1) * 784));
  }
  return { labels, original, pixels, ids: await readStrings(d, 'id'), planted: d.column('planted') ? await readStrings(d, 'planted') : [] };
}

describe('plant', () => {
  it('plans disjoint problems of the asked sizes: label noise among the in-domain rows', () => {
    const p = plantPlan(1000, { labelNoise: 0.2, offDomain: 0.5, duplicates: 0.05, seed: 3 });
    expect(p.counts).toEqual({ 'off-domain': 500, 'label-noise': 100, duplicate: 50 });
    for (let i = 0; i < 1000; i++) if (p.duplicated[i]) expect(p.kind[i]).toBe(0);
  });

  it('writes the truth beside the planted rows, seeded, leaving clean rows as they were', async () => {
    const out = path.join(dir, 'planted');
    const r = await plant(clean, { out, labelNoise: 0.25, offDomain: 0.2, duplicates: 0.05, seed: 1 });
    expect(r.numRows).toBe(420);
    expect(r.summary.planted).toEqual({ 'label-noise': 80, 'off-domain': 80, duplicate: 20 });
    const before = await rows(clean);
    const after = await rows(out);
    // The truth column says what the summary says: every planted row is tagged, the rest are clean.
    const tally: Record<string, number> = {};
    for (const k of after.planted) tally[k] = (tally[k] ?? 0) + 1;
    expect(tally).toEqual({ clean: 240, 'label-noise': 80, 'off-domain': 80, duplicate: 20 });
    const byId = new Map(before.ids.map((id, i) => [id, i]));
    for (let j = 0; j < after.ids.length; j++) {
      const i = byId.get(after.ids[j].replace(/#dup$/, ''))!;
      expect(after.original[j]).toBe(before.labels[i]);
      const kind = after.planted[j];
      if (kind === 'label-noise') expect(after.labels[j]).not.toBe(before.labels[i]);
      else expect(after.labels[j]).toBe(before.labels[i]);
      const samePixels = after.pixels[j].every((v, k) => v === before.pixels[i][k]);
      expect(samePixels, `${after.ids[j]} (${kind})`).toBe(kind !== 'off-domain');
    }
    const again = await plant(clean, { out: path.join(dir, 'planted-again'), labelNoise: 0.25, offDomain: 0.2, duplicates: 0.05, seed: 1 });
    expect(again.fingerprint).toBe(r.fingerprint);
    expect((await rows(again.dir)).planted).toEqual(after.planted);
  });

  it('transforms pixels: invert and flip are involutions, blur and noise change the image', () => {
    const px = Uint8Array.from({ length: 4 * 6 * 1 }, (_, i) => (i * 37) % 256);
    for (const kind of PERTURBATIONS) {
      const once = perturb(kind, [4, 6, 1], px, new Rng(0));
      expect(once.length).toBe(px.length);
      expect(once.some((v, i) => v !== px[i]), kind).toBe(true);
      if (kind === 'invert' || kind === 'flip') expect(perturb(kind, [4, 6, 1], once, new Rng(0))).toEqual(px);
    }
  });

  it('refuses a dataset that already carries planted problems', async () => {
    await expect(plant(path.join(dir, 'planted'), { out: path.join(dir, 'twice'), labelNoise: 0.1 })).rejects.toThrow(/already has a "planted" column/);
  });

  it('score and select report what they found and kept of each kind', async () => {
    const planted = path.join(dir, 'planted');
    const loss = await score(planted, { method: 'loss', epochs: 4, out: path.join(dir, 'loss') });
    const found = loss.summary.planted as Record<string, { rows: number; auroc: number }>;
    expect(found['label-noise'].rows).toBe(80);
    // Flipped labels cost loss: the loss score ranks them below the clean rows.
    expect(found['label-noise'].auroc).toBeGreaterThan(0.7);
    const sel = await select(planted, { out: path.join(dir, 'pruned'), scores: [loss.dir], strategy: 'prune', by: 'loss', budget: 0.5, drop: 0.3 });
    const kept = sel.summary.planted as Record<string, { pool: number; kept: number; fraction: number }>;
    expect(kept['label-noise'].pool).toBe(80);
    expect(kept['label-noise'].fraction).toBeLessThan(kept.clean.fraction);
  });

  it('detection and keptByKind: AUROC 1 for a perfect score, shares per kind', () => {
    const kinds = ['clean', 'label-noise', 'clean', 'off-domain', 'clean'];
    const d = detection([0.9, 0.1, 0.8, 0.2, 0.7], kinds, [0, 1, 0, 0, 1]);
    expect(d['label-noise']).toEqual({ rows: 1, auroc: 1, flagged: 1 });
    expect(d['off-domain']).toEqual({ rows: 1, auroc: 1, flagged: 0 });
    expect(d.clean.flagged).toBeCloseTo(1 / 3);
    expect(keptByKind(kinds, [0, 1, 2])).toEqual({
      clean: { pool: 3, kept: 2, fraction: 2 / 3 }, 'label-noise': { pool: 1, kept: 1, fraction: 1 }, 'off-domain': { pool: 1, kept: 0, fraction: 0 },
    });
  });

  it('runs from the CLI', async () => {
    const r = await cli(['--json', 'plant', clean, '--off-domain', '0.1', '--transform', 'blur', '--out', path.join(dir, 'cli')]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).summary.planted['off-domain']).toBe(40);
  });
});
