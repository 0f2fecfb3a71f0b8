import { expect, test } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDocument } from 'yaml';
import { SCHEMA_PATH, pipelineSchemaText } from '../../scripts/gen-schema.js';
import { loadPipelineConfig, pipelineSchema } from '../../pipeline/config.js';
import { REPO } from './helpers.js';

test('the committed JSON Schema is up to date (regenerate: npm run build && node dist/scripts/gen-schema.js)', () => {
  const committed = readFileSync(path.join(REPO, SCHEMA_PATH), 'utf8');
  expect(committed).toBe(pipelineSchemaText());
  const schema = JSON.parse(committed);
  // Each registered stage is one branch, with its options listed and closed.
  const branches = schema.properties.stages.items.oneOf;
  const ingest = branches.find((b: any) => b.properties.stage.const === 'ingest');
  expect(ingest.properties.options.additionalProperties).toBe(false);
  expect(Object.keys(ingest.properties.options.properties)).toEqual(expect.arrayContaining(['split', 'size', 'format']));
  // The runner owns the output location.
  expect(ingest.properties.options.properties).not.toHaveProperty('out');
  expect(ingest.properties.options.properties).not.toHaveProperty('overwrite');
});

test('the shipped default pipeline is valid: ingest both built-in splits, carve target and pool, plant, score, rate, select, evaluate, distill', async () => {
  const file = path.join(REPO, 'pipelines/default.yaml');
  const raw = parseDocument(readFileSync(file, 'utf8')).toJS();
  expect(pipelineSchema().safeParse(raw).success).toBe(true);
  const cfg = await loadPipelineConfig(file);
  expect(cfg.workdir).toBe(path.join(REPO, 'out/default'));
  expect(cfg.stages.slice(0, 10).map((s) => [s.id, s.stage])).toEqual([
    ['train', 'ingest'], ['test', 'ingest'], ['target', 'select'], ['clean-pool', 'select'], ['pool', 'plant'],
    ['metagrad', 'score'], ['issues', 'score'], ['aum', 'score'], ['label-issues', 'label-issues'], ['ratings', 'rate'],
  ]);
  expect(new Set(cfg.stages.map((s) => s.stage))).toEqual(new Set(['ingest', 'select', 'plant', 'score', 'label-issues', 'rate', 'evaluate', 'distill']));
  expect(cfg.stages.slice(0, 2).map((s) => s.options.split)).toEqual(['train', 'test']);
  expect(cfg.stages.slice(0, 2).every((s) => s.inputPaths[0] === path.join(REPO, 'data/builtin/fashion-mnist'))).toBe(true);
  // The metagradient is measured on the held-out target, never on the test split.
  expect(cfg.stages[5].inputPaths).toEqual([path.join(REPO, 'out/default/pool'), path.join(REPO, 'out/default/target')]);
  // Every evaluation tests on the test split, beside baselines drawn from the pool.
  for (const s of cfg.stages.filter((st) => st.stage === 'evaluate')) {
    expect(s.inputPaths.slice(1)).toEqual([path.join(REPO, 'out/default/test'), path.join(REPO, 'out/default/pool')]);
  }
});
