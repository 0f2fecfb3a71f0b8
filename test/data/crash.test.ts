/**
 * Crash safety (docs/architecture.md#atomic-writes): a writer killed with SIGKILL mid-write
 * leaves the previous state or nothing, never half a dataset. The writer runs in a child
 * process from the compiled dist/ (`npm test` builds it first, in pretest).
 */
import { beforeAll, describe, expect, test } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { OWNER_FILE, TEMP_PREFIX, recoverOutput } from '../../core/atomic.js';
import { openDataset } from '../../data/reader.js';
import { useTmpDir } from '../helpers/tmp.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DIST_WRITER = path.join(REPO, 'dist/data/writer.js');
const tmp = useTmpDir('metacurate-crash-');

const PIXELS = 784;
const FAST_ROWS = 12_000;

/**
 * The child: writes rows of 784 pixels in batches of 1,000, 5,000 rows per shard.
 * `slow` sleeps between batches and never finishes on its own (it is killed);
 * `fast` writes FAST_ROWS rows and prints the fingerprint. Each batch prints a line.
 */
const CHILD = `
import { promises } from 'node:fs';
import { DatasetWriter } from ${JSON.stringify(pathToFileURL(DIST_WRITER).href)};
const [out, mode, overwrite, crashAt] = process.argv.slice(2);
// crashAt = 'aside' | 'swapped': die right after the old output is moved aside, or after the new one is in place.
if (crashAt) {
  const rename = promises.rename;
  promises.rename = async (from, to) => {
    await rename(from, to);
    const fromTemp = from.split('/').pop().startsWith('.tmp-');
    if ((crashAt === 'aside' && to.endsWith('-old')) || (crashAt === 'swapped' && fromTemp && !to.endsWith('-old'))) process.kill(process.pid, 'SIGKILL');
  };
}
const writer = await DatasetWriter.create(out, {
  columns: [{ name: 'id', kind: 'string' }, { name: 'label', kind: 'int64' }, { name: 'pixels', kind: 'uint8Vector', length: ${PIXELS} }],
  pixelShape: [28, 28, 1],
  meta: { stage: 'crash-test', stageVersion: '1', options: { mode }, parents: [] },
  shardRows: 5000,
  overwrite: overwrite === 'overwrite',
});
const total = mode.startsWith('fast') ? ${FAST_ROWS} : 10_000_000;
for (let i = 0; i < total; i++) {
  await writer.writeRow({ id: 'r' + i, label: i % 10, pixels: new Uint8Array(${PIXELS}).fill(i & 255) });
  if ((i + 1) % 1000 === 0) {
    console.log('rows ' + (i + 1));
    if (mode === 'slow') await new Promise((r) => setTimeout(r, 20));
  }
}
const res = await writer.finish();
console.log('done ' + res.fingerprint + ' ' + res.numRows);
`;

function startChild(script: string, args: string[]): { child: ChildProcess; lines: string[]; exited: Promise<{ code: number | null; signal: string | null; stderr: string }> } {
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let stderr = '';
  let partial = '';
  child.stdout!.on('data', (d: Buffer) => {
    const parts = (partial + d.toString()).split('\n');
    partial = parts.pop()!;
    lines.push(...parts);
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: string | null; stderr: string }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
  return { child, lines, exited };
}

/** Runs the slow writer until it has written `rows` rows, then SIGKILLs it. */
async function killMidWrite(script: string, out: string, rows: number, overwrite = false): Promise<void> {
  const { child, lines, exited } = startChild(script, [out, 'slow', overwrite ? 'overwrite' : '', '']);
  const deadline = Date.now() + 30_000;
  while (!lines.some((l) => l === `rows ${rows}`)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      const r = await Promise.race([exited, new Promise((res) => setTimeout(() => res({ timeout: true }), 100))]);
      child.kill('SIGKILL');
      throw new Error(`the writer did not reach ${rows} rows: ${JSON.stringify(r)}; stdout: ${lines.slice(-3).join(' | ')}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  child.kill('SIGKILL');
  const r = await exited;
  expect(r.signal).toBe('SIGKILL');
}

async function runFast(script: string, out: string, overwrite = false): Promise<string> {
  const { lines, exited } = startChild(script, [out, 'fast', overwrite ? 'overwrite' : '', '']);
  const r = await exited;
  expect(r.code, r.stderr).toBe(0);
  const done = lines.find((l) => l.startsWith('done '));
  expect(done).toBe(`done ${done?.split(' ')[1]} ${FAST_ROWS}`);
  return done!.split(' ')[1];
}

async function temps(parent: string): Promise<string[]> {
  return (await fsp.readdir(parent)).filter((f) => f.startsWith(TEMP_PREFIX));
}

describe('crash safety', () => {
  let script: string;
  beforeAll(async () => {
    if (!existsSync(DIST_WRITER)) throw new Error('dist/ is missing: run `npm run build` first (npm test does it in pretest)');
    script = path.join(tmp(), 'child.mjs');
    await fsp.writeFile(script, CHILD);
  });

  test('SIGKILL mid-write leaves no dataset; the next start removes the leftover, and only abandoned ones of this output', async () => {
    const parent = path.join(tmp(), 'fresh');
    await fsp.mkdir(parent);
    const out = path.join(parent, 'ds');

    // Killed after 7,000 rows: one shard closed, the next one half written.
    await killMidWrite(script, out, 7000);
    expect(existsSync(out)).toBe(false);
    const left = await temps(parent);
    expect(left).toHaveLength(1);
    expect(left[0]).toMatch(/^\.tmp-ds-/);
    const parts = await fsp.readdir(path.join(parent, left[0]));
    expect(parts).toContain('shard-00000.arrow.part');
    expect(parts).toContain('shard-00001.arrow.part');
    expect(parts).toContain(OWNER_FILE);
    expect(parts).not.toContain('curation.json');

    // Strangers: another tool's temporary, and one of this output whose owner (this process) is alive.
    await fsp.mkdir(path.join(parent, '.tmp-other-0badc0de'));
    const live = path.join(parent, '.tmp-ds-12345678');
    await fsp.mkdir(live);
    await fsp.writeFile(path.join(live, OWNER_FILE), JSON.stringify({ pid: process.pid, host: os.hostname() }));

    // The rerun's start removes the dead writer's leftover and leaves the others.
    const fp = await runFast(script, out);
    const ds = await openDataset(out, { verify: true });
    expect(ds.numRows).toBe(FAST_ROWS);
    expect(ds.fingerprint).toBe(fp);
    expect(ds.shards.map((s) => s.rows)).toEqual([5000, 5000, 2000]);
    expect((await fsp.readdir(parent)).sort()).toEqual(['.tmp-ds-12345678', '.tmp-other-0badc0de', 'ds']);
    expect(await fsp.readdir(out)).not.toContain(OWNER_FILE);
  }, 60_000);

  test('SIGKILL while overwriting leaves the previous dataset intact', async () => {
    const parent = path.join(tmp(), 'overwrite');
    await fsp.mkdir(parent);
    const out = path.join(parent, 'ds');
    const fp = await runFast(script, out);
    const before = (await openDataset(out)).shards.map((s) => s.sha256);

    await killMidWrite(script, out, 6000, true);
    const ds = await openDataset(out, { verify: true });
    expect(ds.fingerprint).toBe(fp);
    expect(ds.numRows).toBe(FAST_ROWS);
    expect(ds.shards.map((s) => s.sha256)).toEqual(before);
    expect(await temps(parent)).toHaveLength(1);
    expect(await recoverOutput(out)).toHaveLength(1);
    expect(await fsp.readdir(parent)).toEqual(['ds']);
  }, 60_000);

  test('SIGKILL between the two renames of an overwrite: the next start completes the replacement, or restores the old one', async () => {
    for (const [crashAt, tmpLost] of [['aside', false], ['aside', true], ['swapped', false]] as const) {
      const parent = path.join(tmp(), `swap-${crashAt}-${tmpLost}`);
      await fsp.mkdir(parent);
      const out = path.join(parent, 'ds');
      const first = await runFast(script, out);
      // The second write has other options (mode), so another fingerprint.
      const { exited } = startChild(script, [out, 'fast-again', 'overwrite', crashAt]);
      expect((await exited).signal).toBe('SIGKILL');
      const listing = await fsp.readdir(parent);
      if (crashAt === 'aside') expect(listing.includes('ds')).toBe(false);
      if (tmpLost) {
        for (const n of listing) if (n.startsWith(TEMP_PREFIX) && !n.endsWith('-old')) await fsp.rm(path.join(parent, n), { recursive: true });
      }
      const actions = await recoverOutput(out);
      expect(actions.length, crashAt).toBeGreaterThan(0);
      expect(await fsp.readdir(parent)).toEqual(['ds']);
      const ds = await openDataset(out, { verify: true });
      expect(ds.numRows).toBe(FAST_ROWS);
      // Completed: the new dataset; restored (the new one lost): the old one. Never neither.
      if (tmpLost) expect(ds.fingerprint).toBe(first);
      else expect(ds.fingerprint).not.toBe(first);
      expect(await fsp.readdir(out)).not.toContain(OWNER_FILE);
    }
  }, 120_000);
});
