/**
 * A run lock on a pipeline's workdir, so two runs never write the same output.
 * The lock file is created with O_EXCL and holds pid, hostname and start time. A
 * lock left by a dead process on this host is taken over with a warning; a live
 * (or unverifiable) one is refused.
 */
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { OutputError } from '../core/errors.js';
import type { Logger } from '../stages/context.js';

export const LOCK_FILE = '.metacurate.lock';
/** A lock file that cannot be parsed is taken for one being written for this long. */
const UNREADABLE_GRACE_MS = 10_000;

export interface LockInfo {
  pid: number;
  hostname: string;
  started_at: string;
  /** Random token, so a process only ever removes its own lock. */
  token: string;
}

export interface Lock {
  file: string;
  info: LockInfo;
  release(): Promise<void>;
}

/**
 * Holds `<dir>/.metacurate.lock` until `release`. Throws OutputError (73) when another run holds it.
 * `takeOverRemote`: the caller knows the run holding it on another host is gone (a pod or machine
 * that died); its process cannot be checked from here, so only the caller can say so.
 */
export async function acquireLock(dir: string, opts: { log?: Logger; takeOverRemote?: boolean } = {}): Promise<Lock> {
  await fsp.mkdir(dir, { recursive: true });
  const file = path.join(dir, LOCK_FILE);
  const info: LockInfo = {
    pid: process.pid,
    hostname: os.hostname(),
    started_at: new Date().toISOString(),
    token: randomBytes(8).toString('hex'),
  };
  const text = JSON.stringify(info) + '\n';
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      await fsp.writeFile(file, text, { flag: 'wx' });
      return { file, info, release: () => releaseLock(file, text) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const held = await readHolder(file);
    if (!held) continue; // released meanwhile: try again
    const verdict = holderState(held);
    if (verdict.alive && !(verdict.remote && opts.takeOverRemote)) {
      throw new OutputError(`locked by another run (${verdict.who})`, {
        file,
        hint: `Wait for that run to finish. If no run is active${verdict.remote ? ' on that host, pass --take-over-lock or' : ','} delete the lock file`,
      });
    }
    opts.log?.warn({ lock: file, holder: verdict.who }, verdict.alive ? 'taking over the lock of a run on another host, as asked' : 'taking over a stale lock left by a process that is gone');
    await takeOver(file, held.raw);
  }
  throw new OutputError('could not take the lock: other runs keep taking it', { file, hint: 'Run one pipeline per workdir at a time' });
}

interface Holder {
  raw: string;
  info?: LockInfo;
  mtimeMs: number;
}

async function readHolder(file: string): Promise<Holder | undefined> {
  try {
    const [raw, st] = await Promise.all([fsp.readFile(file, 'utf8'), fsp.stat(file)]);
    let info: LockInfo | undefined;
    try {
      info = JSON.parse(raw);
    } catch {
      info = undefined;
    }
    return { raw, info, mtimeMs: st.mtimeMs };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function holderState(h: Holder): { alive: boolean; who: string; remote?: boolean } {
  const info = h.info;
  if (!info || typeof info.pid !== 'number') {
    // Created but not yet written, or garbage: trust it only while it is fresh.
    return { alive: Date.now() - h.mtimeMs < UNREADABLE_GRACE_MS, who: 'unreadable lock file' };
  }
  const who = `pid ${info.pid} on ${info.hostname}, since ${info.started_at}`;
  if (info.hostname !== os.hostname()) return { alive: true, who, remote: true };
  return { alive: pidAlive(info.pid), who };
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes a stale lock without ever removing a fresh one: the file is first moved
 * aside, and put back (link, which never replaces) if it turns out to be another
 * process's new lock.
 */
async function takeOver(file: string, staleText: string): Promise<void> {
  const aside = `${file}.${randomBytes(4).toString('hex')}.stale`;
  try {
    await fsp.rename(file, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else took it over
    throw err;
  }
  const moved = await fsp.readFile(aside, 'utf8').catch(() => staleText);
  if (moved !== staleText) await fsp.link(aside, file).catch(() => undefined);
  await fsp.rm(aside, { force: true });
}

async function releaseLock(file: string, text: string): Promise<void> {
  const current = await fsp.readFile(file, 'utf8').catch(() => undefined);
  if (current === text) await fsp.rm(file, { force: true });
}
