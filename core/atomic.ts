import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { OutputError, restateOutputError } from './errors.js';
import { isWithin } from './paths.js';

/** Prefix of temporary siblings; readers and listings ignore such directories. */
export const TEMP_PREFIX = '.tmp-';
/** Inside a temporary directory while it is being written: who writes it (removed before the commit). */
export const OWNER_FILE = '.metacurate-owner.json';

/**
 * Whether a path belongs to the making of `outDir`: the output, a folder on the
 * way to it, or one of its temporary siblings and what lies inside them.
 */
function partOfOutput(p: string, outDir: string): boolean {
  const target = path.resolve(outDir);
  if (isWithin(target, p) || isWithin(p, target)) return true;
  const [first] = path.relative(path.dirname(target), path.resolve(p)).split(path.sep);
  return first !== undefined && first.startsWith(`${TEMP_PREFIX}${path.basename(target)}`);
}

/** An OS error met while making `outDir`, restated to name it (core/errors.ts restateOutputError). */
export function outputFailure(err: unknown, outDir: string): unknown {
  return restateOutputError(err, outDir, (p) => partOfOutput(p, outDir));
}

/** Is `pid` a live process on this host? (EPERM: it exists but belongs to someone else.) */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** A temporary sibling of `target` that this process owns (its owner file says so until the commit). */
async function makeTemp(target: string, label = ''): Promise<string> {
  const tmp = path.join(path.dirname(target), `${TEMP_PREFIX}${path.basename(target)}${label}-${randomBytes(4).toString('hex')}`);
  await fsp.mkdir(tmp);
  await fsp.writeFile(path.join(tmp, OWNER_FILE), JSON.stringify({ pid: process.pid, host: os.hostname(), started_at: new Date().toISOString() }));
  return tmp;
}

/** A temporary directory beside `outDir` (e.g. for staging), owned like a dataset's, for the caller to remove. */
export function stagingDir(outDir: string, label: string): Promise<string> {
  return makeTemp(path.resolve(outDir), `.${label}`);
}

/**
 * Whether a temporary directory is provably abandoned: its owner process is dead
 * on this host, or it has no owner file (a commit that died between removing it
 * and the last rename, or a temporary from before owner files). One written by
 * another host is never taken for abandoned.
 */
async function abandoned(tmp: string): Promise<boolean> {
  let text: string;
  try {
    text = await fsp.readFile(path.join(tmp, OWNER_FILE), 'utf8');
  } catch {
    return true;
  }
  try {
    const owner = JSON.parse(text) as { pid: number; host: string };
    return owner.host === os.hostname() && !pidAlive(owner.pid);
  } catch {
    return false;
  }
}

/**
 * Finishes or undoes what a killed writer of `outDir` left: after the first of
 * the two renames of an overwrite, the output is missing and its previous
 * version sits in `<tmp>-old` — the new one (complete, since the swap starts
 * only after the commit's fsync) is moved into place, or, if it is gone, the
 * old one is put back. Then the writer's abandoned temporaries are removed.
 * Only temporaries of this output, and only abandoned ones, are touched.
 * Returns what it did, for the log.
 */
export async function recoverOutput(outDir: string): Promise<string[]> {
  const target = path.resolve(outDir);
  const parent = path.dirname(target);
  const base = path.basename(target);
  let names: string[];
  try {
    names = await fsp.readdir(parent);
  } catch {
    return [];
  }
  const prefix = `${TEMP_PREFIX}${base}`;
  const ours = (n: string) => n.startsWith(prefix) && /^(\.sheet)?-[0-9a-f]{8}(-old)?$/.test(n.slice(prefix.length));
  const done: string[] = [];
  for (const name of names.filter(ours).filter((n) => n.endsWith('-old'))) {
    const old = path.join(parent, name);
    const tmp = old.slice(0, -'-old'.length);
    const tmpThere = await pathExists(tmp);
    if (tmpThere && !(await abandoned(tmp))) continue;
    if (!(await pathExists(target))) {
      if (tmpThere) {
        await fsp.rm(path.join(tmp, OWNER_FILE), { force: true });
        await fsp.rename(tmp, target);
        done.push(`completed the interrupted replacement of ${outDir}`);
      } else {
        await fsp.rename(old, target);
        done.push(`restored ${outDir} from an interrupted replacement`);
        continue;
      }
    }
    await fsp.rm(old, { recursive: true, force: true });
    done.push(`removed ${name}`);
  }
  for (const name of (await fsp.readdir(parent)).filter(ours).filter((n) => !n.endsWith('-old'))) {
    const tmp = path.join(parent, name);
    if ((await fsp.stat(tmp).catch(() => undefined))?.isDirectory() && (await abandoned(tmp))) {
      await fsp.rm(tmp, { recursive: true, force: true });
      done.push(`removed ${name}`);
    }
  }
  if (done.length) await fsyncDir(parent);
  return done;
}

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
  await recoverOutput(target);
  if (!opts.overwrite && (await pathExists(target))) {
    throw new OutputError(`output already exists`, {
      file: outDir,
      hint: 'Choose another --out, or pass --overwrite to replace it',
    });
  }
  const parent = path.dirname(target);
  let tmp: string;
  try {
    await fsp.mkdir(parent, { recursive: true });
    tmp = await makeTemp(target);
  } catch (err) {
    throw outputFailure(err, outDir);
  }
  return {
    tmp,
    async commit() {
      await fsp.rm(path.join(tmp, OWNER_FILE), { force: true });
      await fsyncDir(tmp);
      if (await pathExists(target)) {
        if (!opts.overwrite) {
          await fsp.rm(tmp, { recursive: true, force: true });
          throw new OutputError('output appeared while writing', { file: outDir, hint: 'Another run may be writing it; use a lock or another --out' });
        }
        // Move the old output aside first so the swap is a pair of renames; a crash
        // between them is finished or undone by the next recoverOutput.
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
    throw outputFailure(err, outDir);
  }
}

/** Writes one file atomically (temp file + rename). */
export async function writeFileAtomic(file: string, data: string | Uint8Array): Promise<void> {
  const dir = path.dirname(file);
  const prefix = `${TEMP_PREFIX}${path.basename(file)}-`;
  await removeAbandonedFileTemps(dir, prefix);
  const tmp = fileTempName(file);
  try {
    await fsp.writeFile(tmp, data);
    await fsp.rename(tmp, file);
  } catch (err) {
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

/** This host in the names of single-file temporaries: a short hash, so names stay short. */
const HOST_TAG = createHash('sha256').update(os.hostname()).digest('hex').slice(0, 6);

/** A temporary sibling of `file` for writer `pid` on this host: `.tmp-<name>-<host>-<pid>-<random>`. */
export function fileTempName(file: string, pid = process.pid): string {
  return path.join(path.dirname(file), `${TEMP_PREFIX}${path.basename(file)}-${HOST_TAG}-${pid}-${randomBytes(4).toString('hex')}`);
}

/**
 * Removes the temporaries of one file (`<prefix><host>-<pid>-<random>`) whose writer
 * was killed before its rename: written on this host by a process that is gone.
 * Those of live writers and of other hosts stay.
 */
async function removeAbandonedFileTemps(dir: string, prefix: string): Promise<void> {
  let names: string[];
  try {
    names = await fsp.readdir(dir);
  } catch {
    return; // the write itself reports a missing folder
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const m = /^([0-9a-f]{6})-(\d+)-[0-9a-f]{8}$/.exec(name.slice(prefix.length));
    if (!m || m[1] !== HOST_TAG || pidAlive(Number(m[2]))) continue;
    await fsp.rm(path.join(dir, name), { force: true }).catch(() => undefined);
  }
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
