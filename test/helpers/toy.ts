/** Tiny labelled image datasets for stage tests, written with data/writer.ts. */
import path from 'node:path';
import { Rng } from '../../core/rng.js';
import { writeDataset } from '../../data/writer.js';
import type { ColumnSpec } from '../../data/format.js';

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

