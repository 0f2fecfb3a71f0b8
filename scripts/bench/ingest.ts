// Ingest throughput and memory, side by side in one run:
//   1. a folder of 64×64 PNGs ingested at 28×28 grey, against a bare sharp loop
//      (read + decode + greyscale + resize + raw) at the same concurrency;
//   2. the full Fashion-MNIST IDX (when present): ingest train/test, read back;
//   3. peak RSS of a child process ingesting a folder of 200k small PNGs.
// Usage (after `npm run build`):
//   node dist/scripts/bench/ingest.js [--quick] [--out FILE] [--concurrency N]
//                                     [--cache DIR] [--fashion-mnist DIR]
// --quick scales the folders down (2k / 20k images) for a smoke run. Generated
// images are cached (default: <os tmpdir>/metacurate-bench-cache) and reused.
// Prints a table and writes JSON (default .bench/ingest.json).
import { spawn } from 'node:child_process';
import { existsSync, promises as fsp, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { Rng } from '../../core/rng.js';
import { fixedListValues } from '../../data/columns.js';
import { loadExamples } from '../../data/batch.js';
import { openDataset } from '../../data/reader.js';
import { ingest } from '../../stages/ingest.js';
import { benchMeta, peakRssMiB, printTable, writeBenchJson } from './common.js';

const SELF = fileURLToPath(import.meta.url);
const RSS_GOAL_MIB = 500;
const RATIO_GOAL = 0.9;

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    out: { type: 'string' },
    concurrency: { type: 'string', default: '4' },
    cache: { type: 'string', default: path.join(os.tmpdir(), 'metacurate-bench-cache') },
    'fashion-mnist': { type: 'string' },
    // Internal: the child process of the memory measurement.
    'child-ingest': { type: 'string' },
    'child-out': { type: 'string' },
  },
});
const concurrency = Number(args.concurrency);

/** Runs fn(0..n-1) with `concurrency` in flight. */
async function pool(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, n) }, async () => {
    while (next < n) await fn(next++);
  }));
}

/**
 * A folder of `count` seeded RGB PNGs, `size`×`size`, in 10 class sub-folders:
 * a random colour gradient plus noise, so each image decodes differently. Made
 * once per (count, size) and kept in the cache; `.complete` marks a finished one.
 */
async function pngFolder(count: number, size: number): Promise<string> {
  const dir = path.join(args.cache!, `png${size}-${count}`);
  if (existsSync(path.join(dir, '.complete'))) return dir;
  await fsp.rm(dir, { recursive: true, force: true });
  const classes = 10;
  for (let c = 0; c < classes; c++) await fsp.mkdir(path.join(dir, `class${c}`), { recursive: true });
  console.log(`generating ${count.toLocaleString('en-US')} ${size}×${size} PNGs in ${dir} (once) …`);
  const t0 = performance.now();
  await pool(count, 4, async (i) => {
    const rng = Rng.derive(20_240_601, `png${size}/${i}`);
    const base = [rng.int(256), rng.int(256), rng.int(256)];
    const slope = [rng.next() * 4 - 2, rng.next() * 4 - 2, rng.next() * 4 - 2];
    const px = new Uint8Array(size * size * 3);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        for (let ch = 0; ch < 3; ch++) {
          const v = base[ch] + slope[ch] * (ch === 1 ? x : y) + (rng.next() - 0.5) * 40;
          px[(y * size + x) * 3 + ch] = Math.max(0, Math.min(255, Math.round(v)));
        }
      }
    }
    const png = await sharp(px, { raw: { width: size, height: size, channels: 3 } }).png().toBuffer();
    await fsp.writeFile(path.join(dir, `class${i % classes}`, `img${String(i).padStart(7, '0')}.png`), png);
  });
  await fsp.writeFile(path.join(dir, '.complete'), '');
  console.log(`  generated in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return dir;
}

async function listPngs(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (const cls of (await fsp.readdir(dir)).filter((d) => !d.startsWith('.')).sort()) {
    for (const f of (await fsp.readdir(path.join(dir, cls))).sort()) files.push(path.join(dir, cls, f));
  }
  return files;
}

/** The baseline: read + decode + greyscale + resize(28×28) + raw per file, nothing else. */
async function bareSharp(files: string[]): Promise<number> {
  const t0 = performance.now();
  await pool(files.length, concurrency, async (i) => {
    const buf = await fsp.readFile(files[i]);
    await sharp(buf).greyscale().resize(28, 28).raw().toBuffer();
  });
  return (performance.now() - t0) / 1000;
}

async function timeIngest(source: string, out: string, options: Record<string, unknown>): Promise<{ seconds: number; rows: number }> {
  const t0 = performance.now();
  const res = await ingest(source, { out, overwrite: true, concurrency, ...options });
  return { seconds: (performance.now() - t0) / 1000, rows: res.numRows };
}

type Row = Record<string, unknown>;

async function throughput(work: string, rows: Row[]): Promise<Record<string, unknown>> {
  const count = args.quick ? 2_000 : 10_000;
  const dir = await pngFolder(count, 64);
  const files = await listPngs(dir);
  await bareSharp(files.slice(0, 200)); // warm-up: sharp/libvips start-up and the page cache
  // Alternate the two, best of `reps` each: the machine may be shared.
  const reps = args.quick ? 1 : 2;
  const bare: number[] = [];
  const ing: number[] = [];
  let ingestedRows = 0;
  for (let r = 0; r < reps; r++) {
    bare.push(await bareSharp(files));
    const res = await timeIngest(dir, path.join(work, 'png64'), { size: [28, 28], channels: 1 });
    ing.push(res.seconds);
    ingestedRows = res.rows;
  }
  if (ingestedRows !== count) throw new Error(`ingest wrote ${ingestedRows} rows, expected ${count}`);
  const bareIps = count / Math.min(...bare);
  const ingestIps = count / Math.min(...ing);
  const ratio = ingestIps / bareIps;
  rows.push(
    { measure: `bare sharp loop, 64×64 PNG → 28×28 grey`, items: count, seconds: Math.min(...bare), 'items/s': Math.round(bareIps) },
    {
      measure: `ingest folder, 64×64 PNG → 28×28 grey`, items: count, seconds: Math.min(...ing), 'items/s': Math.round(ingestIps),
      result: `${ratio.toFixed(2)}× bare`, goal: `≥ ${RATIO_GOAL}× bare`,
    },
  );
  return { images: count, concurrency, bareSeconds: bare, ingestSeconds: ing, bareImagesPerSec: bareIps, ingestImagesPerSec: ingestIps, ratio, goal: RATIO_GOAL };
}

function fashionMnistDir(): string | undefined {
  const repo = repoRoot();
  const candidates = args['fashion-mnist']
    ? [args['fashion-mnist']]
    : [path.join(repo, 'data/fashion-mnist'), '/usr/share/datasets/fashion-mnist']; // the second: Debian's dataset-fashion-mnist
  return candidates.find((d) => existsSync(path.join(d, 'train-images-idx3-ubyte.gz')) || existsSync(path.join(d, 'train-images-idx3-ubyte')));
}

async function fashionMnist(work: string, rows: Row[]): Promise<Record<string, unknown>> {
  const dir = fashionMnistDir();
  if (!dir) {
    const reason = 'Fashion-MNIST not found (data/fashion-mnist or /usr/share/datasets/fashion-mnist); run scripts/fetch-fashion-mnist or apt-get install dataset-fashion-mnist';
    console.log(`skip: ${reason}`);
    rows.push({ measure: 'Fashion-MNIST', result: 'skipped (not found)' });
    return { skipped: reason };
  }
  const out: Record<string, unknown> = {};
  for (const split of ['train', 'test']) {
    const res = await timeIngest(dir, path.join(work, `fmnist-${split}`), { split, preset: 'fashion-mnist' });
    rows.push({ measure: `ingest Fashion-MNIST ${split} (IDX, 28×28)`, items: res.rows, seconds: res.seconds, 'items/s': Math.round(res.rows / res.seconds) });
    out[`ingest_${split}`] = { rows: res.rows, seconds: res.seconds };
  }
  const train = path.join(work, 'fmnist-train');
  let t0 = performance.now();
  const ex = await loadExamples(await openDataset(train));
  const loadSeconds = (performance.now() - t0) / 1000;
  const n = ex.ids.length;
  rows.push({ measure: 'read train back: loadExamples', items: n, seconds: loadSeconds, 'items/s': Math.round(n / loadSeconds) });
  t0 = performance.now();
  let blockRows = 0;
  let checksum = 0;
  for await (const b of (await openDataset(train)).blocks()) {
    const px = fixedListValues<Uint8Array>(b.column('pixels'));
    checksum += px[px.length - 1];
    blockRows += b.length;
  }
  const blockSeconds = (performance.now() - t0) / 1000;
  if (blockRows !== n || checksum < 0) throw new Error(`blocks() read ${blockRows} rows, loadExamples ${n}`);
  rows.push({ measure: 'read train back: raw blocks()', items: blockRows, seconds: blockSeconds, 'items/s': Math.round(blockRows / blockSeconds) });
  return { ...out, source: dir, loadExamples: { rows: n, seconds: loadSeconds }, blocks: { rows: blockRows, seconds: blockSeconds } };
}

interface ChildReport { rows: number; seconds: number; rssBeforeMiB: number; maxRssMiB: number }

/** In the child: ingest, then report peak RSS (the parent also samples it from outside). */
async function childIngest(source: string, out: string): Promise<void> {
  const rssBeforeMiB = process.memoryUsage().rss / 2 ** 20;
  const res = await timeIngest(source, out, {});
  const report: ChildReport = { rows: res.rows, seconds: res.seconds, rssBeforeMiB, maxRssMiB: peakRssMiB() };
  console.log(JSON.stringify(report));
}

/** Resident set size of another process from /proc (Linux), in MiB; undefined elsewhere. */
function rssOf(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

async function memory(work: string, rows: Row[]): Promise<Record<string, unknown>> {
  const count = args.quick ? 20_000 : 200_000;
  const dir = await pngFolder(count, 32);
  const out = path.join(work, 'png32');
  const child = spawn(process.execPath, [SELF, '--child-ingest', dir, '--child-out', out, '--concurrency', String(concurrency)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let stdout = '';
  child.stdout.on('data', (d) => (stdout += d));
  let sampledPeak = 0;
  const timer = setInterval(() => {
    const rss = child.pid === undefined ? undefined : rssOf(child.pid);
    if (rss !== undefined) sampledPeak = Math.max(sampledPeak, rss);
  }, 50);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  clearInterval(timer);
  if (code !== 0) throw new Error(`the ingest child failed (exit ${code})`);
  const report = JSON.parse(stdout.trim().split('\n').pop()!) as ChildReport;
  if (report.rows !== count) throw new Error(`the child ingested ${report.rows} rows, expected ${count}`);
  const peak = Math.max(report.maxRssMiB, sampledPeak);
  const shardBytes = (await openDataset(out)).shards.reduce((a, s) => a + s.bytes, 0);
  rows.push({
    measure: `ingest folder in a child, ${count.toLocaleString('en-US')} 32×32 PNGs → 32×32×3`,
    items: count, seconds: report.seconds, 'items/s': Math.round(count / report.seconds),
    result: `peak RSS ${peak.toFixed(0)} MiB (output ${(shardBytes / 2 ** 20).toFixed(0)} MiB)`, goal: `< ${RSS_GOAL_MIB} MiB`,
  });
  return { images: count, ...report, sampledPeakRssMiB: sampledPeak, peakRssMiB: peak, outputMiB: shardBytes / 2 ** 20, goalMiB: RSS_GOAL_MIB };
}

/** The repository root: the nearest folder above this file with metacurate's package.json. */
function repoRoot(): string {
  let dir = path.dirname(SELF);
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg) && JSON.parse(readFileSync(pkg, 'utf8')).name === 'metacurate') return dir;
    const up = path.dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
}

async function main(): Promise<void> {
  if (args['child-ingest']) return childIngest(args['child-ingest'], args['child-out']!);
  const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'metacurate-bench-ingest-'));
  const rows: Row[] = [];
  try {
    const results = {
      meta: benchMeta(),
      quick: args.quick,
      concurrency,
      sharpConcurrency: sharp.concurrency(),
      folder: await throughput(work, rows),
      fashionMnist: await fashionMnist(work, rows),
      memory: await memory(work, rows),
    };
    printTable(`ingest (concurrency ${concurrency}, ${results.meta.cpus} CPUs, node ${results.meta.node}${args.quick ? ', --quick' : ''})`, rows);
    const file = await writeBenchJson('ingest', { ...results, rows }, args.out);
    console.log(`wrote ${file}`);
  } finally {
    await fsp.rm(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
