/**
 * Shared bits of the benchmarks (scripts/bench/*): machine info, a plain-text
 * table on stdout, and the JSON record in `.bench/<name>.json` (or `--out`).
 */
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

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
