/**
 * Benchmark: do curated subsets train better models than random subsets of the
 * same size and than the whole pool — on a clean pool, a pool with 20% flipped
 * labels, and a shifted pool (half of it off-domain with correct labels, the
 * in-domain half with 30% flipped labels)?
 *
 *   npm run build && node dist/scripts/bench/curation.js --protocol dev|final [--src DIR] [--arms clean,noisy,shifted] [--methods curate,...] [--report-only]
 *
 * Everything runs as pipelines built in code, so a step is skipped when its
 * output is current: a stopped run resumes, and --report-only rebuilds the
 * tables from what has finished. --methods limits the selections run to those
 * named (random always runs): a changed recipe reruns only its own cells.
 *
 * Protocol, fixed before any result of this version was seen:
 * 1. Data (scripts/bench/common.ts, curationData): full Fashion-MNIST. `dev`:
 *    10,000 training rows held out as the test, a clean 5,000-row target and a
 *    45,000-row pool from the rest; settings and the curate recipe were chosen on
 *    dev runs only. `final`: a clean 5,000-row target from the training split, the
 *    other 55,000 as the pool, the test split (10,000) as the test; run once the
 *    recipe was fixed. Arms (plant stage): clean; noisy (20% symmetric flips);
 *    shifted (50% inverted images with correct labels, 30% flips among the rest).
 * 2. Scores per arm, stage defaults: metagrad (the default ensemble, against the
 *    target), loss, aum, confident (5-fold). A second metagrad ensemble with other
 *    seeds (seed 1000) measures reproducibility. A rater regressed onto the
 *    metagrad ensemble (rate --mode regress) rates the pool.
 * 3. Selections at 10/30/50/80% of the pool:
 *      random          the baseline
 *      oracle          only rows with no planted problem (class shares, uniform; then random): the ceiling
 *      loss-prune      drop the bottom 20% by loss, random from the rest (target-agnostic)
 *      aum-ccs         CCS by AUM (target-agnostic)
 *      agnostic        curate without the target: label issues dropped (level issues)
 *      metagrad-ccs    CCS by the metagrad ensemble
 *      curate          the default recipe (select --strategy curate --target: level auto)
 *      curate-ranked   the same with label issues ranked by AUM (--issue-rank aum: as
 *                      many of each class's lowest-AUM rows as confident learning flags there)
 *      rater-prune     prune by the rater's ratings, the drop chosen on the target (--drop auto)
 *      mgd             MGD at 50% (noisy and shifted arms), 10 rounds, from a random start
 *    Ranking label issues by AUM (curate's --issue-rank) was judged by a rule
 *    fixed before its dev run: make it the default if its mean over the 12 dev
 *    cells is not below the flags'. It was below (84.81 against 85.07), so the
 *    flags stay the default and curate-ranked is reported as an ablation.
 *    A noise-aware choice rule for curate --level auto and prune --drop auto (a
 *    candidate that drops more had to win by one standard error of the quick
 *    models' seed noise, not by one target row) was judged the same way before
 *    its dev run: it was below the current rule (84.79 against 85.07; it kept
 *    'none' on 3 of the 4 noisy cells), so it was not adopted.
 * 4. Evaluation: evaluate stage, preset fast (MLP 256, Adam, ~500 steps, epochs by
 *    size), 3 seeds, each selection and each arm's whole pool.
 * 5. Output: accuracy tables (mean ± std, Δ vs random), detection AUROC per score
 *    and planted kind, ensemble agreement, the rater's Spearman against the second
 *    ensemble, what each selection kept of each planted kind, and wall times;
 *    printed and written to .bench/curation-<protocol>.json and .md.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { exitCodeOf, MissingInputError, UsageError } from '../../core/errors.js';
import { spearman } from '../../core/metrics.js';
import { openDataset, readCuration, readStrings } from '../../data/reader.js';
import { writeDataset } from '../../data/writer.js';
import { parsePipelineConfig, type PipelineStep } from '../../pipeline/config.js';
import { runPipeline } from '../../pipeline/runner.js';
import {
  benchContext, benchMeta, CURATION_ARMS, curationData, fashionMnistCandidates, findFashionMnist, printTable, readNumericColumn, writeBenchJson,
  type CurationArm, type CurationProtocol,
} from './common.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');

const BUDGETS = [0.1, 0.3, 0.5, 0.8];
const SEEDS = 3;
const MGD = { budget: 0.5, rounds: 10 };
const SECOND_ENSEMBLE_SEED = 1000;

const METHODS = ['random', 'oracle', 'loss-prune', 'aum-ccs', 'agnostic', 'metagrad-ccs', 'curate', 'curate-ranked', 'rater-prune', 'mgd'] as const;
type Method = (typeof METHODS)[number];
const TARGET_AWARE: ReadonlySet<Method> = new Set(['metagrad-ccs', 'curate', 'curate-ranked', 'rater-prune', 'mgd']);

const pct = (b: number) => String(Math.round(b * 100));
const ref = (id: string) => `\${${id}}`;

/** The select options of a method (the pool, the score sidecars, the target are inputs). */
function selection(arm: CurationArm, m: Method, b: number, target: string): PipelineStep | undefined {
  const id = `${arm}.select.${m}.${pct(b)}`;
  const pool = POOLS[arm];
  const sc = (...names: string[]) => names.map((n) => (n === 'oracle' ? ORACLES[arm] : ref(`${arm}.${n}`)));
  switch (m) {
    case 'random': return { id, stage: 'select', inputs: [pool], options: { strategy: 'random', budget: b } };
    case 'oracle':
      return arm === 'clean' ? undefined : { id, stage: 'select', inputs: [pool, ...sc('oracle')], options: { strategy: 'curate', level: 'harmful', by: 'oracle', rank: 'oracle', issues: 'none', helpful: 'oracle', budget: b } };
    case 'loss-prune': return { id, stage: 'select', inputs: [pool, ...sc('loss')], options: { strategy: 'prune', by: 'loss', budget: b } };
    case 'aum-ccs': return { id, stage: 'select', inputs: [pool, ...sc('aum')], options: { strategy: 'ccs', by: 'aum', budget: b } };
    case 'agnostic': return { id, stage: 'select', inputs: [pool, ...sc('aum', 'confident')], options: { strategy: 'curate', level: 'issues', rank: 'aum', helpful: 'none', budget: b } };
    case 'metagrad-ccs': return { id, stage: 'select', inputs: [pool, ...sc('metagrad')], options: { strategy: 'ccs', by: 'metagrad', budget: b } };
    case 'curate': return { id, stage: 'select', inputs: { dataset: pool, scores: sc('metagrad', 'confident', 'aum'), target }, options: { strategy: 'curate', budget: b } };
    case 'curate-ranked': return { id, stage: 'select', inputs: { dataset: pool, scores: sc('metagrad', 'confident', 'aum'), target }, options: { strategy: 'curate', issueRank: 'aum', budget: b } };
    case 'rater-prune': return { id, stage: 'select', inputs: { dataset: pool, scores: sc('rater'), target }, options: { strategy: 'prune', by: 'rating', drop: 'auto', budget: b } };
    case 'mgd':
      return arm === 'clean' || b !== MGD.budget ? undefined : { id, stage: 'select', inputs: { dataset: pool, target }, options: { strategy: 'mgd', budget: b, rounds: MGD.rounds } };
  }
}

/** Each arm's pool and oracle sidecar (set once the data exist). */
const POOLS = {} as Record<CurationArm, string>;
const ORACLES = {} as Record<CurationArm, string>;

function steps(arms: CurationArm[], methods: ReadonlySet<Method>, target: string, test: string): PipelineStep[] {
  const out: PipelineStep[] = [];
  const evals: PipelineStep[] = [];
  const late: PipelineStep[] = [];
  const evalOf = (id: string, set: string): PipelineStep => ({ id: `${id}.eval`, stage: 'evaluate', inputs: { train: set, test }, options: { preset: 'fast', baselines: false, seeds: SEEDS } });
  for (const arm of arms) {
    const pool = POOLS[arm];
    out.push({ id: `${arm}.metagrad`, stage: 'score', inputs: { train: pool, target }, options: { method: 'metagrad' } });
    for (const method of ['loss', 'aum', 'confident']) out.push({ id: `${arm}.${method}`, stage: 'score', inputs: [pool], options: { method } });
    out.push({ id: `${arm}.rater`, stage: 'rate', inputs: { dataset: pool, scores: ref(`${arm}.metagrad`) }, options: { trainRater: true, mode: 'regress', by: 'metagrad' } });
    evals.push(evalOf(`${arm}.full`, pool));
    for (const b of BUDGETS) {
      for (const m of METHODS) {
        if (m !== 'random' && !methods.has(m)) continue;
        const sel = selection(arm, m, b, target);
        if (!sel) continue;
        (m === 'mgd' ? late : out).push(sel);
        (m === 'mgd' ? late : evals).push(evalOf(sel.id, ref(sel.id)));
      }
    }
    late.push({ id: `${arm}.metagrad-2`, stage: 'score', inputs: { train: pool, target }, options: { method: 'metagrad', seed: SECOND_ENSEMBLE_SEED } });
  }
  return [...out, ...evals, ...late];
}

/** A sidecar with `oracle` = 1 for rows with no planted problem, 0 otherwise: what the oracle selection keeps. */
async function writeOracle(pool: string, out: string): Promise<void> {
  const ds = await openDataset(pool);
  if ((await readCuration(out))?.sidecar_of === ds.fingerprint) return;
  const planted = await readStrings(ds, 'planted');
  const ids = await readStrings(ds, 'id');
  const shardSizes = ds.shards.map((sh) => sh.rows!);
  await writeDataset(out, planted.map((k, i) => ({ id: ids[i], oracle: k === 'clean' ? 1 : 0 })), {
    columns: [{ name: 'id', kind: 'string' }, { name: 'oracle', kind: 'float32' }],
    shardSizes,
    overwrite: true,
    meta: { stage: 'oracle', stageVersion: '1', options: {}, parents: [{ fingerprint: ds.fingerprint, path: pool, role: 'pool' }], sidecarOf: ds.fingerprint },
  });
}

interface Cell { mean: number; std: number; rows: number }

async function readEval(dir: string): Promise<Cell | undefined> {
  const c = await readCuration(dir).catch(() => undefined);
  if (!c) return undefined;
  const s = c.summary as { accuracy: number; std: number; numTrain: number };
  return { mean: 100 * s.accuracy, std: 100 * s.std, rows: s.numTrain };
}

const fmt = (c?: Cell) => (c ? `${c.mean.toFixed(2)} ± ${c.std.toFixed(2)}` : '–');
const signed = (d: number) => `${d >= 0 ? '+' : '−'}${Math.abs(d).toFixed(2)}`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      protocol: { type: 'string', default: 'dev' }, src: { type: 'string' }, arms: { type: 'string', default: 'clean,noisy,shifted' },
      methods: { type: 'string', default: METHODS.join(',') }, 'report-only': { type: 'boolean', default: false }, out: { type: 'string' },
    },
  });
  const protocol = values.protocol as CurationProtocol;
  if (protocol !== 'dev' && protocol !== 'final') throw new MissingInputError(`--protocol is dev or final, not ${protocol}`);
  const src = findFashionMnist(fashionMnistCandidates(root, values.src), ['train', 'test']);
  if (!src) throw new MissingInputError('the full Fashion-MNIST is not here', { hint: 'Run scripts/fetch-fashion-mnist first' });
  const arms = values.arms!.split(',') as CurationArm[];
  const methods = new Set(values.methods!.split(',') as Method[]);
  const unknown = [...methods].filter((m) => !METHODS.includes(m));
  if (unknown.length) throw new UsageError(`--methods: unknown ${unknown.join(', ')}; the methods are ${METHODS.join(', ')}`);
  const work = path.resolve(root, '.bench', `curation-${protocol}`);
  const runDir = path.join(work, 'run');
  const ctx = benchContext();
  const data = await curationData(src, work, protocol, ctx);
  for (const arm of arms) {
    POOLS[arm] = data.arms[arm];
    ORACLES[arm] = path.join(work, `oracle-${arm}`);
    if (arm !== 'clean') await writeOracle(data.arms[arm], ORACLES[arm]);
  }
  const plan = steps(arms, methods, data.target, data.evalTest);
  if (!values['report-only']) {
    await runPipeline(parsePipelineConfig({ version: 1, name: `curation-${protocol}`, workdir: runDir, seed: 0, stages: plan }, { baseDir: root }), { ctx });
  }
  const at = (id: string) => path.join(runDir, id);

  // ─── tables ───
  const md: string[] = [`# Curation benchmark, protocol ${protocol}`, '', 'See the header of scripts/bench/curation.ts. Test accuracy %, MLP (preset fast), mean ± std over 3 seeds; Δ vs random at the same budget.', ''];
  const result: Record<string, unknown> = { meta: benchMeta(), protocol, poolRows: data.poolRows, arms: {} };
  for (const arm of arms) {
    const full = await readEval(at(`${arm}.full.eval`));
    const cells: Record<string, Cell | undefined> = {};
    for (const m of METHODS) for (const b of BUDGETS) cells[`${m}.${pct(b)}`] = await readEval(at(`${arm}.select.${m}.${pct(b)}.eval`));
    const rows = METHODS.map((m) => {
      const row: Record<string, string> = { method: m + (TARGET_AWARE.has(m) ? ' *' : '') };
      for (const b of BUDGETS) {
        const c = cells[`${m}.${pct(b)}`];
        const r = cells[`random.${pct(b)}`];
        row[`${pct(b)}%`] = c && r && m !== 'random' ? `${fmt(c)} (${signed(c.mean - r.mean)})` : fmt(c);
      }
      return row;
    });
    rows.push({ method: `all ${data.poolRows.toLocaleString('en-US')} rows`, '10%': fmt(full) });
    const title = `${arm} pool (${JSON.stringify(CURATION_ARMS[arm])}); * = target-aware`;
    printTable(title, rows);
    md.push(`## ${title}`, '', `| ${Object.keys(rows[0]).join(' | ')} |`, `|${Object.keys(rows[0]).map(() => '---').join('|')}|`, ...rows.map((r) => `| ${Object.keys(rows[0]).map((k) => r[k] ?? '').join(' | ')} |`), '');
    // Detection, agreement, rater.
    const detection: Record<string, unknown> = {};
    for (const s of ['metagrad', 'loss', 'aum', 'confident']) detection[s] = (await readCuration(at(`${arm}.${s}`)))?.summary;
    const second = await readCuration(at(`${arm}.metagrad-2`));
    let raterVsSecond: number | undefined;
    let ensembles: number | undefined;
    if (second) {
      const e1 = await readNumericColumn(at(`${arm}.metagrad`), 'metagrad');
      const e2 = await readNumericColumn(at(`${arm}.metagrad-2`), 'metagrad');
      const rating = await readNumericColumn(at(`${arm}.rater`), 'rating');
      ensembles = spearman(e1, e2);
      raterVsSecond = spearman(rating, e2);
    }
    const kept: Record<string, unknown> = {};
    for (const m of METHODS) for (const b of BUDGETS) {
      const c = await readCuration(at(`${arm}.select.${m}.${pct(b)}`));
      if (c) kept[`${m}.${pct(b)}`] = c.summary.planted;
    }
    (result.arms as Record<string, unknown>)[arm] = { cells, full, detection, ensembles, raterVsSecond, kept };
    const det = Object.entries(detection).flatMap(([s, sum]) => Object.entries(((sum as { planted?: Record<string, { auroc: number | null; flagged?: number }> })?.planted) ?? {})
      .filter(([k]) => k !== 'clean').map(([k, v]) => ({ score: s, kind: k, auroc: v.auroc, flagged: v.flagged })));
    if (det.length) printTable(`${arm}: AUROC at ranking each planted kind below the clean rows`, det);
    const agree = (detection.metagrad as { agreement?: { split_half_spearman: number } } | undefined)?.agreement;
    console.log(`${arm}: metagrad split-half Spearman ${agree?.split_half_spearman?.toFixed(3) ?? '–'}; two ensembles (seeds 0 and ${SECOND_ENSEMBLE_SEED}) ${ensembles?.toFixed(3) ?? '–'}; rater vs the second ensemble ${raterVsSecond?.toFixed(3) ?? '–'}`);
  }
  const file = await writeBenchJson(`curation-${protocol}`, result, values.out);
  await fsp.writeFile(file.replace(/\.json$/, '.md'), md.join('\n'));
  console.log(`wrote ${file}`);
}

main().catch((err) => {
  console.error(`curation: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(exitCodeOf(err));
});
