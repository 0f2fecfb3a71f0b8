/**
 * Benchmark: how stages scale with the pool. The built-in Fashion-MNIST sample
 * (6,000 rows) is tiled into pools of --rows sizes (deterministic: row i is sample
 * row i mod 6,000, its id `r<i>`), and on each pool these stages run, each in a
 * fresh child process so its peak RSS is its own:
 *
 *   ingest   the pool re-ingested as a dataset source (decode, hash, shard)
 *   loss     score --method loss, 1 epoch (trains on every row, then a scoring pass)
 *   select   topk by loss, half the pool (two streaming passes)
 *   rate     a saved rater (trained once on the sample) rates every row
 *   evaluate one model (the fast preset's MLP, one seed, 1 epoch, no baselines)
 *            trained on the whole pool and tested on the sample (not in the
 *            default list)
 *   metagrad score --method metagrad, one run of 1 epoch against the sample as
 *            the target (not in the default list: it costs about 5 times the
 *            loss run); its REPLAY plan (steps, depth, stored states) is printed
 *
 * It prints time, rows/s and peak RSS per stage and size, and the growth exponent
 * of time against rows fitted between the smallest and the largest size (1 =
 * linear), and writes JSON (default .bench/scale.json). A stage that fails (e.g.
 * out of memory) is reported as such, with its exit code.
 *
 *   npm run build && node dist/scripts/bench/scale.js [--rows 100000,1000000] [--stages ingest,loss,select,rate] [--out FILE]
 */
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchMeta, ensureIngested, printTable, writeBenchJson } from './common.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const BUILTIN = path.join(root, 'data', 'builtin', 'fashion-mnist');
const work = path.join(root, '.bench', 'scale');
const STAGES = ['ingest', 'loss', 'select', 'rate'] as const;
type StageName = (typeof STAGES)[number] | 'metagrad' | 'evaluate';

interface Measured {
  stage: StageName;
  rows: number;
  seconds?: number;
  peakRssMiB?: number;
  /** metagrad: the REPLAY plan of the run (from the score summary). */
  replay?: { steps: number; depth: number; storedAll: boolean; peakStoredStates: number };
  error?: string;
}

const poolDir = (rows: number) => path.join(work, `pool-${rows}`);
const outDir = (stage: string, rows: number) => path.join(work, `${stage}-${rows}`);

/** Writes the tiled pool of `rows` rows (once: reused while its row count matches). */
async function makePool(rows: number): Promise<string> {
  const { openDataset, readCuration } = await import('../../data/reader.js');
  const { writeDataset } = await import('../../data/writer.js');
  const { fixedListValues, numericValues } = await import('../../data/columns.js');
  const dir = poolDir(rows);
  if ((await readCuration(dir))?.num_rows === rows) return dir;
  const sample = await openDataset((await ensureIngested(BUILTIN, 'train', path.join(work, 'sample'))).dir);
  const pixels: Uint8Array[] = [];
  const labels: number[] = [];
  for await (const b of sample.blocks()) {
    const px = fixedListValues<Uint8Array>(b.column('pixels'));
    const lv = numericValues(b.column('label'));
    for (let i = 0; i < b.length; i++) {
      pixels.push(px.slice(i * 784, (i + 1) * 784));
      labels.push(lv[i]);
    }
  }
  const label = sample.column('label')!;
  function* tiled() {
    for (let i = 0; i < rows; i++) yield { id: `r${i}`, label: labels[i % labels.length], pixels: pixels[i % pixels.length] };
  }
  await writeDataset(dir, tiled(), {
    columns: [{ name: 'id', kind: 'string' }, label, { name: 'pixels', kind: 'uint8Vector', length: 784 }],
    pixelShape: [28, 28, 1], overwrite: true,
    meta: { stage: 'bench-tile', stageVersion: '1', options: { rows }, parents: [{ fingerprint: sample.fingerprint }] },
  });
  return dir;
}

/** One stage on one pool, in this (child) process; prints its measurement as a JSON line. */
async function child(stage: StageName, rows: number): Promise<void> {
  const pool = poolDir(rows);
  const t0 = performance.now();
  let replay: Measured['replay'];
  if (stage === 'ingest') {
    const { ingest } = await import('../../stages/ingest.js');
    await ingest(pool, { out: outDir(stage, rows), overwrite: true });
  } else if (stage === 'loss') {
    const { score } = await import('../../stages/score.js');
    await score(pool, { method: 'loss', epochs: 1, out: outDir(stage, rows), overwrite: true });
  } else if (stage === 'select') {
    const { select } = await import('../../stages/select/index.js');
    await select(pool, { scores: [outDir('loss', rows)], strategy: 'topk', by: 'loss', budget: 0.5, out: outDir(stage, rows), overwrite: true });
  } else if (stage === 'evaluate') {
    const { evaluate } = await import('../../stages/evaluate.js');
    await evaluate(pool, { preset: 'fast', seeds: 1, epochs: 1, baselines: false, test: path.join(work, 'sample'), out: outDir(stage, rows), overwrite: true });
  } else if (stage === 'metagrad') {
    const { score } = await import('../../stages/score.js');
    const r = await score(pool, { method: 'metagrad', seeds: 1, epochs: 1, target: path.join(work, 'sample'), out: outDir(stage, rows), overwrite: true });
    const d = (r.summary as { details?: { replay?: Measured['replay'] }[] }).details?.[0]?.replay;
    if (d) replay = { steps: d.steps, depth: d.depth, storedAll: d.storedAll, peakStoredStates: d.peakStoredStates };
  } else {
    const { rate } = await import('../../stages/rate.js');
    await rate(pool, { rater: path.join(work, 'rater'), out: outDir(stage, rows), overwrite: true });
  }
  const m: Measured = { stage, rows, seconds: (performance.now() - t0) / 1000, peakRssMiB: process.resourceUsage().maxRSS / 1024, replay };
  process.stdout.write(JSON.stringify(m) + '\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rows: { type: 'string', default: '100000,1000000' },
      stages: { type: 'string', default: STAGES.join(',') },
      out: { type: 'string' },
      child: { type: 'string' },
    },
  });
  if (values.child) {
    const [stage, rows] = values.child.split(':');
    return child(stage as StageName, Number(rows));
  }
  const sizes = values.rows!.split(',').map(Number).sort((a, b) => a - b);
  const stages = values.stages!.split(',') as StageName[];
  await fsp.mkdir(work, { recursive: true });
  if (stages.includes('rate')) {
    // The rater: trained once, on the sample against its scores (a few seconds).
    const { score } = await import('../../stages/score.js');
    const { rate } = await import('../../stages/rate.js');
    const sample = (await ensureIngested(BUILTIN, 'train', path.join(work, 'sample'))).dir;
    const scores = await score(sample, { method: 'loss', epochs: 1, out: path.join(work, 'sample-loss'), overwrite: true });
    await rate(sample, { trainRater: true, mode: 'regress', scores: scores.dir, by: 'loss', raterOut: path.join(work, 'rater'), out: path.join(work, 'sample-ratings'), overwrite: true });
  }
  const self = fileURLToPath(import.meta.url);
  const measured: Measured[] = [];
  for (const rows of sizes) {
    await makePool(rows);
    for (const stage of stages) {
      try {
        const stdout = execFileSync(process.execPath, [self, '--child', `${stage}:${rows}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 });
        measured.push(JSON.parse(stdout.trim().split('\n').pop()!));
      } catch (err) {
        measured.push({ stage, rows, error: `exit ${(err as { status?: number }).status ?? '?'}` });
      }
    }
  }
  const anyReplay = measured.some((m) => m.replay);
  const rowsOut = measured.map((m) => ({
    stage: m.stage,
    rows: m.rows,
    seconds: m.seconds?.toFixed(1) ?? m.error,
    'rows/s': m.seconds ? Math.round(m.rows / m.seconds) : '',
    'peak RSS MiB': m.peakRssMiB?.toFixed(0) ?? '',
    // The column appears when a metagrad row is in the table, blank for the other stages.
    ...(anyReplay ? { 'REPLAY T / depth / states': m.replay ? `${m.replay.steps} / ${m.replay.depth} / ${m.replay.storedAll ? 'all' : m.replay.peakStoredStates}` : '' } : {}),
  }));
  // Growth exponent of time against rows between the smallest and the largest pool.
  const exponents = stages.map((stage) => {
    const [a, b] = [measured.find((m) => m.stage === stage && m.rows === sizes[0]), measured.find((m) => m.stage === stage && m.rows === sizes[sizes.length - 1])];
    const k = a?.seconds && b?.seconds && sizes.length > 1 ? Math.log(b.seconds / a.seconds) / Math.log(b.rows / a.rows) : undefined;
    return { stage, exponent: k === undefined ? 'n/a' : k.toFixed(2) };
  });
  printTable(`stages against pool size (tiled Fashion-MNIST, 28×28 grey)`, rowsOut);
  printTable(`growth exponent of time, ${sizes[0]} → ${sizes[sizes.length - 1]} rows (1 = linear)`, exponents);
  const file = await writeBenchJson('scale', { meta: benchMeta(), sizes, measured, exponents }, values.out);
  console.log(`wrote ${file}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
