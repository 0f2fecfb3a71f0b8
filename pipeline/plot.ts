/**
 * The accuracy-vs-budget chart of the pipeline report, as a dependency-free SVG:
 * x = budget (fraction of the pool, 0…1), y = test accuracy in %, one line per
 * selection method with ± std error bars, the full data as a dashed horizontal
 * line with its ± std band, ticks, axis labels and a legend. The output is a pure
 * function of the input (no timestamps, fixed number formatting), so reruns give
 * byte-identical files. sharp (librsvg) renders it to PNG.
 */
import { escapeXml } from '../core/text.js';

export interface BudgetPoint {
  /** Fraction of the pool kept, in [0, 1]. */
  budget: number;
  /** Test accuracy, %. */
  mean: number;
  /** Its std over seeds, %. */
  std: number;
}

export interface BudgetSeries {
  name: string;
  points: BudgetPoint[];
}

export interface BudgetPlotOptions {
  title: string;
  /** Accuracy of training on all the data, % (a dashed line across the chart). */
  full?: { mean: number; std: number };
  xLabel?: string;
  yLabel?: string;
}

/** Canvas size and plot-area margins, px. */
export const PLOT_LAYOUT = {
  width: 800,
  height: 440,
  margin: { left: 64, right: 250, top: 44, bottom: 56 },
} as const;

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];
const FULL_COLOR = '#555555';
const X_TICKS = Array.from({ length: 11 }, (_, i) => i / 10);

export interface PlotScales {
  /** Budget fraction → x px. */
  x(budget: number): number;
  /** Accuracy % → y px. */
  y(accuracy: number): number;
  xTicks: number[];
  yTicks: number[];
  /** Decimals the y tick labels need. */
  yDecimals: number;
}

/** A "nice" step (1, 2, 2.5 or 5 × 10^k) giving about `count` intervals over `span`. */
function niceStep(span: number, count: number): number {
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const f = raw / power;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * power;
}

function decimalsOf(step: number): number {
  const text = String(Number(step.toPrecision(6)));
  const dot = text.indexOf('.');
  return dot < 0 ? 0 : text.length - dot - 1;
}

/**
 * The chart's scales: x spans budgets 0…1; y spans every mean ± std and the full
 * line, widened to whole tick steps (0…100 when there is no data).
 */
export function budgetPlotScales(series: BudgetSeries[], opts: Pick<BudgetPlotOptions, 'full'>): PlotScales {
  const { width, height, margin } = PLOT_LAYOUT;
  const values: number[] = [];
  for (const s of series) for (const p of s.points) values.push(p.mean - p.std, p.mean + p.std);
  if (opts.full) values.push(opts.full.mean - opts.full.std, opts.full.mean + opts.full.std);
  const finite = values.filter(Number.isFinite);
  let lo = finite.length ? Math.min(...finite) : 0;
  let hi = finite.length ? Math.max(...finite) : 100;
  if (hi - lo < 1) {
    lo -= 0.5;
    hi += 0.5;
  }
  const step = niceStep(hi - lo, 5);
  // Round away float noise before snapping to whole steps (0.3 / 0.1 is 2.9999…).
  lo = step * Math.floor(Number((lo / step).toFixed(9)));
  hi = step * Math.ceil(Number((hi / step).toFixed(9)));
  const yTicks: number[] = [];
  for (let i = 0; lo + i * step <= hi + step * 1e-9; i++) yTicks.push(Number((lo + i * step).toFixed(decimalsOf(step))));
  const left = margin.left;
  const plotW = width - margin.left - margin.right;
  const bottom = height - margin.bottom;
  const plotH = height - margin.top - margin.bottom;
  return {
    x: (b) => left + b * plotW,
    y: (v) => bottom - ((v - lo) / (hi - lo)) * plotH,
    xTicks: X_TICKS,
    yTicks,
    yDecimals: decimalsOf(step),
  };
}

/** A coordinate as the SVG writes it: at most 2 decimals, no trailing zeros, never "-0". */
export function fmt(n: number): string {
  const r = Number(n.toFixed(2));
  return String(r === 0 ? 0 : r);
}

const esc = escapeXml;

/** The SVG path through a series' points, in budget order: `M x y L x y …`. */
export function seriesPath(points: BudgetPoint[], scales: PlotScales): string {
  return [...points]
    .sort((a, b) => a.budget - b.budget)
    .map((p, i) => `${i === 0 ? 'M' : 'L'}${fmt(scales.x(p.budget))} ${fmt(scales.y(p.mean))}`)
    .join(' ');
}

export function budgetPlotSvg(series: BudgetSeries[], opts: BudgetPlotOptions): string {
  const { width, height, margin } = PLOT_LAYOUT;
  const sc = budgetPlotScales(series, opts);
  const left = margin.left;
  const right = width - margin.right;
  const top = margin.top;
  const bottom = height - margin.bottom;
  const out: string[] = [];
  const add = (line: string) => out.push(line);

  add('<?xml version="1.0" encoding="UTF-8"?>');
  add(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">`);
  add(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  add(`<text x="${fmt((left + right) / 2)}" y="26" text-anchor="middle" font-size="15" font-weight="bold">${esc(opts.title)}</text>`);

  // Grid, axes, ticks.
  add('<g class="axes" stroke="#000000" stroke-width="1">');
  for (const t of sc.yTicks) add(`<line x1="${left}" y1="${fmt(sc.y(t))}" x2="${right}" y2="${fmt(sc.y(t))}" stroke="#e6e6e6"/>`);
  for (const t of sc.xTicks) add(`<line x1="${fmt(sc.x(t))}" y1="${top}" x2="${fmt(sc.x(t))}" y2="${bottom}" stroke="#f2f2f2"/>`);
  add(`<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}"/>`);
  add(`<line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}"/>`);
  for (const t of sc.xTicks) add(`<line x1="${fmt(sc.x(t))}" y1="${bottom}" x2="${fmt(sc.x(t))}" y2="${bottom + 5}"/>`);
  for (const t of sc.yTicks) add(`<line x1="${left - 5}" y1="${fmt(sc.y(t))}" x2="${left}" y2="${fmt(sc.y(t))}"/>`);
  add('</g>');
  add('<g class="tick-labels" fill="#000000">');
  for (const t of sc.xTicks) add(`<text x="${fmt(sc.x(t))}" y="${bottom + 19}" text-anchor="middle">${t.toFixed(1)}</text>`);
  for (const t of sc.yTicks) add(`<text x="${left - 8}" y="${fmt(sc.y(t) + 4)}" text-anchor="end">${t.toFixed(sc.yDecimals)}</text>`);
  add('</g>');
  add(`<text x="${fmt((left + right) / 2)}" y="${height - 14}" text-anchor="middle">${esc(opts.xLabel ?? 'budget (fraction of the pool)')}</text>`);
  add(`<text x="16" y="${fmt((top + bottom) / 2)}" text-anchor="middle" transform="rotate(-90 16 ${fmt((top + bottom) / 2)})">${esc(opts.yLabel ?? 'test accuracy (%)')}</text>`);

  // Full data: a dashed line across, with its ± std band.
  if (opts.full) {
    const f = opts.full;
    add(`<g class="full" data-name="full data">`);
    add(`<rect x="${left}" y="${fmt(sc.y(f.mean + f.std))}" width="${right - left}" height="${fmt(sc.y(f.mean - f.std) - sc.y(f.mean + f.std))}" fill="${FULL_COLOR}" fill-opacity="0.12"/>`);
    add(`<line x1="${left}" y1="${fmt(sc.y(f.mean))}" x2="${right}" y2="${fmt(sc.y(f.mean))}" stroke="${FULL_COLOR}" stroke-width="1.5" stroke-dasharray="6 4"/>`);
    add('</g>');
  }

  // One line per method, error bars and markers on each point.
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    add(`<g class="series" data-name="${esc(s.name)}" stroke="${color}" fill="${color}">`);
    if (s.points.length > 1) add(`<path d="${seriesPath(s.points, sc)}" fill="none" stroke-width="2"/>`);
    for (const p of [...s.points].sort((a, b) => a.budget - b.budget)) {
      const x = sc.x(p.budget);
      const y = sc.y(p.mean);
      if (p.std > 0) {
        const y0 = fmt(sc.y(p.mean - p.std));
        const y1 = fmt(sc.y(p.mean + p.std));
        add(`<path class="error-bar" d="M${fmt(x)} ${y0} L${fmt(x)} ${y1} M${fmt(x - 4)} ${y0} L${fmt(x + 4)} ${y0} M${fmt(x - 4)} ${y1} L${fmt(x + 4)} ${y1}" fill="none" stroke-width="1.2"/>`);
      }
      add(`<circle cx="${fmt(x)}" cy="${fmt(y)}" r="3.5" stroke="none"/>`);
    }
    add('</g>');
  });

  // Legend, right of the plot area.
  add('<g class="legend" font-size="11">');
  const entries: { name: string; color: string; dashed: boolean }[] = series.map((s, i) => ({ name: s.name, color: PALETTE[i % PALETTE.length], dashed: false }));
  if (opts.full) entries.push({ name: 'full data', color: FULL_COLOR, dashed: true });
  entries.forEach((e, i) => {
    const y = top + 8 + i * 22;
    const x = right + 18;
    add(`<line x1="${x}" y1="${y}" x2="${x + 26}" y2="${y}" stroke="${e.color}" stroke-width="2"${e.dashed ? ' stroke-dasharray="6 4"' : ''}/>`);
    if (!e.dashed) add(`<circle cx="${x + 13}" cy="${y}" r="3.5" fill="${e.color}"/>`);
    add(`<text x="${x + 34}" y="${y + 4}">${esc(e.name)}</text>`);
  });
  add('</g>');
  add('</svg>');
  return out.join('\n') + '\n';
}
