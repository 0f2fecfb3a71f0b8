// The accuracy-vs-budget chart (pipeline/plot.ts) and the report's budget
// section (pipeline/report.ts): well-formed SVG that librsvg (through sharp)
// renders, points at the right coordinates, deterministic output; and the table,
// series and files the report builds from select and evaluate stage summaries.
import { existsSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PLOT_LAYOUT, budgetPlotScales, budgetPlotSvg, fmt, type BudgetSeries } from '../../pipeline/plot.js';
import {
  BUDGET_PNG, BUDGET_SVG, RANDOM_BASELINE, budgetReport, budgetSeries, reportMarkdown, selectionMethod, writeReport,
  type PipelineReport, type StageReport,
} from '../../pipeline/report.js';

const series: BudgetSeries[] = [
  { name: 'topk by metagrad', points: [{ budget: 0.5, mean: 80.4, std: 0.6 }, { budget: 0.3, mean: 78.1, std: 0.9 }] },
  { name: 'random & <friends>', points: [{ budget: 0.3, mean: 75.2, std: 1.1 }, { budget: 0.5, mean: 77.9, std: 0.4 }] },
];
const full = { mean: 82.5, std: 0.3 };

/** Every tag closes in order (self-closing tags aside): a tiny well-formedness check. */
function balanced(svg: string): boolean {
  const stack: string[] = [];
  for (const m of svg.replace(/<\?xml[^>]*\?>/, '').matchAll(/<(\/?)([a-zA-Z][\w-]*)[^>]*?(\/?)>/g)) {
    const [, closing, name, selfClosing] = m;
    if (selfClosing) continue;
    if (!closing) stack.push(name);
    else if (stack.pop() !== name) return false;
  }
  return stack.length === 0;
}

describe('budgetPlotSvg', () => {
  const svg = budgetPlotSvg(series, { title: 'accuracy vs budget', full });

  it('is well-formed SVG that librsvg renders at the declared size', async () => {
    expect(svg.startsWith('<?xml')).toBe(true);
    expect(balanced(svg)).toBe(true);
    const png = await sharp(Buffer.from(svg)).png().toBuffer();
    const meta = await sharp(png).metadata();
    expect([meta.width, meta.height]).toEqual([PLOT_LAYOUT.width, PLOT_LAYOUT.height]);
    // Something was drawn: the image is not a blank white canvas.
    const { data } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
    expect(data.some((v) => v < 200)).toBe(true);
  });

  it('names every series (escaped), the full-data line and the axes', () => {
    expect(svg).toContain('>topk by metagrad</text>');
    expect(svg).toContain('>random &amp; &lt;friends&gt;</text>');
    expect(svg).not.toContain('<friends>');
    expect(svg).toContain('>full data</text>');
    expect(svg).toContain('stroke-dasharray="6 4"');
    expect(svg).toContain('budget (fraction of the pool)');
    expect(svg).toContain('test accuracy (%)');
    expect(svg).toContain('>accuracy vs budget</text>');
  });

  it('puts points where the scales say, in budget order, with error bars of ± std', () => {
    const sc = budgetPlotScales(series, { full });
    const { width, height, margin } = PLOT_LAYOUT;
    // x: budgets 0…1 across the plot area; y: the lowest tick on the x axis, higher accuracy higher up.
    expect(sc.x(0)).toBe(margin.left);
    expect(sc.x(1)).toBe(width - margin.right);
    expect(sc.y(sc.yTicks[0])).toBeCloseTo(height - margin.bottom, 9);
    expect(sc.y(sc.yTicks.at(-1)!)).toBeCloseTo(margin.top, 9);
    // The y range covers every mean ± std and the full line, on whole steps.
    expect(sc.yTicks[0]).toBeLessThanOrEqual(75.2 - 1.1);
    expect(sc.yTicks.at(-1)!).toBeGreaterThanOrEqual(82.5 + 0.3);
    expect(sc.yTicks).toEqual([74, 76, 78, 80, 82, 84]);
    const x3 = margin.left + 0.3 * (width - margin.left - margin.right);
    const x5 = margin.left + 0.5 * (width - margin.left - margin.right);
    const y = (v: number) => height - margin.bottom - ((v - 74) / (84 - 74)) * (height - margin.top - margin.bottom);
    // The first series' points were given out of order; the path goes by budget.
    const group = svg.slice(svg.indexOf('data-name="topk by metagrad"'));
    const d = /<path d="([^"]+)"/.exec(group)![1];
    expect(d).toBe(`M${fmt(x3)} ${fmt(y(78.1))} L${fmt(x5)} ${fmt(y(80.4))}`);
    expect(group).toContain(`M${fmt(x3)} ${fmt(y(78.1 - 0.9))} L${fmt(x3)} ${fmt(y(78.1 + 0.9))}`);
    expect(svg).toContain(`y1="${fmt(y(82.5))}" x2="${width - margin.right}" y2="${fmt(y(82.5))}"`);
  });

  it('is deterministic, and copes with no data and a single point', async () => {
    expect(budgetPlotSvg(series, { title: 'accuracy vs budget', full })).toBe(svg);
    const empty = budgetPlotSvg([], { title: 'nothing' });
    expect(balanced(empty)).toBe(true);
    expect(budgetPlotScales([], {}).yTicks).toEqual([0, 20, 40, 60, 80, 100]);
    const one = budgetPlotSvg([{ name: 'one', points: [{ budget: 0.1, mean: 50, std: 0 }] }], { title: 'one' });
    expect(balanced(one)).toBe(true);
    expect(one).not.toContain('NaN');
    expect((await sharp(Buffer.from(one)).metadata()).width).toBe(PLOT_LAYOUT.width);
  });
});

/** Stage reports as the runner records them: select and evaluate summaries (accuracy as fractions). */
function stage(id: string, kind: string, inputs: string[], summary: Record<string, unknown>): StageReport {
  return { id, stage: kind, status: 'ran', reason: 'new', fingerprint: `fp-${id}`, dir: id, inputs, numRows: 0, seconds: 1, summary };
}

const evalSummary = (acc: number, std: number, random?: number) => ({
  accuracy: acc, std, perSeed: [acc], numTrain: 0, numTest: 1000,
  random: random === undefined ? undefined : { mean: random, std: 0.01, numTrain: 0 },
  full: { mean: 0.85, std: 0.002, numTrain: 5000 },
  protocol: 'MLP hidden 256; Adam lr 0.001',
});

const stages: StageReport[] = [
  stage('train', 'ingest', ['src'], { rows: 6000 }),
  stage('pool', 'select', ['train'], { strategy: 'random', by: null, rows_in: 6000, rows: 5000, budget: 1000, invert: true }),
  stage('top30', 'select', ['pool', 'scores'], { strategy: 'topk', by: 'metagrad', rows_in: 5000, rows: 1500, budget: 1500 }),
  stage('top50', 'select', ['pool', 'scores'], { strategy: 'topk', by: 'metagrad', rows_in: 5000, rows: 2500, budget: 2500 }),
  stage('rand30', 'select', ['pool'], { strategy: 'random', by: null, rows_in: 5000, rows: 1500, budget: 1500 }),
  stage('eval-top50', 'evaluate', ['top50', 'test', 'pool'], evalSummary(0.81, 0.004, 0.8)),
  stage('eval-top30', 'evaluate', ['top30', 'test', 'pool'], evalSummary(0.79, 0.005, 0.78)),
  stage('eval-rand30', 'evaluate', ['rand30', 'test'], evalSummary(0.775, 0.006)),
  stage('eval-train', 'evaluate', ['train', 'test'], evalSummary(0.86, 0.001)),
];

describe('the report\'s budget section', () => {
  let tmp: string;
  beforeAll(async () => {
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'mc-plot-'));
  });
  afterAll(async () => {
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  it('collects each evaluated selection with its method, budget and baselines, in %', () => {
    const b = budgetReport(stages)!;
    expect(b.rows.map((r) => [r.method, r.budget, r.evaluation])).toEqual([
      ['random', 0.3, 'eval-rand30'],
      ['topk by metagrad', 0.3, 'eval-top30'],
      ['topk by metagrad', 0.5, 'eval-top50'],
    ]);
    const top30 = b.rows[1];
    expect(top30.accuracy.mean).toBeCloseTo(79, 9);
    expect(top30.accuracy.std).toBeCloseTo(0.5, 9);
    expect(top30.random!.mean).toBeCloseTo(78, 9);
    expect(b.full!.mean).toBeCloseTo(85, 9);
    const s = budgetSeries(b);
    expect(s.map((x) => x.name)).toEqual(['random', 'topk by metagrad', RANDOM_BASELINE]);
    expect(s[2].points.map((p) => p.budget)).toEqual([0.3, 0.5]);
    // An evaluation of a non-selection (the ingested train set) is not a budget point.
    expect(budgetReport(stages.filter((x) => x.stage !== 'select'))).toBeUndefined();
    expect(selectionMethod({ strategy: 'random', invert: true })).toBe('all but random');
    expect(selectionMethod({ strategy: 'mgd', by: 'metagrad' })).toBe('mgd (start: topk by metagrad)');
    expect(selectionMethod({ strategy: 'curate', curate: { level: 'strict', target_accuracy: { none: 0.8 } } })).toBe('curate strict (chosen on the target)');
    expect(selectionMethod({ strategy: 'curate', curate: { level: 'issues' } })).toBe('curate issues');
  });

  it('writes budget.svg and budget.png beside report.md, with the table in report.md and report.json', async () => {
    const report: PipelineReport = {
      name: 'demo', workdir: tmp, code_version: '0', started_at: 't0', finished_at: 't1', seconds: 3, stages,
    };
    const files = await writeReport(tmp, report);
    expect(files.svg).toBe(path.join(tmp, BUDGET_SVG));
    expect(existsSync(path.join(tmp, BUDGET_PNG))).toBe(true);
    expect((await sharp(path.join(tmp, BUDGET_PNG)).metadata()).width).toBe(PLOT_LAYOUT.width);
    const svg = await fsp.readFile(path.join(tmp, BUDGET_SVG), 'utf8');
    expect(svg).toContain('>topk by metagrad</text>');
    expect(svg).toContain(`>${RANDOM_BASELINE}</text>`);
    const json = JSON.parse(await fsp.readFile(files.json, 'utf8'));
    expect(json.budget.rows).toHaveLength(3);
    expect(json.budget.plot).toEqual({ svg: BUDGET_SVG, png: BUDGET_PNG });
    const md = await fsp.readFile(files.md, 'utf8');
    expect(md).toContain('## Accuracy vs budget');
    expect(md).toContain(`![test accuracy vs budget](${BUDGET_SVG})`);
    expect(md).toMatch(/\| topk by metagrad \| 30% \| 1,500 of 5,000 \| 79\.00 ± 0\.50 \| 78\.00 ± 1\.00 \| 1\.00 \| 85\.00 ± 0\.20 \| top30 \| eval-top30 \|/);
    expect(md).toContain('Protocol: MLP hidden 256; Adam lr 0.001');
    // Without evaluated selections there is no budget section.
    expect(reportMarkdown({ ...report, budget: undefined, stages: stages.slice(0, 1) })).not.toContain('Accuracy vs budget');
  });
});
