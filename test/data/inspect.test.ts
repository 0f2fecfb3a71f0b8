import { afterAll, beforeAll, expect, test } from 'vitest';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeDataset } from '../../data/writer.js';
import { inspectDataset } from '../../data/inspect.js';

let dir: string;
beforeAll(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'metacurate-inspect-'));
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

test('schema, shards, classes (empty ones too), lineage through parents, sidecars, samples, rejected', async () => {
  const rows = Array.from({ length: 7 }, (_, i) => ({ id: `r${i}`, label: i % 2, pixels: new Uint8Array([i, 2 * i, 3 * i, 4 * i]) }));
  const parent = await writeDataset(path.join(dir, 'parent'), rows, {
    columns: [{ name: 'id', kind: 'string' }, { name: 'label', kind: 'classLabel', names: ['a', 'b', 'c'] }, { name: 'pixels', kind: 'uint8Vector', length: 4 }],
    pixelShape: [2, 2, 1],
    shardRows: 4,
    meta: { stage: 'ingest', stageVersion: '1', options: { split: 'train' }, seed: 3, parents: [{ fingerprint: 'src', path: '/no/such/source', role: 'source' }] },
    extraFiles: { 'rejected.jsonl': '{"id":"x1","reason":"cannot decode: truncated"}\n{"id":"x2","reason":"duplicate of r1"}\n{"id":"x3","reason":"cannot decode: bad header"}\n' },
  });
  const child = await writeDataset(path.join(dir, 'scores'), rows.map((r) => ({ id: r.id, score: r.label + 0.5 })), {
    columns: [{ name: 'id', kind: 'string' }, { name: 'score', kind: 'float32' }],
    shardSizes: [4, 3],
    meta: { stage: 'score', stageVersion: '2', options: {}, parents: [{ fingerprint: parent.fingerprint, path: parent.dir }], sidecarOf: parent.fingerprint },
  });

  const info = await inspectDataset(parent.dir, { sidecars: [child.dir], samples: 3, verify: true });
  expect(info.rows).toBe(7);
  expect(info.verified).toBe(true);
  expect(info.pixel_shape).toEqual([2, 2, 1]);
  expect(info.columns.map((c) => [c.name, c.kind, c.detail, c.source === child.dir])).toEqual([
    ['id', 'string', undefined, false],
    ['label', 'classLabel', '3 classes', false],
    ['pixels', 'uint8Vector', 'length 4', false],
    ['score', 'float32', undefined, true],
  ]);
  expect(info.shards.map((s) => s.rows)).toEqual([4, 3]);
  expect(info.bytes).toBe(info.shards[0].bytes + info.shards[1].bytes);
  expect(info.classes).toEqual([{ label: 0, name: 'a', count: 4 }, { label: 1, name: 'b', count: 3 }, { label: 2, name: 'c', count: 0 }]);
  expect(info.samples).toEqual([
    { row: 0, id: 'r0', label: 0, class_name: 'a', pixels: { min: 0, max: 0, mean: 0 } },
    { row: 1, id: 'r1', label: 1, class_name: 'b', pixels: { min: 1, max: 4, mean: 2.5 } },
    { row: 2, id: 'r2', label: 0, class_name: 'a', pixels: { min: 2, max: 8, mean: 5 } },
  ]);
  expect(info.rejected).toEqual({ count: 3, reasons: { 'cannot decode': 2, 'duplicate of r1': 1 } });
  expect(info.sidecars).toEqual([{ dir: child.dir, fingerprint: child.fingerprint, stage: 'score' }]);
  expect(info.lineage.map((l) => [l.depth, l.stage, l.fingerprint])).toEqual([[0, 'ingest', parent.fingerprint]]);
  expect(info.lineage[0]).toMatchObject({ options: { split: 'train' }, seed: 3 });

  // The sidecar's lineage reaches its parent through the recorded path.
  const scores = await inspectDataset(child.dir);
  expect(scores.lineage.map((l) => [l.depth, l.stage, l.fingerprint])).toEqual([[0, 'score', child.fingerprint], [1, 'ingest', parent.fingerprint]]);
  expect(scores.classes).toBeUndefined();
  expect(scores.rejected).toBeUndefined();
});

test('--sort-by shows the top rows of a numeric column across shards, highest or lowest first, ties in row order', async () => {
  const values = [0.5, 0.9, 0.1, 0.9, 0.3, 0.05, 0.7];
  const rows = values.map((_, i) => ({ id: `s${i}`, label: i % 2 }));
  const cols = [{ name: 'id', kind: 'string' as const }, { name: 'label', kind: 'classLabel' as const, names: ['a', 'b'] }];
  const base = await writeDataset(path.join(dir, 'sort-base'), rows, { columns: cols, shardRows: 3, meta: { stage: 'ingest', stageVersion: '1', options: {}, parents: [] } });
  const side = await writeDataset(path.join(dir, 'sort-scores'), values.map((v, i) => ({ id: `s${i}`, score: v })), {
    columns: [{ name: 'id', kind: 'string' }, { name: 'score', kind: 'float64' }],
    shardSizes: [3, 3, 1],
    meta: { stage: 'score', stageVersion: '1', options: {}, parents: [], sidecarOf: base.fingerprint },
  });
  const top = await inspectDataset(base.dir, { sidecars: [side.dir], sortBy: 'score', samples: 3 });
  expect(top.samples.map((s) => [s.id, s.value])).toEqual([['s1', 0.9], ['s3', 0.9], ['s6', 0.7]]);
  expect(top.sorted_by).toEqual({ column: 'score', ascending: false });
  const worst = await inspectDataset(base.dir, { sidecars: [side.dir], sortBy: 'score', ascending: true, samples: 2 });
  expect(worst.samples.map((s) => [s.id, s.class_name, s.value])).toEqual([['s5', 'b', 0.05], ['s2', 'a', 0.1]]);
  // A column that is missing or not numeric is a usage error naming the numeric ones.
  await expect(inspectDataset(base.dir, { sortBy: 'score' })).rejects.toThrow(/no column "score".*label.*--sidecar/);
  await expect(inspectDataset(base.dir, { sidecars: [side.dir], sortBy: 'id' })).rejects.toThrow(/column "id" holds string values, not numeric scores/);
});
