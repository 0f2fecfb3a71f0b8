/**
 * Source detection and opening: one entry point for every input kind ingest
 * accepts (IDX, CIFAR, image folders, CSV/JSONL manifests, datasets, Parquet). Adding
 * a format: docs/extending.md#a-source-format.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { CURATION_FILE, STATE_FILE } from '../format.js';
import { DataError } from '../../core/errors.js';
import { statInput } from './files.js';
import { isIdxFileName, openIdxSource } from './idx.js';
import { findCifarLayout, openCifarSource } from './cifar.js';
import { openFolderSource } from './folder.js';
import { manifestKind, openManifestSource } from './manifest.js';
import { openDatasetSource } from './dataset.js';
import { isParquetFileName, isParquetFolder, openParquetSource } from './parquet.js';
import type { Source, SourceFormat, SourceOptions } from './types.js';

export * from './types.js';
export { FASHION_MNIST_CLASSES, MNIST_CLASSES, presetClassNames } from './idx.js';
export { CIFAR10_CLASSES } from './cifar.js';
export { DEFAULT_MAX_FILE_BYTES, FileRefused, readSourceFile } from './files.js';

/** Which kind of source `p` is, from its name and a look at its contents. */
export async function detectSource(p: string): Promise<SourceFormat> {
  const st = await statInput(p, 'source');
  if (st.isFile()) {
    const name = path.basename(p);
    if (manifestKind(name)) return 'manifest';
    if (isIdxFileName(name)) return 'idx';
    if (isParquetFileName(name)) return 'parquet';
    throw new DataError('cannot tell what kind of source this file is', {
      file: p,
      hint: 'Pass a folder of class sub-folders, a .csv/.jsonl manifest, an IDX *-images-idx3-ubyte[.gz] file, a CIFAR folder, a dataset folder or a .parquet file (or force one with --format)',
    });
  }
  const names = await fsp.readdir(p);
  if (names.includes(CURATION_FILE) || names.includes(STATE_FILE)) return 'dataset';
  if (names.some(isIdxFileName)) return 'idx';
  if (await findCifarLayout(p)) return 'cifar';
  if (await isParquetFolder(p)) return 'parquet';
  if (names.filter((n) => !n.startsWith('.')).length === 0) {
    throw new DataError('the folder is empty', { file: p, hint: 'Point at a folder with one sub-folder of images per class' });
  }
  return 'folder';
}

/** Opens a source: `opts.format` forces a kind, else it is detected. */
export async function openSource(p: string, opts: SourceOptions = {}): Promise<Source> {
  const format = !opts.format || opts.format === 'auto' ? await detectSource(p) : opts.format;
  switch (format) {
    case 'idx': return openIdxSource(p, opts);
    case 'cifar': return openCifarSource(p, opts);
    case 'folder': return openFolderSource(p, opts);
    case 'manifest': return openManifestSource(p, opts);
    case 'dataset': return openDatasetSource(p, opts);
    case 'parquet': return openParquetSource(p, opts);
  }
}
