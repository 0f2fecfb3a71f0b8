import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { DataError, MissingInputError, UsageError } from '../../core/errors.js';
import { parseCsv } from '../../data/sources/csv.js';
import { encodeIdxImages, encodeIdxLabels } from '../../data/sources/idx.js';
import { chwToHwc } from '../../data/sources/cifar.js';
import {
  FASHION_MNIST_CLASSES, detectSource, openSource, type Source, type SourceItem,
} from '../../data/sources/index.js';

let tmp: string;
beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'mc-sources-'));
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

async function dir(name: string): Promise<string> {
  const d = path.join(tmp, name);
  await fsp.mkdir(d, { recursive: true });
  return d;
}

async function write(file: string, data: string | Uint8Array): Promise<string> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, data);
  return file;
}

async function collect(src: Source): Promise<SourceItem[]> {
  const out: SourceItem[] = [];
  for await (const it of src.items()) out.push(it);
  return out;
}

async function csv(text: string): Promise<{ fields: string[]; line: number }[]> {
  const out = [];
  for await (const r of parseCsv([text], 'x.csv')) out.push(r);
  return out;
}

/** A small IDX pair: n images of rows×cols with pixel value (i*7 + p) % 256. */
function idxFixture(n: number, rows: number, cols: number, labels: number[]): { images: Uint8Array; labels: Uint8Array; data: Uint8Array } {
  const data = new Uint8Array(n * rows * cols);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) % 256;
  return { images: encodeIdxImages(n, rows, cols, data), labels: encodeIdxLabels(Uint8Array.from(labels)), data };
}

describe('CSV parser', () => {
  test('quotes, escaped quotes, commas and line breaks inside fields, CRLF, BOM, blank lines', async () => {
    const text = '\ufeffpath,label,caption\r\n"a,b.png",cat,"say ""hi"""\r\n\r\nc.png,dog,"two\nlines"\nplain.png,,\n';
    const recs = await csv(text);
    expect(recs.map((r) => r.fields)).toEqual([
      ['path', 'label', 'caption'],
      ['a,b.png', 'cat', 'say "hi"'],
      ['c.png', 'dog', 'two\nlines'],
      ['plain.png', '', ''],
    ]);
    expect(recs.map((r) => r.line)).toEqual([1, 2, 4, 6]);
  });

  test('records split across chunks parse the same', async () => {
    const text = 'a,"b,""c"""\n1,2\n';
    const chunks = text.split('');
    const out = [];
    for await (const r of parseCsv(chunks)) out.push(r.fields);
    expect(out).toEqual([['a', 'b,"c"'], ['1', '2']]);
  });

  test('an unterminated quote is a DataError naming the line', async () => {
    await expect(csv('path,label\n"x.png,cat\n')).rejects.toThrow(DataError);
    await expect(csv('path,label\n"x.png,cat\n')).rejects.toThrow(/x\.csv \(row 2\).*never closed/);
  });

  test('text after a closing quote is a DataError', async () => {
    await expect(csv('"ab"c,d\n')).rejects.toThrow(/after a closing quote/);
  });
});

describe('IDX source', () => {
  test('reads raw and gzip files; ids, labels, pixels, digit class names', async () => {
    const fx = idxFixture(5, 4, 3, [0, 1, 2, 9, 3]);
    const d = await dir('idx-digits');
    await write(path.join(d, 'train-images-idx3-ubyte.gz'), gzipSync(fx.images));
    await write(path.join(d, 'train-labels-idx1-ubyte'), fx.labels);
    const src = await openSource(d);
    expect(src.format).toBe('idx');
    expect(src.count).toBe(5);
    expect(src.nativeShape).toEqual([4, 3, 1]);
    expect(src.classNames).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    const items = await collect(src);
    expect(items.map((i) => (i as any).id)).toEqual(['train-000000', 'train-000001', 'train-000002', 'train-000003', 'train-000004']);
    expect(items.map((i) => (i as any).label)).toEqual([0, 1, 2, 9, 3]);
    for (let i = 0; i < 5; i++) {
      const it = items[i];
      expect(it.kind).toBe('pixels');
      if (it.kind === 'pixels') expect(Array.from(it.pixels)).toEqual(Array.from(fx.data.subarray(i * 12, (i + 1) * 12)));
    }
  });

  test('--split test picks the t10k files; Fashion-MNIST names from the path or a preset', async () => {
    const d = await dir('my-fashion-copy');
    const train = idxFixture(2, 2, 2, [0, 1]);
    const t10k = idxFixture(3, 2, 2, [9, 8, 7]);
    await write(path.join(d, 'train-images-idx3-ubyte'), train.images);
    await write(path.join(d, 'train-labels-idx1-ubyte'), train.labels);
    await write(path.join(d, 't10k-images-idx3-ubyte.gz'), gzipSync(t10k.images));
    await write(path.join(d, 't10k-labels-idx1-ubyte.gz'), gzipSync(t10k.labels));
    const test = await openSource(d, { split: 'test' });
    expect(test.count).toBe(3);
    expect(test.classNames).toEqual(FASHION_MNIST_CLASSES);
    expect((await collect(test)).map((i) => (i as any).id)).toEqual(['test-000000', 'test-000001', 'test-000002']);
    // An explicit images file works too, and a preset wins over the path.
    const file = await openSource(path.join(d, 'train-images-idx3-ubyte'), { preset: 'mnist' });
    expect(file.count).toBe(2);
    expect(file.classNames[0]).toBe('0');
    await expect(openSource(d, { split: 'validation' })).rejects.toThrow(UsageError);
  });

  test('labels beyond a fixed class list are rejected items, not errors', async () => {
    const d = await dir('idx-range');
    const fx = idxFixture(3, 2, 2, [0, 5, 1]);
    await write(path.join(d, 'train-images-idx3-ubyte'), fx.images);
    await write(path.join(d, 'train-labels-idx1-ubyte'), fx.labels);
    const items = await collect(await openSource(d, { classNames: ['a', 'b'] }));
    expect(items.map((i) => i.kind)).toEqual(['pixels', 'rejected', 'pixels']);
    expect(items[1]).toMatchObject({ id: 'train-000001', row: 1, reason: expect.stringMatching(/label 5 is out of range/) });
  });

  test('wrong magic, truncation, count mismatch and a missing labels file are errors naming the file', async () => {
    const fx = idxFixture(4, 3, 3, [0, 1, 2, 3]);
    const wrongMagic = await dir('idx-magic');
    // Magic 2049 (labels) where 2051 (images) belongs.
    await write(path.join(wrongMagic, 'train-images-idx3-ubyte'), fx.images.map((v, i) => (i === 3 ? 0x01 : v)));
    await write(path.join(wrongMagic, 'train-labels-idx1-ubyte'), fx.labels);
    const err = await openSource(wrongMagic).catch((e) => e);
    expect(err).toBeInstanceOf(DataError);
    expect(err.exitCode).toBe(65);
    expect(err.message).toMatch(/train-images-idx3-ubyte: wrong magic number 2049.*this is a labels file/);

    const truncRaw = await dir('idx-trunc-raw');
    await write(path.join(truncRaw, 'train-images-idx3-ubyte'), fx.images.subarray(0, fx.images.length - 5));
    await write(path.join(truncRaw, 'train-labels-idx1-ubyte'), fx.labels);
    await expect(openSource(truncRaw)).rejects.toThrow(/train-images-idx3-ubyte: truncated/);

    // A gzip whose content stops early: only found while streaming.
    const truncGz = await dir('idx-trunc-gz');
    await write(path.join(truncGz, 'train-images-idx3-ubyte.gz'), gzipSync(fx.images.subarray(0, 16 + 9 * 2 + 4)));
    await write(path.join(truncGz, 'train-labels-idx1-ubyte.gz'), gzipSync(fx.labels));
    const src = await openSource(truncGz);
    const e2 = await collect(src).catch((e) => e);
    expect(e2).toBeInstanceOf(DataError);
    expect(e2.message).toMatch(/train-images-idx3-ubyte\.gz: truncated: image 2 of 4/);

    // A gzip stream cut in the middle (corrupt compression).
    const cutGz = await dir('idx-cut-gz');
    const gz = gzipSync(fx.images);
    await write(path.join(cutGz, 'train-images-idx3-ubyte.gz'), gz.subarray(0, gz.length - 12));
    await write(path.join(cutGz, 'train-labels-idx1-ubyte'), fx.labels);
    const e3 = await (async () => collect(await openSource(cutGz)))().catch((e) => e);
    expect(e3).toBeInstanceOf(DataError);
    expect(e3.message).toMatch(/train-images-idx3-ubyte\.gz/);

    const mismatch = await dir('idx-mismatch');
    await write(path.join(mismatch, 'train-images-idx3-ubyte'), fx.images);
    await write(path.join(mismatch, 'train-labels-idx1-ubyte'), encodeIdxLabels(Uint8Array.from([0, 1, 2])));
    await expect(openSource(mismatch)).rejects.toThrow(/4 images but 3 labels/);

    const noLabels = await dir('idx-nolabels');
    await write(path.join(noLabels, 'train-images-idx3-ubyte'), fx.images);
    await expect(openSource(noLabels)).rejects.toThrow(MissingInputError);
  });
});

describe('CIFAR source', () => {
  /** A CIFAR-10 record: label + CHW planes where pixel p of channel c is (p + 50c + seed) % 256. */
  function record(label: number, seed: number, extraLabel?: number): Uint8Array {
    const head = extraLabel === undefined ? [label] : [extraLabel, label];
    const rec = new Uint8Array(head.length + 3072);
    rec.set(head);
    for (let c = 0; c < 3; c++) for (let p = 0; p < 1024; p++) rec[head.length + c * 1024 + p] = (p + 50 * c + seed) % 256;
    return rec;
  }
  const concat = (parts: Uint8Array[]) => Buffer.concat(parts);

  test('CIFAR-10 batches: ids across batches, names from batches.meta.txt, CHW converted to HWC', async () => {
    const root = await dir('cifar10');
    const d = path.join(root, 'cifar-10-batches-bin'); // the tarball's folder, found inside root
    await write(path.join(d, 'data_batch_1.bin'), concat([record(3, 0), record(1, 1)]));
    await write(path.join(d, 'data_batch_2.bin'), concat([record(9, 2)]));
    await write(path.join(d, 'test_batch.bin'), concat([record(0, 3)]));
    await write(path.join(d, 'batches.meta.txt'), 'airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n');
    expect(await detectSource(root)).toBe('cifar');
    const src = await openSource(root);
    expect(src.count).toBe(3);
    expect(src.classNames[3]).toBe('cat');
    const items = await collect(src);
    expect(items.map((i) => [(i as any).id, (i as any).label])).toEqual([['train-000000', 3], ['train-000001', 1], ['train-000002', 9]]);
    const px = (items[2] as any).pixels as Uint8Array;
    // Pixel p, channel c at p*3 + c.
    expect([px[0], px[1], px[2], px[3 * 5 + 2]]).toEqual([2, 52, 102, 107]);
    const test = await collect(await openSource(root, { split: 'test' }));
    expect(test.map((i) => (i as any).id)).toEqual(['test-000000']);
  });

  test('CIFAR-100: fine labels by default, coarse on request', async () => {
    const d = await dir('cifar100');
    await write(path.join(d, 'train.bin'), concat([record(42, 0, 7), record(99, 1, 19)]));
    await write(path.join(d, 'fine_label_names.txt'), Array.from({ length: 100 }, (_, i) => `fine${i}`).join('\n'));
    const fine = await openSource(d);
    expect((await collect(fine)).map((i) => (i as any).label)).toEqual([42, 99]);
    expect(fine.classNames[42]).toBe('fine42');
    const coarse = await openSource(d, { cifarLabels: 'coarse' });
    expect((await collect(coarse)).map((i) => (i as any).label)).toEqual([7, 19]);
    expect(coarse.classNames).toHaveLength(20);
  });

  test('a truncated batch is a DataError naming it', async () => {
    const d = await dir('cifar-trunc');
    await write(path.join(d, 'data_batch_1.bin'), record(1, 0).subarray(0, 3000));
    await expect(openSource(d)).rejects.toThrow(/data_batch_1\.bin: truncated/);
  });

  test('chwToHwc', () => {
    expect(Array.from(chwToHwc(Uint8Array.from([1, 2, 10, 20, 100, 200]), 2, 3))).toEqual([1, 10, 100, 2, 20, 200]);
  });
});

describe('folder source', () => {
  test('class names are the sorted sub-folders; ids are posix paths; odd files are rejected items', async () => {
    const d = await dir('folder');
    await write(path.join(d, 'zebra', 'b.png'), 'x');
    await write(path.join(d, 'zebra', 'nested', 'a.JPG'), 'x');
    await write(path.join(d, 'ant', '1.webp'), 'x');
    await write(path.join(d, 'ant', 'notes.txt'), 'x');
    await write(path.join(d, 'ant', '.hidden.png'), 'x');
    await write(path.join(d, 'loose.png'), 'x');
    await fsp.mkdir(path.join(d, 'empty-class'));
    const src = await openSource(d);
    expect(src.format).toBe('folder');
    expect(src.classNames).toEqual(['ant', 'empty-class', 'zebra']);
    const items = await collect(src);
    expect(items.map((i) => [i.kind, (i as any).id ?? (i as any).path])).toEqual([
      ['file', 'ant/1.webp'],
      ['rejected', 'ant/notes.txt'],
      ['rejected', 'loose.png'],
      ['file', 'zebra/b.png'],
      ['file', 'zebra/nested/a.JPG'],
    ]);
    expect(items[1]).toMatchObject({ reason: 'not an image file extension (.txt)' });
    expect(items[2]).toMatchObject({ reason: 'not inside a class sub-folder' });
    expect((items[4] as any).label).toBe(2);
    expect(src.count).toBe(items.length);
  });

  test('fixed class names: their order, and unknown folders rejected', async () => {
    const d = await dir('folder-fixed');
    await write(path.join(d, 'cat', 'a.png'), 'x');
    await write(path.join(d, 'dog', 'a.png'), 'x');
    const items = await collect(await openSource(d, { classNames: ['dog', 'bird'] }));
    expect(items[0]).toMatchObject({ kind: 'rejected', path: 'cat/a.png', reason: expect.stringMatching(/"cat" is not among the fixed class names/) });
    expect(items[1]).toMatchObject({ kind: 'file', id: 'dog/a.png', label: 0 });
  });

  test('--split picks a sub-folder; a split that is not there is refused (66) listing the ones that are', async () => {
    const d = await dir('folder-splits');
    await write(path.join(d, 'train', 'cat', 'a.png'), 'x');
    await write(path.join(d, 'val', 'cat', 'b.png'), 'x');
    const val = await collect(await openSource(d, { split: 'val', format: 'folder' }));
    expect(val.map((i) => (i as any).id)).toEqual(['cat/b.png']);
    const err = await openSource(d, { split: 'validation', format: 'folder' }).catch((e) => e);
    expect(err).toBeInstanceOf(MissingInputError);
    expect(err.exitCode).toBe(66);
    expect(err.message).toMatch(/no split folder "validation" here.*Sub-folders found: "train", "val"/);
  });

  test('an empty folder, or one without images, is a DataError', async () => {
    const empty = await dir('empty');
    const e1 = await openSource(empty).catch((e) => e);
    expect(e1).toBeInstanceOf(DataError);
    expect(e1.message).toMatch(/empty: the folder is empty/);
    const noImages = await dir('no-images');
    await write(path.join(noImages, 'cat', 'readme.txt'), 'x');
    await expect(openSource(noImages, { format: 'folder' })).rejects.toThrow(/no image files in the class sub-folders/);
    const flat = await dir('flat');
    await write(path.join(flat, 'a.png'), 'x');
    await expect(openSource(flat)).rejects.toThrow(/no class sub-folders/);
  });

  test('the fingerprint follows file names, sizes and mtimes', async () => {
    const d = await dir('folder-fp');
    const f = await write(path.join(d, 'cat', 'a.png'), 'x');
    const fp1 = await (await openSource(d)).fingerprint();
    expect(await (await openSource(d)).fingerprint()).toBe(fp1);
    await fsp.writeFile(f, 'xy');
    expect(await (await openSource(d)).fingerprint()).not.toBe(fp1);
  });
});

describe('manifest source', () => {
  test('CSV: relative paths, quoted fields, class names collected and sorted, captions, ids', async () => {
    const d = await dir('manifest-csv');
    const file = await write(path.join(d, 'list.csv'), [
      'path,label,caption,id',
      '"img/a, b.png",zebra,"a ""quoted"", caption",',
      'img/c.png,ant,,c1',
      './img/../img/d.png,zebra,plain,',
    ].join('\n'));
    const src = await openSource(file);
    expect(src.format).toBe('manifest');
    expect(src.classNames).toEqual(['ant', 'zebra']);
    expect(src.hasCaptions).toBe(true);
    const items = await collect(src);
    expect(items).toMatchObject([
      { kind: 'file', id: 'img/a, b.png', label: 1, caption: 'a "quoted", caption', file: path.join(d, 'img', 'a, b.png'), row: 2 },
      { kind: 'file', id: 'c1', label: 0, caption: undefined, row: 3 },
      { kind: 'file', id: 'img/d.png', label: 1, caption: 'plain', row: 4 },
    ]);
  });

  test('integer labels are indices; names in label_name; fixed names reject unknown ones', async () => {
    const d = await dir('manifest-labels');
    const ints = await write(path.join(d, 'ints.csv'), 'path,label\na.png,2\nb.png,0\n');
    const s1 = await openSource(ints);
    expect(s1.classNames).toEqual(['0', '1', '2']);
    expect((await collect(s1)).map((i) => (i as any).label)).toEqual([2, 0]);

    const named = await write(path.join(d, 'named.csv'), 'path,label_name\na.png,dog\nb.png,cat\nc.png,emu\n');
    const s2 = await openSource(named, { classNames: ['dog', 'cat'] });
    const items = await collect(s2);
    expect(items.map((i) => (i as any).label)).toEqual([0, 1, undefined]);
    expect(items[2]).toMatchObject({ kind: 'rejected', path: 'c.png', row: 4, reason: expect.stringMatching(/unknown label name "emu"/) });

    const outOfRange = await write(path.join(d, 'range.csv'), 'path,label\na.png,5\n');
    expect(await collect(await openSource(outOfRange, { classNames: ['x', 'y'] }))).toMatchObject([
      { kind: 'rejected', reason: expect.stringMatching(/label index 5 is out of range/) },
    ]);
  });

  test('paths leaving the folder are refused unless allowed; duplicates, bad rows and missing labels rejected', async () => {
    const d = await dir('manifest-escape/inner');
    const file = await write(path.join(d, 'm.csv'), [
      'path,label',
      '../outside.png,a',
      `${path.join(tmp, 'abs.png')},a`,
      'ok.png,a',
      'ok.png,a',
      'x.png',
      'y.png,',
    ].join('\n'));
    const items = await collect(await openSource(file));
    expect(items.map((i) => (i.kind === 'rejected' ? i.reason : 'ok'))).toEqual([
      "path leaves the manifest's folder (allow it with --allow-outside-root)",
      "path leaves the manifest's folder (allow it with --allow-outside-root)",
      'ok',
      'duplicate id (first used on line 4)',
      'expected 2 fields, found 1',
      'missing label',
    ]);
    const allowed = await collect(await openSource(file, { allowOutsideRoot: true }));
    expect(allowed[0]).toMatchObject({ kind: 'file', id: '../outside.png', file: path.join(tmp, 'manifest-escape', 'outside.png') });
    expect(allowed[1]).toMatchObject({ kind: 'file', file: path.join(tmp, 'abs.png') });
  });

  test('JSONL: numbers and names, captions, invalid lines rejected with their line', async () => {
    const d = await dir('manifest-jsonl');
    const file = await write(path.join(d, 'm.jsonl'), [
      '{"path": "a.png", "label": "cat", "caption": "a cat"}',
      '',
      '{"path": "b.png", "label": "dog"}',
      '{not json',
      '[1, 2]',
      '{"file_name": "c.png", "label_name": "cat", "id": 7}',
    ].join('\n'));
    const src = await openSource(file);
    expect(src.classNames).toEqual(['cat', 'dog']);
    expect(src.count).toBe(5);
    const items = await collect(src);
    expect(items).toMatchObject([
      { kind: 'file', id: 'a.png', label: 0, caption: 'a cat', row: 1 },
      { kind: 'file', id: 'b.png', label: 1, row: 3 },
      { kind: 'rejected', row: 4, reason: expect.stringMatching(/^invalid JSON/) },
      { kind: 'rejected', row: 5, reason: 'not a JSON object' },
      { kind: 'file', id: '7', label: 0, row: 6 },
    ]);
  });

  test('a CSV without path or label columns is a DataError', async () => {
    const d = await dir('manifest-bad');
    await expect(openSource(await write(path.join(d, 'a.csv'), 'file,label\nx,1\n'))).rejects.toThrow(/no "path" column/);
    await expect(openSource(await write(path.join(d, 'b.csv'), 'path,caption\nx,1\n'))).rejects.toThrow(/no "label" or "label_name" column/);
    await expect(openSource(await write(path.join(d, 'c.csv'), 'path,label\n'))).rejects.toThrow(/lists no images/);
  });
});

describe('detectSource', () => {
  test('each kind, and clear errors otherwise', async () => {
    const d = await dir('detect');
    const csvFile = await write(path.join(d, 'm.csv'), 'path,label\n');
    const jsonl = await write(path.join(d, 'm.jsonl'), '');
    const idxFile = await write(path.join(d, 'idx', 'train-images-idx3-ubyte.gz'), '');
    await write(path.join(d, 'ds', 'state.json'), '{}');
    await write(path.join(d, 'folder', 'cat', 'a.png'), '');
    const other = await write(path.join(d, 'notes.txt'), '');
    await fsp.mkdir(path.join(d, 'empty'));
    expect(await detectSource(csvFile)).toBe('manifest');
    expect(await detectSource(jsonl)).toBe('manifest');
    expect(await detectSource(idxFile)).toBe('idx');
    expect(await detectSource(path.dirname(idxFile))).toBe('idx');
    expect(await detectSource(path.join(d, 'ds'))).toBe('dataset');
    expect(await detectSource(path.join(d, 'folder'))).toBe('folder');
    await expect(detectSource(other)).rejects.toThrow(/cannot tell what kind of source/);
    await expect(detectSource(path.join(d, 'empty'))).rejects.toThrow(DataError);
    const missing = await detectSource(path.join(d, 'nope')).catch((e) => e);
    expect(missing).toBeInstanceOf(MissingInputError);
    expect(missing.exitCode).toBe(66);
  });
});

describe('the built-in dataset', () => {
  const builtin = fileURLToPath(new URL('../../data/builtin/fashion-mnist', import.meta.url));

  test('is a balanced Fashion-MNIST subset the IDX source reads: 6,000 train and 1,000 test images', async () => {
    for (const [split, perClass] of [['train', 600], ['test', 100]] as const) {
      const src = await openSource(builtin, { split });
      expect(src.format).toBe('idx');
      expect(src.nativeShape).toEqual([28, 28, 1]);
      expect(src.classNames).toEqual(FASHION_MNIST_CLASSES);
      const counts = new Array(10).fill(0);
      for await (const it of src.items()) {
        if (it.kind !== 'pixels') throw new Error(`unexpected ${it.kind} item`);
        counts[it.label]++;
      }
      expect(counts).toEqual(new Array(10).fill(perClass));
    }
    const license = await fsp.readFile(path.join(builtin, 'LICENSE'), 'utf8');
    expect(license).toMatch(/MIT License[\s\S]*Copyright \(c\) 2017 Zalando SE/);
  });
});
