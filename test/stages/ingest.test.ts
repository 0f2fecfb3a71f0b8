import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { deflateSync, gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { DataError, OutputError, UsageError } from '../../core/errors.js';
import { openDataset } from '../../data/reader.js';
import { writeDataset } from '../../data/writer.js';
import { fixedListValues } from '../../data/columns.js';
import { CURATION_FILE, REJECTED_FILE } from '../../data/format.js';
import { encodeIdxImages, encodeIdxLabels } from '../../data/sources/idx.js';
import { ingest, ingestStage } from '../../stages/ingest.js';
import type { StageContext } from '../../stages/context.js';

let tmp: string;
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'mc-ingest-'));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

const at = (...p: string[]) => path.join(tmp, ...p);

async function write(file: string, data: string | Uint8Array): Promise<string> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, data);
  return file;
}

interface Rows {
  ids: string[];
  labels: number[];
  pixels: Uint8Array[];
  sha: string[];
  captions: (string | null)[];
  images: ({ bytes: Uint8Array | null; path: string | null } | null)[];
}

async function readRows(dir: string): Promise<Rows> {
  const ds = await openDataset(dir, { verify: true });
  const len = ds.pixelShape!.reduce((a, b) => a * b, 1);
  const out: Rows = { ids: [], labels: [], pixels: [], sha: [], captions: [], images: [] };
  for await (const b of ds.blocks()) {
    const px = fixedListValues<Uint8Array>(b.column('pixels'));
    for (let i = 0; i < b.length; i++) {
      out.ids.push(b.column('id').get(i));
      out.labels.push(Number(b.column('label').get(i)));
      out.pixels.push(px.slice(i * len, (i + 1) * len));
      out.sha.push(b.column('sha256').get(i));
      out.captions.push(b.has('caption') ? b.column('caption').get(i) : null);
      if (b.has('image')) {
        const img = b.column('image');
        out.images.push(img.isValid(i) ? { bytes: img.getChild('bytes')!.get(i), path: img.getChild('path')!.get(i) } : null);
      }
    }
  }
  return out;
}

async function readRejected(dir: string): Promise<{ id?: string; path?: string; row?: number; reason: string }[]> {
  const text = await fsp.readFile(path.join(dir, REJECTED_FILE), 'utf8');
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function solid(width: number, height: number, rgb: [number, number, number]) {
  return sharp({ create: { width, height, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } });
}

/** Minimal CRC-32 for hand-made PNG chunks. */
function crc32(buf: Uint8Array): number {
  let c = ~0;
  for (const byte of buf) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

function pngChunk(type: string, data: Uint8Array): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** A ~70-byte PNG whose header claims 60000×60000 pixels (3.6 gigapixels). */
function decompressionBomb(): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(60000, 0);
  ihdr.writeUInt32BE(60000, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // greyscale
  return Buffer.concat([
    Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]),
    pngChunk('IHDR', ihdr),
    pngChunk('IDAT', deflateSync(Buffer.alloc(64))),
    pngChunk('IEND', Buffer.alloc(0)),
  ]);
}

/** n 5×4 images with varied pixels (image i is bytes i*20 .. i*20+19). */
function idxPixels(n: number): Uint8Array {
  const data = new Uint8Array(n * 20);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 3)) % 256;
  return data;
}

/** An IDX train split of n 5×4 images with labels i % 3. */
async function makeIdx(dir: string, n: number): Promise<{ data: Uint8Array; labels: Uint8Array }> {
  const data = idxPixels(n);
  const labels = Uint8Array.from({ length: n }, (_, i) => i % 3);
  await write(path.join(dir, 'train-images-idx3-ubyte.gz'), gzipSync(encodeIdxImages(n, 5, 4, data)));
  await write(path.join(dir, 'train-labels-idx1-ubyte.gz'), gzipSync(encodeIdxLabels(labels)));
  return { data, labels };
}

describe('IDX', () => {
  test('round trip: the pixels column holds exactly the IDX bytes; ids, labels, hashes, metadata', async () => {
    const src = at('idx-src');
    const { data, labels } = await makeIdx(src, 250);
    const out = at('idx-out');
    const progress = { label: '', total: 0, ticks: 0, done: false };
    const ctx: StageContext = {
      log: { debug() {}, info() {}, warn() {}, error() {} },
      progress: (label, total) => {
        Object.assign(progress, { label, total });
        return { tick: (n = 1) => { progress.ticks += n; }, setTotal() {}, done: () => { progress.done = true; } };
      },
    };
    const res = await ingest(src, { out, shardRows: 100 }, ctx);
    expect(progress).toEqual({ label: 'ingest', total: 250, ticks: 250, done: true });
    expect(res.numRows).toBe(250);
    expect(res.summary).toMatchObject({ format: 'idx', items: 250, rows: 250, rejected: 0, duplicates: 0, pixel_shape: [5, 4, 1] });
    expect(res.summary.per_class).toEqual({ 0: 84, 1: 83, 2: 83, 3: 0, 4: 0, 5: 0, 6: 0, 7: 0, 8: 0, 9: 0 });
    const ds = await openDataset(out);
    expect(ds.shards).toHaveLength(3);
    expect(ds.pixelShape).toEqual([5, 4, 1]);
    expect(ds.classNames).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    expect(ds.columns.map((c) => c.name)).toEqual(['id', 'label', 'pixels', 'sha256']);
    const rows = await readRows(out);
    expect(rows.ids[0]).toBe('train-000000');
    expect(rows.ids[249]).toBe('train-000249');
    expect(rows.labels).toEqual(Array.from(labels));
    for (let i = 0; i < 250; i++) {
      const want = data.subarray(i * 20, (i + 1) * 20);
      expect(Buffer.compare(rows.pixels[i], want)).toBe(0);
      expect(rows.sha[i]).toBe(sha(want));
    }
    // The stage's fingerprint, computed without running, is the one written.
    expect((await ingestStage.prepare([src], ingestStage.options.parse({ out, shardRows: 100 }))).fingerprint).toBe(res.fingerprint);
    const curation = JSON.parse(await fsp.readFile(path.join(out, CURATION_FILE), 'utf8'));
    expect(curation.options.out).toBeUndefined();
    expect(curation.summary.rows).toBe(250);
    expect(await fsp.readFile(path.join(out, REJECTED_FILE), 'utf8')).toBe('');
  });

  test('resized to 8×8×3 through sharp, with a PNG original kept; limit takes the first N', async () => {
    const src = at('idx-src');
    const out = at('idx-resized');
    const res = await ingest(src, { out, size: [8, 8], channels: 3, limit: 7, keepOriginal: true });
    expect(res.summary.pixel_shape).toEqual([8, 8, 3]);
    const rows = await readRows(out);
    expect(rows.ids).toHaveLength(7);
    expect(rows.pixels[0]).toHaveLength(192);
    const first = rows.images[0]!;
    expect(await sharp(first.bytes!).metadata()).toMatchObject({ format: 'png', width: 4, height: 5, channels: 1 });
    const decoded = await sharp(first.bytes!).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
    expect(Buffer.compare(decoded.data, idxPixels(1))).toBe(0);
  });

  test('a wrong magic number stops ingest with a DataError (exit 65) and writes nothing', async () => {
    const src = at('idx-bad');
    await write(path.join(src, 'train-images-idx3-ubyte'), encodeIdxLabels(Uint8Array.from([1, 2])));
    await write(path.join(src, 'train-labels-idx1-ubyte'), encodeIdxLabels(Uint8Array.from([1, 2])));
    const err = await ingest(src, { out: at('idx-bad-out') }).catch((e) => e);
    expect(err).toBeInstanceOf(DataError);
    expect(err.exitCode).toBe(65);
    expect(err.message).toMatch(/train-images-idx3-ubyte: wrong magic number 2049/);
    expect(await fsp.readdir(tmp)).not.toContain('idx-bad-out');
  });

  test('a truncated gzip IDX found mid-stream aborts the write: no output, no temp dir left', async () => {
    const src = at('idx-trunc');
    const data = new Uint8Array(40 * 20).fill(9);
    const full = encodeIdxImages(40, 5, 4, data);
    await write(path.join(src, 'train-images-idx3-ubyte.gz'), gzipSync(full.subarray(0, full.length - 30)));
    await write(path.join(src, 'train-labels-idx1-ubyte.gz'), gzipSync(encodeIdxLabels(new Uint8Array(40))));
    const parent = at('trunc-parent');
    await fsp.mkdir(parent);
    const err = await ingest(src, { out: path.join(parent, 'out') }).catch((e) => e);
    expect(err).toBeInstanceOf(DataError);
    expect(err.message).toMatch(/train-images-idx3-ubyte\.gz: truncated: image 38 of 40/);
    expect(await fsp.readdir(parent)).toEqual([]);
  });
});

test('CIFAR-10 binary: HWC pixels, names from batches.meta.txt', async () => {
  const src = at('cifar');
  const rec = (label: number) => {
    const r = new Uint8Array(3073);
    r[0] = label;
    r.fill(10, 1, 1025); // R plane
    r.fill(20, 1025, 2049); // G plane
    r.fill(30, 2049); // B plane
    return r;
  };
  await write(path.join(src, 'data_batch_1.bin'), Buffer.concat([rec(2), rec(7)]));
  await write(path.join(src, 'batches.meta.txt'), 'a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n');
  const res = await ingest(src, { out: at('cifar-out') });
  expect(res.summary).toMatchObject({ format: 'cifar', rows: 2, pixel_shape: [32, 32, 3] });
  const rows = await readRows(at('cifar-out'));
  expect(rows.ids).toEqual(['train-000000', 'train-000001']);
  expect(rows.labels).toEqual([2, 7]);
  expect(Array.from(rows.pixels[1].subarray(0, 6))).toEqual([10, 20, 30, 10, 20, 30]);
  expect((await openDataset(at('cifar-out'))).classNames?.[7]).toBe('h');
});

describe('image folders', () => {
  const formats = ['png', 'jpeg', 'webp', 'gif', 'tiff', 'avif'] as const;
  let folder: string;

  beforeAll(async () => {
    folder = at('folder');
    for (const [i, f] of formats.entries()) {
      const colour: [number, number, number] = i % 2 ? [0, 0, 255] : [255, 0, 0];
      const ext = f === 'jpeg' ? 'jpg' : f;
      await write(path.join(folder, i % 2 ? 'blue' : 'red', `img${i}.${ext}`), await solid(24, 16, colour)[f]().toBuffer());
    }
    // Transparent pixels are flattened on black.
    await write(path.join(folder, 'red', 'alpha.png'), await sharp({ create: { width: 4, height: 4, channels: 4, background: { r: 255, g: 0, b: 0, alpha: 0 } } }).png().toBuffer());
    // Bad items: each must land in rejected.jsonl with its reason.
    const good = await solid(32, 32, [255, 0, 0]).png().toBuffer();
    const noisy = await sharp(Buffer.from(Array.from({ length: 64 * 64 * 3 }, (_, i) => (i * 7919) % 256)), { raw: { width: 64, height: 64, channels: 3 } }).jpeg().toBuffer();
    const corrupt = Buffer.from(good);
    corrupt.fill(7, 33, 60); // inside IHDR/IDAT
    await write(path.join(folder, 'red', 'bad-corrupt.png'), corrupt);
    await write(path.join(folder, 'red', 'bad-truncated.jpg'), noisy.subarray(0, noisy.length >> 1));
    await write(path.join(folder, 'red', 'bad-empty.png'), '');
    await write(path.join(folder, 'red', 'bad-text.png'), 'this is not an image\n');
    await write(path.join(folder, 'red', 'bad-bomb.png'), decompressionBomb());
  });

  test('every format decodes; bad images are rejected with a reason and the run goes on', async () => {
    const out = at('folder-out');
    const res = await ingest(folder, { out, size: [6, 6], channels: 3, concurrency: 3 });
    expect(res.summary).toMatchObject({ format: 'folder', items: 12, rows: 7, rejected: 5, duplicates: 0, pixel_shape: [6, 6, 3] });
    expect(res.summary.per_class).toEqual({ blue: 3, red: 4 });
    const rows = await readRows(out);
    expect(rows.ids).toEqual(['blue/img1.jpg', 'blue/img3.gif', 'blue/img5.avif', 'red/alpha.png', 'red/img0.png', 'red/img2.webp', 'red/img4.tiff']);
    expect(rows.labels).toEqual([0, 0, 0, 1, 1, 1, 1]);
    const centre = (px: Uint8Array) => Array.from(px.subarray(3 * (3 * 6 + 3), 3 * (3 * 6 + 3) + 3));
    expect(centre(rows.pixels[rows.ids.indexOf('red/img0.png')])).toEqual([255, 0, 0]);
    expect(centre(rows.pixels[rows.ids.indexOf('red/alpha.png')])).toEqual([0, 0, 0]);
    for (const id of ['blue/img1.jpg', 'blue/img5.avif', 'red/img2.webp']) {
      const [r, g, b] = centre(rows.pixels[rows.ids.indexOf(id)]);
      const isBlue = id.startsWith('blue');
      expect(Math.abs((isBlue ? b : r) - 255)).toBeLessThan(12);
      expect(isBlue ? r : b).toBeLessThan(12);
      expect(g).toBeLessThan(12);
    }
    const rejected = await readRejected(out);
    const reasons = Object.fromEntries(rejected.map((r) => [r.path, r.reason]));
    expect(Object.keys(reasons).sort()).toEqual(['red/bad-bomb.png', 'red/bad-corrupt.png', 'red/bad-empty.png', 'red/bad-text.png', 'red/bad-truncated.jpg']);
    expect(reasons['red/bad-bomb.png']).toMatch(/larger than 100,000,000 pixels: refused as a possible decompression bomb/);
    expect(reasons['red/bad-empty.png']).toBe('empty file (0 bytes)');
    expect(reasons['red/bad-text.png']).toBe('not an image (unrecognised or unsupported format)');
    expect(reasons['red/bad-corrupt.png']).toBe('corrupt or truncated image');
    expect(reasons['red/bad-truncated.jpg']).toBe('corrupt or truncated image');
    // Nothing lost: every input item is a row or a rejected line.
    expect(rows.ids.length + rejected.length).toBe(res.summary.items);
  });

  test('greyscale output, contain on white, keepOriginal keeps the file bytes', async () => {
    const out = at('folder-grey');
    await ingest(folder, { out, size: [4, 8], channels: 1, fit: 'contain', background: 'white', keepOriginal: true });
    const rows = await readRows(out);
    const i = rows.ids.indexOf('red/img0.png');
    const px = rows.pixels[i];
    expect(px).toHaveLength(32);
    // 24×16 red contained in an 8 wide × 4 high box: 6×4 of red between white columns. Pure red is
    // luminance 0.2126 in linear light, about 127 in sRGB grey.
    for (let y = 0; y < 4; y++) {
      expect([px[y * 8], px[y * 8 + 7]]).toEqual([255, 255]);
      expect(Math.abs(px[y * 8 + 3] - 127)).toBeLessThan(8);
    }
    // The fully transparent image is flattened on white.
    expect(rows.pixels[rows.ids.indexOf('red/alpha.png')].every((v) => v === 255)).toBe(true);
    expect(rows.images[i]!.path).toBe('red/img0.png');
    expect(Buffer.compare(rows.images[i]!.bytes!, await fsp.readFile(path.join(folder, 'red', 'img0.png')))).toBe(0);
  });

  test('determinism: same input at concurrency 1 and 8 gives byte-identical shards and rejected.jsonl', async () => {
    const a = await ingest(folder, { out: at('det-1'), size: 5, concurrency: 1, shardRows: 3 });
    const b = await ingest(folder, { out: at('det-8'), size: 5, concurrency: 8, shardRows: 3 });
    expect(a.fingerprint).toBe(b.fingerprint);
    const files = (await fsp.readdir(at('det-1'))).filter((f) => f.endsWith('.arrow') || f === REJECTED_FILE).sort();
    expect(files).toHaveLength(4);
    for (const f of files) {
      expect(Buffer.compare(await fsp.readFile(at('det-1', f)), await fsp.readFile(at('det-8', f))), f).toBe(0);
    }
  });

  test('an existing output is refused (exit 73) unless overwrite, and a folder that is no output even then', async () => {
    const out = at('exists');
    await fsp.mkdir(out);
    await fsp.writeFile(path.join(out, 'precious.txt'), 'not a dataset');
    for (const overwrite of [false, true]) {
      const err = await ingest(folder, { out, size: 4, overwrite }).catch((e) => e);
      expect(err).toBeInstanceOf(OutputError);
      expect(err.exitCode).toBe(73);
      expect(err.message).toMatch(overwrite ? /not a metacurate output/ : /already exists/);
    }
    expect(await fsp.readFile(path.join(out, 'precious.txt'), 'utf8')).toBe('not a dataset');
    await fsp.rm(out, { recursive: true });
    await ingest(folder, { out, size: 4 });
    const res = await ingest(folder, { out, size: 4, overwrite: true });
    expect(res.numRows).toBe(7);
  });

  test('an output that is, holds or lies inside the source is refused, even with overwrite', async () => {
    for (const out of [folder, path.join(folder, 'inside'), path.dirname(folder)]) {
      const err = await ingest(folder, { out, size: 4, overwrite: true }).catch((e) => e);
      expect(err, out).toBeInstanceOf(OutputError);
      expect(err.message).toMatch(/input/);
    }
    expect((await fsp.readdir(folder)).length).toBeGreaterThan(0);
  });

  test('an empty folder is a DataError (exit 65)', async () => {
    const empty = at('empty-folder');
    await fsp.mkdir(empty);
    const err = await ingest(empty, { out: at('empty-out') }).catch((e) => e);
    expect(err).toBeInstanceOf(DataError);
    expect(err.exitCode).toBe(65);
    expect(err.message).toMatch(/empty/);
  });
});

test('dedupe drops repeated pixels and records them as duplicates', async () => {
  const src = at('dupes');
  const red = await solid(8, 8, [255, 0, 0]).png().toBuffer();
  await write(path.join(src, 'a', '1.png'), red);
  await write(path.join(src, 'a', '2.png'), await solid(8, 8, [0, 255, 0]).png().toBuffer());
  await write(path.join(src, 'b', '3.png'), red);
  await write(path.join(src, 'b', '4.png'), red);
  const kept = await ingest(src, { out: at('dupes-all'), size: 8 });
  expect(kept.numRows).toBe(4);
  const res = await ingest(src, { out: at('dupes-out'), size: 8, dedupe: true });
  expect(res.summary).toMatchObject({ items: 4, rows: 2, rejected: 0, duplicates: 2, per_class: { a: 2, b: 0 } });
  expect((await readRows(at('dupes-out'))).ids).toEqual(['a/1.png', 'a/2.png']);
  expect(await readRejected(at('dupes-out'))).toEqual([
    { id: 'b/3.png', path: 'b/3.png', reason: 'duplicate of a/1.png' },
    { id: 'b/4.png', path: 'b/4.png', reason: 'duplicate of a/1.png' },
  ]);
});

describe('manifests', () => {
  let root: string;
  beforeAll(async () => {
    root = at('manifest', 'root');
    await write(path.join(root, 'imgs', 'a, 1.png'), await solid(8, 8, [255, 0, 0]).png().toBuffer());
    await write(path.join(root, 'imgs', 'b.png'), await solid(8, 8, [0, 0, 255]).png().toBuffer());
    await write(at('manifest', 'outside.png'), await solid(8, 8, [0, 255, 0]).png().toBuffer());
  });

  test('CSV with quoted fields and captions; missing files, escaping paths and unknown labels are rejected', async () => {
    const file = await write(path.join(root, 'list.csv'), [
      'path,label_name,caption',
      '"imgs/a, 1.png",cat,"a ""red"" one, really"',
      'imgs/b.png,dog,',
      'imgs/missing.png,dog,gone',
      '../outside.png,dog,escapes',
      'imgs/b.png,emu,unknown label',
    ].join('\n'));
    const res = await ingest(file, { out: at('csv-out'), size: 4, classNames: ['cat', 'dog'] });
    expect(res.summary).toMatchObject({ format: 'manifest', items: 5, rows: 2, rejected: 3 });
    const rows = await readRows(at('csv-out'));
    expect(rows.ids).toEqual(['imgs/a, 1.png', 'imgs/b.png']);
    expect(rows.captions).toEqual(['a "red" one, really', null]);
    expect(rows.labels).toEqual([0, 1]);
    expect(await readRejected(at('csv-out'))).toEqual([
      { id: 'imgs/missing.png', path: 'imgs/missing.png', row: 4, reason: 'file not found' },
      { path: '../outside.png', row: 5, reason: "path leaves the manifest's folder (allow it with --allow-outside-root)" },
      { path: 'imgs/b.png', row: 6, reason: 'unknown label name "emu" (classes: "cat", "dog")' },
    ]);
    // Allowed, the path outside the folder becomes a row.
    const allowed = await ingest(file, { out: at('csv-allowed'), size: 4, classNames: ['cat', 'dog'], allowOutsideRoot: true });
    expect(allowed.summary).toMatchObject({ rows: 3, rejected: 2 });
    expect((await readRows(at('csv-allowed'))).ids).toContain('../outside.png');
  });

  test('JSONL with collected class names', async () => {
    const file = await write(path.join(root, 'list.jsonl'), [
      JSON.stringify({ path: 'imgs/b.png', label: 'zebra', caption: 'blue', id: 'one' }),
      JSON.stringify({ path: 'imgs/a, 1.png', label: 'ant' }),
    ].join('\n') + '\n');
    const res = await ingest(file, { out: at('jsonl-out'), size: 4 });
    expect(res.summary.per_class).toEqual({ ant: 1, zebra: 1 });
    const rows = await readRows(at('jsonl-out'));
    expect(rows.ids).toEqual(['one', 'imgs/a, 1.png']);
    expect(rows.labels).toEqual([1, 0]);
    expect(rows.captions).toEqual(['blue', null]);
  });
});

describe('datasets as sources', () => {
  test('an HF-style dataset with an Image column {bytes, path} and a ClassLabel is decoded', async () => {
    const hf = at('hf');
    const pngs = [
      await solid(10, 10, [255, 0, 0]).png().toBuffer(),
      await solid(10, 10, [0, 255, 0]).jpeg().toBuffer(),
      Buffer.from('garbage'),
    ];
    await writeDataset(hf, pngs.map((bytes, i) => ({ image: { bytes, path: `img${i}.png` }, label: (i + 1) % 2 })), {
      columns: [{ name: 'image', kind: 'image' }, { name: 'label', kind: 'classLabel', names: ['neg', 'pos'] }],
      meta: { stage: 'test', stageVersion: '0', options: {}, parents: [] },
    });
    // What Python's save_to_disk leaves: shards, state.json and dataset_info.json, no curation.json.
    await fsp.rm(path.join(hf, CURATION_FILE));
    const res = await ingest(hf, { out: at('hf-out'), size: 3 });
    expect(res.summary).toMatchObject({ format: 'dataset', items: 3, rows: 2, rejected: 1, pixel_shape: [3, 3, 3] });
    const rows = await readRows(at('hf-out'));
    expect(rows.ids).toEqual(['row-000000', 'row-000001']);
    expect(rows.labels).toEqual([1, 0]);
    expect(Array.from(rows.pixels[0].subarray(0, 3))).toEqual([255, 0, 0]);
    expect((await openDataset(at('hf-out'))).classNames).toEqual(['neg', 'pos']);
    expect(await readRejected(at('hf-out'))).toEqual([
      { id: 'row-000002', path: 'img2.png', row: 2, reason: 'not an image (unrecognised or unsupported format)' },
    ]);
  });

  test('our own dataset re-ingested: pixels reused (resharded), or resized', async () => {
    const first = at('idx-out');
    const again = await ingest(first, { out: at('reingest'), shardRows: 1000 });
    const a = await readRows(first);
    const b = await readRows(at('reingest'));
    expect(b.ids).toEqual(a.ids);
    expect(b.sha).toEqual(a.sha);
    expect(again.summary).toMatchObject({ format: 'dataset', pixel_shape: [5, 4, 1] });
    expect((await openDataset(at('reingest'))).shards).toHaveLength(1);
    const small = await ingest(first, { out: at('reingest-small'), size: [2, 2], limit: 3 });
    expect(small.summary.pixel_shape).toEqual([2, 2, 1]);
    expect((await readRows(at('reingest-small'))).pixels[0]).toHaveLength(4);
  });
});

test('invalid options are a UsageError', async () => {
  await expect(ingest(at('idx-src'), { out: at('x'), channels: 2 as 1 })).rejects.toThrow(UsageError);
  await expect(ingest(at('idx-src'), { out: at('x'), bogus: true } as any)).rejects.toThrow(/bogus/);
  await expect(ingest(at('idx-src'), { out: at('x'), classNames: ['a', 'a'] })).rejects.toThrow(/distinct/);
  await expect(ingestStage.run({ log: console, progress: () => ({ tick() {}, setTotal() {}, done() {} }) }, [], ingestStage.options.parse({ out: at('x') }))).rejects.toThrow(/needs its source input/);
});
