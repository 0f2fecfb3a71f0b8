/**
 * Image folders: one sub-folder per class (nested folders inside a class are
 * walked too). Ids are paths relative to the root with posix separators; class
 * names are the sorted sub-folder names. Files are listed once (names only) and
 * read lazily, in sorted order.
 */
import { promises as fsp, type Dirent } from 'node:fs';
import path from 'node:path';
import { DataError, MissingInputError } from '../../core/errors.js';
import { isWithin } from '../../core/paths.js';
import { StatFingerprint, statInput } from './files.js';
import { classIndex, describeClasses, type Source, type SourceItem, type SourceOptions } from './types.js';

/** Extensions read as images (sharp decodes them by content; the extension only selects files). */
export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.jpe', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif', '.heic', '.heif']);

/** Sorts names by code point: the same order on every OS and locale. */
export const byCodePoint = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
/** Hidden names (`.DS_Store`, `.git`) are never read as data. */
export const hidden = (name: string): boolean => name.startsWith('.');

interface Entry {
  rel: string;
  abs: string;
  /** Class index, or the reason the file is refused. */
  label: number | string;
}

async function isDir(abs: string, d: Dirent): Promise<boolean> {
  if (d.isDirectory()) return true;
  if (d.isSymbolicLink()) return (await fsp.stat(abs).catch(() => undefined))?.isDirectory() ?? false;
  return false;
}

/**
 * The walk of one source folder. A folder is entered once, by its device and
 * inode, so a link back up (`ln -s .. cat/up`) cannot repeat images under a
 * wrong label or grow the walk without bound; a linked folder whose real path
 * leaves the root is refused unless allowed.
 */
class Walk {
  private readonly visited = new Set<string>();

  constructor(private readonly realRoot: string, private readonly allowOutsideRoot: boolean) {}

  /** Whether to enter the folder; otherwise why not. */
  async enter(abs: string): Promise<true | string> {
    const real = await fsp.realpath(abs).catch(() => undefined);
    const st = real && (await fsp.stat(real).catch(() => undefined));
    if (!real || !st) return 'cannot resolve the folder';
    if (!this.allowOutsideRoot && !isWithin(real, this.realRoot)) return 'a link to a folder outside the source folder (allow it with --allow-outside-root)';
    const key = `${st.dev}:${st.ino}`;
    if (this.visited.has(key)) return 'a link to a folder already walked (a loop or a second path to it)';
    this.visited.add(key);
    return true;
  }

  async files(dir: string, relDir: string, out: (rel: string, abs: string, refused?: string) => void): Promise<void> {
    const entries = (await fsp.readdir(dir, { withFileTypes: true })).sort((a, b) => byCodePoint(a.name, b.name));
    for (const d of entries) {
      if (hidden(d.name)) continue;
      const abs = path.join(dir, d.name);
      const rel = relDir ? `${relDir}/${d.name}` : d.name;
      if (!(await isDir(abs, d))) out(rel, abs);
      else {
        const ok = await this.enter(abs);
        if (ok === true) await this.files(abs, rel, out);
        else out(rel, abs, ok);
      }
    }
  }
}

export async function openFolderSource(root: string, opts: SourceOptions): Promise<Source> {
  let dir = root;
  if (opts.split) {
    // An ImageNet-style layout: <root>/<split>/<class>/... A split that is not
    // there is an error: falling back to the root would ingest every split at once.
    const st = await fsp.stat(path.join(root, opts.split)).catch(() => undefined);
    if (!st?.isDirectory()) {
      const found = (await fsp.readdir(root, { withFileTypes: true }).catch(() => []))
        .filter((d) => d.isDirectory() && !hidden(d.name)).map((d) => d.name).sort(byCodePoint);
      throw new MissingInputError(`no split folder "${opts.split}" here`, {
        file: root,
        hint: found.length ? `Sub-folders found: ${describeClasses(found)}; pass one of them as --split, or drop --split` : 'Drop --split to ingest the folder itself',
      });
    }
    dir = path.join(root, opts.split);
  }
  const st = await statInput(dir, 'image folder');
  if (!st.isDirectory()) throw new DataError('not a folder', { file: dir });
  const top = (await fsp.readdir(dir, { withFileTypes: true })).filter((d) => !hidden(d.name)).sort((a, b) => byCodePoint(a.name, b.name));
  const classDirs: string[] = [];
  const loose: string[] = [];
  for (const d of top) {
    if (await isDir(path.join(dir, d.name), d)) classDirs.push(d.name);
    else loose.push(d.name);
  }
  if (classDirs.length === 0) {
    throw new DataError(top.length === 0 ? 'the folder is empty' : 'no class sub-folders (an image folder has one sub-folder of images per class)', {
      file: dir,
      hint: 'Lay images out as <folder>/<class>/<image>, or use a CSV/JSONL manifest',
    });
  }
  const walk = new Walk(await fsp.realpath(dir), opts.allowOutsideRoot ?? false);
  await walk.enter(dir);
  const classNames = opts.classNames ?? classDirs;
  const lookup = classIndex(classNames);

  const entries: Entry[] = [];
  for (const name of loose) entries.push({ rel: name, abs: path.join(dir, name), label: 'not inside a class sub-folder' });
  for (const cls of classDirs) {
    const label: number | string = lookup.get(cls)
      ?? `class folder "${cls}" is not among the fixed class names (${describeClasses(classNames)})`;
    const clsDir = path.join(dir, cls);
    const ok = await walk.enter(clsDir);
    if (ok !== true) {
      entries.push({ rel: cls, abs: clsDir, label: ok });
      continue;
    }
    await walk.files(clsDir, cls, (rel, abs, refused) => {
      const ext = path.extname(rel).toLowerCase();
      entries.push({ rel, abs, label: refused ?? (IMAGE_EXTENSIONS.has(ext) ? label : `not an image file extension (${ext || 'none'})`) });
    });
  }
  // One total order for ids, independent of how the walk visited folders.
  entries.sort((a, b) => byCodePoint(a.rel, b.rel));
  if (!entries.some((e) => typeof e.label === 'number')) {
    throw new DataError(`no image files in the class sub-folders (${describeClasses(classDirs)})`, {
      file: dir,
      hint: `Supported extensions: ${[...IMAGE_EXTENSIONS].join(' ')}`,
    });
  }
  return {
    format: 'folder',
    root,
    fileRoot: dir,
    classNames,
    hasCaptions: false,
    count: entries.length,
    async *items(): AsyncGenerator<SourceItem> {
      for (const e of entries) {
        if (typeof e.label === 'string') yield { kind: 'rejected', path: e.rel, reason: e.label };
        else yield { kind: 'file', id: e.rel, path: e.rel, file: e.abs, label: e.label };
      }
    },
    async fingerprint() {
      const fp = new StatFingerprint();
      fp.update('folder', ...classNames);
      for (const e of entries) await fp.addFile(e.rel, e.abs);
      return fp.digest();
    },
  };
}
