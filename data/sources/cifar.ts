/**
 * CIFAR-10/100 binary batches. CIFAR-10: data_batch_1..5.bin / test_batch.bin,
 * records of 1 label byte + 3072 pixel bytes. CIFAR-100: train.bin / test.bin,
 * records of coarse label + fine label + 3072 pixel bytes. Pixels are stored
 * channel-planar (1024 R, 1024 G, 1024 B); rows get them channels-last.
 */
import { createReadStream, promises as fsp } from 'node:fs';
import path from 'node:path';
import { DataError, MissingInputError, UsageError } from '../../core/errors.js';
import { ByteReader, contentFingerprint, statInput } from './files.js';
import { describeClasses, indexId, type Source, type SourceItem, type SourceOptions } from './types.js';

export const CIFAR10_CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck'];
const SIDE = 32;
const PLANE = SIDE * SIDE;
const PIXELS = PLANE * 3;
/** The folders the official tarballs extract to. */
const TARBALL_DIRS = ['cifar-10-batches-bin', 'cifar-100-binary'];

interface CifarLayout {
  dir: string;
  variant: 10 | 100;
}

/** The CIFAR folder at `root` (or in the tarball folder inside it), or undefined. */
export async function findCifarLayout(root: string): Promise<CifarLayout | undefined> {
  const st = await fsp.stat(root).catch(() => undefined);
  if (!st?.isDirectory()) return undefined;
  const names = await fsp.readdir(root);
  if (names.some((n) => /^data_batch_\d+\.bin$/.test(n) || n === 'test_batch.bin')) return { dir: root, variant: 10 };
  if (names.includes('train.bin') || names.includes('test.bin')) return { dir: root, variant: 100 };
  for (const sub of TARBALL_DIRS) if (names.includes(sub)) return findCifarLayout(path.join(root, sub));
  return undefined;
}

/** Channel-planar (CHW) to channels-last (HWC). */
export function chwToHwc(chw: Uint8Array, planeSize: number, channels: number): Uint8Array {
  const out = new Uint8Array(chw.length);
  for (let c = 0; c < channels; c++) {
    const base = c * planeSize;
    for (let p = 0; p < planeSize; p++) out[p * channels + c] = chw[base + p];
  }
  return out;
}

async function readNames(file: string): Promise<string[] | undefined> {
  const text = await fsp.readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const names = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0);
  return names.length > 0 ? names : undefined;
}

export async function openCifarSource(root: string, opts: SourceOptions): Promise<Source> {
  await statInput(root, 'CIFAR source');
  const layout = await findCifarLayout(root);
  if (!layout) {
    throw new MissingInputError('no CIFAR binary batches here (data_batch_N.bin / test_batch.bin, or train.bin / test.bin)', {
      file: root,
      hint: 'Use the binary version of CIFAR ("cifar-10-binary.tar.gz"), extracted',
    });
  }
  const split = opts.split ?? 'train';
  if (split !== 'train' && split !== 'test') throw new UsageError(`CIFAR has splits "train" and "test", not "${split}"`);
  const names = (await fsp.readdir(layout.dir)).sort();
  let files: string[];
  if (layout.variant === 10) {
    files = split === 'test'
      ? names.filter((n) => n === 'test_batch.bin')
      : names.filter((n) => /^data_batch_\d+\.bin$/.test(n)).sort((a, b) => batchNo(a) - batchNo(b));
  } else {
    files = names.filter((n) => n === `${split}.bin`);
  }
  if (files.length === 0) throw new MissingInputError(`no CIFAR-${layout.variant} ${split} batch files`, { file: layout.dir });
  const paths = files.map((f) => path.join(layout.dir, f));

  const fine = layout.variant === 100 && (opts.cifarLabels ?? 'fine') === 'fine';
  const recordSize = (layout.variant === 10 ? 1 : 2) + PIXELS;
  let count = 0;
  const counts: number[] = [];
  for (const p of paths) {
    const size = (await fsp.stat(p)).size;
    if (size === 0 || size % recordSize !== 0) {
      throw new DataError(`${size === 0 ? 'empty' : 'truncated'}: ${size} bytes is not a whole number of ${recordSize}-byte CIFAR-${layout.variant} records`, {
        file: p,
        hint: 'Download or extract the batch again',
      });
    }
    counts.push(size / recordSize);
    count += size / recordSize;
  }

  let classNames: string[];
  if (opts.classNames) classNames = opts.classNames;
  else if (layout.variant === 10) classNames = (await readNames(path.join(layout.dir, 'batches.meta.txt'))) ?? CIFAR10_CLASSES;
  else {
    const file = fine ? 'fine_label_names.txt' : 'coarse_label_names.txt';
    classNames = (await readNames(path.join(layout.dir, file)))
      ?? Array.from({ length: fine ? 100 : 20 }, (_, i) => String(i));
  }

  return {
    format: 'cifar',
    root,
    classNames,
    nativeShape: [SIDE, SIDE, 3],
    hasCaptions: false,
    count,
    async *items(): AsyncGenerator<SourceItem> {
      let i = 0;
      for (let f = 0; f < paths.length; f++) {
        const reader = new ByteReader(createReadStream(paths[f], { highWaterMark: 1 << 20 }), paths[f]);
        try {
          for (let r = 0; r < counts[f]; r++) {
            const rec = await reader.read(recordSize);
            if (rec.length < recordSize) throw new DataError(`truncated while reading record ${r}`, { file: paths[f] });
            const label = layout.variant === 10 ? rec[0] : fine ? rec[1] : rec[0];
            const id = indexId(split, i, count);
            if (label >= classNames.length) {
              yield { kind: 'rejected', id, row: i, reason: `label ${label} is out of range for the ${classNames.length} classes (${describeClasses(classNames)})` };
            } else {
              const pixels = chwToHwc(rec.subarray(recordSize - PIXELS), PLANE, 3);
              yield { kind: 'pixels', id, row: i, label, pixels, shape: [SIDE, SIDE, 3] };
            }
            i++;
          }
        } finally {
          await reader.close();
        }
      }
    },
    fingerprint: () => contentFingerprint(paths),
  };
}

function batchNo(name: string): number {
  return Number(/(\d+)/.exec(name)?.[1] ?? 0);
}
