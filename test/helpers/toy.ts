/** Tiny labelled image datasets for stage tests, written with data/writer.ts. */
import path from 'node:path';
import { Rng } from '../../core/rng.js';
import { writeDataset } from '../../data/writer.js';
import type { ColumnSpec, PixelShape } from '../../data/format.js';
import type { Examples } from '../../data/batch.js';

const SIZE = 6;

export interface ToySetOptions {
  classes?: number;
  channels?: number;
  labels?: 'hard' | 'soft' | 'none';
}

/** Separable toy images: class c lights up column band c. */
export async function writeToySet(tmp: string, name: string, n: number, seed: number, opts: ToySetOptions = {}): Promise<string> {
  const k = opts.classes ?? 3;
  const ch = opts.channels ?? 1;
  const labels = opts.labels ?? 'hard';
  const rng = new Rng(seed);
  const len = SIZE * SIZE * ch;
  const rows = Array.from({ length: n }, (_, i) => {
    const c = i % k;
    const pixels = new Uint8Array(len);
    for (let j = 0; j < len; j++) {
      const col = Math.floor(j / ch) % SIZE;
      const inBand = Math.floor((col * k) / SIZE) === c;
      pixels[j] = Math.round(255 * Math.min(1, 0.5 * rng.next() + (inBand ? 0.5 : 0)));
    }
    const soft = new Float32Array(k).fill(0.1 / (k - 1));
    soft[c] = 0.9;
    return { id: `${name}-${i}`, label: c, soft_label: soft, pixels };
  });
  const columns: ColumnSpec[] = [{ name: 'id', kind: 'string' }];
  if (labels === 'hard') columns.push({ name: 'label', kind: 'classLabel', names: Array.from({ length: k }, (_, i) => `c${i}`) });
  if (labels === 'soft') columns.push({ name: 'soft_label', kind: 'float32Vector', length: k });
  columns.push({ name: 'pixels', kind: 'uint8Vector', length: len });
  const dir = path.join(tmp, name);
  await writeDataset(dir, rows, { columns, pixelShape: [SIZE, SIZE, ch], meta: { stage: 'test', stageVersion: '1', options: { name }, parents: [] } });
  return dir;
}


/**
 * An in-memory 3-class problem: class-dependent blobs plus noise (6×6×1 pixels by
 * default). With `soft`, each row's label is 0.9 on its class and 0.2 elsewhere
 * (rows that sum to 1.3: cross-entropy allows any label rows).
 */
export function toyExamples(n: number, seed: number, shape: PixelShape = [6, 6, 1], opts: { soft?: boolean } = {}): Examples {
  const rng = new Rng(seed);
  const len = shape[0] * shape[1] * shape[2];
  const pixels = new Uint8Array(n * len);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const c = i % 3;
    labels[i] = c;
    for (let j = 0; j < len; j++) {
      const signal = (j % 3 === c ? 150 : 60) + 40 * rng.normal();
      pixels[i * len + j] = Math.max(0, Math.min(255, Math.round(signal)));
    }
  }
  const ids = Array.from({ length: n }, (_, i) => `r${i}`);
  const classNames = ['a', 'b', 'c'];
  if (!opts.soft) return { ids, pixels, shape, labels, numClasses: 3, classNames };
  const softLabels = new Float32Array(n * 3).fill(0.2);
  for (let i = 0; i < n; i++) softLabels[i * 3 + labels[i]] = 0.9;
  return { ids, pixels, shape, softLabels, numClasses: 3, classNames };
}
