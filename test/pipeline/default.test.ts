/** The shipped default pipeline (`npm start`) on the built-in data, into a temporary workdir. */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { promises as fsp, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { parsePipelineConfig } from '../../pipeline/config.js';
import { runPipeline } from '../../pipeline/runner.js';
import { REPO, tempDir } from './helpers.js';

let work: string;
beforeAll(async () => {
  work = await tempDir();
});
afterAll(async () => {
  await fsp.rm(work, { recursive: true, force: true });
});

test('ingests the built-in splits, scores and evaluates, then skips every stage as current', async () => {
  const file = path.join(REPO, 'pipelines/default.yaml');
  const raw = parseDocument(readFileSync(file, 'utf8')).toJS();
  const config = parsePipelineConfig({ ...raw, workdir: work }, { file });
  const report = await runPipeline(config);
  expect(report.stages.map((s) => [s.id, s.status, s.numRows])).toEqual([
    ['train', 'ran', 6000], ['test', 'ran', 1000], ['scores', 'ran', 6000], ['evaluation', 'ran', 6000],
  ]);
  // An MLP on 6,000 Fashion-MNIST images is well above chance (10%) and below perfect.
  const acc = report.stages[3].summary.accuracy as number;
  expect(acc).toBeGreaterThan(0.7);
  expect(acc).toBeLessThan(0.95);
  expect(Object.values(report.stages[0].summary.per_class as Record<string, number>)).toEqual(Array(10).fill(600));
  expect(Object.keys(report.stages[0].summary.per_class as object)[0]).toBe('T-shirt/top');
  const md = await fsp.readFile(path.join(work, 'report.md'), 'utf8');
  expect(md).toMatch(/\| train \| ingest \| ran \| 6,000 \|/);
  const again = await runPipeline(config);
  expect(again.stages.map((s) => s.status)).toEqual(['skipped', 'skipped', 'skipped', 'skipped']);
});
