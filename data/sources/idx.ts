/**
 * IDX files (MNIST, Fashion-MNIST), raw or gzip: images (magic 2051, u8 × N×H×W)
 * and labels (magic 2049, u8 × N). Images stream one record at a time.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { DataError, MissingInputError, UsageError } from '../../core/errors.js';
import { ByteReader, contentFingerprint, isGzip, openMaybeGzip, statInput } from './files.js';
import { describeClasses, indexId, type Preset, type Source, type SourceItem, type SourceOptions } from './types.js';

export const IDX_IMAGES_MAGIC = 2051;
export const IDX_LABELS_MAGIC = 2049;

export const FASHION_MNIST_CLASSES = [
  'T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot',
];
export const MNIST_CLASSES = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

export function presetClassNames(preset: Preset): string[] {
  return preset === 'fashion-mnist' ? [...FASHION_MNIST_CLASSES] : [...MNIST_CLASSES];
}

const IMAGES_RE = /^(.*?)[-.]?images[-.]idx3[-.]ubyte(\.gz)?$/i;
const LABELS_RE = /^(.*?)[-.]?labels[-.]idx1[-.]ubyte(\.gz)?$/i;

/** True for a file name that looks like an IDX images or labels file. */
export function isIdxFileName(name: string): boolean {
  return IMAGES_RE.test(name) || LABELS_RE.test(name);
}

function badIdx(file: string, message: string): DataError {
  return new DataError(message, { file, hint: 'Is this an IDX file (MNIST format)? Download or copy it again' });
}

export interface IdxImages {
  file: string;
  count: number;
  rows: number;
  cols: number;
  /** The images in order, one H×W Uint8Array each; the last check catches a short file. */
  records(): AsyncGenerator<Uint8Array>;
}

/** Opens an IDX images file and validates its header (and its size, when not compressed). */
export async function openIdxImages(file: string): Promise<IdxImages> {
  const st = await statInput(file, 'IDX images file');
  const gz = await isGzip(file);
  const header = await readHeader(file, 16, IDX_IMAGES_MAGIC);
  const view = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const count = view.getUint32(4);
  const rows = view.getUint32(8);
  const cols = view.getUint32(12);
  if (rows === 0 || cols === 0) throw badIdx(file, `image size ${rows}×${cols} is empty`);
  const recordSize = rows * cols;
  const expected = 16 + count * recordSize;
  if (!gz && st.size !== expected) {
    throw badIdx(file, `${st.size < expected ? 'truncated' : 'too long'}: ${st.size} bytes, the header promises ${count} images of ${rows}×${cols} (${expected} bytes)`);
  }
  return {
    file, count, rows, cols,
    async *records() {
      const reader = new ByteReader(await openMaybeGzip(file), file);
      try {
        await reader.read(16);
        for (let i = 0; i < count; i++) {
          const rec = await reader.read(recordSize);
          if (rec.length < recordSize) {
            throw badIdx(file, `truncated: image ${i} of ${count} is incomplete (the header promises ${expected} bytes, the data ends after ${reader.consumed})`);
          }
          yield rec;
        }
        if (!(await reader.atEnd())) throw badIdx(file, `too long: data continues after the ${count} images the header promises`);
      } finally {
        await reader.close();
      }
    },
  };
}

/** Reads a whole IDX labels file (one byte per image) and validates it. */
export async function readIdxLabels(file: string): Promise<Uint8Array> {
  await statInput(file, 'IDX labels file');
  const header = await readHeader(file, 8, IDX_LABELS_MAGIC);
  const count = new DataView(header.buffer, header.byteOffset, header.byteLength).getUint32(4);
  const reader = new ByteReader(await openMaybeGzip(file), file);
  try {
    await reader.read(8);
    const labels = await reader.read(count);
    if (labels.length < count) throw badIdx(file, `truncated: ${labels.length} of the ${count} labels the header promises`);
    if (!(await reader.atEnd())) throw badIdx(file, `too long: data continues after the ${count} labels the header promises`);
    return labels;
  } finally {
    await reader.close();
  }
}

/** The first `n` bytes; a file shorter than that is truncated, unless its magic number is already wrong. */
async function readHeader(file: string, n: number, magic: number): Promise<Uint8Array> {
  const reader = new ByteReader(await openMaybeGzip(file), file);
  try {
    const head = await reader.read(n);
    if (head.length < n) {
      if (head.length >= 4) checkMagic(file, new DataView(head.buffer, head.byteOffset).getUint32(0), magic);
      throw badIdx(file, `truncated: ${head.length} bytes, shorter than the ${n}-byte IDX header`);
    }
    checkMagic(file, new DataView(head.buffer, head.byteOffset).getUint32(0), magic);
    return head;
  } finally {
    await reader.close();
  }
}

function checkMagic(file: string, got: number, want: number): void {
  if (got === want) return;
  const kind = (m: number) => (m === IDX_IMAGES_MAGIC ? 'images' : 'labels');
  const other = got === IDX_IMAGES_MAGIC ? '; this is an images file' : got === IDX_LABELS_MAGIC ? '; this is a labels file' : '';
  throw badIdx(file, `wrong magic number ${got} for IDX ${kind(want)} (expected ${want}${other})`);
}

/** An IDX images file's bytes (header + data), e.g. to write a subset. */
export function encodeIdxImages(count: number, rows: number, cols: number, data: Uint8Array): Uint8Array {
  if (data.length !== count * rows * cols) throw new RangeError(`encodeIdxImages: ${data.length} bytes for ${count}×${rows}×${cols}`);
  const out = new Uint8Array(16 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, IDX_IMAGES_MAGIC);
  view.setUint32(4, count);
  view.setUint32(8, rows);
  view.setUint32(12, cols);
  out.set(data, 16);
  return out;
}

export function encodeIdxLabels(labels: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + labels.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, IDX_LABELS_MAGIC);
  view.setUint32(4, labels.length);
  out.set(labels, 8);
  return out;
}

/** Deterministic gzip (zlib writes mtime 0 and no file name in the header). */
export function gzipDeterministic(data: Uint8Array): Buffer {
  return gzipSync(data, { level: 9 });
}

interface IdxPair {
  images: string;
  labels: string;
  split: string;
}

/** Split name for ids from a file-name prefix: 'train', 'test' (t10k) or the prefix itself. */
function splitOfPrefix(prefix: string): string {
  const p = prefix.toLowerCase();
  if (p.includes('train')) return 'train';
  if (p.includes('t10k') || p.includes('test')) return 'test';
  return p.replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '') || 'row';
}

function prefixMatchesSplit(prefix: string, split: string): boolean {
  const p = prefix.toLowerCase();
  const s = split.toLowerCase();
  if (p === s) return true;
  return splitOfPrefix(prefix) === s;
}

/** Finds the images and labels files for a directory (+ split) or an images file. */
export async function resolveIdxFiles(root: string, split: string | undefined): Promise<IdxPair> {
  const st = await statInput(root, 'IDX source');
  const dir = st.isDirectory() ? root : path.dirname(root);
  const names = (await fsp.readdir(dir)).sort();
  let images: string;
  let prefix: string;
  if (st.isDirectory()) {
    const candidates = names.filter((n) => IMAGES_RE.test(n));
    if (candidates.length === 0) {
      throw new MissingInputError('no IDX images file (*-images-idx3-ubyte[.gz]) in this folder', { file: root });
    }
    const want = split ?? 'train';
    const matching = candidates.filter((n) => prefixMatchesSplit(IMAGES_RE.exec(n)![1], want));
    // With both a raw and a .gz copy, the first by name (the raw one) wins: stable.
    let chosen = matching[0];
    if (!chosen && split === undefined && candidates.length === 1) chosen = candidates[0];
    if (!chosen) {
      throw new UsageError(`no IDX images file for split "${want}"`, {
        file: root,
        hint: `Files here: ${candidates.join(', ')}; pass --split train or --split test`,
      });
    }
    images = path.join(dir, chosen);
    prefix = IMAGES_RE.exec(chosen)![1];
  } else {
    const m = IMAGES_RE.exec(path.basename(root));
    if (!m) {
      throw new UsageError('an IDX source file must be named *-images-idx3-ubyte[.gz] (its labels file is found beside it)', { file: root });
    }
    images = root;
    prefix = m[1];
  }
  const label = names.find((n) => {
    const m = LABELS_RE.exec(n);
    return m !== null && m[1].toLowerCase() === prefix.toLowerCase();
  });
  if (!label) {
    throw new MissingInputError(`no labels file beside the images (expected ${prefix ? `${prefix}-` : ''}labels-idx1-ubyte[.gz])`, { file: images });
  }
  return { images, labels: path.join(dir, label), split: split ?? splitOfPrefix(prefix) };
}

/**
 * Class names for IDX data: a fixed list (--class-names), a preset, Fashion-MNIST's
 * names when the path says "fashion", else the label values as digits.
 */
function idxClassNames(root: string, labels: Uint8Array, opts: SourceOptions): { names: string[]; fixed: boolean } {
  if (opts.classNames) return { names: opts.classNames, fixed: true };
  if (opts.preset) return { names: presetClassNames(opts.preset), fixed: true };
  if (/fashion/i.test(path.resolve(root))) return { names: [...FASHION_MNIST_CLASSES], fixed: true };
  let max = 9;
  for (const l of labels) if (l > max) max = l;
  return { names: Array.from({ length: max + 1 }, (_, i) => String(i)), fixed: false };
}

export async function openIdxSource(root: string, opts: SourceOptions): Promise<Source> {
  const files = await resolveIdxFiles(root, opts.split);
  const imgs = await openIdxImages(files.images);
  const labels = await readIdxLabels(files.labels);
  if (labels.length !== imgs.count) {
    throw new DataError(`${imgs.count} images but ${labels.length} labels in ${path.basename(files.labels)}`, {
      file: files.images,
      hint: 'The two files must come from the same split',
    });
  }
  const { names } = idxClassNames(root, labels, opts);
  return {
    format: 'idx',
    root,
    classNames: names,
    nativeShape: [imgs.rows, imgs.cols, 1],
    hasCaptions: false,
    count: imgs.count,
    async *items(): AsyncGenerator<SourceItem> {
      let i = 0;
      for await (const pixels of imgs.records()) {
        const id = indexId(files.split, i, imgs.count);
        const label = labels[i];
        if (label >= names.length) {
          yield { kind: 'rejected', id, row: i, reason: `label ${label} is out of range for the ${names.length} classes (${describeClasses(names)})` };
        } else {
          yield { kind: 'pixels', id, row: i, label, pixels, shape: [imgs.rows, imgs.cols, 1] };
        }
        i++;
      }
    },
    fingerprint: () => contentFingerprint([files.images, files.labels]),
  };
}
