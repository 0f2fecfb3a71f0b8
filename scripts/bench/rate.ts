/**
 * Benchmark (issue 4): the scheduled-job path of `rate`. A rater is trained once
 * on the built-in sample, then rates data ingested later (the full Fashion-MNIST
 * train and test splits, 70,000 rows; the built-in test split when the full data
 * is absent), with 1 and with 2 worker threads, side by side in one run.
 *
 *   npm run build && node dist/scripts/bench/rate.js [--repeats 2] [--src DIR] [--out FILE]
 *
 * Each setting runs --repeats times, alternating 1 and 2 workers so that load from
 * other jobs falls on both alike; the table gives the best rows/s of each, the CPU
 * seconds of this process (all threads) and the speedup of 2 workers over 1. The
 * ratings must be identical whatever the workers (checked here, and in the tests).
 * Prints a table and writes JSON (default .bench/rate.json).
 */
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { exitCodeOf, InternalError } from '../../core/errors.js';
import { rate, RATING_COLUMN } from '../../stages/rate.js';
import { select } from '../../stages/select/index.js';
import { benchMeta, readNumericColumn, ensureIngested, fashionMnistCandidates, findFashionMnist, printTable, writeBenchJson } from './common.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const BUILTIN = path.join(root, 'data', 'builtin', 'fashion-mnist');

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { repeats: { type: 'string', default: '2' }, src: { type: 'string' }, out: { type: 'string' } } });
  const repeats = Number(values.repeats);
  const work = path.join(root, '.bench', 'rate');
  await fsp.mkdir(work, { recursive: true });

  // Train once: the built-in pool of 5,000 rows against a 1,000-row held-out target.
  const train = (await ensureIngested(BUILTIN, 'train', path.join(work, 'builtin-train'))).dir;
  await select(train, { strategy: 'random', budget: 1000, out: path.join(work, 'target'), overwrite: true });
  await select(train, { strategy: 'random', budget: 1000, invert: true, out: path.join(work, 'pool'), overwrite: true });
  const t0 = performance.now();
  await rate(path.join(work, 'pool'), { trainRater: true, target: path.join(work, 'target'), out: path.join(work, 'pool-ratings'), overwrite: true });
  const trainSeconds = (performance.now() - t0) / 1000;
  console.log(`rater trained in ${trainSeconds.toFixed(1)} s`);

  // Data ingested later.
  const src = findFashionMnist(fashionMnistCandidates(root, values.src), ['train', 'test']);
  const later = src
    ? [(await ensureIngested(src, 'train', path.join(work, 'fmnist-train'))).dir, (await ensureIngested(src, 'test', path.join(work, 'fmnist-test'))).dir]
    : [(await ensureIngested(BUILTIN, 'test', path.join(work, 'builtin-test'))).dir];
  const rows: Record<string, unknown>[] = [];
  const reference = new Map<string, Float64Array>();
  for (let r = 0; r < repeats; r++) {
    for (const workers of [1, 2]) {
      for (const dir of later) {
        const out = path.join(work, `${path.basename(dir)}-ratings-${workers}`);
        const cpu0 = process.cpuUsage();
        const w0 = performance.now();
        const res = await rate(dir, { rater: path.join(work, 'pool-ratings'), out, parallelism: workers, overwrite: true });
        const seconds = (performance.now() - w0) / 1000;
        const cpu = process.cpuUsage(cpu0);
        const ratings = await readNumericColumn(out, RATING_COLUMN);
        const ref = reference.get(dir);
        if (!ref) reference.set(dir, ratings);
        else if (ref.length !== ratings.length || ref.some((v, i) => v !== ratings[i])) throw new InternalError(`ratings of ${dir} differ between worker counts`);
        rows.push({
          data: path.basename(dir), workers, repeat: r, rows: res.summary.rows, seconds, 'rows/s': Math.round(res.summary.rows / seconds),
          'cpu s': (cpu.user + cpu.system) / 1e6, load: os.loadavg()[0],
        });
        console.log(`${path.basename(dir)}: ${workers} worker(s), ${res.summary.rows} rows in ${seconds.toFixed(2)} s`);
      }
    }
  }
  const table = later.map((dir) => {
    const best = (w: number) => Math.max(...rows.filter((x) => x.data === path.basename(dir) && x.workers === w).map((x) => x['rows/s'] as number));
    return { data: path.basename(dir), rows: rows.find((x) => x.data === path.basename(dir))!.rows, '1 worker rows/s': best(1), '2 workers rows/s': best(2), speedup: best(2) / best(1) };
  });
  printTable(`rating with a saved rater (trained in ${trainSeconds.toFixed(1)} s on the built-in pool); best of ${repeats}`, table);
  console.log(`wrote ${await writeBenchJson('rate', { meta: benchMeta(), trainSeconds, runs: rows, table }, values.out)}`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(exitCodeOf(err));
});
