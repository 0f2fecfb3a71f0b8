/**
 * A score method and a selection strategy added from outside, as one file each
 * (test/fixtures/toy-plugin.mjs): they work from the library, from a pipeline
 * file and from the CLI, beside the built-in ones. Scoring runs in worker
 * threads, which load the plug-in too.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { numericValues } from '../../data/columns.js';
import { openDataset } from '../../data/reader.js';
import { loadPlugins } from '../../pipeline/plugins.js';
import { runPipeline } from '../../pipeline/runner.js';
import { ingest } from '../../stages/ingest.js';
import { score } from '../../stages/score.js';
import { select } from '../../stages/select/index.js';
import { REPO, assertBuilt, cli, tempDir, writeIdxFixture } from './helpers.js';

const PLUGIN = path.join(REPO, 'test/fixtures/toy-plugin.mjs');
let dir: string;
let pool: string;

beforeAll(async () => {
  assertBuilt();
  dir = await tempDir();
  await writeIdxFixture(path.join(dir, 'src'), { n: 24, classes: 3 });
  pool = path.join(dir, 'pool');
  await ingest(path.join(dir, 'src'), { out: pool });
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

async function column(ds: string, name: string): Promise<number[]> {
  const d = await openDataset(ds);
  const out: number[] = [];
  for await (const b of d.blocks()) out.push(...numericValues(b.column(name)));
  return out;
}

/** Image i of the fixture is filled with 8·i mod 256. */
const brightness = (i: number) => ((8 * i) % 256) / 255;

describe('a toy plug-in', () => {
  test('from the library', async () => {
    expect(await loadPlugins([PLUGIN])).toEqual([{ file: PLUGIN, scorers: 1, strategies: 1 }]);
    const scored = await score(pool, { method: 'brightness', out: path.join(dir, 'lib-scores') });
    const values = await column(scored.dir, 'brightness');
    values.forEach((v, i) => expect(v).toBeCloseTo(brightness(i), 6));
    const picked = await select(pool, { strategy: 'stride', stride: 5, out: path.join(dir, 'lib-stride') });
    expect(picked.numRows).toBe(5);
    expect(picked.summary.stride).toEqual({ every: 5 });
    // Its option belongs to it: another strategy refuses it.
    await expect(select(pool, { strategy: 'random', budget: 3, stride: 5, out: path.join(dir, 'x') })).rejects.toThrow(/applies only to strategy stride/);
  });

  test('from a pipeline file', async () => {
    const file = path.join(dir, 'toy.yaml');
    await fsp.writeFile(file, [
      'version: 1',
      'workdir: work',
      `plugins: [${path.relative(dir, PLUGIN)}]`,
      'stages:',
      `  - { id: pool, stage: ingest, inputs: [src] }`,
      `  - { id: bright, stage: score, inputs: { train: '\${pool}' }, options: { method: brightness } }`,
      `  - { id: top, stage: select, inputs: { dataset: '\${pool}', scores: ['\${bright}'] }, options: { strategy: topk, by: brightness, budget: 4 } }`,
      `  - { id: every3, stage: select, inputs: ['\${pool}'], options: { strategy: stride, stride: 3 } }`,
      '',
    ].join('\n'));
    const report = await runPipeline(file);
    expect(report.stages.map((s) => s.status)).toEqual(['ran', 'ran', 'ran', 'ran']);
    const top = await column(path.join(dir, 'work/top'), 'brightness');
    expect(top.length).toBe(4);
    expect(Math.min(...top)).toBeGreaterThanOrEqual(Math.max(...[...Array(24).keys()].map(brightness).sort((a, b) => b - a).slice(4)));
    expect(report.stages[3].numRows).toBe(8);
  });

  test('from the CLI', async () => {
    const help = await cli(['--plugin', PLUGIN, 'select', '--help']);
    expect(help.stdout).toMatch(/stride\s+every --stride-th row/);
    expect(help.stdout).toMatch(/--stride <n>/);
    const scored = await cli(['--plugin', PLUGIN, '--json', 'score', pool, '--method', 'brightness', '--out', path.join(dir, 'cli-scores')]);
    expect(scored.code, scored.stderr).toBe(0);
    expect(JSON.parse(scored.stdout).summary.method).toBe('brightness');
    const picked = await cli(['--plugin', PLUGIN, 'select', pool, '--strategy', 'stride', '--stride', '6', '--out', path.join(dir, 'cli-stride')]);
    expect(picked.code, picked.stderr).toBe(0);
    expect(await column(path.join(dir, 'cli-stride'), 'label')).toEqual([0, 0, 0, 0]);
    // Without the plug-in the method is unknown: a usage error naming the known ones.
    const without = await cli(['score', pool, '--method', 'brightness', '--out', path.join(dir, 'nope')]);
    expect(without.code).toBe(64);
    expect(without.stderr).toMatch(/metagrad/);
  });
});
