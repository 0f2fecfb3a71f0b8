/**
 * An existing dataset as a source: ours (re-ingest: reshard, resize, dedupe) or
 * one written by Hugging Face `save_to_disk` with an Image column {bytes, path}
 * and a ClassLabel. Pixels are reused when the dataset has a pixels column;
 * otherwise the image bytes are decoded (or the file at `path` is read).
 *
 * The rows-to-items part (`openTableSource`) is shared with Parquet files, which
 * hold the same columns.
 */
import path from 'node:path';
import type { Vector } from 'apache-arrow';
import { DataError } from '../../core/errors.js';
import { fixedListValues } from '../columns.js';
import { openDataset, type Block } from '../reader.js';
import type { ColumnSpec, PixelShape } from '../format.js';
import { MAX_CLASSES, tooManyClasses } from './manifest.js';
import { classIndex, describeClasses, indexId, type Source, type SourceItem, type SourceOptions } from './types.js';

/** Rows with a label and an image or pixels column: a dataset's, or Parquet files'. */
export interface ImageTable {
  /** What the rows are, for messages ('dataset', 'Parquet file'), and where. */
  what: string;
  file: string;
  /** Relative image paths (HF images stored by path only) are taken from this folder. */
  dir: string;
  columns: ColumnSpec[];
  pixelShape?: PixelShape;
  count: number;
  /** The rows in order; a reader may read only the named columns. */
  blocks(columns: string[]): AsyncIterable<Block>;
}

interface ImageColumns { label: ColumnSpec; image?: ColumnSpec; pixels?: ColumnSpec; id?: ColumnSpec; caption?: ColumnSpec }

function findColumns(t: ImageTable): ImageColumns {
  const cols = t.columns;
  const names = cols.map((c) => c.name).join(', ');
  const byName = (n: string) => cols.find((c) => c.name === n);
  const label = byName('label') ?? cols.find((c) => c.kind === 'classLabel');
  if (!label || !['classLabel', 'int64', 'int32', 'string'].includes(label.kind)) {
    throw new DataError(`${t.what} has no label column (columns: ${names})`, {
      file: t.file, hint: 'metacurate needs a "label" column (a ClassLabel, integer or class-name column)',
    });
  }
  const pixelsCol = byName('pixels');
  const pixels = pixelsCol?.kind === 'uint8Vector' && t.pixelShape ? pixelsCol : undefined;
  const image = (byName('image')?.kind === 'image' ? byName('image') : undefined) ?? cols.find((c) => c.kind === 'image');
  if (!pixels && !image) {
    throw new DataError(`${t.what} has neither a pixels column nor an image column (columns: ${names})`, {
      file: t.file, hint: 'metacurate needs an "image" column (a struct of encoded bytes and a path, as HF writes it) or a "pixels" column with its shape',
    });
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

/** The table's own class names: ClassLabel names, or collected from the label column (one pass over it). */
async function ownClassNames(t: ImageTable, label: ColumnSpec): Promise<string[]> {
  if (label.kind === 'classLabel' && label.names.length > 0) return label.names;
  const seen = new Set<string | number>();
  let maxIndex = -1;
  for await (const b of t.blocks([label.name])) {
    const vec = b.column(label.name);
    for (let i = 0; i < b.length; i++) {
      const v = labelCell(vec, i);
      if (v === null) continue;
      // Labels make the class list: endless distinct names, or a huge index, would exhaust memory.
      if (typeof v === 'number') {
        if (v >= MAX_CLASSES) tooManyClasses(t.file, String(v), b.offset + i);
        maxIndex = Math.max(maxIndex, v);
      } else if (seen.add(v).size > MAX_CLASSES) tooManyClasses(t.file, v, b.offset + i);
    }
  }
  return label.kind === 'string'
    ? ([...seen] as string[]).sort()
    : Array.from({ length: maxIndex + 1 }, (_, i) => String(i));
}

/** A source over a table's rows; `base` says what kind of source it is and how it is fingerprinted. */
export async function openTableSource(
  t: ImageTable,
  opts: SourceOptions,
  base: Pick<Source, 'format' | 'root' | 'fileRoot' | 'fingerprint'>,
): Promise<Source> {
  const cols = findColumns(t);
  const count = t.count;
  const ownNames = await ownClassNames(t, cols.label);
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

  const shape = cols.pixels ? t.pixelShape : undefined;
  const wanted = [cols.label, cols.id, cols.caption, cols.pixels, cols.image].flatMap((c) => (c ? [c.name] : []));
  return {
    ...base,
    classNames,
    nativeShape: shape,
    hasCaptions: cols.caption !== undefined,
    count,
    async *items(): AsyncGenerator<SourceItem> {
      const rowLength = shape ? shape[0] * shape[1] * shape[2] : 0;
      for await (const b of t.blocks(wanted)) {
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
            // HF stores only a path for images it did not embed; relative paths are taken from the table's folder.
            yield { kind: 'file', id, row, label, caption, path: imgPath, file: path.resolve(t.dir, imgPath) };
          } else {
            yield { kind: 'rejected', id, row, reason: 'the image has neither bytes nor a path' };
          }
        }
      }
    },
  };
}

export async function openDatasetSource(dir: string, opts: SourceOptions): Promise<Source> {
  const ds = await openDataset(dir);
  const table: ImageTable = {
    what: 'dataset',
    file: ds.dir,
    dir,
    columns: ds.columns,
    pixelShape: ds.pixelShape,
    count: await ds.countRows(),
    blocks: () => ds.blocks(),
  };
  return openTableSource(table, opts, { format: 'dataset', root: dir, fileRoot: dir, fingerprint: async () => ds.fingerprint });
}
