/**
 * The pipeline report: what each stage did (ran or skipped as current), its
 * fingerprint, rows and summary. Written as `<workdir>/report.json`,
 * `report.md` and `report.html` (pipeline/report-html.ts, which adds images and
 * per-class views), and printed by `metacurate run`. The tables both files
 * show are built once here, as ReportTables.
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
import { REPORT_HTML, writeReportHtml } from './report-html.js';
import {
  formatNumber, formatPercent, formatSummary, formatTable, markdownBlock, markdownCode, markdownTable, markdownText, type ReportTable,
} from './table.js';

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
  reason?: 'new' | 'stale' | 'forced' | 'kept';
  /** What changed since the output was made (ran), or why a stale output was kept (its refresh rule). */
  why?: string;
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
  if (s.status === 'skipped') return s.reason === 'kept' ? `kept: ${s.why}` : 'skipped (current)';
  const status = s.reason && s.reason !== 'new' ? `ran (${s.reason})` : 'ran';
  return s.why ? `${status}: ${s.why}` : status;
}

/** What each stage did: the first table of every report. */
/** "3 ran, 2 skipped (current), 1 kept by its refresh rule": how this run's stages went. */
export function stageCounts(report: PipelineReport): string {
  const count = (f: (s: StageReport) => boolean) => report.stages.filter(f).length;
  const kept = count((s) => s.status === 'skipped' && s.reason === 'kept');
  const current = count((s) => s.status === 'skipped') - kept;
  return `${count((s) => s.status === 'ran')} ran, ${current} skipped (current)${kept ? `, ${kept} kept by their refresh rule` : ''}`;
}

export function stageTable(report: PipelineReport): ReportTable {
  return {
    headers: ['stage', 'kind', 'status', 'rows', 'seconds', 'fingerprint', 'output'],
    numeric: [false, false, false, true, true, false, false],
    rows: report.stages.map((s) => [s.id, s.stage, statusText(s), s.numRows, round(s.seconds), { code: s.fingerprint }, { code: s.dir }]),
  };
}

/** The stage table printed at the end of a run. */
export function formatStageTable(report: PipelineReport): string {
  const t = stageTable(report);
  return formatTable(t.headers, t.rows.map((r) => r.map((c) => (typeof c === 'object' && c !== null ? c.code : c))));
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

/** What the budget table says about the random and full-data columns. */
export const BUDGET_NOTE = `Test accuracy (%), mean ± std over seeds. "${RANDOM_BASELINE}" and "full data" are the evaluate stage's own baselines: ` +
  'a random subset of the pool with the selection\'s class counts, and the whole pool; Δ is the selection minus that random subset.';

/** Every evaluated selection: its budget, accuracy and the evaluate stage's baselines. */
export function budgetTable(b: BudgetReport): ReportTable {
  return {
    headers: ['method', 'budget', 'rows', 'accuracy %', `${RANDOM_BASELINE} %`, 'Δ', 'full data %', 'selection', 'evaluation'],
    numeric: [false, true, true, true, true, true, true, false, false],
    rows: b.rows.map((r) => [
      r.method, formatPercent(r.budget), `${formatNumber(r.rows)} of ${formatNumber(r.rowsIn)}`, pm(r.accuracy), pm(r.random),
      r.random ? (r.accuracy.mean - r.random.mean).toFixed(2) : '–', pm(r.full), r.selection, r.evaluation,
    ]),
  };
}

/** The protocols the evaluations used, once each. */
export function budgetProtocols(b: BudgetReport): string[] {
  return [...new Set(b.rows.map((r) => r.protocol).filter((p): p is string => p !== undefined))];
}

function budgetMarkdown(b: BudgetReport): string[] {
  const lines = ['', '## Accuracy vs budget', ''];
  if (b.plot) lines.push(`![test accuracy vs budget](${b.plot.svg})`, '');
  lines.push(BUDGET_NOTE, '', ...markdownTable(budgetTable(b)));
  const protocols = budgetProtocols(b);
  if (protocols.length) lines.push('', `Protocol: ${protocols.join(' / ')}`);
  if (b.plot?.pngError) lines.push('', `(The PNG could not be rendered: ${b.plot.pngError})`);
  return lines;
}

type Planted = Record<string, { rows?: number; auroc?: number | null; flagged?: number; pool?: number; kept?: number; fraction?: number }>;

/** A planted-problem table with the sentence that says what it shows. */
export interface NotedTable {
  note: string;
  table: ReportTable;
}

/**
 * When the pool carries planted problems (the plant stage): how well each score
 * ranked each kind below the clean rows, and what each selection kept of each.
 */
export function plantedTables(stages: StageReport[]): { detection?: NotedTable; kept?: NotedTable } {
  const withPlanted = (kind: string) => stages.filter((s) => s.stage === kind && s.summary.planted && typeof s.summary.planted === 'object');
  const scores = withPlanted('score');
  const selections = withPlanted('select');
  const auroc = (v: number | null | undefined) => (typeof v === 'number' ? v.toFixed(3) : '–');
  const share = (v: number | null | undefined) => (typeof v === 'number' ? formatPercent(v) : '–');
  const out: { detection?: NotedTable; kept?: NotedTable } = {};
  if (scores.length) {
    const kinds = [...new Set(scores.flatMap((s) => Object.keys(s.summary.planted as Planted)))].filter((k) => k !== 'clean').sort();
    out.detection = {
      note: 'AUROC of each score at ranking the rows of a planted kind below the clean rows (1 = all below, 0.5 = chance); ' +
        'for scores that flag rows, the share flagged.',
      table: {
        headers: ['score', ...kinds.flatMap((k) => [`${k} AUROC`, `${k} flagged`]), 'clean flagged'],
        numeric: [false, ...kinds.flatMap(() => [true, true]), true],
        rows: scores.map((s) => {
          const p = s.summary.planted as Planted;
          return [`${s.id} (${String(s.summary.method)})`, ...kinds.flatMap((k) => [auroc(p[k]?.auroc), share(p[k]?.flagged)]), share(p.clean?.flagged)];
        }),
      },
    };
  }
  if (selections.length) {
    const kinds = [...new Set(selections.flatMap((s) => Object.keys(s.summary.planted as Planted)))].sort();
    out.kept = {
      note: 'Share of each kind of row that each selection kept.',
      table: {
        headers: ['selection', 'method', 'budget', ...kinds],
        numeric: [false, false, true, ...kinds.map(() => true)],
        rows: selections.map((s) => {
          const p = s.summary.planted as Planted;
          const budget = num(s.summary.budget);
          const rowsIn = num(s.summary.rows_in);
          return [s.id, selectionMethod(s.summary), budget !== undefined && rowsIn ? formatPercent(budget / rowsIn) : '–', ...kinds.map((k) => share(p[k]?.fraction))];
        }),
      },
    };
  }
  return out;
}

export function plantedMarkdown(stages: StageReport[]): string[] {
  const { detection, kept } = plantedTables(stages);
  if (!detection && !kept) return [];
  const lines = ['', '## Planted problems'];
  for (const t of [detection, kept]) if (t) lines.push('', t.note, '', ...markdownTable(t.table));
  return lines;
}

export function reportMarkdown(report: PipelineReport): string {
  const lines = [
    `# Pipeline report: ${markdownText(report.name)}`,
    '',
    `- config: ${markdownCode(report.config ?? '(in code)')}`,
    `- code version: ${report.code_version}`,
    `- started: ${report.started_at}, finished: ${report.finished_at} (${formatNumber(round(report.seconds))} s)`,
    `- stages: ${stageCounts(report)}`,
    `- also as [report.html](${REPORT_HTML}), with images of the rows each score ranks lowest and highest, per-class accuracy and confusion matrices`,
    '',
    ...markdownTable(stageTable(report)),
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
 * Writes report.json, report.md and report.html into the workdir (each
 * atomically), and, when selections were evaluated, budget.svg and budget.png;
 * sets `report.budget`.
 */
export async function writeReport(workdir: string, report: PipelineReport): Promise<{ json: string; md: string; html: string; svg?: string; png?: string }> {
  const json = path.join(workdir, REPORT_JSON);
  const md = path.join(workdir, REPORT_MD);
  const budget = budgetReport(report.stages);
  let svg: string | undefined;
  let png: string | undefined;
  let text: string | undefined;
  if (budget) {
    text = budgetPlotSvg(budgetSeries(budget), { title: `${report.name}: test accuracy vs budget`, full: budget.full });
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
  const html = await writeReportHtml(workdir, {
    report,
    stages: stageTable(report),
    counts: stageCounts(report),
    budget: budget && text ? { svg: text, table: budgetTable(budget), note: BUDGET_NOTE, protocols: budgetProtocols(budget) } : undefined,
    planted: plantedTables(report.stages),
    methods: Object.fromEntries(report.stages.filter((s) => s.stage === 'select').map((s) => [s.id, selectionMethod(s.summary)])),
  });
  return { json, md, html, svg, png };
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
