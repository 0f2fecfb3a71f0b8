// The select stage on a small dataset and score sidecars written with
// data/writer.ts: every strategy, budgets, the output rows and selection.arrow,
// determinism, MGD against a synthetic metagradient with a known optimum, and the
// errors for bad input.
import { IdList } from '../../data/id-list.js';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { tableFromIPC } from 'apache-arrow';
import pl from 'nodejs-polars';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataError, ExitCode, OutputError, UsageError } from '../../core/errors.js';
import { Rng } from '../../core/rng.js';
import { fixedListValues, numericValues } from '../../data/columns.js';
import type { ColumnSpec } from '../../data/format.js';
import { openDataset, readCuration } from '../../data/reader.js';
import { DatasetWriter, writeDataset } from '../../data/writer.js';
import { quietContext } from '../../stages/context.js';
import { SELECTION_FILE, largestRemainder, resolveBudget, select, selectStage, type SelectInput } from '../../stages/select/index.js';
import { mgdSelect, type MetagradFn } from '../../stages/select/mgd.js';
import { scoreOrder, writeKept } from '../../stages/select/passes.js';
import { pruneThenRandom } from '../../stages/select/prune.js';
import { randomK } from '../../stages/select/random.js';
import { shiftGsample } from '../../stages/select/shift-gsample.js';

let tmp: string;
let parent: string;
let sidecar: string;
let parentFp: string;

const N = 120;
const SHAPE: [number, number, number] = [4, 4, 1];
const LEN = 16;
/** Classes 0/1/2 in proportions 3:2:1, interleaved: 60 / 40 / 20 rows. */
const labelOf = (i: number) => (i % 6 < 3 ? 0 : i % 6 < 5 ? 1 : 2);
const idOf = (i: number) => `r${String(i).padStart(3, '0')}`;
/** Distinct scores in a shuffled order. */
const metagradScores = Array.from(new Rng(7).permutation(N), (v) => v / 10 - 3);
/** Heavily tied scores (three values), to test tie-breaking. */
const tiedScores = Array.from({ length: N }, (_, i) => Math.floor(i / 7) % 3);

let counter = 0;
const fresh = (name: string) => path.join(tmp, `${name}-${counter++}`);

async function writeParent(dir: string): Promise<string> {
  const rng = new Rng(1);
  const rows = Array.from({ length: N }, (_, i) => ({
    id: idOf(i),
    label: labelOf(i),
    pixels: Uint8Array.from({ length: LEN }, () => rng.int(256)),
  }));
  const columns: ColumnSpec[] = [
    { name: 'id', kind: 'string' },
    { name: 'label', kind: 'classLabel', names: ['tee', 'bag', 'boot'] },
    { name: 'pixels', kind: 'uint8Vector', length: LEN },
  ];
  const r = await writeDataset(dir, rows, {
    columns, pixelShape: SHAPE, shardRows: 50, batchRows: 16,
    meta: { stage: 'ingest', stageVersion: '1', options: {}, parents: [] },
  });
  return r.fingerprint;
}

/** A score sidecar aligned with the parent's shards [50, 50, 20]; batches of 7 so blocks get sliced. */
async function writeSidecar(dir: string, columns: Record<string, number[]>, opts: { ids?: string[]; sidecarOf?: string } = {}): Promise<string> {
  const ids = opts.ids ?? Array.from({ length: N }, (_, i) => idOf(i));
  const specs: ColumnSpec[] = [{ name: 'id', kind: 'string' }, ...Object.keys(columns).map((name): ColumnSpec => ({ name, kind: name === 'el2n' ? 'float64' : 'float32' }))];
  const rows = ids.map((id, i) => ({ id, ...Object.fromEntries(Object.entries(columns).map(([k, v]) => [k, v[i]])) }));
  await writeDataset(dir, rows, {
    columns: specs, shardSizes: [50, 50, 20], batchRows: 7,
    meta: { stage: 'score', stageVersion: '1', options: { name: path.basename(dir) }, parents: [{ fingerprint: parentFp }], sidecarOf: opts.sidecarOf ?? parentFp },
  });
  return dir;
}

beforeAll(async () => {
  tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'mc-select-'));
  parent = path.join(tmp, 'pool');
  parentFp = await writeParent(parent);
  sidecar = await writeSidecar(path.join(tmp, 'scores'), {
    metagrad: metagradScores,
    el2n: metagradScores.map((s) => -s),
    tied: tiedScores,
  });
});
afterAll(async () => {
  await fsp.rm(tmp, { recursive: true, force: true });
});

function run(options: Omit<SelectInput, 'out'> & { out?: string; metagrad?: MetagradFn }) {
  return select(parent, { out: fresh('sel'), scores: [sidecar], ...options });
}

/** Indices of the k best (or worst) rows, equal scores in row order. */
function expectedRank(scores: number[], k: number, best = true): number[] {
  const order = scores.map((_, i) => i).sort((a, b) => (best ? scores[b] - scores[a] : scores[a] - scores[b]) || a - b);
  return order.slice(0, k).sort((a, b) => a - b);
}

interface OutRows {
  ids: string[];
  labels: number[];
  pixels: Uint8Array[];
  columns: string[];
  metagrad?: number[];
}

async function readOut(dir: string): Promise<OutRows> {
  const ds = await openDataset(dir, { verify: true });
  const out: OutRows = { ids: [], labels: [], pixels: [], columns: ds.columns.map((c) => c.name) };
  if (ds.column('metagrad')) out.metagrad = [];
  for await (const b of ds.blocks()) {
    const px = fixedListValues<Uint8Array>(b.column('pixels'));
    for (let i = 0; i < b.length; i++) {
      out.ids.push(b.column('id').get(i));
      out.pixels.push(px.slice(i * LEN, (i + 1) * LEN));
    }
    out.labels.push(...numericValues(b.column('label')));
    if (out.metagrad) out.metagrad.push(...numericValues(b.column('metagrad')));
  }
  return out;
}

async function readSelection(dir: string) {
  const table = tableFromIPC(await fsp.readFile(path.join(dir, SELECTION_FILE)));
  return {
    types: table.schema.fields.map((f) => `${f.name}:${f.type}`),
    ids: Array.from(table.getChild('id')!.toArray() as string[]),
    index: Array.from(table.getChild('index')!.toArray() as BigInt64Array, Number),
    weight: Array.from(table.getChild('weight')!.toArray() as Float32Array),
  };
}

const kept = (ids: string[]) => ids.map((id) => Number(id.slice(1)));

describe('--order score', () => {
  it('writes the kept rows and selection.arrow best first, ties in row order, the same rows as the parent order', async () => {
    const byParent = await run({ strategy: 'topk', by: 'tied', budget: 0.5 });
    const r = await run({ strategy: 'topk', by: 'tied', budget: 0.5, order: 'score' });
    const want = expectedRank(tiedScores, 60).sort((a, b) => tiedScores[b] - tiedScores[a] || a - b);
    const out = await readOut(r.dir);
    expect(kept(out.ids)).toEqual(want);
    expect((await readSelection(r.dir)).index).toEqual(want);
    expect([...kept(out.ids)].sort((a, b) => a - b)).toEqual(kept((await readOut(byParent.dir)).ids));
    // A different output, so a different fingerprint; the default order's stays what it was.
    expect(r.fingerprint).not.toBe(byParent.fingerprint);
    expect((await readCuration(byParent.dir))!.options).not.toHaveProperty('order');
  });

  it('needs a --by column', async () => {
    await expect(run({ strategy: 'random', budget: 10, order: 'score' })).rejects.toThrow(/--order score orders rows by the --by column/);
  });

  it('stays right when the rows go out in several windows (one pass over the parent each)', async () => {
    const scores = Float64Array.from(metagradScores);
    const order = scoreOrder(Uint32Array.from({ length: N }, (_, i) => i).filter((i) => i % 3 !== 0), scores);
    const ids = new IdList(N);
    ids.push(Array.from({ length: N }, (_, i) => idOf(i)));
    const columns: ColumnSpec[] = (await openDataset(parent)).ownColumns;
    const dir = fresh('windows');
    const writer = await DatasetWriter.create(dir, { columns, pixelShape: SHAPE, meta: { stage: 'test', stageVersion: '1', options: {}, parents: [] } });
    await writeKept(quietContext(), parent, writer, columns, order, ids, undefined, 7);
    await writer.finish();
    const out = await readOut(dir);
    expect(kept(out.ids)).toEqual(Array.from(order));
    const parentRows = await readOut(parent);
    out.ids.forEach((id, j) => expect(out.pixels[j]).toEqual(parentRows.pixels[parentRows.ids.indexOf(id)]));
  });
});

describe('topk / bottomk', () => {
  it('keeps the best rows in the parent order, with their full rows, the score and selection.arrow', async () => {
    const r = await run({ strategy: 'topk', by: 'metagrad', budget: 0.25 });
    const want = expectedRank(metagradScores, 30);
    expect(r.numRows).toBe(30);

    const out = await readOut(r.dir);
    expect(kept(out.ids)).toEqual(want);
    expect(out.columns).toEqual(['id', 'label', 'pixels', 'metagrad']);
    expect(out.labels).toEqual(want.map(labelOf));
    expect(out.metagrad).toEqual(want.map((i) => Math.fround(metagradScores[i])));
    // Pixels are the parent's, byte for byte.
    const parentRows = await readOut(parent);
    out.ids.forEach((id, j) => expect(out.pixels[j]).toEqual(parentRows.pixels[parentRows.ids.indexOf(id)]));

    const sel = await readSelection(r.dir);
    expect(sel.types).toEqual(['id:Utf8', 'index:Int64', 'weight:Float32']);
    expect(sel.index).toEqual(want);
    expect(sel.ids).toEqual(want.map(idOf));
    expect(sel.weight).toEqual(want.map(() => 1));
    // An independent Arrow reader (Polars, Rust) opens it too.
    const df = pl.readIPCStream(await fsp.readFile(r.selectionFile));
    expect(df.dtypes.map(String)).toEqual(['DataType(String)', 'DataType(Int64)', 'DataType(Float32)']);
    expect(df.getColumn('id').toArray()).toEqual(want.map(idOf));

    const cur = (await readCuration(r.dir))!;
    expect(cur.stage).toBe('select');
    expect(cur.parents.map((p) => p.fingerprint)).toEqual([parentFp, (await readCuration(sidecar))!.fingerprint]);
    expect(cur.options).toMatchObject({ strategy: 'topk', by: 'metagrad', budget: 0.25 });
    expect(cur.seed).toBeUndefined();
    expect((await selectStage.prepare([parent], { out: 'x', scores: [sidecar], strategy: 'topk', by: 'metagrad', budget: 0.25 } as any)).fingerprint).toBe(r.fingerprint);

    const s = r.summary;
    expect(s).toMatchObject({ strategy: 'topk', rows_in: N, rows: 30, budget: 30, budget_requested: 0.25 });
    expect(s.per_class!.before).toEqual({ tee: 60, bag: 40, boot: 20 });
    const after = { tee: 0, bag: 0, boot: 0 };
    for (const i of want) after[(['tee', 'bag', 'boot'] as const)[labelOf(i)]]++;
    expect(s.per_class!.after).toEqual(after);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(s.score!.kept_mean).toBeCloseTo(mean(want.map((i) => metagradScores[i])), 5);
    expect(s.score!.dropped_mean).toBeCloseTo(mean(metagradScores.filter((_, i) => !want.includes(i))), 5);
    expect(s.score!.kept_min).toBeGreaterThan(s.score!.dropped_mean!);
  });

  it('takes the budget as a count; bottomk keeps the lowest', async () => {
    const r = await run({ strategy: 'bottomk', by: 'el2n', budget: 10 });
    expect(kept((await readOut(r.dir)).ids)).toEqual(expectedRank(metagradScores.map((s) => -s), 10, false));
    expect(r.summary.budget).toBe(10);
  });

  it('breaks ties by row index', async () => {
    const top = await run({ strategy: 'topk', by: 'tied', budget: 25 });
    expect((await readSelection(top.dir)).index).toEqual(expectedRank(tiedScores, 25));
    const bottom = await run({ strategy: 'bottomk', by: 'tied', budget: 25 });
    expect((await readSelection(bottom.dir)).index).toEqual(expectedRank(tiedScores, 25, false));
  });

  it('reads the score sidecars from the stage inputs too, and only adds the by column when it is not the parent\'s', async () => {
    const r = await selectStage.run(quietContext(), [parent, sidecar], selectStage.options.parse({ out: fresh('in'), strategy: 'topk', by: 'metagrad', budget: 12 }));
    expect((await readSelection(r.dir)).index).toEqual(expectedRank(metagradScores, 12));
    // A random selection without --by keeps exactly the parent's columns.
    const rnd = await select(parent, { out: fresh('rnd'), strategy: 'random', budget: 12 });
    expect((await readOut(rnd.dir)).columns).toEqual(['id', 'label', 'pixels']);
    expect(rnd.summary.score).toBeUndefined();
  });
});

describe('row copying', () => {
  it('copies image structs, nullable strings and the parent\'s own score column as they are', async () => {
    const dir = fresh('images');
    const rows = Array.from({ length: 30 }, (_, i) => ({
      id: `im${i}`,
      label: i % 2,
      caption: i % 3 === 0 ? null : `caption ${i}`,
      image: i % 4 === 0 ? null : { bytes: i % 4 === 1 ? null : Uint8Array.of(i, 1, 2), path: i % 4 === 2 ? null : `d/${i}.png` },
      rating: (i * 7) % 30,
      pixels: Uint8Array.from({ length: LEN }, (_, j) => (i * 31 + j) % 256),
    }));
    await writeDataset(dir, rows, {
      columns: [
        { name: 'id', kind: 'string' },
        { name: 'label', kind: 'classLabel', names: ['a', 'b'] },
        { name: 'caption', kind: 'string', nullable: true },
        { name: 'image', kind: 'image', nullable: true },
        { name: 'rating', kind: 'int64' },
        { name: 'pixels', kind: 'uint8Vector', length: LEN },
      ],
      pixelShape: SHAPE, batchRows: 8,
      meta: { stage: 'test', stageVersion: '1', options: {}, parents: [] },
    });
    const r = await select(dir, { out: fresh('o'), by: 'rating', budget: 12 });
    const want = expectedRank(rows.map((x) => x.rating), 12);
    const ds = await openDataset(r.dir, { verify: true });
    expect(ds.columns.map((c) => c.name)).toEqual(['id', 'label', 'caption', 'image', 'rating', 'pixels']);
    const got: unknown[] = [];
    for await (const b of ds.blocks()) {
      const img = b.column('image');
      const px = fixedListValues<Uint8Array>(b.column('pixels'));
      for (let i = 0; i < b.length; i++) {
        got.push({
          id: b.column('id').get(i),
          label: Number(b.column('label').get(i)),
          caption: b.column('caption').get(i),
          image: img.isValid(i) ? { bytes: img.getChild('bytes')!.get(i), path: img.getChild('path')!.get(i) } : null,
          rating: Number(b.column('rating').get(i)),
          pixels: px.slice(i * LEN, (i + 1) * LEN),
        });
      }
    }
    expect(got).toEqual(want.map((i) => rows[i]));
  });
});

describe('threshold', () => {
  it('keeps the rows scoring at least the threshold, capped by the budget', async () => {
    const r = await run({ strategy: 'threshold', by: 'metagrad', threshold: 5 });
    const pass = metagradScores.map((s, i) => (s >= 5 ? i : -1)).filter((i) => i >= 0);
    expect(pass.length).toBe(40);
    expect((await readSelection(r.dir)).index).toEqual(pass);
    expect(r.summary.budget).toBeNull();

    const capped = await run({ strategy: 'threshold', by: 'metagrad', threshold: 5, budget: 15 });
    expect((await readSelection(capped.dir)).index).toEqual(expectedRank(metagradScores, 15));

    const none = await run({ strategy: 'threshold', by: 'metagrad', threshold: 1e9 });
    expect(none.numRows).toBe(0);
    expect((await readSelection(none.dir)).index).toEqual([]);
  });
});

describe('stratified', () => {
  it('splits by largest remainder, summing to the budget exactly', () => {
    expect(largestRemainder([60, 40, 20], 30)).toEqual([15, 10, 5]);
    expect(largestRemainder([60, 40, 20], 31)).toEqual([16, 10, 5]);
    // 14.5 / 9.67 / 4.83: the two leftover rows go to the largest remainders.
    expect(largestRemainder([60, 40, 20], 29)).toEqual([14, 10, 5]);
    expect(largestRemainder([7, 7, 6], 10)).toEqual([4, 3, 3]);
    expect(largestRemainder([1, 1, 1], 3)).toEqual([1, 1, 1]);
    for (let total = 0; total <= 20; total++) {
      const q = largestRemainder([9, 5, 3, 2, 1], total);
      expect(q.reduce((a, b) => a + b, 0)).toBe(total);
      q.forEach((v, c) => expect(v).toBeLessThanOrEqual([9, 5, 3, 2, 1][c]));
    }
  });

  it('keeps the pool\'s class proportions, each class its best rows', async () => {
    const r = await run({ strategy: 'stratified', by: 'metagrad', budget: 31 });
    expect(r.summary.per_class!.after).toEqual({ tee: 16, bag: 10, boot: 5 });
    const got = (await readSelection(r.dir)).index;
    expect(got.length).toBe(31);
    const quotas = [16, 10, 5];
    for (let c = 0; c < 3; c++) {
      const inClass = metagradScores.map((s, i) => (labelOf(i) === c ? s : -Infinity));
      expect(got.filter((i) => labelOf(i) === c)).toEqual(expectedRank(inClass, quotas[c]));
    }
  });

  it('refuses a dataset without labels', async () => {
    const dir = fresh('nolabel');
    await writeDataset(dir, [{ id: 'a', s: 1 }, { id: 'b', s: 2 }], {
      columns: [{ name: 'id', kind: 'string' }, { name: 's', kind: 'float32' }],
      meta: { stage: 'test', stageVersion: '1', options: {}, parents: [] },
    });
    await expect(select(dir, { out: fresh('o'), strategy: 'stratified', by: 's', budget: 1 })).rejects.toThrow(/integer label column.*id, s/);
  });
});

describe('shift-gsample', () => {
  const pool = Float64Array.from(new Rng(3).permutation(5000), (v) => v);
  const rankOf = new Map(Array.from(pool.keys()).sort((a, b) => pool[b] - pool[a]).map((row, r) => [row, r]));
  const percentiles = (rows: Uint32Array) => Array.from(rows, (i) => (rankOf.get(i)! + 0.5) / pool.length);

  it('never keeps the top block and concentrates around mu', () => {
    const r = shiftGsample(pool, 1000, { shift: 0.1, mu: 0.5, sigma: 0.15 }, new Rng(11));
    expect(r.indices.length).toBe(1000);
    expect(new Set(r.indices).size).toBe(1000);
    expect(r.droppedTop).toBe(500);
    const p = percentiles(r.indices);
    expect(Math.min(...p)).toBeGreaterThan(0.1);
    const mean = p.reduce((a, b) => a + b, 0) / p.length;
    expect(mean).toBeCloseTo(r.keptPercentileMean, 10);
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.02);
    // Deciles of the pool: the two around mu hold the most kept rows, the tails the fewest.
    const deciles = new Array(10).fill(0);
    for (const x of p) deciles[Math.floor(x * 10)]++;
    expect(deciles[0]).toBe(0);
    expect(Math.min(deciles[4], deciles[5])).toBeGreaterThan(Math.max(deciles[1], deciles[2], deciles[7], deciles[8], deciles[9]));
    expect(deciles[4] + deciles[5]).toBeGreaterThan(0.3 * 1000);
    expect(deciles[1] + deciles[9]).toBeLessThan(0.05 * 1000);

    // Moving mu moves the kept block.
    const late = shiftGsample(pool, 1000, { shift: 0.1, mu: 0.8, sigma: 0.1 }, new Rng(11));
    expect(late.keptPercentileMean).toBeGreaterThan(0.72);
    // A narrow sigma with a budget of the whole band takes (almost) exactly the band.
    const narrow = shiftGsample(pool, 500, { shift: 0, mu: 0.5, sigma: 0.01 }, new Rng(11));
    const np = percentiles(narrow.indices);
    expect(np.filter((x) => Math.abs(x - 0.5) < 0.06).length).toBeGreaterThan(480);
  });

  it('runs as a stage: seeded, the top dropped, the parameters recorded', async () => {
    const opts = { strategy: 'shift-gsample', by: 'metagrad', budget: 0.5, seed: 4 } as const;
    const a = await run(opts);
    expect(a.numRows).toBe(60);
    expect(a.summary.shift_gsample).toMatchObject({ shift: 0.1, mu: 0.5, sigma: 0.15, dropped_top: 12 });
    const top12 = new Set(expectedRank(metagradScores, 12));
    const sel = (await readSelection(a.dir)).index;
    expect(sel.some((i) => top12.has(i))).toBe(false);
    const cur = (await readCuration(a.dir))!;
    expect(cur.seed).toBe(4);
    expect(cur.options).toMatchObject({ shift: 0.1, mu: 0.5, sigma: 0.15 });

    await expect(run({ ...opts, budget: 0.95 })).rejects.toThrow(/budget 114 is above the 108 rows left after dropping the top 12/);
  });
});

describe('prune', () => {
  it('never keeps the bottom block, and draws the rest uniformly', () => {
    const pool = Float64Array.from(new Rng(3).permutation(1000), (v) => v);
    const hits = new Float64Array(1000);
    for (let s = 0; s < 200; s++) {
      const r = pruneThenRandom(pool, 400, 0.2, new Rng(s));
      expect(r.droppedBottom).toBe(200);
      expect(new Set(r.indices).size).toBe(400);
      for (const i of r.indices) hits[i]++;
    }
    // Rows scoring 0…199 are the bottom fifth: never kept. The others: 400 of 800, p = 1/2.
    for (let i = 0; i < 1000; i++) {
      if (pool[i] < 200) expect(hits[i]).toBe(0);
      else {
        expect(hits[i]).toBeGreaterThan(60);
        expect(hits[i]).toBeLessThan(140);
      }
    }
    // Kept rows span the whole remaining range, unlike top-k.
    const kept = Array.from(pruneThenRandom(pool, 400, 0.2, new Rng(1)).indices, (i) => pool[i]);
    expect(Math.min(...kept)).toBeLessThan(300);
    expect(Math.max(...kept)).toBeGreaterThan(900);
  });

  it('runs as a stage: seeded, the bottom dropped, the parameters recorded', async () => {
    const opts = { strategy: 'prune', by: 'metagrad', budget: 0.5, seed: 4 } as const;
    const a = await run(opts);
    expect(a.numRows).toBe(60);
    expect(a.summary.prune).toEqual({ drop: 0.2, dropped_bottom: 24 });
    const bottom24 = new Set(expectedRank(metagradScores, 24, false));
    expect((await readSelection(a.dir)).index.some((i) => bottom24.has(i))).toBe(false);
    expect((await readCuration(a.dir))!.options).toMatchObject({ strategy: 'prune', drop: 0.2 });
    const b = await run({ ...opts, drop: 0.4 });
    expect(b.summary.prune).toEqual({ drop: 0.4, dropped_bottom: 48 });
    expect(b.fingerprint).not.toBe(a.fingerprint);

    await expect(run({ ...opts, budget: 100 })).rejects.toThrow(/budget 100 is above the 96 rows left after dropping the bottom 24/);
  });
});

describe('random', () => {
  it('draws uniformly without replacement', () => {
    const hits = new Array(20).fill(0);
    for (let s = 0; s < 400; s++) for (const i of randomK(20, 5, new Rng(s)).indices) hits[i]++;
    // Each row is kept with probability 1/4: 100 of 400 draws, give or take.
    for (const h of hits) {
      expect(h).toBeGreaterThan(60);
      expect(h).toBeLessThan(140);
    }
  });
});

describe('determinism', () => {
  it('gives identical outputs for the same input, options and seed', async () => {
    for (const strategy of ['random', 'shift-gsample', 'prune'] as const) {
      const opts = { strategy, by: 'metagrad', budget: 40, seed: 9 };
      const a = await run(opts);
      const b = await run(opts);
      const c = await run({ ...opts, seed: 10 });
      expect(a.fingerprint).toBe(b.fingerprint);
      expect(await fsp.readFile(a.selectionFile)).toEqual(await fsp.readFile(b.selectionFile));
      expect((await readCuration(a.dir))!.shards).toEqual((await readCuration(b.dir))!.shards);
      expect((await readSelection(c.dir)).index).not.toEqual((await readSelection(a.dir)).index);
      expect(c.fingerprint).not.toBe(a.fingerprint);
    }
    // Deterministic strategies ignore the seed, so their fingerprint does too.
    const t1 = await run({ strategy: 'topk', by: 'metagrad', budget: 40, seed: 1 });
    const t2 = await run({ strategy: 'topk', by: 'metagrad', budget: 40, seed: 2 });
    expect(t1.fingerprint).toBe(t2.fingerprint);
  });
});

describe('mgd', () => {
  /** g = dφ/dc for φ = ½‖c − c*‖²: its minimiser at the budget is c* itself. */
  const towards = (target: Float32Array, calls?: Float32Array[]): MetagradFn => async (c) => {
    calls?.push(c);
    return c.map((v, i) => v - target[i]);
  };

  it('converges to the known best subset', async () => {
    const best = new Float32Array(N);
    for (const i of new Rng(21).permutation(N).subarray(0, 30)) best[i] = 1;
    const calls: Float32Array[] = [];
    const r = await run({ strategy: 'mgd', by: 'metagrad', budget: 30, seed: 2, mask: 1, metagrad: towards(best, calls) });
    const sel = await readSelection(r.dir);
    expect(sel.index).toEqual(Array.from(best.keys()).filter((i) => best[i] === 1));
    expect(sel.weight).toEqual(new Array(30).fill(1));
    // Started from the top-k by the score column; every round kept the budget.
    const first = calls[0];
    expect(Array.from(first.keys()).filter((i) => first[i] === 1)).toEqual(expectedRank(metagradScores, 30));
    for (const c of calls) expect(c.reduce((a, b) => a + b, 0)).toBe(30);
    const h = r.summary.mgd!.history;
    expect(h.at(-1)!.swaps).toBe(0);
    expect(h[0].step).toBe(6);
    expect(h.length).toBeLessThanOrEqual(10);
  });

  it('moves integer counts up to maxCount, from a random start, with selection.arrow weights', async () => {
    const best = new Float32Array(N);
    const order = new Rng(5).permutation(N);
    for (const i of order.subarray(0, 8)) best[i] = 2;
    for (const i of order.subarray(8, 20)) best[i] = 1;
    const r = await run({ strategy: 'mgd', budget: 28, maxCount: 2, rounds: 20, seed: 3, mask: 1, metagrad: towards(best) });
    const sel = await readSelection(r.dir);
    const want = Array.from(best.keys()).filter((i) => best[i] > 0);
    expect(sel.index).toEqual(want);
    expect(sel.weight).toEqual(want.map((i) => best[i]));
    expect(r.numRows).toBe(20);
    expect(r.summary.mgd!.total_count).toBe(28);
  });

  it('stops on a plateau and breaks ties by the seed', async () => {
    const flat: MetagradFn = async (c) => new Float32Array(c.length);
    const r = await mgdSelect(10, Uint32Array.of(0, 1, 2), flat, { rounds: 5, swap: 0.5, maxCount: 1, mask: 1, rng: new Rng(0) });
    expect(Array.from(r.indices)).toEqual([0, 1, 2]);
    expect(r.history.length).toBe(1);
    // Rows 3..9 equally helpful, rows 0..2 equally harmful: which ones swap depends on the seed.
    const g = Float32Array.from({ length: 10 }, (_, i) => (i < 3 ? 1 : -1));
    const pick = async (seed: number) => Array.from((await mgdSelect(10, Uint32Array.of(0, 1, 2), async () => g, { rounds: 1, swap: 0.34, maxCount: 1, mask: 1, rng: new Rng(seed) })).indices);
    const picks = new Set<string>();
    for (let s = 0; s < 8; s++) picks.add((await pick(s)).join());
    expect(picks.size).toBeGreaterThan(1);
    expect(await pick(3)).toEqual(await pick(3));
  });

  it('moves only masked rows, and keeps the iterate with the lowest held-out loss', async () => {
    // Rows 0..4 selected and harmful (g = 1), rows 5..19 helpful (g = −1). With a mask of
    // 0.2 only about a fifth of each side may move in a round.
    const g = Float32Array.from({ length: 20 }, (_, i) => (i < 5 ? 1 : -1));
    const masked = await mgdSelect(20, Uint32Array.of(0, 1, 2, 3, 4), async () => g, { rounds: 1, swap: 1, maxCount: 1, mask: 0.2, rng: new Rng(1) });
    const unmasked = await mgdSelect(20, Uint32Array.of(0, 1, 2, 3, 4), async () => g, { rounds: 1, swap: 1, maxCount: 1, mask: 1, rng: new Rng(1) });
    expect(unmasked.history[0].swaps).toBe(5);
    expect(masked.history[0].swaps).toBeLessThan(5);
    expect(masked.history[0].swaps).toBeGreaterThan(0);
    // Held-out loss by iterate: the round-1 counts are best, the last iterate worse.
    const losses = [0.9, 0.5, 0.8];
    let call = 0;
    const withValidation: MetagradFn = async () => ({ grad: g, validationLoss: losses[call++] });
    const r = await mgdSelect(20, Uint32Array.of(0, 1, 2, 3, 4), withValidation, {
      rounds: 3, swap: 0.2, maxCount: 1, mask: 1, rng: new Rng(2), validate: async () => 0.7,
    });
    expect(r.history.map((h) => h.validationLoss)).toEqual(losses);
    expect(r.chosen).toBe(1);
    expect(r.finalValidationLoss).toBe(0.7);
    // Round 1 started after one swap: four of the first five rows remain.
    expect(Array.from(r.indices).filter((i) => i < 5).length).toBe(4);
    // A last iterate better than every round's, or as good, is kept; of equal rounds the earliest.
    for (const [rounds, last, chosen] of [[[0.9, 0.5, 0.8], 0.4, 3], [[0.6, 0.5, 0.5], 0.55, 1], [[0.6, 0.5, 0.5], 0.5, 3]] as const) {
      let at = 0;
      const run3 = await mgdSelect(20, Uint32Array.of(0, 1, 2, 3, 4), async () => ({ grad: g, validationLoss: rounds[at++] }), {
        rounds: 3, swap: 0.2, maxCount: 1, mask: 1, rng: new Rng(2), validate: async () => last,
      });
      expect(run3.chosen).toBe(chosen);
    }
  });

  it('refuses to run without a metagradient engine, and refuses a bad metagradient', async () => {
    const opts = selectStage.options.parse({ out: fresh('mgd'), strategy: 'mgd', budget: 10 });
    const err = await selectStage.run(quietContext(), [parent], opts).catch((e) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect(err.message).toMatch(/mgd selection needs the score stage's metagradient engine/);
    await expect(run({ strategy: 'mgd', budget: 10, metagrad: async () => new Float32Array(3) })).rejects.toThrow(/3 values for 120 rows/);
    await expect(run({ strategy: 'mgd', budget: 10, metagrad: async (c) => c.map(() => NaN) })).rejects.toThrow(DataError);
  });
});

describe('bad input', () => {
  const usage = async (p: Promise<unknown>, re: RegExp) => {
    const err: any = await p.catch((e) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect(err.exitCode).toBe(ExitCode.usage);
    expect(err.message).toMatch(re);
  };

  it('refuses budgets that are not a fraction in (0, 1] or a count up to the rows', async () => {
    await usage(run({ by: 'metagrad', budget: 1.5 }), /budget 1\.5 is above 1 but not a whole count.*120 rows/);
    await usage(run({ by: 'metagrad', budget: 500 }), /budget 500 is above the dataset's 120 rows/);
    await usage(run({ by: 'metagrad', budget: 0 }), /budget 0 must be positive.*120 rows/);
    await usage(run({ by: 'metagrad', budget: -3 }), /budget -3 must be positive.*120 rows/);
    await usage(run({ by: 'metagrad', budget: 0.001 }), /budget 0\.001 keeps no row of the dataset's 120 rows/);
    expect(resolveBudget(1, 120)).toBe(120);
    expect(resolveBudget(0.5, 7)).toBe(4);
    expect(resolveBudget(120, 120)).toBe(120);
  });

  it('refuses options that do not fit the strategy', async () => {
    await usage(run({ strategy: 'topk', by: 'metagrad', budget: 5, mu: 0.4 }), /"mu" applies only to strategy shift-gsample/);
    await usage(run({ strategy: 'random', budget: 5, drop: 0.2 }), /"drop" applies only to strategy prune/);
    await usage(run({ strategy: 'prune', budget: 5 }), /needs a score column/);
    await usage(run({ strategy: 'topk', budget: 5 }), /needs a score column/);
    await usage(run({ strategy: 'topk', by: 'metagrad' }), /needs a budget/);
    await usage(run({ strategy: 'threshold', by: 'metagrad' }), /needs a threshold/);
    await usage(run({ strategy: 'topk', by: 'metagrad', budget: 5, bogus: 1 } as any), /invalid select options/);
  });

  it('names the available columns for an unknown one', async () => {
    const err = await run({ by: 'metagard', budget: 5 }).catch((e) => e);
    expect(err).toBeInstanceOf(DataError);
    expect(err.message).toMatch(/no column "metagard"; the columns are: id, label, pixels, metagrad, el2n, tied/);
    await expect(select(parent, { out: fresh('o'), by: 'metagrad', budget: 5 })).rejects.toThrow(/attach one with --scores/);
    await expect(run({ by: 'id', budget: 5 })).rejects.toThrow(/column "id" holds string values/);
  });

  it('names the first row whose score is NaN', async () => {
    const scores = [...metagradScores];
    scores[37] = NaN;
    scores[90] = NaN;
    const bad = await writeSidecar(fresh('nan'), { metagrad: scores });
    const err = await select(parent, { out: fresh('o'), scores: [bad], by: 'metagrad', budget: 5 }).catch((e) => e);
    expect(err).toBeInstanceOf(DataError);
    expect(err.message).toMatch(/\(row 37\): score "metagrad" is NaN or missing for id "r037" and 1 more of 120 rows.*Rerun the score stage/);
    expect(err.file).toBe(path.resolve(bad));
  });

  it('refuses a sidecar whose ids do not line up, naming the first mismatch', async () => {
    const ids = Array.from({ length: N }, (_, i) => idOf(i));
    [ids[61], ids[62]] = [ids[62], ids[61]];
    const bad = await writeSidecar(fresh('misaligned'), { metagrad: metagradScores }, { ids });
    const out = fresh('o');
    const err = await select(parent, { out, scores: [bad], by: 'metagrad', budget: 5 }).catch((e) => e);
    expect(err).toBeInstanceOf(DataError);
    expect(err.message).toMatch(/row 61 has id "r062" in the sidecar but "r061" in the dataset/);
    await expect(fsp.access(out)).rejects.toThrow();
  });

  it('refuses a sidecar written for another dataset', async () => {
    const other = await writeSidecar(fresh('other'), { metagrad: metagradScores }, { sidecarOf: '0123456789abcdef' });
    await expect(select(parent, { out: fresh('o'), scores: [other], by: 'metagrad', budget: 5 }))
      .rejects.toThrow(/written for dataset 0123456789abcdef, not for this one/);
  });

  it('refuses an existing output unless overwrite is set', async () => {
    const out = fresh('exists');
    await run({ out, by: 'metagrad', budget: 5 });
    const err = await run({ out, by: 'metagrad', budget: 6 }).catch((e) => e);
    expect(err).toBeInstanceOf(OutputError);
    expect((await readSelection(out)).index.length).toBe(5);
    const r = await run({ out, by: 'metagrad', budget: 6, overwrite: true });
    expect(r.numRows).toBe(6);
    expect((await readSelection(out)).index.length).toBe(6);
  });
});
