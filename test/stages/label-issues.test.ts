/** label-issues: the flagged rows, worst first, as a dataset and a CSV; computed, or read from a confident sidecar. */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { Rng } from '../../core/rng.js';
import { fixedListValues } from '../../data/columns.js';
import { numericValues } from '../../data/columns.js';
import { openDataset, readStrings } from '../../data/reader.js';
import { ingest } from '../../stages/ingest.js';
import { LABEL_ISSUES_CSV, labelIssues } from '../../stages/label-issues.js';
import { plant } from '../../stages/plant.js';
import { score } from '../../stages/score.js';
import { REPO, assertBuilt, cli, tempDir } from '../pipeline/helpers.js';

let dir: string;
let noisy: string;
beforeAll(async () => {
  assertBuilt();
  dir = await tempDir();
  await ingest(path.join(REPO, 'data/builtin/fashion-mnist'), { split: 'train', preset: 'fashion-mnist', limit: 1500, out: path.join(dir, 'clean') });
  noisy = path.join(dir, 'noisy');
  await plant(path.join(dir, 'clean'), { out: noisy, labelNoise: 0.2, seed: 4 });
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

test('lists the flagged rows worst first, with names, in a dataset and a CSV', async () => {
  const csv = path.join(dir, 'issues.csv');
  const r = await labelIssues(noisy, { out: path.join(dir, 'issues'), csv, epochs: 6 });
  const flagged = r.summary.flagged as number;
  expect(r.numRows).toBe(flagged);
  expect(flagged).toBeGreaterThan(150);
  expect(flagged).toBeLessThan(600);
  // Most of what it flags was planted, and it finds a good part of what was planted.
  const planted = r.summary.planted as Record<string, { flagged: number }>;
  expect(planted['label-noise'].flagged).toBeGreaterThan(0.5);
  expect(planted.clean.flagged).toBeLessThan(0.2);
  const ds = await openDataset(r.dir);
  const conf: number[] = [];
  const rank: number[] = [];
  for await (const b of ds.blocks()) {
    conf.push(...numericValues(b.column('confidence')));
    rank.push(...numericValues(b.column('rank')));
  }
  expect(rank).toEqual(Array.from({ length: flagged }, (_, i) => i + 1));
  for (let i = 1; i < conf.length; i++) expect(conf[i]).toBeLessThanOrEqual(conf[i - 1]);
  const given = await readStrings(ds, 'given_label');
  const suggested = await readStrings(ds, 'suggested_label');
  expect(given.every((g) => ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'].includes(g))).toBe(true);
  expect(suggested.filter((s, i) => s !== given[i]).length).toBeGreaterThan(flagged / 2);
  const text = await fsp.readFile(csv, 'utf8');
  expect(text).toBe(await fsp.readFile(path.join(r.dir, LABEL_ISSUES_CSV), 'utf8'));
  const lines = text.trim().split('\n');
  expect(lines[0]).toBe('id,row,given_label,suggested_label,confidence,rank');
  expect(lines).toHaveLength(flagged + 1);
  // T-shirt/top holds a slash but no comma: written as is; the row of line 2 is the worst.
  expect(lines[1].split(',').at(-1)).toBe('1');
});

test('reads a confident score sidecar instead of computing one, and runs from the CLI', async () => {
  const sc = await score(noisy, { method: 'confident', epochs: 6, out: path.join(dir, 'cl') });
  const fromSidecar = await labelIssues(noisy, { out: path.join(dir, 'issues-2'), scores: sc.dir });
  const computed = await labelIssues(noisy, { out: path.join(dir, 'issues-3'), epochs: 6 });
  expect(await readStrings(await openDataset(fromSidecar.dir), 'id')).toEqual(await readStrings(await openDataset(computed.dir), 'id'));
  const r = await cli(['--json', 'label-issues', noisy, '--scores', sc.dir, '--out', path.join(dir, 'issues-cli')]);
  expect(r.code, r.stderr).toBe(0);
  expect(JSON.parse(r.stdout).summary.flagged).toBe(fromSidecar.summary.flagged);
  const bad = await cli(['label-issues', noisy, '--scores', noisy, '--out', path.join(dir, 'issues-bad')]);
  expect(bad.code).toBe(65);
  expect(bad.stderr).toMatch(/no "confident" column/);
});

test('a folder of images with 15% moved into the wrong class: the top of the CSV is mostly the moved ones', async () => {
  // A user's folder: one sub-folder per class, PNG files; then 15% of the files moved to another class's folder.
  const clean = await openDataset(path.join(dir, 'clean'));
  const names = clean.classNames!;
  const folder = path.join(dir, 'folder');
  const rng = new Rng(11);
  const moved = new Set<string>();
  let n = 0;
  for await (const b of clean.blocks()) {
    const px = fixedListValues<Uint8Array>(b.column('pixels'));
    const labels = numericValues(b.column('label'));
    for (let i = 0; i < b.length && n < 1000; i++, n++) {
      let label = labels[i];
      if (rng.next() < 0.15) {
        label = (label + 1 + rng.int(names.length - 1)) % names.length;
        moved.add(`${names[label]}/img${n}.png`);
      }
      await fsp.mkdir(path.join(folder, names[label]), { recursive: true });
      await sharp(Buffer.from(px.subarray(i * 784, (i + 1) * 784)), { raw: { width: 28, height: 28, channels: 1 } })
        .png().toFile(path.join(folder, names[label], `img${n}.png`));
    }
  }
  const ds = path.join(dir, 'folder-ds');
  expect((await cli(['ingest', folder, '--out', ds])).code).toBe(0);
  const csv = path.join(dir, 'folder-issues.csv');
  const r = await cli(['--json', 'label-issues', ds, '--out', path.join(dir, 'folder-issues'), '--csv', csv]);
  expect(r.code, r.stderr).toBe(0);
  const ids = (await fsp.readFile(csv, 'utf8')).trim().split('\n').slice(1).map((line) => line.split(',')[0]);
  const precision = (k: number) => ids.slice(0, k).filter((id) => moved.has(id)).length / Math.min(k, ids.length);
  const recall = ids.filter((id) => moved.has(id)).length / moved.size;
  // Measured when written (README): 0.90 at 50, 0.86 at 100, 0.59 over all 239 flagged; recall 0.83 of the 171 moved.
  console.info(`label-issues on a folder: ${moved.size} moved, ${ids.length} flagged; precision@50 ${precision(50).toFixed(2)}, @100 ${precision(100).toFixed(2)}, all ${precision(ids.length).toFixed(2)}; recall ${recall.toFixed(2)}`);
  expect(precision(50)).toBeGreaterThanOrEqual(0.8);
  expect(precision(100)).toBeGreaterThanOrEqual(0.75);
  expect(recall).toBeGreaterThan(0.7);
});
