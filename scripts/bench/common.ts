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
import { parsePipelineConfig } from '../../pipeline/config.js';
import { runPipeline } from '../../pipeline/runner.js';
import type { StageContext } from '../../stages/context.js';
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

/** The curation benchmarks' splits: 'dev' decides settings and recipes, 'final' only measures them. */
export type CurationProtocol = 'dev' | 'final';

/** The planted arms every curation benchmark uses (plant stage options). */
export const CURATION_ARMS = {
  clean: { labelNoise: 0, seed: 0 },
  noisy: { labelNoise: 0.2, seed: 1 },
  shifted: { offDomain: 0.5, transform: 'invert', labelNoise: 0.3, seed: 2 },
} as const;
export type CurationArm = keyof typeof CURATION_ARMS;

export interface CurationData {
  /** Where models are tested: a held-out part of train (dev), or the test split (final). */
  evalTest: string;
  /** The clean target set the target-aware methods measure φ on. */
  target: string;
  /** The pool of each arm, with the `planted` truth column. */
  arms: Record<CurationArm, string>;
  poolRows: number;
}

/**
 * Builds the splits as a pipeline (so they are made once and then current):
 * - dev: 10,000 training rows held out as the test of dev runs (seed 100); of the
 *   other 50,000, a clean 5,000-row target (seed 101) and a 45,000-row pool;
 * - final: a clean 5,000-row target (seed 0) and the other 55,000 as the pool; the
 *   test split is the test.
 * Each arm plants its problems into the pool (CURATION_ARMS). The test split is
 * never read by a dev run.
 */
export async function curationData(src: string, workdir: string, protocol: CurationProtocol, ctx?: StageContext): Promise<CurationData> {
  const rel = (id: string) => `\${${id}}`;
  const carve = protocol === 'dev'
    ? [
      { id: 'devtest', stage: 'select', inputs: [rel('train')], options: { strategy: 'random', budget: 10000, seed: 100 } },
      { id: 'rest', stage: 'select', inputs: [rel('train')], options: { strategy: 'random', budget: 10000, seed: 100, invert: true } },
      { id: 'target', stage: 'select', inputs: [rel('rest')], options: { strategy: 'random', budget: 5000, seed: 101 } },
      { id: 'pool', stage: 'select', inputs: [rel('rest')], options: { strategy: 'random', budget: 5000, seed: 101, invert: true } },
    ]
    : [
      { id: 'test', stage: 'ingest', inputs: [src], options: { split: 'test', preset: 'fashion-mnist' } },
      { id: 'target', stage: 'select', inputs: [rel('train')], options: { strategy: 'random', budget: 5000, seed: 0 } },
      { id: 'pool', stage: 'select', inputs: [rel('train')], options: { strategy: 'random', budget: 5000, seed: 0, invert: true } },
    ];
  const arms = Object.entries(CURATION_ARMS).map(([arm, o]) => ({ id: `pool-${arm}`, stage: 'plant', inputs: [rel('pool')], options: o }));
  const config = parsePipelineConfig({
    version: 1,
    name: `curation-data-${protocol}`,
    workdir,
    stages: [{ id: 'train', stage: 'ingest', inputs: [src], options: { split: 'train', preset: 'fashion-mnist' } }, ...carve, ...arms],
  }, { baseDir: process.cwd() });
  await runPipeline(config, { ctx });
  const at = (id: string) => path.resolve(workdir, id);
  return {
    evalTest: at(protocol === 'dev' ? 'devtest' : 'test'),
    target: at('target'),
    arms: { clean: at('pool-clean'), noisy: at('pool-noisy'), shifted: at('pool-shifted') },
    poolRows: await (await openDataset(at('pool'))).countRows(),
  };
}

/** Log lines with a clock; progress at most once a minute per phase. */
export function benchContext(): StageContext {
  const stamp = () => new Date().toISOString().slice(11, 19);
  const line = (level: string) => (o: object | string, msg?: string) => {
    if (level === 'debug') return;
    const text = typeof o === 'string' ? o : `${msg ?? ''} ${JSON.stringify(o)}`;
    console.log(`[${stamp()}] ${level === 'info' ? '' : `${level.toUpperCase()} `}${text}`);
  };
  return {
    log: { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error') },
    progress(label, total) {
      let done = 0;
      let all = total ?? 0;
      let last = Date.now();
      return {
        tick(n = 1) {
          done += n;
          if (Date.now() - last > 60_000) {
            last = Date.now();
            console.log(`[${stamp()}]   ${label}: ${done}/${all || '?'}`);
          }
        },
        setTotal(t) {
          all = t;
        },
        done() {},
      };
    },
  };
}
