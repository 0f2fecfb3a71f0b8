import { beforeAll, expect, test } from 'vitest';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { REPO, assertBuilt, run } from './helpers.js';

beforeAll(() => assertBuilt());

test('the built package resolves by its own name, with typings', async () => {
  expect(existsSync(path.join(REPO, 'dist/index.d.ts'))).toBe(true);
  const names = [
    'ingest', 'ingestStage', 'openDataset', 'Dataset', 'writeDataset', 'DatasetWriter', 'runPipeline', 'loadPipelineConfig',
    'loadExamples', 'batchSchedule', 'quietContext', 'MetacurateError', 'ConfigError', 'OutputError', 'exitCodeOf',
  ];
  const script = `import * as m from 'metacurate'; console.log(JSON.stringify(${JSON.stringify(names)}.map((n) => [n, typeof m[n]])));`;
  const r = await run(process.execPath, ['--input-type=module', '-e', script]);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const types = Object.fromEntries(JSON.parse(r.stdout));
  for (const n of names) expect(types[n], n).toMatch(/^(function|object)$/);
  expect(types.ingestStage).toBe('object');
  expect(types.openDataset).toBe('function');
});
