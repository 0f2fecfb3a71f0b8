/**
 * A run killed mid-stage (SIGKILL: no cleanup at all) leaves a stale lock and a
 * partial temporary output; rerunning resumes: the finished stage is skipped as
 * current, the lock is taken over, the partial output swept, the stage rerun.
 * The pipeline runs in a child process through the built library ('metacurate'),
 * with a slow test stage so the kill lands while a shard is being written.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { spawn } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { openDataset } from '../../data/reader.js';
import { LOCK_FILE } from '../../pipeline/lock.js';
import { REPO, assertBuilt, run, tempDir, tempEntries } from './helpers.js';

// The child's script: a two-stage pipeline of a stage that writes `rows` rows,
// sleeping DELAY_MS after each batch of 10; it prints WRITING once its first
// batch is on disk in the temporary directory.
const SCRIPT = `
import { z } from 'zod';
import { runPipeline, parsePipelineConfig, defineStage, readCuration } from 'metacurate';
const delay = Number(process.env.DELAY_MS ?? 0);
const options = z.object({ out: z.string(), overwrite: z.boolean().default(false), rows: z.number().int() });
const slow = defineStage({
  name: 'slow', version: '1', description: 'writes rows slowly', options,
  inputs: [{ name: 'upstream', description: 'earlier outputs', optional: true, many: true }],
  async plan(inputs, o) {
    return { options: { rows: o.rows }, parents: await Promise.all(inputs.upstream.map(async (i) => ({ fingerprint: (await readCuration(i)).fingerprint }))) };
  },
  async run(ctx, plan, o, out) {
    const w = await out.dataset({ columns: [{ name: 'id', kind: 'string' }], batchRows: 10 });
    for (let i = 0; i < o.rows; i++) {
      await w.writeRow({ id: 'r' + i });
      if (i % 10 === 9 && delay) {
        if (i === 9) console.log('WRITING ' + o.out);
        await new Promise((r) => setTimeout(r, delay));
      }
    }
    return { summary: { rows: o.rows } };
  },
});
const registry = { slow };
const config = parsePipelineConfig({ version: 1, workdir: process.env.WORKDIR, stages: [
  { id: 'first', stage: 'slow', options: { rows: 20 } },
  { id: 'second', stage: 'slow', inputs: ['\${first}'], options: { rows: 200 } },
] }, { registry });
const report = await runPipeline(config, { registry, ctx: { log: { debug() {}, info() {}, warn: (o, m) => console.log('WARN ' + m), error() {} }, progress: () => ({ tick() {}, setTotal() {}, done() {} }) } });
console.log('REPORT ' + JSON.stringify(report.stages.map((s) => [s.id, s.status])));
`;

let dir: string;
beforeAll(async () => {
  assertBuilt();
  dir = await tempDir();
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

test('a run killed mid-stage resumes: finished stages skipped, partial output swept, no temp dirs left', async () => {
  const workdir = path.join(dir, 'work');
  const child = spawn(process.execPath, ['--input-type=module', '-e', SCRIPT], {
    cwd: REPO,
    env: { ...process.env, WORKDIR: workdir, DELAY_MS: '200' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const writing = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      const m = /WRITING (.*second)\n/.exec(out);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`child exited (${code}) before writing: ${out}${err}`)));
  });
  child.kill('SIGKILL');
  await new Promise((r) => child.once('close', r));
  expect(writing).toBe(path.join(workdir, 'second'));
  // Killed mid-write: the lock and a partial temporary output are left, no final output.
  expect(existsSync(path.join(workdir, LOCK_FILE))).toBe(true);
  expect((await tempEntries(workdir)).length).toBe(1);
  expect(existsSync(path.join(workdir, 'second'))).toBe(false);
  expect(existsSync(path.join(workdir, 'first', 'curation.json'))).toBe(true);

  const rerun = await run(process.execPath, ['--input-type=module', '-e', SCRIPT], { env: { WORKDIR: workdir, DELAY_MS: '0' } });
  expect(rerun.stderr).toBe('');
  expect(rerun.code).toBe(0);
  expect(rerun.stdout).toMatch(/WARN taking over a stale lock/);
  expect(rerun.stdout).toMatch(/WARN removed \.tmp-second-/);
  expect(rerun.stdout).toContain('REPORT [["first","skipped"],["second","ran"]]');
  expect(await tempEntries(workdir)).toEqual([]);
  expect(existsSync(path.join(workdir, LOCK_FILE))).toBe(false);
  const second = await openDataset(path.join(workdir, 'second'), { verify: true });
  expect(await second.countRows()).toBe(200);
});
