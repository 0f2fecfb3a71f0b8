// MGD selection with the built-in metagradient engine (stages/mgd.ts) on a toy
// pool whose labels are 25% flipped, against a clean target: MGD keeps fewer
// flipped rows than a random selection of the same budget, is deterministic per
// seed, finds a target given as an input, and refuses what it cannot run. Also
// `invert` (the complement of a selection) and the CLI's refusal without --target.
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ExitCode, UsageError } from '../../core/errors.js';
import { Rng } from '../../core/rng.js';
import { readCuration } from '../../data/reader.js';
import { writeDataset } from '../../data/writer.js';
import type { ColumnSpec } from '../../data/format.js';
import { quietContext } from '../../stages/context.js';
import { mgdEngineKey, normalisedWeights } from '../../stages/select/mgd-engine.js';
import { SELECTION_FILE, select, selectStage, type SelectInput } from '../../stages/select/index.js';
import { assertBuilt, cli } from '../pipeline/helpers.js';

const SIZE = 6;
const K = 3;
const POOL = 240;
let tmp: string;
let pool: string;
let target: string;
/** Pool rows whose label was flipped. */
let flipped: Set<number>;

/** Class c lights up column band c, plus noise; `flip` of the rows get another class's label. */
async function writeNoisySet(dir: string, n: number, seed: number, flip: number): Promise<Set<number>> {
  const rng = new Rng(seed);
  const flippedRows = new Set(Array.from(rng.permutation(n).subarray(0, Math.round(flip * n))));
  const rows = Array.from({ length: n }, (_, i) => {
    const c = i % K;
    const pixels = new Uint8Array(SIZE * SIZE);
    for (let j = 0; j < pixels.length; j++) {
      const inBand = Math.floor(((j % SIZE) * K) / SIZE) === c;
      pixels[j] = Math.round(255 * Math.min(1, 0.6 * rng.next() + (inBand ? 0.4 : 0)));
    }
    const label = flippedRows.has(i) ? (c + 1 + rng.int(K - 1)) % K : c;
    return { id: `${path.basename(dir)}-${i}`, label, pixels };
  });
  const columns: ColumnSpec[] = [
    { name: 'id', kind: 'string' },
    { name: 'label', kind: 'classLabel', names: ['a', 'b', 'c'] },
    { name: 'pixels', kind: 'uint8Vector', length: SIZE * SIZE },
  ];
  await writeDataset(dir, rows, { columns, pixelShape: [SIZE, SIZE, 1], meta: { stage: 'test', stageVersion: '1', options: { seed }, parents: [] } });
  return flippedRows;
}

/** A small, quick training run to differentiate through: 3 epochs of 8 batches. */
const engine: Partial<SelectInput> = {
  model: { kind: 'mlp', hidden: [16] },
  optimizer: 'sgd',
  // 0.1 also selects well but φ jumps between rounds (less metasmooth); 0.05 descends steadily.
  lr: 0.05,
  epochs: 3,
  batchSize: 30,
  backend: 'wasm',
};

let counter = 0;
const fresh = (name: string) => path.join(tmp, `${name}-${counter++}`);

async function selectedRows(dir: string): Promise<number[]> {
  const t = tableFromIPC(await fsp.readFile(path.join(dir, SELECTION_FILE)));
  return Array.from(t.getChild('index')!.toArray() as BigInt64Array, Number);
}

const flippedFraction = (rows: number[]) => rows.filter((i) => flipped.has(i)).length / rows.length;

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'mc-mgd-'));
  pool = path.join(tmp, 'pool');
  target = path.join(tmp, 'target');
  flipped = await writeNoisySet(pool, POOL, 1, 0.25);
  await writeNoisySet(target, 60, 2, 0);
});

afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

describe('mgd selection with the metagradient engine', () => {
  let mgdRows: number[];
  let mgdFingerprint: string;

  it('keeps fewer flipped labels than random at a 50% budget', async () => {
    const r = await select(pool, { ...engine, out: fresh('mgd'), strategy: 'mgd', budget: 0.5, target, seed: 3 });
    mgdRows = await selectedRows(r.dir);
    mgdFingerprint = r.fingerprint;
    expect(mgdRows.length).toBe(120);
    const mgd = r.summary.mgd!;
    expect(mgd.rounds_run).toBeGreaterThan(1);
    expect(mgd.target_loss).toHaveLength(mgd.rounds_run);
    // φ went down from the random start to the last round's counts.
    expect(mgd.target_loss!.at(-1)!).toBeLessThan(mgd.target_loss![0]);

    // Random selections at the same budget keep about the pool's 25%.
    const random: number[] = [];
    for (const seed of [0, 1, 2]) {
      const rr = await select(pool, { out: fresh('random'), strategy: 'random', budget: 0.5, seed });
      random.push(flippedFraction(await selectedRows(rr.dir)));
    }
    const randomMean = random.reduce((a, b) => a + b, 0) / random.length;
    expect(randomMean).toBeGreaterThan(0.18);
    expect(flippedFraction(mgdRows)).toBeLessThan(0.5 * randomMean);

    // curation.json records the engine: the target as a parent, the training run, and its key.
    const cur = await readCuration(r.dir);
    expect(cur!.parents.map((p) => p.role)).toEqual(['dataset', 'target']);
    expect(cur!.options).toMatchObject({ strategy: 'mgd', k: 16, train: { epochs: 3, batchSize: 30, seed: 3 } });
    expect(cur!.options.metagradKey).toMatch(/^[0-9a-f]{16}$/);
  }, 60_000);

  it('is deterministic per seed, and its fingerprint follows the target, the training run and k', async () => {
    const again = await select(pool, { ...engine, out: fresh('mgd'), strategy: 'mgd', budget: 0.5, target, seed: 3 });
    expect(await selectedRows(again.dir)).toEqual(mgdRows);
    expect(again.fingerprint).toBe(mgdFingerprint);
    const opts = (extra: Partial<SelectInput>) => selectStage.options.parse({ ...engine, out: 'x', strategy: 'mgd', budget: 0.5, target, seed: 3, ...extra });
    expect((await selectStage.prepare([pool], opts({}))).fingerprint).toBe(mgdFingerprint);
    const variants = [opts({ epochs: 4 }), opts({ k: 3 }), opts({ lr: 0.02 }), opts({ seed: 4 }), opts({ target: pool })];
    const fps = await Promise.all(variants.map(async (o) => (await selectStage.prepare([pool], o)).fingerprint));
    expect(new Set([mgdFingerprint, ...fps]).size).toBe(variants.length + 1);
    // Memory and backend do not change the result, so not the fingerprint either.
    expect((await selectStage.prepare([pool], opts({ maxMemoryMiB: 64, backend: 'auto' }))).fingerprint).toBe(mgdFingerprint);
    // The key itself is a function of (target, training config, k).
    const train = { model: { kind: 'mlp' as const, hidden: [16] }, optimizer: { kind: 'sgd' as const, lr: 0.1 }, epochs: 3, batchSize: 30, seed: 3 };
    expect(mgdEngineKey('aaaa', { train, k: 4 })).toBe(mgdEngineKey('aaaa', { train, k: 4 }));
    expect(mgdEngineKey('aaaa', { train, k: 4 })).not.toBe(mgdEngineKey('bbbb', { train, k: 4 }));
  }, 60_000);

  it('takes the target as an input holding images (as a pipeline passes it), beside score sidecars', async () => {
    const opts = selectStage.options.parse({ ...engine, out: fresh('mgd-in'), strategy: 'mgd', budget: 0.5, seed: 3, rounds: 1 });
    const viaInput = (await selectStage.prepare([pool, target], opts)).fingerprint;
    const viaOption = (await selectStage.prepare([pool], { ...opts, target })).fingerprint;
    expect(viaInput).toBe(viaOption);
    const r = await selectStage.run(quietContext(), [pool, target], opts);
    expect(r.fingerprint).toBe(viaInput);
    expect(r.numRows).toBe(120);
  }, 60_000);

  it('scales the counts to mean weight 1 over the pool', () => {
    const { weights, scale } = normalisedWeights(Float32Array.of(1, 0, 1, 0));
    expect(scale).toBe(2);
    expect(Array.from(weights)).toEqual([2, 0, 2, 0]);
    expect(() => normalisedWeights(new Float32Array(3))).toThrow(UsageError);
  });

  it('refuses mgd without a target, engine options for other strategies, and a callback beside a target', async () => {
    const usage = async (p: Promise<unknown>, re: RegExp) => {
      const err: any = await p.catch((e) => e);
      expect(err).toBeInstanceOf(UsageError);
      expect(err.exitCode).toBe(ExitCode.usage);
      expect(err.message).toMatch(re);
    };
    await usage(select(pool, { out: fresh('x'), strategy: 'mgd', budget: 0.5 }), /needs a target set.*Pass --target <dir>/);
    await usage(select(pool, { out: fresh('x'), strategy: 'random', budget: 0.5, target }), /"target" applies only to strategy curate, prune, mgd/);
    await usage(select(pool, { out: fresh('x'), strategy: 'topk', by: 'x', budget: 0.5, epochs: 2 }), /"epochs" applies only to strategy mgd/);
    await usage(select(pool, { out: fresh('x'), strategy: 'mgd', budget: 0.5, target, metagrad: async (c) => c }), /"target" configures the built-in metagradient engine/);
    await usage(select(pool, { out: fresh('x'), strategy: 'mgd', budget: 0.5, target, metagradKey: 'k' }), /metagradKey/);
    await usage(selectStage.prepare([pool, target, pool], selectStage.options.parse({ out: 'x', strategy: 'mgd', budget: 0.5 })), /one target set, but 2 inputs hold images/);
  });
});

describe('invert', () => {
  it('keeps exactly the rows the same selection leaves out', async () => {
    const chosen = await select(pool, { out: fresh('carve'), strategy: 'random', budget: 60, seed: 5 });
    const rest = await select(pool, { out: fresh('rest'), strategy: 'random', budget: 60, seed: 5, invert: true });
    const a = await selectedRows(chosen.dir);
    const b = await selectedRows(rest.dir);
    expect(a).toHaveLength(60);
    expect(b).toHaveLength(180);
    expect([...a, ...b].sort((x, y) => x - y)).toEqual(Array.from({ length: POOL }, (_, i) => i));
    expect(rest.summary).toMatchObject({ invert: true, rows: 180, rows_in: POOL, budget: 60 });
    expect(rest.fingerprint).not.toBe(chosen.fingerprint);
    expect((await readCuration(rest.dir))!.options).toMatchObject({ invert: true });
    // Plain selections do not record it, so their fingerprints are as before.
    expect((await readCuration(chosen.dir))!.options).not.toHaveProperty('invert');
  });
});

describe('CLI', () => {
  it('select --strategy mgd without --target is a usage error that says what to pass', async () => {
    assertBuilt();
    const r = await cli(['select', pool, '--strategy', 'mgd', '--budget', '0.5', '--out', fresh('cli')]);
    expect(r.code).toBe(64);
    expect(r.stderr).toMatch(/needs a target set/);
    expect(r.stderr).toMatch(/--target <dir>/);
  });
});
