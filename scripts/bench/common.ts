/**
 * Shared bits of the benchmarks (scripts/bench/*): machine info, a plain-text
 * table on stdout, the JSON record in `.bench/<name>.json` (or `--out`), and
 * finding and ingesting the full Fashion-MNIST.
 */
import { existsSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { numericValues } from '../../data/columns.js';
import { openDataset, type Dataset } from '../../data/reader.js';
import { ingest, ingestOptions, ingestStage } from '../../stages/ingest.js';

export interface BenchMeta {
  date: string;
  node: string;
  platform: string;
  arch: string;
  cpus: number;
  cpuModel: string;
  totalMemMiB: number;
}

/** What the numbers were measured on; every benchmark JSON records it. */
export function benchMeta(): BenchMeta {
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    node: process.version,
    platform: os.platform(),
    arch: os.arch(),
    cpus: cpus.length,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    totalMemMiB: Math.round(os.totalmem() / 2 ** 20),
  };
}

function cell(v: unknown): string {
  if (v === undefined || v === null) return '–';
  if (typeof v === 'number') return Number.isInteger(v) ? v.toLocaleString('en-US') : v.toFixed(2);
  return String(v);
}

/** Prints `rows` as an aligned table under `title` (columns: the union of the rows' keys, in first-seen order). */
export function printTable(title: string, rows: Record<string, unknown>[]): void {
  const keys: string[] = [];
  for (const r of rows) for (const k of Object.keys(r)) if (!keys.includes(k)) keys.push(k);
  const cells = rows.map((r) => keys.map((k) => cell(r[k])));
  const widths = keys.map((k, i) => Math.max(k.length, ...cells.map((c) => c[i].length)));
  // Numbers right-aligned, text left-aligned.
  const numeric = keys.map((k) => rows.every((r) => r[k] === undefined || r[k] === null || typeof r[k] === 'number'));
  const line = (vals: string[]) => vals.map((v, i) => (numeric[i] ? v.padStart(widths[i]) : v.padEnd(widths[i]))).join('  ');
  console.log(`\n${title}`);
  console.log(line(keys));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const c of cells) console.log(line(c));
  console.log();
}

/** Writes `data` as JSON to `out`, or to `.bench/<name>.json`; returns the file written. */
export async function writeBenchJson(name: string, data: unknown, out?: string): Promise<string> {
  const file = path.resolve(out ?? path.join('.bench', `${name}.json`));
  await fsp.mkdir(path.dirname(file), { recursive: true });
  await fsp.writeFile(file, JSON.stringify(data, null, 2) + '\n');
  return file;
}

/** Peak resident set size of this process so far, in MiB. */
export function peakRssMiB(): number {
  // maxRSS is in KiB.
  return process.resourceUsage().maxRSS / 1024;
}

/** Debian's dataset-fashion-mnist package installs the IDX files here. */
export const FASHION_MNIST_SYSTEM_DIR = '/usr/share/datasets/fashion-mnist';

/** The gzipped IDX files of each Fashion-MNIST split. */
export const FASHION_MNIST_IDX = {
  train: ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'],
  test: ['t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'],
} as const;

/**
 * Where to look for the full Fashion-MNIST: `explicit` alone when given, else
 * `<root>/data/fashion-mnist` (scripts/fetch-fashion-mnist) and Debian's directory.
 */
export function fashionMnistCandidates(root: string, explicit?: string): string[] {
  return explicit ? [explicit] : [path.join(root, 'data', 'fashion-mnist'), FASHION_MNIST_SYSTEM_DIR];
}

/** The first of `candidates` holding the IDX files of every split in `splits`, or undefined. */
export function findFashionMnist(candidates: string[], splits: readonly ('train' | 'test')[]): string | undefined {
  const files = splits.flatMap((s) => FASHION_MNIST_IDX[s]);
  return candidates.find((dir) => files.every((f) => existsSync(path.join(dir, f))));
}

/** True when `dir` is a dataset with this fingerprint. */
export async function isCurrent(dir: string, fingerprint: string): Promise<boolean> {
  try {
    return (await openDataset(dir)).fingerprint === fingerprint;
  } catch {
    return false;
  }
}

/** Ingests one split of the Fashion-MNIST IDX files in `src` into `out`, unless a current copy is there. */
export async function ensureIngested(src: string, split: 'train' | 'test', out: string): Promise<Dataset> {
  const opts = ingestOptions.parse({ out, split, preset: 'fashion-mnist', overwrite: true });
  if (!(await isCurrent(out, (await ingestStage.prepare([src], opts)).fingerprint))) {
    console.log(`ingesting ${src} (${split}) → ${path.relative(process.cwd(), out) || out}`);
    await ingest(src, opts);
  }
  return openDataset(out);
}

/** One numeric column of a dataset (with its sidecars), whole, as float64. */
export async function readNumericColumn(dir: string, column: string): Promise<Float64Array> {
  const ds = await openDataset(dir);
  const out = new Float64Array(await ds.countRows());
  for await (const block of ds.blocks()) out.set(numericValues(block.column(column)), block.offset);
  return out;
}
