/**
 * Benchmark (issue 4): do curated subsets of Fashion-MNIST train better models
 * than random subsets of the same size, on clean labels and on 20% label noise?
 *
 *   npm run build && node dist/scripts/bench/curation.js [--src DIR] [--workdir DIR] [--out FILE] [--quick] [--report-only]
 *
 * Everything runs as one pipeline built in code (pipeline/runner.ts), so each
 * step is skipped when its output is current: a crashed or stopped run resumes
 * where it stopped, and `--report-only` rebuilds the tables from whatever steps
 * have finished. The pipeline's own report (report.md, budget.svg) is in the
 * workdir beside the outputs.
 *
 * REDUCED protocol (issue 4 asks for the full 55k pool; this machine has 2 CPU
 * cores, wasm runs one thread per process, and it is shared with another long
 * benchmark). Fixed before any result was seen; evaluator settings were not
 * changed after seeing selection results.
 *
 * 1. Data: the full Fashion-MNIST (60,000 train / 10,000 test, IDX .gz) from --src,
 *    data/fashion-mnist or Debian's /usr/share/datasets/fashion-mnist, ingested
 *    into the workdir (default .bench/curation) by the ingest stage.
 * 2. Split (select stage, random, seed 0): a clean *target* set of 2,000 training
 *    rows, and a *pool* of 20,000 rows drawn from the other 58,000 (the pool is
 *    reduced from 55k to 20k for 2-core CPU compute). Test = the full 10k test split.
 * 3. Arms: *clean* = the pool; *noisy* = the pool with 20% symmetric label flips
 *    (scripts/add-label-noise.ts, seed 0). The target stays clean in both arms.
 * 4. Per arm, stage defaults unless said: score el2n, forgetting, metagrad
 *    (target = the target set); rate: train a rater (meta mode, target = the
 *    target set) and rate the pool; MGD selection (select --strategy mgd, target =
 *    the target set, random start) at the 50% budget only, with 24 rounds: one
 *    metagradient on the 20k pool took 16 s here (MGD: 2 rounds in 33 s), so 24
 *    rounds ≈ 6.5 min, within the ~8 min allowed.
 * 5. Selections (select stage) at budgets 10/30/50% of the pool, and 80% on the
 *    noisy arm (all but mgd): random (seed 0); top-k by el2n, forgetting and
 *    metagrad; shift-gsample by the rating (defaults: shift 0.1, μ 0.5, σ 0.15);
 *    mgd (50% only).
 * 6. Evaluation (evaluate stage, test = the test split, no baselines, 3 seeds from
 *    seed 0) of every selection and of each arm's full pool, by two evaluators:
 *      MLP      preset `fast` as it is (MLP 256, Adam 1e-3, batch 128, ~500 steps:
 *               epochs by set size, at least 2);
 *      ConvNet  preset `fast` with model {convnet, width 16, depth 2, instance norm},
 *               batch 128 and epochs = round(200 / batches per epoch), at least 1,
 *               so ≈ 200 steps a model (one model on 2,000 rows, 208 steps: 30 s here).
 *    The random method is the random selection, evaluated the same way.
 * 7. Rank correlations (Spearman): a rater trained in regress mode on the clean
 *    arm's metagrad scores, on its held-out 10% of rows (the rate stage's default
 *    holdout); the meta-mode rater's ratings vs the metagrad scores on all rows
 *    (each arm); metagrad seed 0 vs seed 1 on the clean pool, the ceiling for any
 *    rater.
 * 9. Added after the first full run had shown top-k losing to random everywhere
 *    (declared as such; the evaluators did not change): `prune` selections by
 *    el2n and by metagrad (select --strategy prune: drop the bottom 20% by the
 *    score, then a uniform draw of the budget from the rest, seed 0) at 10/30/50%
 *    in both arms; the ConvNet evaluates them at 50% only (compute). Not at 80%:
 *    with drop 0.2 that is exactly top-k at 80%.
 * 8. Output: mean ± std tables (arm × evaluator; rows = methods, columns = budgets,
 *    Δ vs random), the target checks computed from them, wall time per step;
 *    printed, and written as JSON (.bench/curation.json) and Markdown
 *    (.bench/curation.md).
 *
 * Order of work (so that a run cut short loses the least): scores and raters,
 * selections, MLP evaluations, the rank-correlation extras, MGD, then the ConvNet
 * evaluations.
 *
 * --quick: the built-in data (6,000 / 1,000), a 500-row target and a 2,000-row
 * pool, 2 evaluation seeds, ~60 MLP steps and ~20 ConvNet steps a model, the
 * ConvNet at the 50% budget (and the full pool) only, 2 MGD rounds; a smoke test
 * of the whole path in a few minutes (workdir .bench/curation-quick).
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { exitCodeOf, MissingInputError } from '../../core/errors.js';
import { spearman } from '../../core/metrics.js';
import { Rng } from '../../core/rng.js';
import { openDataset, readCuration } from '../../data/reader.js';
import { parsePipelineConfig, type PipelineStep } from '../../pipeline/config.js';
import { runPipeline } from '../../pipeline/runner.js';
import { budgetPlotSvg, type BudgetSeries } from '../../pipeline/plot.js';
import type { StageContext } from '../../stages/context.js';
import { addLabelNoise, labelNoiseFingerprint } from '../add-label-noise.js';
import { benchMeta, readNumericColumn, fashionMnistCandidates, FASHION_MNIST_IDX, findFashionMnist, isCurrent, printTable, writeBenchJson } from './common.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// dist/scripts/bench → the repository root.
const root = path.resolve(here, '../../..');
const BUILTIN_DIR = path.join(root, 'data', 'builtin', 'fashion-mnist');

/** Everything that decides the numbers; recorded with them. */
const FULL = {
  targetSize: 2000,
  poolSize: 20000,
  noise: { rate: 0.2, seed: 0 },
  budgets: [0.1, 0.3, 0.5],
  /** Noisy arm only, all methods but mgd: "the 80% selection beats all the noisy data". */
  noisyBudget: 0.8,
  mgd: { budget: 0.5, rounds: 24 },
  seeds: 3,
  /** MLP steps a model; undefined = preset `fast` as it is. */
  mlpSteps: undefined as number | undefined,
  convnetSteps: 200,
  /** Budgets the ConvNet evaluates (besides the full pool); undefined = all. */
  convnetBudgets: undefined as number[] | undefined,
  batchSize: 128,
  convnet: { kind: 'convnet', width: 16, depth: 2, norm: 'instance' },
};
const QUICK: typeof FULL = { ...FULL, targetSize: 500, poolSize: 2000, mgd: { budget: 0.5, rounds: 2 }, seeds: 2, mlpSteps: 60, convnetSteps: 20, convnetBudgets: [0.5] };
type Settings = typeof FULL;

const METHODS = ['random', 'el2n', 'forgetting', 'metagrad', 'rater', 'mgd', 'el2n-prune', 'metagrad-prune'] as const;
type Method = (typeof METHODS)[number];
const METHOD_LABEL: Record<Method, string> = {
  random: 'random',
  el2n: 'EL2N top-k',
  forgetting: 'forgetting top-k',
  metagrad: 'metagrad top-k',
  rater: 'rater + Shift-Gsample',
  mgd: 'MGD selection',
  'el2n-prune': 'EL2N prune + random',
  'metagrad-prune': 'metagrad prune + random',
};
/** The prune methods (item 9 of the header) and the score each drops by. */
const PRUNE_BY: Partial<Record<Method, 'el2n' | 'metagrad'>> = { 'el2n-prune': 'el2n', 'metagrad-prune': 'metagrad' };
/** Budgets the ConvNet evaluates the prune methods at. */
const PRUNE_CONVNET_BUDGETS = [0.5];
const ARMS = ['clean', 'noisy'] as const;
type Arm = (typeof ARMS)[number];
const EVALUATORS = ['mlp', 'convnet'] as const;
type Evaluator = (typeof EVALUATORS)[number];

const pct = (b: number) => String(Math.round(b * 100));
const selId = (arm: Arm, m: Method, b: number) => `${arm}.select.${m}.${pct(b)}`;
const evalId = (arm: Arm, ev: Evaluator, set: string) => `${arm}.eval.${ev}.${set}`;

/** The budgets each method is selected at, per arm. */
function budgetsOf(s: Settings, arm: Arm, m: Method): number[] {
  if (m === 'mgd') return [s.mgd.budget];
  if (PRUNE_BY[m]) return s.budgets;
  return arm === 'noisy' ? [...s.budgets, s.noisyBudget] : s.budgets;
}

/** Epochs giving about `steps` steps of `batchSize` on `rows` rows (at least 1). */
function epochsFor(rows: number, steps: number, batchSize: number): number {
  return Math.max(1, Math.round(steps / Math.ceil(rows / batchSize)));
}

function evalOptions(s: Settings, ev: Evaluator, rows: number): Record<string, unknown> {
  const base = { preset: 'fast', baselines: false, seeds: s.seeds, seed: 0 };
  if (ev === 'mlp') return s.mlpSteps === undefined ? base : { ...base, epochs: epochsFor(rows, s.mlpSteps, s.batchSize) };
  return { ...base, model: s.convnet, batchSize: s.batchSize, epochs: epochsFor(rows, s.convnetSteps, s.batchSize) };
}

interface Plan {
  prep: PipelineStep[];
  steps: PipelineStep[];
  out: (id: string) => string;
}

/** The pipeline's steps, in the order they run (see the header). */
function plan(s: Settings, src: string, runDir: string, noisyPool: string): Plan {
  const out = (id: string) => path.join(runDir, id);
  const prep: PipelineStep[] = [
    { id: 'train', stage: 'ingest', inputs: [src], options: { split: 'train', preset: 'fashion-mnist' } },
    { id: 'test', stage: 'ingest', inputs: [src], options: { split: 'test', preset: 'fashion-mnist' } },
    { id: 'target', stage: 'select', inputs: ['${train}'], options: { strategy: 'random', budget: s.targetSize } },
    { id: 'rest', stage: 'select', inputs: ['${train}'], options: { strategy: 'random', budget: s.targetSize, invert: true } },
    { id: 'pool', stage: 'select', inputs: ['${rest}'], options: { strategy: 'random', budget: s.poolSize } },
  ];
  const poolOf = (arm: Arm) => (arm === 'clean' ? '${pool}' : noisyPool);
  const scoring: PipelineStep[] = [];
  const selecting: PipelineStep[] = [];
  const mgd: PipelineStep[] = [];
  const evals: Record<Evaluator, { main: PipelineStep[]; mgd: PipelineStep[] }> = { mlp: { main: [], mgd: [] }, convnet: { main: [], mgd: [] } };
  for (const arm of ARMS) {
    const pool = poolOf(arm);
    for (const method of ['el2n', 'forgetting'] as const) {
      scoring.push({ id: `${arm}.${method}`, stage: 'score', inputs: [pool], options: { method } });
    }
    scoring.push({ id: `${arm}.metagrad`, stage: 'score', inputs: [pool, '${target}'], options: { method: 'metagrad' } });
    scoring.push({ id: `${arm}.rater`, stage: 'rate', inputs: [pool], options: { trainRater: true, mode: 'meta', target: out('target') } });
    for (const ev of EVALUATORS) {
      evals[ev].main.push({ id: evalId(arm, ev, 'full'), stage: 'evaluate', inputs: [pool, '${test}'], options: evalOptions(s, ev, s.poolSize) });
    }
    for (const method of METHODS) {
      for (const b of budgetsOf(s, arm, method)) {
        const id = selId(arm, method, b);
        const step: PipelineStep =
          method === 'random' ? { id, stage: 'select', inputs: [pool], options: { strategy: 'random', budget: b } }
          : method === 'rater' ? { id, stage: 'select', inputs: [pool, `\${${arm}.rater}`], options: { strategy: 'shift-gsample', by: 'rating', budget: b } }
          : method === 'mgd' ? { id, stage: 'select', inputs: [pool], options: { strategy: 'mgd', budget: b, rounds: s.mgd.rounds, target: out('target') } }
          : PRUNE_BY[method] ? { id, stage: 'select', inputs: [pool, `\${${arm}.${PRUNE_BY[method]}}`], options: { strategy: 'prune', by: PRUNE_BY[method], budget: b } }
          : { id, stage: 'select', inputs: [pool, `\${${arm}.${method}}`], options: { strategy: 'topk', by: method, budget: b } };
        (method === 'mgd' ? mgd : selecting).push(step);
        for (const ev of EVALUATORS) {
          if (ev === 'convnet' && s.convnetBudgets && !s.convnetBudgets.includes(b)) continue;
          if (ev === 'convnet' && PRUNE_BY[method] && !PRUNE_CONVNET_BUDGETS.includes(b)) continue;
          const e = { id: evalId(arm, ev, `${method}.${pct(b)}`), stage: 'evaluate', inputs: [`\${${id}}`, '${test}'], options: evalOptions(s, ev, Math.round(b * s.poolSize)) };
          (method === 'mgd' ? evals[ev].mgd : evals[ev].main).push(e);
        }
      }
    }
  }
  const extras: PipelineStep[] = [
    { id: 'clean.metagrad-seed1', stage: 'score', inputs: ['${pool}', '${target}'], options: { method: 'metagrad', seed: 1 } },
    {
      id: 'clean.rater-regress', stage: 'rate', inputs: ['${pool}'],
      options: { trainRater: true, mode: 'regress', scores: out('clean.metagrad'), by: 'metagrad', holdout: 0.1 },
    },
  ];
  // ConvNet evaluations last, the most telling budgets first.
  const order = ['full', '50', '80', '30', '10'];
  const rank = (st: PipelineStep) => order.findIndex((k) => st.id.endsWith(`.${k}`));
  const convnet = [...evals.convnet.main].sort((a, b) => rank(a) - rank(b));
  return { prep, steps: [...prep, ...scoring, ...selecting, ...evals.mlp.main, ...extras, ...mgd, ...evals.mlp.mgd, ...convnet, ...evals.convnet.mgd], out };
}

/** Log lines with a clock; progress at most once a minute per phase. */
function benchContext(): StageContext {
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

/** Fraction of a selection's rows whose label was flipped (noisy arm). */
async function flippedFraction(dir: string): Promise<number> {
  const ds = await openDataset(dir);
  let n = 0;
  let flipped = 0;
  for await (const b of ds.blocks()) {
    const v = b.column('noisy');
    for (let i = 0; i < b.length; i++) {
      n++;
      if (v.get(i)) flipped++;
    }
  }
  return flipped / n;
}

interface Cell {
  mean: number;
  std: number;
  perSeed: number[];
  rows: number;
  steps: number;
  epochs: number;
  seconds: number;
}

async function readEval(dir: string): Promise<Cell | undefined> {
  const c = await readCuration(dir).catch(() => undefined);
  if (!c) return undefined;
  const r = JSON.parse(await fsp.readFile(path.join(dir, 'evaluation.json'), 'utf8')) as {
    accuracy: { mean: number; std: number; perSeed: number[] }; numTrain: number; steps: number; epochs: number; seconds: number;
  };
  return {
    mean: 100 * r.accuracy.mean, std: 100 * r.accuracy.std, perSeed: r.accuracy.perSeed.map((a) => 100 * a),
    rows: r.numTrain, steps: r.steps, epochs: r.epochs, seconds: r.seconds,
  };
}

const fmt = (c: Cell | undefined) => (c ? `${c.mean.toFixed(2)} ± ${c.std.toFixed(2)}` : '–');
const signed = (d: number) => `${d >= 0 ? '+' : '−'}${Math.abs(d).toFixed(2)}`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      src: { type: 'string' },
      workdir: { type: 'string' },
      out: { type: 'string' },
      quick: { type: 'boolean', default: false },
      'report-only': { type: 'boolean', default: false },
    },
  });
  const quick = values.quick;
  const s = quick ? QUICK : FULL;
  const name = quick ? 'curation-quick' : 'curation';
  let src: string;
  if (quick) src = BUILTIN_DIR;
  else {
    const candidates = fashionMnistCandidates(root, values.src);
    const found = findFashionMnist(candidates, ['train', 'test']);
    if (!found) {
      throw new MissingInputError(`the full Fashion-MNIST (${[...FASHION_MNIST_IDX.train, ...FASHION_MNIST_IDX.test].join(', ')}) is not in ${candidates.join(' or ')}`, {
        hint: 'Run scripts/fetch-fashion-mnist, or pass --src DIR (--quick runs on the built-in sample)',
      });
    }
    src = found;
  }
  const work = path.resolve(values.workdir ?? path.join(root, '.bench', name));
  const runDir = path.join(work, 'run');
  const noisyPool = path.join(work, 'pool-noisy');
  const p = plan(s, src, runDir, noisyPool);
  const ctx = benchContext();
  const config = (steps: PipelineStep[]) => parsePipelineConfig({ version: 1, name, workdir: runDir, seed: 0, stages: steps }, { baseDir: root });
  const timesFile = path.join(work, 'wall-times.json');
  const times: Record<string, number> = JSON.parse(await fsp.readFile(timesFile, 'utf8').catch(() => '{}'));
  const t0 = performance.now();

  if (!values['report-only']) {
    console.log(`curation benchmark: ${p.steps.length} steps in ${path.relative(root, runDir)}; source ${src}`);
    await fsp.mkdir(work, { recursive: true });
    await runPipeline(config(p.prep), { ctx });
    const noiseOpts = { out: noisyPool, rate: s.noise.rate, seed: s.noise.seed, overwrite: true };
    if (!(await isCurrent(noisyPool, await labelNoiseFingerprint(p.out('pool'), noiseOpts)))) {
      const tn = performance.now();
      await addLabelNoise(p.out('pool'), noiseOpts);
      times['pool-noisy'] = (performance.now() - tn) / 1000;
    }
    const report = await runPipeline(config(p.steps), { ctx });
    for (const st of report.stages) if (st.status === 'ran') times[st.id] = st.seconds;
    await fsp.writeFile(timesFile, JSON.stringify(times, null, 2) + '\n');
  }

  // ─── the tables, from whatever steps have finished ───
  const result: Record<string, unknown> = { meta: benchMeta(), settings: { ...s, source: quick ? 'built-in sample' : 'full Fashion-MNIST', workdir: path.relative(root, work) } };
  const testRows = await openDataset(p.out('test')).then((d) => d.countRows(), () => undefined);
  const md: string[] = [
    `# Curation benchmark${quick ? ' (--quick smoke run on the built-in sample)' : ''}`, '',
    `Protocol: see the header of scripts/bench/curation.ts. Pool ${s.poolSize.toLocaleString('en-US')} rows, target ${s.targetSize.toLocaleString('en-US')}, test ${testRows?.toLocaleString('en-US') ?? '–'}; test accuracy %, mean ± population std over ${s.seeds} seeds; Δ = vs random at the same budget.`, '',
  ];
  const cells: Record<string, Cell | undefined> = {};
  for (const arm of ARMS) {
    for (const ev of EVALUATORS) {
      cells[evalId(arm, ev, 'full')] = await readEval(p.out(evalId(arm, ev, 'full')));
      for (const m of METHODS) for (const b of budgetsOf(s, arm, m)) cells[evalId(arm, ev, `${m}.${pct(b)}`)] = await readEval(p.out(evalId(arm, ev, `${m}.${pct(b)}`)));
    }
  }
  const cell = (arm: Arm, ev: Evaluator, m: Method, b: number) => cells[evalId(arm, ev, `${m}.${pct(b)}`)];
  const tables: Record<string, unknown> = {};
  const plots: string[] = [];
  for (const arm of ARMS) {
    const budgets = arm === 'noisy' ? [...s.budgets, s.noisyBudget] : s.budgets;
    for (const ev of EVALUATORS) {
      const full = cells[evalId(arm, ev, 'full')];
      const rows = METHODS.map((m) => {
        const row: Record<string, string> = { method: METHOD_LABEL[m] };
        for (const b of budgets) {
          const c = cell(arm, ev, m, b);
          const r = cell(arm, ev, 'random', b);
          row[`${pct(b)}%`] = !budgetsOf(s, arm, m).includes(b) ? '' : c && r && m !== 'random' ? `${fmt(c)} (${signed(c.mean - r.mean)})` : fmt(c);
        }
        return row;
      });
      rows.push({ method: `all ${s.poolSize.toLocaleString('en-US')} rows`, ...Object.fromEntries(budgets.map((b, i) => [`${pct(b)}%`, i === 0 ? fmt(full) : ''])) });
      const title = `${arm} labels, ${ev === 'mlp' ? 'MLP' : 'ConvNet'} evaluator`;
      printTable(title, rows);
      const keys = Object.keys(rows[0]);
      md.push(`## ${title}`, '', `| ${keys.join(' | ')} |`, `|${keys.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${keys.map((k) => r[k] ?? '').join(' | ')} |`), '');
      tables[`${arm}/${ev}`] = {
        full,
        methods: Object.fromEntries(METHODS.map((m) => [m, Object.fromEntries(budgetsOf(s, arm, m).map((b) => [pct(b), cell(arm, ev, m, b) ?? null]))])),
      };
      const series: BudgetSeries[] = METHODS.map((m) => ({
        name: METHOD_LABEL[m],
        points: budgetsOf(s, arm, m).flatMap((b) => {
          const c = cell(arm, ev, m, b);
          return c ? [{ budget: b, mean: c.mean, std: c.std }] : [];
        }),
      })).filter((x) => x.points.length > 0);
      if (series.length > 0) {
        const file = `${name}-${arm}-${ev}.svg`;
        await fsp.mkdir(path.join(root, '.bench'), { recursive: true });
        await fsp.writeFile(path.join(root, '.bench', file), budgetPlotSvg(series, { title, full: full ? { mean: full.mean, std: full.std } : undefined }));
        plots.push(file);
      }
    }
  }
  result.tables = tables;

  // ─── target checks ───
  const checks: Record<string, unknown>[] = [];
  const mdChecks: string[] = ['## Target checks', ''];
  for (const ev of EVALUATORS) {
    for (const m of METHODS.filter((x) => x !== 'random')) {
      const per = budgetsOf(s, 'clean', m).map((b) => {
        const c = cell('clean', ev, m, b);
        const r = cell('clean', ev, 'random', b);
        return { budget: pct(b), delta: c && r ? c.mean - r.mean : null };
      });
      const known = per.filter((x) => x.delta !== null);
      const pass = known.length === per.length ? known.every((x) => x.delta! > 0) : null;
      checks.push({ target: 'clean: beats random at every budget', evaluator: ev, method: m, pass, deltas: per });
      mdChecks.push(`- clean, ${ev}, ${METHOD_LABEL[m]}: beats random at every budget? **${pass === null ? 'incomplete' : pass ? 'yes' : 'no'}** (${per.map((x) => `${x.budget}%: ${x.delta === null ? '–' : signed(x.delta)}`).join(', ')})`);
    }
    const fullNoisy = cells[evalId('noisy', ev, 'full')];
    for (const m of METHODS.filter((x) => x !== 'mgd' && x !== 'random' && !PRUNE_BY[x])) {
      const c = cell('noisy', ev, m, s.noisyBudget);
      const delta = c && fullNoisy ? c.mean - fullNoisy.mean : null;
      checks.push({ target: 'noisy: 80% selection beats all the noisy data', evaluator: ev, method: m, pass: delta === null ? null : delta > 0, delta });
      mdChecks.push(`- noisy, ${ev}, ${METHOD_LABEL[m]}: 80% selection beats all noisy data? **${delta === null ? 'incomplete' : delta > 0 ? 'yes' : 'no'}** (${c ? fmt(c) : '–'} vs ${fmt(fullNoisy)}: ${delta === null ? '–' : signed(delta)})`);
    }
    for (const m of METHODS.filter((x) => x !== 'random')) {
      const c = cell('noisy', ev, m, 0.5);
      const r = cell('noisy', ev, 'random', 0.5);
      const delta = c && r ? c.mean - r.mean : null;
      checks.push({ target: 'noisy: 50% selection − random 50% ≥ 0.5 points', evaluator: ev, method: m, pass: delta === null ? null : delta >= 0.5, delta });
      mdChecks.push(`- noisy, ${ev}, ${METHOD_LABEL[m]}: 50% selection ≥ random 50% + 0.5? **${delta === null ? 'incomplete' : delta >= 0.5 ? 'yes' : 'no'}** (${delta === null ? '–' : signed(delta)})`);
    }
  }
  result.checks = checks;

  // ─── rank correlations ───
  const corr: Record<string, number | null> = {};
  const mdCorr: string[] = ['## Rank correlations (Spearman)', ''];
  const regress = await readCuration(p.out('clean.rater-regress')).catch(() => undefined);
  const details = (regress?.summary as { training?: { details?: { heldOutSpearman?: number; heldOutRows?: number } } } | undefined)?.training?.details;
  corr.regressRaterHeldOut = details?.heldOutSpearman ?? null;
  mdCorr.push(`- regress-mode rater vs clean metagrad scores, held-out rows (${details?.heldOutRows ?? '–'}): **${corr.regressRaterHeldOut?.toFixed(3) ?? '–'}** (target ≥ 0.7)`);
  for (const arm of ARMS) {
    const have = (await readCuration(p.out(`${arm}.rater`)).catch(() => undefined)) && (await readCuration(p.out(`${arm}.metagrad`)).catch(() => undefined));
    corr[`${arm}MetaRaterVsMetagrad`] = have ? spearman(await readNumericColumn(p.out(`${arm}.rater`), 'rating'), await readNumericColumn(p.out(`${arm}.metagrad`), 'metagrad')) : null;
    mdCorr.push(`- meta-mode rater ratings vs metagrad scores, ${arm} arm, all pool rows: ${corr[`${arm}MetaRaterVsMetagrad`]?.toFixed(3) ?? '–'}`);
  }
  const seed1 = await readCuration(p.out('clean.metagrad-seed1')).catch(() => undefined);
  corr.metagradSeed0VsSeed1 = seed1 ? spearman(await readNumericColumn(p.out('clean.metagrad'), 'metagrad'), await readNumericColumn(p.out('clean.metagrad-seed1'), 'metagrad')) : null;
  mdCorr.push(`- metagrad seed 0 vs seed 1, clean pool (the ceiling for any rater): ${corr.metagradSeed0VsSeed1?.toFixed(3) ?? '–'}`);
  if (details?.heldOutRows && seed1) {
    // What the held-out correlation is made of: the same held-out rows as ml/rater/train-regress.ts
    // (its seeded permutation), against seed 1's scores, within classes, and beside a
    // predictor that knows only the label (the class mean of the training rows' scores).
    const seed0 = await readNumericColumn(p.out('clean.metagrad'), 'metagrad');
    const other = await readNumericColumn(p.out('clean.metagrad-seed1'), 'metagrad');
    const ratings = await readNumericColumn(p.out('clean.rater-regress'), 'rating');
    const labels = await readNumericColumn(p.out('pool'), 'label');
    const perm = Rng.derive(0, 'holdout').permutation(seed0.length);
    const held = Array.from(perm.subarray(0, details.heldOutRows));
    const fit = Array.from(perm.subarray(details.heldOutRows));
    const pick = (v: Float64Array, rows: number[]) => Float64Array.from(rows, (i) => v[i]);
    const classes = [...new Set(labels)].sort((a, b) => a - b);
    const classMean = new Map(classes.map((c) => {
      const xs = fit.filter((i) => labels[i] === c).map((i) => seed0[i]);
      return [c, xs.reduce((a, b) => a + b, 0) / xs.length];
    }));
    const withinClass = (a: Float64Array, b: Float64Array, rows: number[]) => {
      const per = classes.map((c) => {
        const rs = rows.filter((i) => labels[i] === c);
        return spearman(pick(a, rs), pick(b, rs));
      });
      return per.reduce((x, y) => x + y, 0) / per.length;
    };
    corr.regressHeldOutRecomputed = spearman(pick(ratings, held), pick(seed0, held));
    corr.regressHeldOutVsSeed1 = spearman(pick(ratings, held), pick(other, held));
    corr.regressHeldOutWithinClass = withinClass(ratings, seed0, held);
    corr.labelOnlyHeldOut = spearman(Float64Array.from(held, (i) => classMean.get(labels[i])!), pick(seed0, held));
    corr.metagradSeedsWithinClass = withinClass(seed0, other, Array.from(perm));
    mdCorr.push(
      `- diagnostics of the held-out number, same held-out rows: recomputed ${corr.regressHeldOutRecomputed.toFixed(3)}; `
        + `ratings vs seed-1 scores ${corr.regressHeldOutVsSeed1.toFixed(3)}; within classes (mean over classes) ${corr.regressHeldOutWithinClass.toFixed(3)}; `
        + `a label-only predictor (class mean of the training rows' scores) ${corr.labelOnlyHeldOut.toFixed(3)}; metagrad seed 0 vs 1 within classes ${corr.metagradSeedsWithinClass.toFixed(3)}`,
    );
  }
  result.spearman = corr;

  // ─── selections: flipped labels kept (noisy arm), wall times ───
  const selections: Record<string, unknown>[] = [];
  for (const arm of ARMS) {
    for (const m of METHODS) {
      for (const b of budgetsOf(s, arm, m)) {
        const dir = p.out(selId(arm, m, b));
        const c = await readCuration(dir).catch(() => undefined);
        if (!c) continue;
        const sum = c.summary as { rows: number; seconds: number; per_class?: { after: Record<string, number> }; mgd?: { rounds_run: number; target_loss?: number[] } };
        const perClass = Object.values(sum.per_class?.after ?? {});
        selections.push({
          arm, method: m, budget: pct(b), rows: sum.rows, seconds: sum.seconds,
          minClassShare: perClass.length ? Math.min(...perClass) / sum.rows : null,
          maxClassShare: perClass.length ? Math.max(...perClass) / sum.rows : null,
          flipped: arm === 'noisy' ? await flippedFraction(dir) : undefined,
          ...(sum.mgd ? { mgdRounds: sum.mgd.rounds_run, mgdTargetLoss: sum.mgd.target_loss } : {}),
        });
      }
    }
  }
  result.selections = selections;
  const stepTimes: Record<string, unknown>[] = [];
  for (const st of p.steps) {
    const c = await readCuration(p.out(st.id)).catch(() => undefined);
    if (!c) continue;
    const summary = c.summary as { seconds?: number; training?: { seconds?: number } } | undefined;
    const cellOf = st.stage === 'evaluate' ? await readEval(p.out(st.id)) : undefined;
    stepTimes.push({
      step: st.id, stage: st.stage,
      seconds: times[st.id] ?? cellOf?.seconds ?? summary?.seconds ?? null,
      ...(summary?.training?.seconds !== undefined ? { trainSeconds: summary.training.seconds } : {}),
      ...(cellOf ? { steps: cellOf.steps, epochs: cellOf.epochs } : {}),
    });
  }
  result.wallTimes = stepTimes;
  const sel = selections.map((x) => ({
    arm: x.arm, method: x.method, budget: x.budget, rows: x.rows,
    'min class %': x.minClassShare === null ? undefined : Number((100 * (x.minClassShare as number)).toFixed(1)),
    'max class %': x.maxClassShare === null ? undefined : Number((100 * (x.maxClassShare as number)).toFixed(1)),
    'flipped %': x.flipped === undefined ? undefined : Number((100 * (x.flipped as number)).toFixed(1)),
    'select s': Number((x.seconds as number).toFixed(1)),
  }));
  printTable('Selections (noisy arm: flipped labels kept; the pool has 20%)', sel);
  const timeRows = stepTimes.filter((t) => t.stage !== 'evaluate').map((t) => ({ step: t.step, stage: t.stage, seconds: t.seconds === null ? undefined : Math.round(t.seconds as number) }));
  printTable('Wall time per step (evaluations: see the JSON)', timeRows);
  const evalTimes = stepTimes.filter((t) => t.stage === 'evaluate');
  const meanEval = (ev: Evaluator) => {
    const xs = evalTimes.filter((t) => String(t.step).includes(`.eval.${ev}.`)).map((t) => t.seconds as number);
    return xs.length ? `${xs.length} evaluations, ${(xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(0)} s each on average (${s.seeds} models each)` : '–';
  };
  console.log(mdChecks.join('\n'));
  console.log(mdCorr.join('\n'));

  const mdTable = (rows: Record<string, unknown>[]) => {
    if (rows.length === 0) return ['(none yet)'];
    const keys = Object.keys(rows[0]);
    return [`| ${keys.join(' | ')} |`, `|${keys.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${keys.map((k) => (r[k] === undefined ? '' : String(r[k]))).join(' | ')} |`)];
  };
  md.push(...mdChecks, '', ...mdCorr, '', '## Selections', '', ...mdTable(sel), '', '## Wall time per step', '', ...mdTable(timeRows), '',
    `Evaluations: MLP ${meanEval('mlp')}; ConvNet ${meanEval('convnet')}.`, '',
    `Plots: ${plots.map((f) => `![${f}](${f})`).join(' ') || '–'}`, '');
  result.seconds = (performance.now() - t0) / 1000;
  const jsonFile = await writeBenchJson(name, result, values.out);
  const mdFile = jsonFile.replace(/\.json$/, '') + '.md';
  await fsp.writeFile(mdFile, md.join('\n'));
  console.log(`wrote ${jsonFile} and ${mdFile}`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(exitCodeOf(err));
});
