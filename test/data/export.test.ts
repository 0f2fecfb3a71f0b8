import { afterAll, beforeAll, expect, test } from 'vitest';
import { existsSync, promises as fsp, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { DataError, OutputError } from '../../core/errors.js';
import { writeDataset } from '../../data/writer.js';
import { openDataset } from '../../data/reader.js';
import { writeContactSheet, writeParquet } from '../../data/export.js';
import type { ColumnSpec, PixelShape } from '../../data/format.js';

const H = 2;
const W = 3;
/** Pixel (y, x, ch) of row r: unique per row, so a cell says which row it shows. */
const value = (r: number, y: number, x: number, ch: number) => (r * 16 + y * 6 + x * 2 + ch) % 256;

let dir: string;
beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'metacurate-export-'));
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

/** Labels: 12 rows of class 0, 3 of class 1, none of class 2. */
async function makeDataset(name: string, opts: { channels: number; labelled?: boolean; pixels?: boolean }): Promise<string> {
  const c = opts.channels;
  const labels = [...Array(12).fill(0), ...Array(3).fill(1)];
  const rows = labels.map((label, r) => {
    const px = new Uint8Array(H * W * c);
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) for (let ch = 0; ch < c; ch++) px[(y * W + x) * c + ch] = value(r, y, x, ch);
    return { id: `r${r}`, label, pixels: px };
  });
  const columns: ColumnSpec[] = [{ name: 'id', kind: 'string' }];
  if (opts.labelled !== false) columns.push({ name: 'label', kind: 'classLabel', names: ['zero', 'one', 'two'] });
  if (opts.pixels !== false) columns.push({ name: 'pixels', kind: 'uint8Vector', length: H * W * c });
  const out = path.join(dir, name);
  await writeDataset(out, rows, {
    columns,
    pixelShape: opts.pixels === false ? undefined : ([H, W, c] as PixelShape),
    meta: { stage: 'test', stageVersion: '1', options: {}, parents: [] },
  });
  return out;
}

test('one row per class, a seeded sample per row in row order, nearest-neighbour upscaled', async () => {
  const ds = await makeDataset('rgb', { channels: 3 });
  const file = path.join(dir, 'rgb.png');
  const scale = 2;
  const gap = 2;
  const res = await writeContactSheet(ds, file, { perClass: 4, scale, seed: 5 });
  expect(res.rows.map(({ ids: _ids, ...r }) => r)).toEqual([{ label: 0, name: 'zero', shown: 4 }, { label: 1, name: 'one', shown: 3 }, { label: 2, name: 'two', shown: 0 }]);
  expect(res.rows[1].ids).toEqual(['r12', 'r13', 'r14']);
  const { data, info } = await sharp(file).raw().toBuffer({ resolveWithObject: true });
  expect([info.width, info.height, info.channels]).toEqual([4 * W * scale + 5 * gap, 3 * H * scale + 4 * gap, 3]);
  expect([res.width, res.height]).toEqual([info.width, info.height]);
  const at = (x: number, y: number, ch: number) => data[(y * info.width + x) * 3 + ch];
  const shownRows: number[][] = [[], [], []];
  for (let label = 0; label < 3; label++) {
    for (let k = 0; k < 4; k++) {
      const x0 = gap + k * (W * scale + gap);
      const y0 = gap + label * (H * scale + gap);
      const r = at(x0, y0, 0) / 16;
      if (k >= res.rows[label].shown) {
        expect(at(x0, y0, 0)).toBe(at(0, 0, 0)); // empty cell: background
        continue;
      }
      expect(Number.isInteger(r)).toBe(true);
      shownRows[label].push(r);
      for (let y = 0; y < H * scale; y++) {
        for (let x = 0; x < W * scale; x++) {
          for (let ch = 0; ch < 3; ch++) expect(at(x0 + x, y0 + y, ch)).toBe(value(r, Math.floor(y / scale), Math.floor(x / scale), ch));
        }
      }
    }
  }
  // Class 0 is rows 0-11, class 1 rows 12-14; each row of the sheet is in row order.
  expect(shownRows[0].every((r) => r >= 0 && r < 12)).toBe(true);
  expect(shownRows[0]).toEqual([...shownRows[0]].sort((a, b) => a - b));
  expect(new Set(shownRows[0]).size).toBe(4);
  expect(shownRows[1]).toEqual([12, 13, 14]);

  // Same seed, same sheet; another seed, another sample.
  const same = await writeContactSheet(ds, path.join(dir, 'rgb-same.png'), { perClass: 4, scale, seed: 5 });
  expect(readFileSync(same.file)).toEqual(readFileSync(file));
  const other = await writeContactSheet(ds, path.join(dir, 'rgb-other.png'), { perClass: 4, scale, seed: 6 });
  expect(readFileSync(other.file)).not.toEqual(readFileSync(file));
});

test('grey data gives a grey PNG; unlabelled data is one row', async () => {
  const ds = await makeDataset('grey', { channels: 1, labelled: false });
  const res = await writeContactSheet(ds, path.join(dir, 'grey.png'), { perClass: 5, scale: 1, gap: 0 });
  const meta = await sharp(res.file).metadata();
  expect([meta.width, meta.height, meta.channels]).toEqual([5 * W, H, 1]);
  expect(res.rows.map((r) => [r.label, r.name, r.shown, r.ids.length])).toEqual([[0, undefined, 5, 5]]);
});

test('--by ranks each class by a sidecar column (worst or best first) and annotates the cells', async () => {
  const base = await makeDataset('ranked', { channels: 3 });
  // Scores: row r of class 0 gets (r * 7) % 12, so the order is not row order; class 1 ascending.
  const score = (r: number) => (r < 12 ? (r * 7) % 12 : r);
  const side = await writeDataset(path.join(dir, 'ranked-scores'), Array.from({ length: 15 }, (_, r) => ({ id: `r${r}`, s: score(r) })), {
    columns: [{ name: 'id', kind: 'string' }, { name: 's', kind: 'float32' }],
    meta: { stage: 'score', stageVersion: '1', options: {}, parents: [], sidecarOf: (await openDataset(base)).fingerprint },
  });
  const ds = await openDataset(base, { sidecars: [side.dir] });
  const byScore = (rows: number[], dir: number) => [...rows].sort((a, b) => dir * (score(a) - score(b))).map((r) => `r${r}`);
  const class0 = Array.from({ length: 12 }, (_, r) => r);
  const worst = await writeContactSheet(ds, path.join(dir, 'worst.png'), { perClass: 3, by: 's', scale: 2 });
  expect(worst.rows[0].ids).toEqual(byScore(class0, 1).slice(0, 3));
  expect(worst.rows[1].ids).toEqual(['r12', 'r13', 'r14']);
  const best = await writeContactSheet(ds, path.join(dir, 'best.png'), { perClass: 3, by: 's', order: 'best', scale: 2 });
  expect(best.rows[0].ids).toEqual(byScore(class0, -1).slice(0, 3));
  // Annotated sheets are larger than plain ones: a margin of class names, a caption under each cell.
  const plain = await writeContactSheet(ds, path.join(dir, 'plain.png'), { perClass: 3, scale: 2 });
  expect(worst.width).toBeGreaterThan(plain.width);
  expect(worst.height).toBeGreaterThan(plain.height);
  await expect(writeContactSheet(ds, path.join(dir, 'bad.png'), { by: 'id' })).rejects.toThrow(/column "id" holds string values, not numeric scores/);
  await expect(writeContactSheet(base, path.join(dir, 'bad2.png'), { by: 's' })).rejects.toThrow(/no column "s".*sidecar/);
});

test('refuses an existing file without overwrite, and a dataset without pixels', async () => {
  const ds = await makeDataset('again', { channels: 1 });
  const file = path.join(dir, 'again.png');
  await writeContactSheet(ds, file, { perClass: 2 });
  await expect(writeContactSheet(ds, file, { perClass: 2 })).rejects.toBeInstanceOf(OutputError);
  await expect(writeContactSheet(ds, file, { perClass: 3, overwrite: true })).resolves.toMatchObject({ perClass: 3 });
  const bare = await makeDataset('bare', { channels: 1, pixels: false });
  await expect(writeContactSheet(bare, path.join(dir, 'bare.png'))).rejects.toBeInstanceOf(DataError);
});

test('Parquet export: one file per shard, read back by Polars with the same rows and values', async () => {
  const src = await makeDataset('for-parquet', { channels: 1 });
  const out = path.join(dir, 'parquet');
  const res = await writeParquet(src, out);
  expect(res.files.map((f) => f.file)).toEqual(['data-00000-of-00001.parquet']);
  const pl = (await import('nodejs-polars')).default;
  const df = pl.readParquet(path.join(out, res.files[0].file));
  expect(df.height).toBe(15);
  expect(df.columns).toEqual(['id', 'label', 'pixels', 'label_name']);
  expect(df.getColumn('id').toArray()[14]).toBe('r14');
  expect(Number(df.getColumn('label').toArray()[13])).toBe(1);
  const px = df.getColumn('pixels').toArray()[5] as unknown as ArrayLike<number>;
  expect(Array.from(px)).toEqual(Array.from({ length: H * W }, (_, i) => value(5, Math.floor(i / W), i % W, 0)));
  await expect(writeParquet(src, out)).rejects.toBeInstanceOf(OutputError);
});

// librsvg draws the captions with a system font; Debian's fonts-dejavu-core is the usual one.
const hasFonts = ['/usr/share/fonts', '/usr/local/share/fonts'].some((d) => existsSync(d) && readdirSync(d, { recursive: true }).some((f) => /\.(ttf|otf)$/i.test(String(f))));

test('captions are drawn: the strip under the first row of cells holds text', async (ctx) => {
  if (!hasFonts) ctx.skip('no TrueType/OpenType font installed (install fonts-dejavu-core) for librsvg to draw captions with');
  const ds = await makeDataset('captions', { channels: 1 });
  const plain = await writeContactSheet(ds, path.join(dir, 'captions-plain.png'), { perClass: 2, scale: 2 });
  const sheet = await writeContactSheet(ds, path.join(dir, 'captions.png'), { perClass: 2, scale: 2, annotate: true });
  expect(sheet.width).toBeGreaterThan(plain.width);
  const { data, info } = await sharp(sheet.file).raw().toBuffer({ resolveWithObject: true });
  // Rows 0..H*scale+2 hold the first row's images (dark); the caption strip follows it; count its light pixels.
  let light = 0;
  for (let y = 2 + H * 2; y < 2 + H * 2 + 22; y++) for (let x = 0; x < info.width; x++) if (data[(y * info.width + x) * info.channels] > 200) light++;
  expect(light).toBeGreaterThan(10);
});
