import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { OutputError } from './errors.js';

/** Prefix of temporary siblings; readers and listings ignore such directories. */
export const TEMP_PREFIX = '.tmp-';

export async function pathExists(p: string): Promise<boolean> {
  try {
    await fsp.access(p);
    return true;
  } catch {
    return false;
  }
}

export interface AtomicDir {
  /** The temporary sibling to write into. */
  tmp: string;
  /** Renames the temporary directory into place. */
  commit(): Promise<void>;
  /** Removes the temporary directory. */
  abort(): Promise<void>;
}

/**
 * Starts an atomic directory write: everything goes into a temporary sibling,
 * renamed into place by `commit`. A crash leaves the previous state or nothing,
 * never half a directory. Refuses to replace an existing output unless
 * `overwrite` is set.
 */
export async function beginAtomicDir(outDir: string, opts: { overwrite?: boolean }): Promise<AtomicDir> {
  const target = path.resolve(outDir);
  if (!opts.overwrite && (await pathExists(target))) {
    throw new OutputError(`output already exists`, {
      file: outDir,
      hint: 'Choose another --out, or pass --overwrite to replace it',
    });
  }
  const parent = path.dirname(target);
  await fsp.mkdir(parent, { recursive: true });
  const tmp = path.join(parent, `${TEMP_PREFIX}${path.basename(target)}-${randomBytes(4).toString('hex')}`);
  await fsp.mkdir(tmp);
  return {
    tmp,
    async commit() {
      await fsyncDir(tmp);
      if (await pathExists(target)) {
        if (!opts.overwrite) {
          await fsp.rm(tmp, { recursive: true, force: true });
          throw new OutputError('output appeared while writing', { file: outDir, hint: 'Another run may be writing it; use a lock or another --out' });
        }
        // Move the old output aside first so the swap is a pair of renames.
        const old = `${tmp}-old`;
        await fsp.rename(target, old);
        await fsp.rename(tmp, target);
        await fsp.rm(old, { recursive: true, force: true });
      } else {
        await fsp.rename(tmp, target);
      }
      await fsyncDir(parent);
    },
    async abort() {
      await fsp.rm(tmp, { recursive: true, force: true });
    },
  };
}

/** Writes a directory atomically: `fill` writes into the temporary sibling. */
export async function writeDirAtomic<T>(
  outDir: string,
  opts: { overwrite?: boolean },
  fill: (tmpDir: string) => Promise<T>,
): Promise<T> {
  const dir = await beginAtomicDir(outDir, opts);
  try {
    const result = await fill(dir.tmp);
    await dir.commit();
    return result;
  } catch (err) {
    await dir.abort();
    throw err;
  }
}

/** Writes one file atomically (temp file + rename). */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = path.join(path.dirname(file), `${TEMP_PREFIX}${path.basename(file)}-${randomBytes(4).toString('hex')}`);
  await fsp.writeFile(tmp, data);
  await fsp.rename(tmp, file);
}

async function fsyncDir(dir: string): Promise<void> {
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(dir, 'r');
    await fh.sync();
  } catch {
    // Some filesystems refuse fsync on directories; the rename is still atomic.
  } finally {
    await fh?.close();
  }
}

/** Removes temporary siblings left by a killed process (older than `minAgeMs`). */
export async function cleanStaleTemps(parent: string, minAgeMs = 0): Promise<string[]> {
  const removed: string[] = [];
  let entries: string[];
  try {
    entries = await fsp.readdir(parent);
  } catch {
    return removed;
  }
  const now = Date.now();
  for (const name of entries) {
    if (!name.startsWith(TEMP_PREFIX)) continue;
    const p = path.join(parent, name);
    const st = await fsp.stat(p).catch(() => undefined);
    if (st && now - st.mtimeMs >= minAgeMs) {
      await fsp.rm(p, { recursive: true, force: true });
      removed.push(p);
    }
  }
  return removed;
}
