/**
 * Path containment: the one place that decides whether a path lies inside a
 * folder. Metadata files name other files (shards, weights); a name that is
 * absolute or climbs out with `..` would make a reader read, or an exporter
 * write, outside the folder the user named.
 */
import path from 'node:path';
import { DataError } from './errors.js';

/** True when `p` is `dir` or lies inside it (lexically, after resolving both). */
export function isWithin(p: string, dir: string): boolean {
  const rel = path.relative(path.resolve(dir), path.resolve(p));
  return rel === '' || (rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel));
}

/**
 * The path of a file that `metaFile` (inside `dir`) names: it must be a plain
 * relative name that stays strictly inside `dir`, else a DataError naming the
 * metadata file.
 */
export function fileNamedIn(dir: string, name: unknown, metaFile: string, what: string): string {
  if (typeof name !== 'string' || name === '') {
    throw new DataError(`${what} is not a file name (${JSON.stringify(name)})`, { file: metaFile, hint: 'The metadata is corrupt; re-create it' });
  }
  const p = path.join(dir, name);
  if (path.isAbsolute(name) || name.includes('\0') || !isWithin(p, dir) || path.resolve(p) === path.resolve(dir)) {
    throw new DataError(`${what} "${name}" lies outside its folder`, { file: metaFile, hint: 'Metadata may only name files inside its own folder; re-create it, or fix the name by hand' });
  }
  return p;
}
