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

test('ingests the built-in train (6,000) and test (1,000) splits, then skips them as current', async () => {
  const file = path.join(REPO, 'pipelines/default.yaml');
  const raw = parseDocument(readFileSync(file, 'utf8')).toJS();
  const config = parsePipelineConfig({ ...raw, workdir: work }, { file });
  const report = await runPipeline(config);
  expect(report.stages.map((s) => [s.id, s.status, s.numRows])).toEqual([['train', 'ran', 6000], ['test', 'ran', 1000]]);
  expect(Object.values(report.stages[0].summary.per_class as Record<string, number>)).toEqual(Array(10).fill(600));
  expect(Object.keys(report.stages[0].summary.per_class as object)[0]).toBe('T-shirt/top');
  const md = await fsp.readFile(path.join(work, 'report.md'), 'utf8');
  expect(md).toMatch(/\| train \| ingest \| ran \| 6,000 \|/);
  const again = await runPipeline(config);
  expect(again.stages.map((s) => s.status)).toEqual(['skipped', 'skipped']);
});
