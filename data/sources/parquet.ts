/**
 * Parquet as a source: one `.parquet` file, or a folder whose only data files
 * are Parquet (a Hugging Face hub dataset's `data/train-00000-of-00002.parquet`,
 * HF's converted `default/train/0000.parquet`, or `export --parquet` output).
 * The rows are those of a dataset (see dataset.ts): an `image` struct
 * {bytes, path} or a `pixels` column with its shape, and a label. Class names
 * come from the ClassLabel in the `huggingface` schema metadata, else from the
 * labels themselves (sorted names, or '0'..max for indices).
 *
 * Files are read through parquet-wasm a few hundred rows at a time, by ranged
 * reads of a file handle, so a big file is never held whole. A folder's files
 * are read in sorted order; rows are numbered across them in that order.
 */
import { promises as fsp, type Dirent } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { tableFromIPC, type RecordBatch, type Schema } from 'apache-arrow';
import type { ParquetFile, RecordBatch as PqRecordBatch } from 'parquet-wasm';
import { DataError, MissingInputError, UsageError } from '../../core/errors.js';
import { PIXEL_SHAPE_KEY, HF_METADATA_KEY, columnFromHfFeature, featuresOfHfMetadata, type ColumnSpec, type PixelShape } from '../format.js';
import type { Block } from '../reader.js';
import { openTableSource, type ImageTable } from './dataset.js';
import { byCodePoint, hidden } from './folder.js';
import { FileRefused, StatFingerprint, openSourceFile, readRange, statInput } from './files.js';
import { describeClasses, type Source, type SourceOptions } from './types.js';

/** Rows per record batch read: bounded memory even with large encoded images. */
const BATCH_ROWS = 256;

const NOT_PARQUET_HINT = 'Pass a Parquet file (as HF datasets, pyarrow, pandas or `metacurate export --parquet` write them); if it is one, it is truncated or corrupt: copy it again';

export function isParquetFileName(name: string): boolean {
  return name.toLowerCase().endsWith('.parquet');
}

/** Files a dataset folder may hold beside its data: a dataset card, licence, metadata. */
const isSideFile = (name: string): boolean => /\.(md|txt|json|ya?ml)$/i.test(name) || !path.extname(name);

/**
 * Visits the files under `dir` in sorted order (hidden ones skipped, links to
 * folders not followed, so the walk cannot loop or leave the folder) until
 * `visit` returns false; returns whether it went to the end.
 */
async function walk(dir: string, rel: string, visit: (rel: string) => boolean): Promise<boolean> {
  const entries: Dirent[] = (await fsp.readdir(dir, { withFileTypes: true })).sort((a, b) => byCodePoint(a.name, b.name));
  for (const d of entries) {
    if (hidden(d.name)) continue;
    const r = rel ? `${rel}/${d.name}` : d.name;
    if (d.isDirectory()) {
      if (!(await walk(path.join(dir, d.name), r, visit))) return false;
    } else if (!visit(r)) return false;
  }
  return true;
}

/** True when the folder holds Parquet files and no other data files (a README or JSON metadata may sit beside them). */
export async function isParquetFolder(dir: string): Promise<boolean> {
  let found = false;
  const pure = await walk(dir, '', (rel) => {
    const name = path.posix.basename(rel);
    if (isParquetFileName(name)) found = true;
    return isParquetFileName(name) || isSideFile(name);
  }).catch(() => false); // an unreadable sub-folder: let the folder source say what is wrong
  return pure && found;
}

/**
 * The split a file belongs to by HF's naming: `<split>-00000-of-00002.parquet`,
 * or the folder it is in (`default/train/0000.parquet`).
 */
function splitOf(rel: string): string | undefined {
  const parts = rel.split('/');
  const m = /^(.+?)-\d+-of-\d+\.parquet$/i.exec(parts[parts.length - 1]);
  return m ? m[1] : parts.length > 1 ? parts[parts.length - 2] : undefined;
}

/** The Parquet files of a folder, narrowed to one split (`--split`), which must be the only one without it. */
async function listFiles(dir: string, split: string | undefined): Promise<string[]> {
  const all: string[] = [];
  await walk(dir, '', (rel) => {
    if (isParquetFileName(rel)) all.push(rel);
    return true;
  });
  if (all.length === 0) throw new DataError('no .parquet files in the folder', { file: dir, hint: 'Point at a .parquet file or a folder of them' });
  const splits = [...new Set(all.map(splitOf).filter((s): s is string => s !== undefined))].sort(byCodePoint);
  if (split === undefined) {
    if (splits.length > 1) {
      throw new UsageError(`the folder holds more than one split (${describeClasses(splits)})`, { file: dir, hint: 'Pick one with --split <name>' });
    }
    return all;
  }
  const picked = all.filter((rel) => splitOf(rel) === split);
  if (picked.length === 0) {
    throw new MissingInputError(`no Parquet files of split "${split}" here`, {
      file: dir,
      hint: splits.length ? `Splits found: ${describeClasses(splits)}; pass one of them as --split, or drop --split` : 'Drop --split to ingest every file',
    });
  }
  return picked;
}

/** A file handle as the Blob parquet-wasm reads from: it asks only for `size` and `slice(a, b).arrayBuffer()`. */
function blobOf(fh: FileHandle, size: number): Blob {
  const slice = (start = 0, end = size) => ({
    arrayBuffer: async (): Promise<ArrayBuffer> => {
      const bytes = await readRange(fh, start, Math.min(end, size) - start);
      return bytes.byteLength === bytes.buffer.byteLength ? (bytes.buffer as ArrayBuffer) : (bytes.slice().buffer as ArrayBuffer);
    },
  });
  return { size, slice } as unknown as Blob;
}

const messageOf = (err: unknown): string => String((err as Error)?.message ?? err).split('\n')[0];

type Limits = { root?: string; allowOutsideRoot?: boolean };

interface OpenedParquet {
  pf: ParquetFile;
  close(): Promise<void>;
}

/** Opens a Parquet file through the source-file refusals (inside the root, a regular file) and reads its footer. */
async function openParquet(file: string, limits: Limits): Promise<OpenedParquet> {
  let fh: FileHandle;
  let size: number;
  try {
    ({ fh, size } = await openSourceFile(file, limits));
  } catch (err) {
    if (err instanceof FileRefused) throw new DataError(`cannot read the Parquet file: ${err.reason}`, { file, hint: 'Point at Parquet files inside the folder you name' });
    throw err;
  }
  try {
    const pq = await import('parquet-wasm');
    const pf = await pq.ParquetFile.fromFile(blobOf(fh, size));
    return { pf, close: async () => { pf.free(); await fh.close(); } };
  } catch (err) {
    await fh.close();
    throw new DataError(`not a Parquet file (${messageOf(err)})`, { file, hint: NOT_PARQUET_HINT });
  }
}

/** A pixel shape from schema metadata, when it is one and fits the pixels column. */
function pixelShapeOf(schema: Schema, columns: ColumnSpec[]): PixelShape | undefined {
  let shape: unknown;
  try {
    shape = JSON.parse(schema.metadata.get(PIXEL_SHAPE_KEY) ?? 'null');
  } catch {
    return undefined;
  }
  const pixels = columns.find((c) => c.name === 'pixels');
  const ok = Array.isArray(shape) && shape.length === 3 && shape.every((n) => Number.isInteger(n) && n > 0)
    && pixels?.kind === 'uint8Vector' && pixels.length === shape[0] * shape[1] * shape[2];
  return ok ? (shape as PixelShape) : undefined;
}

interface FileInfo {
  rel: string;
  abs: string;
  rows: number;
  columns: ColumnSpec[];
  pixelShape?: PixelShape;
}

/** A file's row count and columns (kinds and class names from the `huggingface` metadata, as HF writes it). */
async function describeFile(abs: string, rel: string, limits: Limits): Promise<FileInfo> {
  const { pf, close } = await openParquet(abs, limits);
  try {
    const rows = pf.metadata().fileMetadata().numRows();
    const schema = tableFromIPC(pf.schema().intoIPCStream()).schema;
    let features: Record<string, any>;
    try {
      features = featuresOfHfMetadata(schema.metadata.get(HF_METADATA_KEY));
    } catch (err) {
      throw new DataError(`the "${HF_METADATA_KEY}" schema metadata is not valid JSON (${messageOf(err)})`, { file: abs, hint: 'Write the file again with HF datasets or pyarrow, or drop that metadata key' });
    }
    const columns = schema.fields.map((f) => columnFromHfFeature(f.name, features[f.name], f.type));
    return { rel, abs, rows, columns, pixelShape: pixelShapeOf(schema, columns) };
  } finally {
    await close();
  }
}

function blockOf(batch: RecordBatch, offset: number, file: string): Block {
  return {
    offset,
    length: batch.numRows,
    column(name: string) {
      const v = batch.getChild(name);
      if (!v) throw new DataError(`no column "${name}"`, { file });
      return v;
    },
    has: (name: string) => batch.getChild(name) !== null,
  };
}

export async function openParquetSource(p: string, opts: SourceOptions): Promise<Source> {
  const st = await statInput(p, 'Parquet source');
  const root = st.isDirectory() ? p : path.dirname(p);
  const rels = st.isDirectory() ? await listFiles(p, opts.split) : [path.basename(p)];
  // A folder's files must lie inside it; a file named on its own may be a link to anywhere.
  const limits = { root: st.isDirectory() ? root : undefined, allowOutsideRoot: opts.allowOutsideRoot };
  const files: FileInfo[] = [];
  for (const rel of rels) files.push(await describeFile(path.join(root, rel), rel, limits));
  // One table across the files: each must have the first's columns and class names.
  const first = files[0];
  for (const f of files.slice(1)) {
    if (JSON.stringify(f.columns) !== JSON.stringify(first.columns) || JSON.stringify(f.pixelShape) !== JSON.stringify(first.pixelShape)) {
      throw new DataError(`its columns or class names differ from those of ${first.rel}`, {
        file: f.abs, hint: 'Ingest the files one at a time, or pick the files of one split with --split',
      });
    }
  }

  const table: ImageTable = {
    what: 'Parquet file',
    file: st.isDirectory() ? first.abs : p,
    dir: root,
    columns: first.columns,
    pixelShape: first.pixelShape,
    count: files.reduce((a, f) => a + f.rows, 0),
    async *blocks(wanted: string[]): AsyncGenerator<Block> {
      let offset = 0;
      for (const f of files) {
        const { pf, close } = await openParquet(f.abs, limits);
        let reader: AsyncIterator<PqRecordBatch> | undefined;
        let read = 0;
        try {
          // Only the columns needed are read; parquet-wasm aborts on a name the file lacks, so none is passed.
          const columns = wanted.filter((n) => f.columns.some((c) => c.name === n));
          const stream = await pf.stream({ batchSize: BATCH_ROWS, columns }).catch((err) => { throw readError(f, read, err); });
          reader = (stream as ReadableStream<PqRecordBatch>)[Symbol.asyncIterator]();
          for (;;) {
            let next: IteratorResult<PqRecordBatch>;
            try {
              next = await reader.next();
            } catch (err) {
              throw readError(f, read, err);
            }
            if (next.done) break;
            for (const batch of tableFromIPC(next.value.intoIPCStream()).batches) {
              yield blockOf(batch, offset + read, f.abs);
              read += batch.numRows;
            }
          }
        } finally {
          // A consumer that stops early (--limit) cancels the reads before the file is closed.
          await reader?.return?.().catch(() => undefined);
          await close();
        }
        if (read !== f.rows) throw new DataError(`read ${read} rows but the footer records ${f.rows}`, { file: f.abs, hint: 'The file is truncated or corrupt; copy it again' });
        offset += read;
      }
    },
  };
  return openTableSource(table, opts, {
    format: 'parquet',
    root: p,
    fileRoot: root,
    async fingerprint() {
      const fp = new StatFingerprint();
      fp.update('parquet');
      for (const f of files) await fp.addFile(f.rel, f.abs);
      return fp.digest();
    },
  });
}

function readError(f: FileInfo, read: number, err: unknown): DataError {
  return new DataError(`cannot read the rows after row ${read}: ${messageOf(err)}`, { file: f.abs, hint: 'The file is truncated or corrupt; copy it again' });
}
