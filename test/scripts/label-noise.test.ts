/**
 * scripts/add-label-noise: exact rate, flipped labels always differ, seeded
 * determinism, the flipped ids recorded, and refusals of unusable input.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DataError, OutputError, UsageError } from '../../core/errors.js';
import { openDataset } from '../../data/reader.js';
import { writeDataset } from '../../data/writer.js';
import { FLIPPED_FILE, addLabelNoise, labelNoiseFingerprint, planLabelNoise } from '../../scripts/add-label-noise.js';
import { TEST_META, columnValues, readJsonFile, rowPixels, shardFiles, writeImageDataset } from '../helpers/datasets.js';
import { useTmpDir } from '../helpers/tmp.js';

const tmp = useTmpDir();
const N = 103;
const CLASSES = 4;

async function source(name = 'src'): Promise<string> {
  const dir = path.join(tmp(), name);
  await fsp.rm(dir, { recursive: true, force: true });
  await writeImageDataset(dir, N, { classes: CLASSES, shardRows: 40 });
  return dir;
}

async function readFlipped(dir: string): Promise<{ id: string; row: number; label: number; clean_label: number }[]> {
  const text = await fsp.readFile(path.join(dir, FLIPPED_FILE), 'utf8');
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

describe('addLabelNoise', () => {
  it('flips exactly round(rate·n) labels, each to another class, and records them', async () => {
    const src = await source();
    const out = path.join(tmp(), 'noisy');
    const res = await addLabelNoise(src, { out, rate: 0.2, seed: 0 });
    const expected = Math.round(0.2 * N); // 21
    expect(res.summary).toMatchObject({ noise: 'symmetric', rate: 0.2, rows: N, flipped: expected, classes: CLASSES });

    const ds = await openDataset(out);
    expect(await ds.countRows()).toBe(N);
    const ids = (await columnValues(ds, 'id')) as string[];
    const labels = ((await columnValues(ds, 'label')) as bigint[]).map(Number);
    const clean = ((await columnValues(ds, 'clean_label')) as bigint[]).map(Number);
    const noisy = (await columnValues(ds, 'noisy')) as boolean[];
    const pixels = (await columnValues(ds, 'pixels')) as { toArray(): Uint8Array }[];

    expect(noisy.filter(Boolean)).toHaveLength(expected);
    for (let i = 0; i < N; i++) {
      expect(clean[i]).toBe(i % CLASSES); // the helper's label
      if (noisy[i]) {
        expect(labels[i]).not.toBe(clean[i]);
        expect(labels[i]).toBeGreaterThanOrEqual(0);
        expect(labels[i]).toBeLessThan(CLASSES);
      } else {
        expect(labels[i]).toBe(clean[i]);
      }
      expect(Array.from(pixels[i].toArray())).toEqual(Array.from(rowPixels(i, 16)));
    }

    const flipped = await readFlipped(out);
    expect(flipped.map((f) => f.row)).toEqual(noisy.flatMap((x, i) => (x ? [i] : [])));
    for (const f of flipped) {
      expect(f.id).toBe(ids[f.row]);
      expect(f.label).toBe(labels[f.row]);
      expect(f.clean_label).toBe(clean[f.row]);
    }

    const cur = await readJsonFile(path.join(out, 'curation.json'));
    expect(cur.stage).toBe('label-noise');
    expect(cur.summary.flipped).toBe(expected);
    expect(cur.parents[0].fingerprint).toBe((await openDataset(src)).fingerprint);
    expect(cur.fingerprint).toBe(await labelNoiseFingerprint(src, { out, rate: 0.2, seed: 0 }));
    expect(ds.classNames).toEqual((await openDataset(src)).classNames);
  });

  it('is deterministic per seed: same seed, same bytes; another seed, other rows', async () => {
    const src = await source();
    const a = path.join(tmp(), 'a');
    const b = path.join(tmp(), 'b');
    const c = path.join(tmp(), 'c');
    await addLabelNoise(src, { out: a, rate: 0.3, seed: 5 });
    await addLabelNoise(src, { out: b, rate: 0.3, seed: 5 });
    await addLabelNoise(src, { out: c, rate: 0.3, seed: 6 });
    const files = await shardFiles(a);
    expect(files).toEqual(await shardFiles(b));
    for (const f of [...files, FLIPPED_FILE]) {
      expect(await fsp.readFile(path.join(a, f))).toEqual(await fsp.readFile(path.join(b, f)));
    }
    const rowsA = (await readFlipped(a)).map((f) => f.row);
    const rowsC = (await readFlipped(c)).map((f) => f.row);
    expect(rowsC).toHaveLength(rowsA.length);
    expect(rowsC).not.toEqual(rowsA);
  });

  it('handles rate 0 and rate 1', async () => {
    const src = await source();
    const none = await addLabelNoise(src, { out: path.join(tmp(), 'r0'), rate: 0, seed: 0 });
    expect(none.summary.flipped).toBe(0);
    expect(await readFlipped(path.join(tmp(), 'r0'))).toEqual([]);
    const all = await addLabelNoise(src, { out: path.join(tmp(), 'r1'), rate: 1, seed: 0 });
    expect(all.summary.flipped).toBe(N);
  });

  it('refuses bad options, an existing output, unlabelled and already-noised data', async () => {
    const src = await source();
    await expect(addLabelNoise(src, { out: path.join(tmp(), 'x'), rate: 1.5, seed: 0 })).rejects.toThrow(UsageError);
    await expect(addLabelNoise(src, { out: path.join(tmp(), 'x'), rate: 0.1, seed: -1 })).rejects.toThrow(UsageError);
    const out = path.join(tmp(), 'exists');
    await addLabelNoise(src, { out, rate: 0.1, seed: 0 });
    await expect(addLabelNoise(src, { out, rate: 0.1, seed: 0 })).rejects.toThrow(OutputError);
    await expect(addLabelNoise(out, { out: path.join(tmp(), 'twice'), rate: 0.1, seed: 0 })).rejects.toThrow(/already has a "noisy" column/);

    const plain = path.join(tmp(), 'int-labels');
    await writeDataset(plain, [{ id: 'a', label: 0 }, { id: 'b', label: 1 }], {
      meta: TEST_META,
      columns: [{ name: 'id', kind: 'string' }, { name: 'label', kind: 'int64' }],
    });
    await expect(addLabelNoise(plain, { out: path.join(tmp(), 'y'), rate: 0.5, seed: 0 })).rejects.toThrow(DataError);
  });
});

describe('planLabelNoise', () => {
  it('draws offsets in 1..K−1 and spreads flipped labels over all other classes', () => {
    const n = 20000;
    const k = 5;
    const plan = planLabelNoise(n, k, 0.5, 3);
    expect(plan.count).toBe(10000);
    const hist = new Array(k).fill(0);
    for (let i = 0; i < n; i++) {
      if (plan.flip[i]) hist[plan.offset[i]]++;
      else expect(plan.offset[i]).toBe(0);
    }
    expect(hist[0]).toBe(0);
    // Each of the 4 offsets gets ~2,500 (binomial sd ≈ 43).
    for (let o = 1; o < k; o++) expect(Math.abs(hist[o] - 2500)).toBeLessThan(250);
  });
});
