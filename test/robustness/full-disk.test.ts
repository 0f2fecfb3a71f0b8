/**
 * Writing into a file system that fills up, or that is read-only: the command
 * fails with one error naming the output (74 for a full disk, 73 for one it may
 * not write), removes what it wrote, and never dies of an unhandled rejection.
 *
 * These need small file systems of their own, so they mount tmpfs, which needs
 * root (CI runs as root). Elsewhere they skip, saying why.
 */
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { IoError } from '../../core/errors.js';
import { ingest } from '../../stages/ingest.js';
import { useTmpDir } from '../helpers/tmp.js';
import { REPO, assertBuilt, cli } from '../pipeline/helpers.js';

const tmp = useTmpDir('mc-full-disk-');
const SOURCE = path.join(REPO, 'data/builtin/fashion-mnist');

function tryMount(dir: string, options: string): string | undefined {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir], { stdio: 'pipe' });
    return undefined;
  } catch (err) {
    return String((err as { stderr?: Buffer }).stderr ?? err).trim() || 'mount failed';
  }
}

const isRoot = process.getuid?.() === 0;
const mounts: string[] = [];
let full = '';
let readOnly = '';
let cannotMount: string | undefined = isRoot ? undefined : 'not root: mounting a small tmpfs needs root';

beforeAll(async () => {
  assertBuilt();
  if (cannotMount) return;
  full = path.join(tmp(), 'full');
  readOnly = path.join(tmp(), 'read-only');
  await fsp.mkdir(full);
  await fsp.mkdir(readOnly);
  // Each mount is recorded as soon as it succeeds, so a failed second one still leaves the first unmounted after.
  cannotMount = tryMount(full, 'size=256k');
  if (!cannotMount) {
    mounts.push(full);
    cannotMount = tryMount(readOnly, 'ro,size=64k');
    if (!cannotMount) mounts.push(readOnly);
  }
});

afterAll(() => {
  for (const m of mounts) execFileSync('umount', [m]);
});

describe('full and read-only file systems', () => {
  test('ingest into a disk that fills up: 74 naming the output, nothing left behind', async (ctx) => {
    if (cannotMount) ctx.skip(`cannot mount a small tmpfs (${cannotMount})`);
    const out = path.join(full, 'train');
    const err = await ingest(SOURCE, { out, split: 'train', preset: 'fashion-mnist' }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(IoError);
    expect((err as IoError).exitCode).toBe(74);
    expect((err as IoError).file).toBe(out);
    expect((err as Error).message).toMatch(/disk is full/);
    expect(await fsp.readdir(full)).toEqual([]);
  });

  test('the CLI says the same in one line, exits 74, and the next run on free space works', async (ctx) => {
    if (cannotMount) ctx.skip(`cannot mount a small tmpfs (${cannotMount})`);
    const out = path.join(full, 'train');
    const r = await cli(['ingest', SOURCE, '--split', 'train', '--preset', 'fashion-mnist', '--out', out]);
    expect(r.code, r.stderr).toBe(74);
    expect(r.stderr).toContain(`metacurate: error: ${out}: the disk is full`);
    expect(r.stderr).not.toMatch(/Unhandled|\.tmp-/);
    expect(await fsp.readdir(full)).toEqual([]);
    const ok = await cli(['ingest', SOURCE, '--split', 'test', '--preset', 'fashion-mnist', '--limit', '20', '--out', out]);
    expect(ok.code, ok.stderr).toBe(0);
  });

  test('an output on a read-only file system: 73 naming the output, not its hidden temporary', async (ctx) => {
    if (cannotMount) ctx.skip(`cannot mount a small tmpfs (${cannotMount})`);
    const out = path.join(readOnly, 'train');
    const r = await cli(['ingest', SOURCE, '--split', 'test', '--preset', 'fashion-mnist', '--out', out]);
    expect(r.code, r.stderr).toBe(73);
    expect(r.stderr).toContain(`metacurate: error: ${out}: cannot create the output: the file system is read-only`);
    expect(r.stderr).not.toContain('.tmp-');
  });
});
