/**
 * An existing dataset as a source: ours (re-ingest: reshard, resize, dedupe) or
 * one written by Hugging Face `save_to_disk` with an Image column {bytes, path}
 * and a ClassLabel. Pixels are reused when the dataset has a pixels column;
 * otherwise the image bytes are decoded (or the file at `path` is read).
 */
import path from 'node:path';
import type { Vector } from 'apache-arrow';
import { DataError } from '../../core/errors.js';
import { fixedListValues } from '../columns.js';
import { openDataset, type Dataset } from '../reader.js';
import type { ColumnSpec } from '../format.js';
import { classIndex, describeClasses, indexId, type Source, type SourceItem, type SourceOptions } from './types.js';

function findColumns(ds: Dataset): { label: ColumnSpec; image?: ColumnSpec; pixels?: ColumnSpec; id?: ColumnSpec; caption?: ColumnSpec } {
  const cols = ds.columns;
  const byName = (n: string) => cols.find((c) => c.name === n);
  const label = byName('label') ?? cols.find((c) => c.kind === 'classLabel');
  if (!label || !['classLabel', 'int64', 'int32', 'string'].includes(label.kind)) {
    throw new DataError(`dataset has no label column (columns: ${cols.map((c) => c.name).join(', ')})`, {
      file: ds.dir, hint: 'metacurate needs a "label" column (a ClassLabel, integer or class-name column)',
    });
  }
  const pixelsCol = byName('pixels');
  const pixels = pixelsCol?.kind === 'uint8Vector' && ds.pixelShape ? pixelsCol : undefined;
  const image = (byName('image')?.kind === 'image' ? byName('image') : undefined) ?? cols.find((c) => c.kind === 'image');
  if (!pixels && !image) {
    throw new DataError(`dataset has neither a pixels column nor an image column (columns: ${cols.map((c) => c.name).join(', ')})`, { file: ds.dir });
  }
  const id = byName('id')?.kind === 'string' ? byName('id') : undefined;
  const caption = byName('caption')?.kind === 'string' ? byName('caption') : undefined;
  return { label, image, pixels, id, caption };
}

/** A label cell as the class name it stands for (ClassLabel/ints: by index into `names`). */
function labelCell(vec: Vector, i: number): string | number | null {
  if (!vec.isValid(i)) return null;
  const v = vec.get(i);
  return typeof v === 'bigint' ? Number(v) : (v as string | number);
}

export async function openDatasetSource(dir: string, opts: SourceOptions): Promise<Source> {
  const ds = await openDataset(dir);
  const cols = findColumns(ds);
  const count = await ds.countRows();

  // The dataset's own class names: ClassLabel names, or collected from the column.
  let ownNames: string[];
  if (cols.label.kind === 'classLabel' && cols.label.names.length > 0) ownNames = cols.label.names;
  else {
    const seen = new Set<string | number>();
    for await (const b of ds.blocks()) {
      const vec = b.column(cols.label.name);
      for (let i = 0; i < b.length; i++) {
        const v = labelCell(vec, i);
        if (v !== null) seen.add(v);
      }
    }
    const values = [...seen];
    ownNames = cols.label.kind === 'string'
      ? (values as string[]).sort()
      : Array.from({ length: Math.max(-1, ...(values as number[])) + 1 }, (_, i) => String(i));
  }
  const classNames = opts.classNames ?? ownNames;
  const lookup = classIndex(classNames);
  const ownLookup = classIndex(ownNames);
  /** Index in classNames for a label cell, or the reason it is refused. */
  const resolve = (v: string | number | null): number | string => {
    if (v === null) return 'missing label';
    const name = typeof v === 'number' ? ownNames[v] : v;
    if (name === undefined) return `label ${v} is out of range for the ${ownNames.length} classes`;
    if (!opts.classNames) return typeof v === 'number' ? v : ownLookup.get(name)!;
    return lookup.get(name) ?? `unknown label name "${name}" (classes: ${describeClasses(classNames)})`;
  };

  const shape = cols.pixels ? ds.pixelShape : undefined;
  return {
    format: 'dataset',
    root: dir,
    fileRoot: dir,
    classNames,
    nativeShape: shape,
    hasCaptions: cols.caption !== undefined,
    count,
    async *items(): AsyncGenerator<SourceItem> {
      const rowLength = shape ? shape[0] * shape[1] * shape[2] : 0;
      for await (const b of ds.blocks()) {
        const labels = b.column(cols.label.name);
        const ids = cols.id && b.column(cols.id.name);
        const captions = cols.caption && b.column(cols.caption.name);
        const pixels = cols.pixels && fixedListValues<Uint8Array>(b.column(cols.pixels.name));
        const image = cols.image && b.column(cols.image.name);
        const bytesVec = image?.getChild('bytes');
        const pathVec = image?.getChild('path');
        for (let i = 0; i < b.length; i++) {
          const row = b.offset + i;
          const id = (ids?.get(i) as string | null) ?? indexId('row', row, count);
          const label = resolve(labelCell(labels, i));
          if (typeof label === 'string') { yield { kind: 'rejected', id, row, reason: label }; continue; }
          const caption = (captions?.get(i) as string | null) ?? undefined;
          const imgValid = image?.isValid(i) ?? false;
          const bytes = imgValid ? (bytesVec?.get(i) as Uint8Array | null) : null;
          const imgPath = imgValid ? (pathVec?.get(i) as string | null) : null;
          if (pixels && shape) {
            const original = bytes || imgPath ? { bytes: bytes ? bytes.slice() : null, path: imgPath } : undefined;
            yield { kind: 'pixels', id, row, label, caption, pixels: pixels.slice(i * rowLength, (i + 1) * rowLength), shape, original };
          } else if (bytes && bytes.length > 0) {
            yield { kind: 'encoded', id, row, label, caption, bytes: bytes.slice(), path: imgPath ?? undefined };
          } else if (imgPath) {
            // HF stores only a path for images it did not embed; relative paths are taken from the dataset folder.
            yield { kind: 'file', id, row, label, caption, path: imgPath, file: path.resolve(dir, imgPath) };
          } else {
            yield { kind: 'rejected', id, row, reason: 'the image has neither bytes nor a path' };
          }
        }
      }
    },
    fingerprint: async () => ds.fingerprint,
  };
}
