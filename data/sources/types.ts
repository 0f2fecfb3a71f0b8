/**
 * What every source reader yields: items, lazily, in a deterministic order.
 * Ingest turns each item into a row (or a line of rejected.jsonl).
 */
import type { PixelShape } from '../format.js';
import type { ImageValue } from '../columns.js';

export const SOURCE_FORMATS = ['idx', 'cifar', 'folder', 'manifest', 'dataset', 'parquet'] as const;
export type SourceFormat = (typeof SOURCE_FORMATS)[number];

export const PRESETS = ['fashion-mnist', 'mnist'] as const;
export type Preset = (typeof PRESETS)[number];

interface ItemBase {
  /** Stable, unique within the source. */
  id: string;
  /** Class index into Source.classNames. */
  label: number;
  caption?: string;
  /** Position in the source (record index, or line of a manifest), for rejected.jsonl. */
  row?: number;
}

/** Decoded pixels, already uint8 HWC (IDX, CIFAR, datasets and Parquet with a pixels column). */
export interface PixelItem extends ItemBase {
  kind: 'pixels';
  pixels: Uint8Array;
  shape: PixelShape;
  /** The encoded original, when the source has one (datasets with an image column). */
  original?: ImageValue;
}

/** An image file to read and decode (folders, manifests, image columns holding only a path). */
export interface FileItem extends ItemBase {
  kind: 'file';
  /** Absolute path to read. */
  file: string;
  /** The path as the user knows it (relative to the source root, posix separators). */
  path: string;
}

/** Encoded image bytes to decode (image columns of datasets and Parquet). */
export interface EncodedItem extends ItemBase {
  kind: 'encoded';
  bytes: Uint8Array;
  path?: string;
}

/** An item the source itself refuses (unknown label, path outside the root, ...). */
export interface RejectedItem {
  kind: 'rejected';
  id?: string;
  path?: string;
  row?: number;
  reason: string;
}

export type SourceItem = PixelItem | FileItem | EncodedItem | RejectedItem;

export interface Source {
  format: SourceFormat;
  /** The path the source was opened from. */
  root: string;
  /**
   * The folder every `file` item must lie in once symbolic links are resolved;
   * ingest refuses the others unless --allow-outside-root.
   */
  fileRoot?: string;
  classNames: string[];
  /** The pixel shape every item has, for sources with fixed-size pixels. */
  nativeShape?: PixelShape;
  hasCaptions: boolean;
  /** Exactly how many items `items()` yields. */
  count: number;
  /** Items in source order; each call starts again from the beginning. */
  items(): AsyncIterable<SourceItem>;
  /** A cheap identity of the input (see each source), the parent fingerprint of the ingest output. */
  fingerprint(): Promise<string>;
}

export interface SourceOptions {
  /** Forces a format instead of detecting it. */
  format?: SourceFormat | 'auto';
  /** IDX/CIFAR: 'train' (default) or 'test'. Folders: the sub-folder to ingest; it must exist. Parquet folders: the split's files. */
  split?: string;
  /**
   * Fixes the class list. IDX and CIFAR labels are indices, so the list names them
   * by position; folders, manifests and datasets match items to it by name, and
   * items whose class is not in it are rejected.
   */
  classNames?: string[];
  preset?: Preset;
  /** Accept files outside the source's folder (manifest paths, HF image paths, symbolic links). */
  allowOutsideRoot?: boolean;
  /** CIFAR-100: which of the two labels becomes `label`. */
  cifarLabels?: 'fine' | 'coarse';
}

/** Zero-padded row index used in ids, e.g. `train-000123`. */
export function indexId(prefix: string, index: number, count: number): string {
  const width = Math.max(6, String(Math.max(0, count - 1)).length);
  return `${prefix}-${String(index).padStart(width, '0')}`;
}

/** Maps a name to its index in a class list, building the lookup once. */
export function classIndex(names: string[]): Map<string, number> {
  return new Map(names.map((n, i) => [n, i]));
}

/** A short quoted list of class names for messages. */
export function describeClasses(names: string[]): string {
  const shown = names.slice(0, 12).map((n) => JSON.stringify(n)).join(', ');
  return names.length > 12 ? `${shown}, … (${names.length} classes)` : shown;
}
