/**
 * The pipeline report: what each stage did (ran or skipped as current), its
 * fingerprint, rows and summary. Written as `<workdir>/report.json` and
 * `report.md`, and printed by `metacurate run`.
 *
 * When the pipeline evaluated selections (an evaluate stage whose first input is
 * a select stage's output), the report also compares them by budget: a table of
 * test accuracy per method and budget beside the evaluate stages' random and
 * full-data baselines, and the chart `budget.svg` (+ `budget.png`). It is built
 * from the stage summaries alone, so it is the same whether the stages ran now or
 * were skipped as current.
 */
import path from 'node:path';
import sharp from 'sharp';
import { writeFileAtomic } from '../core/atomic.js';
import { budgetPlotSvg, type BudgetSeries } from './plot.js';
import { formatNumber, formatSummary, formatTable, markdownBlock, markdownCode, markdownText } from './table.js';

export const REPORT_JSON = 'report.json';
export const REPORT_MD = 'report.md';
export const BUDGET_SVG = 'budget.svg';
export const BUDGET_PNG = 'budget.png';
/** The series name of the evaluate stages' own random baseline (class-matched random subsets). */
export const RANDOM_BASELINE = 'random (evaluate baseline)';

export type StageStatus = 'ran' | 'skipped';

export interface StageReport {
  id: string;
  stage: string;
  status: StageStatus;
  /** Why it ran: first run, stale fingerprint, or --force. */
  reason?: 'new' | 'stale' | 'forced';
  fingerprint: string;
  /** Output directory, relative to the workdir. */
  dir: string;
  inputs: string[];
  numRows: number;
  /** Wall time of this run (0 when skipped). */
  seconds: number;
  summary: Record<string, unknown>;
}

export interface PipelineReport {
  name: string;
  /** The pipeline file, relative to the workdir (when there is one). */
  config?: string;
  workdir: string;
  code_version: string;
  started_at: string;
  finished_at: string;
  seconds: number;
  stages: StageReport[];
  /** Accuracy by selection budget (see the top of this file); set by writeReport when there is any. */
  budget?: BudgetReport;
}

/** Accuracy in %, mean and population std over seeds. */
export interface AccuracyStat {
  mean: number;
  std: number;
}

/** One evaluated selection. */
export interface BudgetRow {
  /** How the rows were chosen: "topk by metagrad", "random", "mgd", "all but random", … */
  method: string;
  /** Ids of the select and evaluate stages. */
  selection: string;
  evaluation: string;
  /** Fraction of the pool kept. */
  budget: number;
  rows: number;
  rowsIn: number;
  accuracy: AccuracyStat;
  /** The evaluate stage's baselines: a class-matched random subset of the same size, and the full pool. */
  random?: AccuracyStat;
  full?: AccuracyStat;
  protocol?: string;
}

export interface BudgetReport {
  rows: BudgetRow[];
  /** The full-data baseline drawn in the chart (the first evaluate stage's). */
  full?: AccuracyStat;
  /** Files beside report.md (relative to the workdir). */
  plot?: { svg: string; png?: string; pngError?: string };
}

export function statusText(s: StageReport): string {
  if (s.status === 'skipped') return 'skipped (current)';
  return s.reason && s.reason !== 'new' ? `ran (${s.reason})` : 'ran';
}

/** The stage table printed at the end of a run. */
export function formatStageTable(report: PipelineReport): string {
  return formatTable(
    ['stage', 'kind', 'status', 'rows', 'seconds', 'fingerprint', 'output'],
    report.stages.map((s) => [s.id, s.stage, statusText(s), s.numRows, round(s.seconds), s.fingerprint, s.dir]),
  );
}

type Summary = Record<string, unknown>;

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** An evaluate summary's `{ mean, std }` (fractions) as %. */
function percent(v: unknown): AccuracyStat | undefined {
  const o = v as { mean?: unknown; std?: unknown } | undefined;
  const mean = num(o?.mean);
  return mean === undefined ? undefined : { mean: 100 * mean, std: 100 * (num(o?.std) ?? 0) };
}

/** A select summary's method, e.g. "topk by metagrad". */
export function selectionMethod(s: Summary): string {
  const by = typeof s.by === 'string' ? s.by : undefined;
  const strategy = String(s.strategy ?? 'select');
  const curate = s.curate as { level?: string; target_accuracy?: object } | undefined;
  const base = strategy === 'mgd' ? `mgd${by ? ` (start: topk by ${by})` : ''}`
    // curate's level says what it dropped; "on the target" when quick models chose it there.
    : strategy === 'curate' && curate?.level ? `curate ${curate.level}${curate.target_accuracy ? ' (chosen on the target)' : ''}`
      : by && strategy !== 'random' ? `${strategy} by ${by}` : strategy;
  return s.invert ? `all but ${base}` : base;
}

/**
 * Collects the evaluated selections from the stage reports: each evaluate stage
 * whose first input is a select stage's output gives one row. Undefined when
 * there is none.
 */
export function budgetReport(stages: StageReport[]): BudgetReport | undefined {
  const selections = new Map(stages.filter((s) => s.stage === 'select').map((s) => [s.dir, s]));
  const rows: BudgetRow[] = [];
  for (const ev of stages) {
    if (ev.stage !== 'evaluate' || ev.inputs.length === 0) continue;
    const sel = selections.get(ev.inputs[0]);
    const accuracy = percent({ mean: ev.summary.accuracy, std: ev.summary.std });
    const rowsIn = num(sel?.summary.rows_in);
    const kept = num(sel?.summary.rows);
    if (!sel || !accuracy || !rowsIn || kept === undefined) continue;
    // The budget in rows (Σ counts for MGD); the kept rows for an inverted or uncapped selection.
    const chosen = sel.summary.invert ? kept : num(sel.summary.budget) ?? kept;
    rows.push({
      method: selectionMethod(sel.summary),
      selection: sel.id,
      evaluation: ev.id,
      budget: Number((chosen / rowsIn).toFixed(4)),
      rows: kept,
      rowsIn,
      accuracy,
      random: percent(ev.summary.random),
      full: percent(ev.summary.full),
      protocol: typeof ev.summary.protocol === 'string' ? ev.summary.protocol : undefined,
    });
  }
  if (rows.length === 0) return undefined;
  rows.sort((a, b) => a.method.localeCompare(b.method) || a.budget - b.budget);
  return { rows, full: rows.find((r) => r.full)?.full };
}

/** The chart's lines: one per method, plus the evaluate stages' random baseline (one point per budget). */
export function budgetSeries(b: BudgetReport): BudgetSeries[] {
  const byMethod = new Map<string, BudgetSeries>();
  for (const r of b.rows) {
    let s = byMethod.get(r.method);
    if (!s) byMethod.set(r.method, (s = { name: r.method, points: [] }));
    s.points.push({ budget: r.budget, ...r.accuracy });
  }
  const baseline: BudgetSeries = { name: RANDOM_BASELINE, points: [] };
  for (const r of b.rows) {
    if (r.random && !baseline.points.some((p) => p.budget === r.budget)) baseline.points.push({ budget: r.budget, ...r.random });
  }
  return [...byMethod.values(), ...(baseline.points.length ? [baseline] : [])];
}

function pm(a: AccuracyStat | undefined): string {
  return a ? `${a.mean.toFixed(2)} ± ${a.std.toFixed(2)}` : '–';
}

function budgetMarkdown(b: BudgetReport): string[] {
  const lines = ['', '## Accuracy vs budget', ''];
  if (b.plot) lines.push(`![test accuracy vs budget](${b.plot.svg})`, '');
  lines.push(
    `Test accuracy (%), mean ± std over seeds. "${RANDOM_BASELINE}" and "full data" are the evaluate stage's own baselines: ` +
      'a random subset of the pool with the selection\'s class counts, and the whole pool; Δ is the selection minus that random subset.',
    '',
    `| method | budget | rows | accuracy % | ${RANDOM_BASELINE} % | Δ | full data % | selection | evaluation |`,
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |',
    ...b.rows.map((r) => {
      const delta = r.random ? (r.accuracy.mean - r.random.mean).toFixed(2) : '–';
      return `| ${markdownText(r.method)} | ${r.budget} | ${formatNumber(r.rows)} of ${formatNumber(r.rowsIn)} | ${pm(r.accuracy)} | ${pm(r.random)} | ${delta} | ${pm(r.full)} | ${r.selection} | ${r.evaluation} |`;
    }),
  );
  const protocols = [...new Set(b.rows.map((r) => r.protocol).filter((p): p is string => p !== undefined))];
  if (protocols.length) lines.push('', `Protocol: ${protocols.join(' / ')}`);
  if (b.plot?.pngError) lines.push('', `(The PNG could not be rendered: ${b.plot.pngError})`);
  return lines;
}

type Planted = Record<string, { rows?: number; auroc?: number | null; flagged?: number; pool?: number; kept?: number; fraction?: number }>;

/**
 * When the pool carries planted problems (the plant stage): how well each score
 * ranked each kind below the clean rows, and what each selection kept of each.
 */
export function plantedMarkdown(stages: StageReport[]): string[] {
  const withPlanted = (kind: string) => stages.filter((s) => s.stage === kind && s.summary.planted && typeof s.summary.planted === 'object');
  const scores = withPlanted('score');
  const selections = withPlanted('select');
  if (!scores.length && !selections.length) return [];
  const lines = ['', '## Planted problems', ''];
  const fmt = (v: number | null | undefined, digits = 3) => (typeof v === 'number' ? v.toFixed(digits) : '–');
  if (scores.length) {
    const kinds = [...new Set(scores.flatMap((s) => Object.keys(s.summary.planted as Planted)))].filter((k) => k !== 'clean').sort();
    lines.push(
      'AUROC of each score at ranking the rows of a planted kind below the clean rows (1 = all below, 0.5 = chance); ' +
        'for scores that flag rows, the share flagged.',
      '',
      `| score | ${kinds.map((k) => `${markdownText(k)} AUROC | ${markdownText(k)} flagged`).join(' | ')} | clean flagged |`,
      `| --- | ${kinds.map(() => '---: | ---:').join(' | ')} | ---: |`,
      ...scores.map((s) => {
        const p = s.summary.planted as Planted;
        return `| ${s.id} (${markdownText(String(s.summary.method))}) | ${kinds.map((k) => `${fmt(p[k]?.auroc)} | ${fmt(p[k]?.flagged, 2)}`).join(' | ')} | ${fmt(p.clean?.flagged, 2)} |`;
      }),
      '',
    );
  }
  if (selections.length) {
    const kinds = [...new Set(selections.flatMap((s) => Object.keys(s.summary.planted as Planted)))].sort();
    lines.push(
      'Share of each kind of row that each selection kept.',
      '',
      `| selection | method | budget | ${kinds.map(markdownText).join(' | ')} |`,
      `| --- | --- | ---: | ${kinds.map(() => '---:').join(' | ')} |`,
      ...selections.map((s) => {
        const p = s.summary.planted as Planted;
        return `| ${s.id} | ${markdownText(selectionMethod(s.summary))} | ${formatNumber(num(s.summary.budget) ?? 0)} | ${kinds.map((k) => fmt(p[k]?.fraction, 2)).join(' | ')} |`;
      }),
    );
  }
  return lines;
}

export function reportMarkdown(report: PipelineReport): string {
  const lines = [
    `# Pipeline report: ${markdownText(report.name)}`,
    '',
    `- config: ${markdownCode(report.config ?? '(in code)')}`,
    `- code version: ${report.code_version}`,
    `- started: ${report.started_at}, finished: ${report.finished_at} (${formatNumber(round(report.seconds))} s)`,
    `- stages: ${report.stages.filter((s) => s.status === 'ran').length} ran, ${report.stages.filter((s) => s.status === 'skipped').length} skipped (current)`,
    '',
    '| stage | kind | status | rows | seconds | fingerprint | output |',
    '| --- | --- | --- | ---: | ---: | --- | --- |',
    ...report.stages.map((s) =>
      `| ${s.id} | ${s.stage} | ${statusText(s)} | ${formatNumber(s.numRows)} | ${formatNumber(round(s.seconds))} | \`${s.fingerprint}\` | ${markdownCode(s.dir).replace(/\|/g, '\\|')} |`,
    ),
  ];
  if (report.budget) lines.push(...budgetMarkdown(report.budget));
  lines.push(...plantedMarkdown(report.stages));
  for (const s of report.stages) {
    lines.push('', `## ${s.id} (${s.stage})`, '');
    if (s.inputs.length) lines.push(`inputs: ${s.inputs.map(markdownCode).join(', ')}`, '');
    lines.push(...markdownBlock(formatSummary(s.summary)));
  }
  return lines.join('\n') + '\n';
}

/**
 * Writes report.json and report.md into the workdir (each atomically), and, when
 * selections were evaluated, budget.svg and budget.png; sets `report.budget`.
 */
export async function writeReport(workdir: string, report: PipelineReport): Promise<{ json: string; md: string; svg?: string; png?: string }> {
  const json = path.join(workdir, REPORT_JSON);
  const md = path.join(workdir, REPORT_MD);
  const budget = budgetReport(report.stages);
  let svg: string | undefined;
  let png: string | undefined;
  if (budget) {
    const text = budgetPlotSvg(budgetSeries(budget), { title: `${report.name}: test accuracy vs budget`, full: budget.full });
    svg = path.join(workdir, BUDGET_SVG);
    await writeFileAtomic(svg, text);
    budget.plot = { svg: BUDGET_SVG };
    try {
      await writeFileAtomic(path.join(workdir, BUDGET_PNG), await sharp(Buffer.from(text)).png().toBuffer());
      png = path.join(workdir, BUDGET_PNG);
      budget.plot.png = BUDGET_PNG;
    } catch (err) {
      // The SVG is the chart; a PNG renderer problem must not fail a finished pipeline.
      budget.plot.pngError = (err as Error).message;
    }
    report.budget = budget;
  }
  await writeFileAtomic(json, JSON.stringify(report, null, 2) + '\n');
  await writeFileAtomic(md, reportMarkdown(report));
  return { json, md, svg, png };
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
