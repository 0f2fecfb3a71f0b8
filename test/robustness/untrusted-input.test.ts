/**
 * Adversarial input: folders scraped from anywhere and metadata edited by hand.
 * Each case is a class of problem, not one file: metadata that names files
 * outside its folder, links that leave a source's folder or loop back into it,
 * and files that are not files (FIFOs, devices) or are too big to read.
 */
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { describe, expect, test } from 'vitest';
import { DataError } from '../../core/errors.js';
import { CURATION_FILE, REJECTED_FILE, STATE_FILE } from '../../data/format.js';
import { openDataset } from '../../data/reader.js';
import { writeParquet } from '../../data/export.js';
import { writeDataset } from '../../data/writer.js';
import { ingest } from '../../stages/ingest.js';
import { TEST_META, writeImageDataset } from '../helpers/datasets.js';
import { useTmpDir } from '../helpers/tmp.js';

const tmpDir = useTmpDir('mc-untrusted-');
const at = (...p: string[]) => path.join(tmpDir(), ...p);

async function png(file: string, grey = 128): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await sharp({ create: { width: 4, height: 4, channels: 3, background: { r: grey, g: grey, b: grey } } }).png().toFile(file);
}

async function rejectedLines(out: string): Promise<{ path?: string; reason: string }[]> {
  const text = await fsp.readFile(path.join(out, REJECTED_FILE), 'utf8');
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

async function ids(out: string): Promise<string[]> {
  const ds = await openDataset(out);
  const all: string[] = [];
  for await (const b of ds.blocks()) for (let i = 0; i < b.length; i++) all.push(String(b.column('id').get(i)));
  return all;
}

async function expectDataError(p: Promise<unknown>, pattern: RegExp): Promise<DataError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(DataError);
  expect((err as DataError).exitCode).toBe(65);
  expect((err as Error).message).toMatch(pattern);
  return err as DataError;
}

describe('metadata that names files outside its folder is refused (65), never followed', () => {
  const edits: [string, (meta: any) => void][] = [
    ['a shard path climbing out with ..', (m) => { m.shards[0].file = '../elsewhere/data.arrow'; }],
    ['an absolute shard path', (m) => { m.shards[0].file = '/etc/passwd'; }],
    ['a shard path that is the folder itself', (m) => { m.shards[0].file = '.'; }],
  ];
  test.each(edits)('curation.json: %s', async (_name, edit) => {
    const dir = at(`meta-${_name.replace(/\W+/g, '-')}`);
    await writeImageDataset(dir, 6);
    // The file a bad name would reach exists, so only the containment check can refuse it.
    await fsp.mkdir(at('elsewhere'), { recursive: true });
    await fsp.copyFile(path.join(dir, (JSON.parse(await fsp.readFile(path.join(dir, CURATION_FILE), 'utf8')) as any).shards[0].file), at('elsewhere', 'data.arrow'));
    const meta = JSON.parse(await fsp.readFile(path.join(dir, CURATION_FILE), 'utf8'));
    edit(meta);
    await fsp.writeFile(path.join(dir, CURATION_FILE), JSON.stringify(meta));
    const err = await expectDataError(openDataset(dir), /outside its folder/);
    expect(err.file).toBe(path.join(dir, CURATION_FILE));
  });

  test('state.json (a dataset written by HF datasets) with a shard outside', async () => {
    const dir = at('hf-escape');
    await fsp.mkdir(dir, { recursive: true });
    await fsp.writeFile(path.join(dir, STATE_FILE), JSON.stringify({ _data_files: [{ filename: '../elsewhere/data.arrow' }] }));
    await expectDataError(openDataset(dir), /outside its folder/);
  });

  test('a shard list that is not a list is a corrupt file, not a crash', async () => {
    const dir = at('not-a-list');
    await writeImageDataset(dir, 4);
    const meta = JSON.parse(await fsp.readFile(path.join(dir, CURATION_FILE), 'utf8'));
    meta.shards = 'data.arrow';
    await fsp.writeFile(path.join(dir, CURATION_FILE), JSON.stringify(meta));
    await expectDataError(openDataset(dir), /"shards" is not a list of files/);
  });

  test('export --parquet writes one file per shard inside its output, and refuses a dataset whose shard name climbs out', async () => {
    const dir = at('export-src');
    await writeImageDataset(dir, 4);
    const res = await writeParquet(dir, at('export-out'));
    const shards = (await openDataset(dir)).shards.map((sh) => sh.file.replace(/\.arrow$/, '.parquet'));
    expect(res.files.map((f) => f.file)).toEqual(shards);
    expect((await fsp.readdir(at('export-out'))).sort()).toEqual([...shards].sort());
    // The name the export would write comes from the shard's: an escaping one is refused before anything is written.
    const meta = JSON.parse(await fsp.readFile(path.join(dir, CURATION_FILE), 'utf8'));
    meta.shards[0].file = '../../export-escape/data.arrow';
    await fsp.writeFile(path.join(dir, CURATION_FILE), JSON.stringify(meta));
    await expectDataError(writeParquet(dir, at('export-out-2')), /outside its folder/);
    await expect(fsp.stat(at('export-out-2'))).rejects.toThrow(/ENOENT/);
  });
});

describe('image sources never read outside their folder unless allowed', () => {
  test('a symbolic link to a file outside an image folder is refused and recorded', async () => {
    const src = at('links', 'src');
    await png(path.join(src, 'cat', 'a.png'));
    await png(at('links', 'secret.png'), 30);
    await fsp.symlink(at('links', 'secret.png'), path.join(src, 'cat', 'b.png'));
    await png(path.join(src, 'dog', 'c.png'));
    const out = at('links', 'out');
    const res = await ingest(src, { out });
    expect(res.summary.rows).toBe(2);
    expect(await ids(out)).toEqual(['cat/a.png', 'dog/c.png']);
    expect(await rejectedLines(out)).toEqual([expect.objectContaining({ path: 'cat/b.png', reason: expect.stringMatching(/outside the source folder.*--allow-outside-root/) })]);
    // Allowed, it is read like any other file.
    const allowed = await ingest(src, { out: at('links', 'out-allowed'), allowOutsideRoot: true });
    expect(allowed.summary.rows).toBe(3);
  });

  test('a link inside the folder to a file inside it is fine', async () => {
    const src = at('inner-link');
    await png(path.join(src, 'cat', 'a.png'));
    await fsp.symlink(path.join(src, 'cat', 'a.png'), path.join(src, 'cat', 'b.png'));
    await png(path.join(src, 'dog', 'c.png'));
    const res = await ingest(src, { out: at('inner-link-out') });
    expect(res.summary.rows).toBe(3);
  });

  test('a linked folder outside the root is refused as a whole, not walked', async () => {
    const src = at('dirlink', 'src');
    await png(path.join(src, 'cat', 'a.png'));
    await png(at('dirlink', 'outside', 'x.png'));
    await png(at('dirlink', 'outside', 'y.png'));
    await fsp.symlink(at('dirlink', 'outside'), path.join(src, 'cat', 'more'));
    await png(path.join(src, 'dog', 'c.png'));
    const out = at('dirlink', 'out');
    const res = await ingest(src, { out });
    expect(res.summary.rows).toBe(2);
    expect(await rejectedLines(out)).toEqual([expect.objectContaining({ path: 'cat/more', reason: expect.stringMatching(/folder outside the source folder/) })]);
  });

  test('manifest paths that are links to files outside its folder are refused like paths that climb out', async () => {
    const dir = at('manifest-link');
    await png(path.join(dir, 'a.png'));
    await png(at('manifest-secret.png'));
    await fsp.symlink(at('manifest-secret.png'), path.join(dir, 'b.png'));
    // `..x.png` is a file name inside the folder, not a way out of it.
    await png(path.join(dir, '..x.png'));
    await fsp.writeFile(path.join(dir, 'list.csv'), 'path,label\na.png,cat\nb.png,cat\n..x.png,dog\n');
    const out = at('manifest-link-out');
    const res = await ingest(path.join(dir, 'list.csv'), { out });
    expect(res.summary.rows).toBe(2);
    expect(await ids(out)).toEqual(['a.png', '..x.png']);
    expect(await rejectedLines(out)).toEqual([expect.objectContaining({ path: 'b.png', reason: expect.stringMatching(/outside the source folder/) })]);
  });

  test('HF image paths (images stored by path, not embedded) stay inside the dataset folder', async () => {
    const dir = at('hf-paths', 'ds');
    await png(at('hf-paths', 'secret.png'));
    await writeDataset(dir, [
      { id: 'in', label: 0, image: { bytes: null, path: 'images/a.png' } },
      { id: 'out', label: 0, image: { bytes: null, path: '../secret.png' } },
      { id: 'abs', label: 0, image: { bytes: null, path: at('hf-paths', 'secret.png') } },
    ], { meta: TEST_META, columns: [{ name: 'id', kind: 'string' }, { name: 'label', kind: 'classLabel', names: ['a'] }, { name: 'image', kind: 'image', nullable: true }] });
    // HF keeps such images beside the dataset's own files.
    await png(path.join(dir, 'images', 'a.png'));
    const out = at('hf-paths', 'out');
    const res = await ingest(dir, { out });
    expect(res.summary.rows).toBe(1);
    expect(await ids(out)).toEqual(['in']);
    expect((await rejectedLines(out)).map((r) => r.reason)).toEqual([expect.stringMatching(/outside the source folder/), expect.stringMatching(/outside the source folder/)]);
  });
});

describe('link loops and special files cannot hang or flood ingest', () => {
  test('a link back up (ln -s .. cat/up) is walked once: no image twice, no endless walk', async () => {
    const src = at('loop');
    await png(path.join(src, 'cat', 'a.png'));
    await png(path.join(src, 'dog', 'b.png'));
    await fsp.symlink('..', path.join(src, 'cat', 'up'));
    await fsp.symlink('../..', path.join(src, 'dog', 'up2'));
    const out = at('loop-out');
    const res = await ingest(src, { out });
    expect(await ids(out)).toEqual(['cat/a.png', 'dog/b.png']);
    expect(res.summary.rows).toBe(2);
    const reasons = (await rejectedLines(out)).map((r) => [r.path, r.reason]);
    expect(reasons).toEqual([
      ['cat/up', expect.stringMatching(/already walked/)],
      ['dog/up2', expect.stringMatching(/outside the source folder/)],
    ]);
  });

  test('a FIFO named like an image is refused at once, not read forever', async () => {
    const src = at('fifo');
    await png(path.join(src, 'cat', 'a.png'));
    try {
      execFileSync('mkfifo', [path.join(src, 'cat', 'x.png')]);
    } catch {
      // mkfifo is part of coreutils on every Linux and macOS; without it there is nothing to test.
      expect.unreachable('mkfifo is missing: this test needs coreutils');
    }
    const out = at('fifo-out');
    const res = await ingest(src, { out });
    expect(res.summary.rows).toBe(1);
    expect(await rejectedLines(out)).toEqual([expect.objectContaining({ path: 'cat/x.png', reason: expect.stringMatching(/not a regular file/) })]);
  }, 20_000);

  test('a link to a device (/dev/zero) is refused, not read without end', async () => {
    const src = at('dev');
    await png(path.join(src, 'cat', 'a.png'));
    await fsp.symlink('/dev/zero', path.join(src, 'cat', 'z.png'));
    const out = at('dev-out');
    // The device lies outside the folder: with links allowed out, the file-type check still refuses it.
    const res = await ingest(src, { out, allowOutsideRoot: true });
    expect(res.summary.rows).toBe(1);
    expect(await rejectedLines(out)).toEqual([expect.objectContaining({ path: 'cat/z.png', reason: expect.stringMatching(/not a regular file/) })]);
  }, 20_000);

  test('files above --max-file-bytes are refused unread; the cap joins the fingerprint only when changed', async () => {
    const src = at('big');
    await png(path.join(src, 'cat', 'a.png'));
    await fsp.mkdir(path.join(src, 'dog'), { recursive: true });
    await fsp.writeFile(path.join(src, 'dog', 'big.png'), new Uint8Array(4096));
    const out = at('big-out');
    const res = await ingest(src, { out, maxFileBytes: 1024 });
    expect(res.summary.rows).toBe(1);
    expect(await rejectedLines(out)).toEqual([expect.objectContaining({ path: 'dog/big.png', reason: expect.stringMatching(/4096 bytes, above the limit of 1024/) })]);
    const plain = await ingest(src, { out: at('big-out-default') });
    const explicitDefault = await ingest(src, { out: at('big-out-default-2'), maxFileBytes: 256 * 1024 * 1024 });
    expect(explicitDefault.fingerprint).toBe(plain.fingerprint);
    expect(res.fingerprint).not.toBe(plain.fingerprint);
  });
});
