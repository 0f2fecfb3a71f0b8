/**
 * The score methods and the one place that runs them. Adding a method is one
 * file in this folder plus one line in SCORERS (or, from outside the package, a
 * plug-in: registerScorer). The dispatcher creates the seed's trainer, runs the
 * method and orients its raw quantity so that higher always means "keep"; the
 * seed loop and the way seeds are combined live here too (the score stage runs
 * the same per-seed function in worker threads).
 */
import { DataError, UsageError } from '../../core/errors.js';
import type { Examples } from '../../data/batch.js';
import { createTrainer, type SpreadOptions, type TrainConfig } from '../train.js';
import { Work } from './common.js';
import { aumScorer } from './aum.js';
import { confidentScorer } from './confident.js';
import { el2nScorer } from './el2n.js';
import { forgettingScorer } from './forgetting.js';
import { grandScorer } from './grand.js';
import { lossScorer } from './loss.js';
import { metagradScorer } from './metagrad.js';
import { tracinScorer } from './tracin.js';
import { averageRanks, spearman } from '../../core/metrics.js';
import type { ExtraColumn, Scorer, ScorerSettings } from './types.js';

export type { ExtraColumn, Scorer, ScorerInput, ScorerOutput, ScorerSettings, TrainDefaults } from './types.js';
export { Work } from './common.js';
export { METAGRAD_DEFAULTS, METAGRAD_TRAIN_DEFAULTS, REPLAY_DEFAULTS } from './metagrad.js';
export { BASELINE_TRAIN_DEFAULTS } from './common.js';
export { el2n } from './el2n.js';
export { ForgettingTracker } from './forgetting.js';
export { forwardWithTaps, perExampleGradDots, perExampleGradNorms, tapShapes } from './pergrad.js';

/** The built-in methods, in the order help and docs list them. */
const SCORERS: Scorer[] = [metagradScorer, lossScorer, el2nScorer, grandScorer, forgettingScorer, tracinScorer, aumScorer, confidentScorer];

const registry = new Map<string, Scorer>(SCORERS.map((s) => [s.name, s]));

/** Adds a score method (a plug-in); its name must be new. */
export function registerScorer(scorer: Scorer): void {
  const existing = registry.get(scorer.name);
  if (existing === scorer) return;
  if (existing) throw new UsageError(`a score method named "${scorer.name}" is already registered`, { hint: 'Give the plug-in\'s scorer another name' });
  if (!/^[a-z][a-z0-9_-]*$/.test(scorer.name)) {
    throw new UsageError(`score method name "${scorer.name}" must be lower case letters, digits, "_" or "-"`, { hint: 'It names the score column' });
  }
  registry.set(scorer.name, scorer);
}

const pluginModules: string[] = [];

/**
 * Imports a plug-in module and registers the scorers it exports as `scorers`.
 * Worker threads import the same modules (pluginModules), so plug-in methods
 * run there like the built-in ones.
 */
export async function loadScorerPlugin(url: string): Promise<number> {
  const mod = (await import(url)) as { scorers?: Scorer[] };
  for (const s of mod.scorers ?? []) registerScorer(s);
  if (!pluginModules.includes(url)) pluginModules.push(url);
  return mod.scorers?.length ?? 0;
}

/** The plug-in modules loaded so far (file URLs), for worker threads to load too. */
export function pluginModuleUrls(): string[] {
  return [...pluginModules];
}

export function allScorers(): Scorer[] {
  return [...registry.values()];
}

export function scorerNames(): string[] {
  return [...registry.keys()];
}

export function getScorer(name: string): Scorer {
  const s = registry.get(name);
  if (!s) throw new UsageError(`unknown score method "${name}"`, { hint: `Use one of ${scorerNames().join(', ')}` });
  return s;
}

/** What one seed's scoring run needs, as plain data (it crosses to worker threads). */
export interface ScoreSettings extends ScorerSettings {
  method: string;
  /** The scored run, its seed included. */
  train: TrainConfig;
}

export interface ScoreOutput {
  /** One per training row, higher = more valuable to keep. */
  scores: Float32Array;
  /** The method's own quantity, unoriented. */
  raw: Float32Array;
  details: Record<string, unknown>;
  columns?: Record<string, ExtraColumn>;
}

/** Orients a raw quantity so that higher = keep (0 − v, not −v: no −0 in the output). */
export function orient(scorer: Scorer, raw: Float32Array): Float32Array {
  return scorer.orientation === 1 ? raw.slice() : raw.map((v) => 0 - v);
}

/** Scores every row of `train` with one seed's run (the unit the score stage runs in a worker). */
export async function computeScores(
  train: Examples,
  target: Examples | undefined,
  s: ScoreSettings,
  onProgress?: (done: number, total: number) => void,
  signal?: AbortSignal,
  spread?: SpreadOptions,
): Promise<ScoreOutput> {
  const scorer = getScorer(s.method);
  if (scorer.needsTarget && !target) {
    throw new UsageError(`${scorer.name} scores need a target set`, { hint: 'Pass --target <dataset> (a clean held-out set)' });
  }
  const started = performance.now();
  const trainer = createTrainer(s.train, train, { spread });
  const input = { train, target, trainer, settings: s };
  const work = new Work(scorer.work(input), onProgress, signal);
  const { raw, details, columns } = await scorer.score({ ...input, work });
  if (raw.length !== train.ids.length) {
    throw new UsageError(`score method ${scorer.name} returned ${raw.length} values for ${train.ids.length} rows`);
  }
  const bad = raw.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) {
    throw new DataError(`the ${scorer.name} score of row ${bad} (id ${train.ids[bad]}) is ${raw[bad]}`, {
      hint: 'Training was unstable: lower the learning rate (--lr) or use fewer epochs',
    });
  }
  const threads = work.threads > 1 ? { threads: work.threads } : {};
  return { scores: orient(scorer, raw), raw, columns, details: { ...details, seed: trainer.config.seed, ...threads, seconds: (performance.now() - started) / 1000 } };
}

/** The seeds a run averages: `seeds` of them (default the method's), from `first`. */
export function seedList(method: string, first: number, seeds?: number): number[] {
  const n = seeds ?? getScorer(method).defaultSeeds;
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`seeds must be a positive integer, got ${n}`);
  return Array.from({ length: n }, (_, i) => first + i);
}

export interface Combined {
  scores: Float32Array;
  /** Population std over seeds of the combined quantity (absent for one seed). */
  std?: Float32Array;
}

/** Percentile ranks in (0, 1), ties sharing their mean rank: a scale-free view of one run's scores. */
export function percentileRanks(values: ArrayLike<number>): Float32Array {
  const r = averageRanks(values);
  return Float32Array.from(r, (v) => (v - 0.5) / r.length);
}

/** Per-row mean and population std over seeds, of the scores themselves or of their percentile ranks. */
export function combineSeeds(runs: Float32Array[], how: 'mean' | 'rank' = 'mean'): Combined {
  const values = how === 'rank' ? runs.map(percentileRanks) : runs;
  const n = values[0]?.length ?? 0;
  const mean = new Float32Array(n);
  const std = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (const r of values) s += r[i];
    const m = s / values.length;
    let v = 0;
    for (const r of values) v += (r[i] - m) ** 2;
    mean[i] = m;
    std[i] = Math.sqrt(v / values.length);
  }
  return values.length > 1 ? { scores: mean, std } : { scores: mean };
}

/**
 * How reproducible an ensemble is: the Spearman correlation between the
 * combinations of its even and odd runs (each half the size), and the
 * Spearman–Brown estimate for two independent ensembles of the full size.
 */
export function splitHalfAgreement(runs: Float32Array[], how: 'mean' | 'rank'): { splitHalf: number; fullEstimate: number } | undefined {
  if (runs.length < 2) return undefined;
  const even = combineSeeds(runs.filter((_, i) => i % 2 === 0), how).scores;
  const odd = combineSeeds(runs.filter((_, i) => i % 2 === 1), how).scores;
  const r = spearman(even, odd);
  return { splitHalf: r, fullEstimate: r > -1 ? (2 * r) / (1 + r) : -1 };
}

/** Combines one extra column over seeds: the mean, or the most common value (ties: the smallest). */
export function combineColumn(runs: Float32Array[], how: ExtraColumn['combine']): Float32Array {
  if (how === 'mean') return combineSeeds(runs).scores;
  const n = runs[0]?.length ?? 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const counts = new Map<number, number>();
    for (const r of runs) counts.set(r[i], (counts.get(r[i]) ?? 0) + 1);
    let best = Infinity;
    let most = 0;
    for (const [v, c] of counts) if (c > most || (c === most && v < best)) [best, most] = [v, c];
    out[i] = best;
  }
  return out;
}

/** The extra columns of several seeds' outputs, each combined its own way. */
export function combineColumns(outputs: { columns?: Record<string, ExtraColumn> }[]): Record<string, Float32Array> {
  const first = outputs[0]?.columns ?? {};
  return Object.fromEntries(Object.entries(first).map(([name, col]) => [name, combineColumn(outputs.map((o) => o.columns![name].values), col.combine)]));
}

/** In-process: scores with every seed one after another and combines them (library and benches). */
export async function scoreSeeds(
  train: Examples,
  target: Examples | undefined,
  s: ScoreSettings & { seeds?: number },
  opts: { onProgress?: (done: number, total: number) => void; signal?: AbortSignal } = {},
): Promise<ScoreOutput & Combined & { runs: ScoreOutput[] }> {
  const seeds = seedList(s.method, s.train.seed ?? 0, s.seeds);
  const runs: ScoreOutput[] = [];
  const { onProgress } = opts;
  for (const [j, seed] of seeds.entries()) {
    const progress = onProgress && ((d: number, t: number) => onProgress(j * t + d, seeds.length * t));
    runs.push(await computeScores(train, target, { ...s, train: { ...s.train, seed } }, progress, opts.signal));
  }
  const how = getScorer(s.method).combine ?? 'mean';
  const combined = combineSeeds(runs.map((r) => r.scores), how);
  const raw = combineSeeds(runs.map((r) => r.raw)).scores;
  const agreement = splitHalfAgreement(runs.map((r) => r.scores), how);
  return { ...combined, raw, details: { method: s.method, seeds, runs: runs.map((r) => r.details), agreement }, runs };
}
