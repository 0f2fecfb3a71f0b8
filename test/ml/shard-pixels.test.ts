// Training from pixels read in the shards (above the in-memory limit) must give
// exactly what training from memory gives: same batches, same bytes, same scores.
import { beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { loadExamples } from '../../data/batch.js';
import { ShardPixels } from '../../data/pixel-rows.js';
import { openDataset } from '../../data/reader.js';
import { initBackend } from '../../ml/backend.js';
import { computeScores } from '../../ml/scores/index.js';
import { useTmpDir } from '../helpers/tmp.js';
import { writeImageDataset } from '../helpers/datasets.js';

const tmp = useTmpDir('metacurate-shard-pixels-');

beforeAll(async () => {
  await initBackend('wasm');
});

describe('scores from pixels in the shards', () => {
  it('equal the scores from pixels in memory, bit for bit (loss, confident learning, metagradients)', async () => {
    await writeImageDataset(path.join(tmp(), 'pool'), 90, { shape: [4, 4, 1], classes: 3, shardRows: 40, batchRows: 15 });
    await writeImageDataset(path.join(tmp(), 'target'), 30, { shape: [4, 4, 1], classes: 3 });
    const pool = await openDataset(path.join(tmp(), 'pool'));
    const target = await openDataset(path.join(tmp(), 'target'));
    const mem = { train: await loadExamples(pool), target: await loadExamples(target) };
    const disk = { train: await loadExamples(pool, { inMemoryBytes: 0 }), target: await loadExamples(target, { inMemoryBytes: 0 }) };
    expect(disk.train.pixels).toBeInstanceOf(ShardPixels);
    expect(disk.target.pixels).toBeInstanceOf(ShardPixels);
    const train = { model: { kind: 'mlp' as const, hidden: [8] }, optimizer: { kind: 'sgd' as const, lr: 0.1, momentum: 0.9 }, epochs: 3, batchSize: 10, seed: 4 };
    for (const method of ['loss', 'confident', 'metagrad']) {
      const a = await computeScores(mem.train, mem.target, { method, train });
      const b = await computeScores(disk.train, disk.target, { method, train });
      expect(b.scores, method).toEqual(a.scores);
      expect(new Set(a.scores).size, `${method} scores vary`).toBeGreaterThan(1);
    }
  });
});
