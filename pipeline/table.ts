/** Plain-text tables for the CLI's human output, and the report's tables as Markdown. */
import { showControls } from '../core/text.js';

export type Cell = string | number | undefined | null;

/** Text safe to print on a terminal: control characters shown as \xNN escapes. */
export const terminalSafe = showControls;

/** Text for a Markdown table cell or heading: no HTML, no table breaks, one line. */
export function markdownText(text: string): string {
  return terminalSafe(text)
    .replace(/[\\`*_[\]|<>&#]/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : `\\${c}`))
    .replace(/\r?\n/g, ' ');
}

/** Backticks that cannot occur in `text`: one more than its longest run (at least `min`). */
function backticksFor(text: string, min: number): string {
  const longest = Math.max(0, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  return '`'.repeat(Math.max(min, longest + 1));
}

/** Inline code that the text cannot close early. */
export function markdownCode(text: string): string {
  const t = terminalSafe(text).replace(/\r?\n/g, ' ');
  const ticks = backticksFor(t, 1);
  const pad = t.startsWith('`') || t.endsWith('`') ? ' ' : '';
  return `${ticks}${pad}${t}${pad}${ticks}`;
}

/** A fenced code block whose fence no line of the text can close. */
export function markdownBlock(text: string): string[] {
  const t = terminalSafe(text);
  const fence = backticksFor(t, 3);
  return [fence, t, fence];
}

/** Columns padded to their widest cell; numbers right-aligned (written by `number`, default formatNumber). */
export function formatTable(headers: string[], rows: Cell[][], number: (n: number) => string = formatNumber): string {
  const text = rows.map((r) => r.map((c) => (c === undefined || c === null ? '' : typeof c === 'number' ? number(c) : terminalSafe(c))));
  const numeric = headers.map((_, j) => rows.length > 0 && rows.every((r) => r[j] == null || typeof r[j] === 'number'));
  const widths = headers.map((h, j) => Math.max(h.length, ...text.map((r) => (r[j] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, j) => (numeric[j] ? c.padStart(widths[j]) : c.padEnd(widths[j]))).join('  ').trimEnd();
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...text.map(line)].join('\n');
}

/** A number with thousands separators, or a short decimal. */
export function formatNumber(n: number): string {
  if (Number.isInteger(n)) return n.toLocaleString('en-US');
  // Small values (a ridge of 1e-3, a std of 0.004) would round to 0: keep two significant digits.
  if (Math.abs(n) < 0.01) return n.toPrecision(2);
  return n.toLocaleString('en-US', { maximumFractionDigits: Math.abs(n) < 10 ? 2 : 1 });
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** A fraction as a percentage: 0.3005 → "30%", 0.066 → "6.6%" (one decimal below 10%). */
export function formatPercent(fraction: number): string {
  const p = 100 * fraction;
  return `${Number(p.toFixed(Math.abs(p) < 10 ? 1 : 0))}%`;
}

/** A cell of a report table: text, a number (formatNumber), or code (a fingerprint, a path). */
export type ReportCell = Cell | { code: string };

/** A table of the pipeline report, written as Markdown (report.md) or HTML (report.html). */
export interface ReportTable {
  headers: string[];
  /** Right-aligned (numeric) columns; default: none. */
  numeric?: boolean[];
  rows: ReportCell[][];
}

/** A report table as Markdown lines: cells escaped, code as inline code. */
export function markdownTable(t: ReportTable): string[] {
  const cell = (c: ReportCell) => (c === undefined || c === null ? '' : typeof c === 'number' ? formatNumber(c)
    : typeof c === 'object' ? markdownCode(c.code).replace(/\|/g, '\\|') : markdownText(c));
  return [
    `| ${t.headers.map(markdownText).join(' | ')} |`,
    `| ${t.headers.map((_, j) => (t.numeric?.[j] ? '---:' : '---')).join(' | ')} |`,
    ...t.rows.map((r) => `| ${r.map(cell).join(' | ')} |`),
  ];
}

/** Values up to this many characters print on one line. */
const INLINE_WIDTH = 100;
/** Records of up to this many entries may print on one line. */
const INLINE_ENTRIES = 6;
/** Lists of records (per-seed details, MGD rounds) print as a table of at most this many columns and rows. */
const GRID_COLUMNS = 10;
const GRID_ROWS = 20;

type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => typeof v === 'object' && v !== null && !Array.isArray(v);
const present = (o: Plain) => Object.entries(o).filter(([, v]) => v !== undefined && v !== null);

/** A summary number: fractions (accuracies, shares, AUROCs) keep three significant digits, where formatNumber keeps two decimals. */
function summaryNumber(n: number): string {
  return Number.isInteger(n) || Math.abs(n) >= 1 ? formatNumber(n) : String(Number(n.toPrecision(3)));
}

/**
 * A value on one line: lists as `a, b`, records as `k: v, k: v` (bracketed when
 * nested), or undefined when it is longer than `width`.
 */
function inline(v: unknown, width = INLINE_WIDTH, nested = false): string | undefined {
  let text: string;
  if (typeof v === 'number') text = summaryNumber(v);
  else if (v === null || v === undefined) text = '';
  else if (Array.isArray(v) || isPlain(v)) {
    const parts = Array.isArray(v) ? v.map((x) => inline(x, width, true)) : present(v).map(([k, x]) => {
      const t = inline(x, width, true);
      return t === undefined ? undefined : `${k}: ${t}`;
    });
    if (parts.some((p) => p === undefined)) return undefined;
    text = parts.join(', ');
    if (nested) text = Array.isArray(v) ? `[${text}]` : `{${text}}`;
  } else text = String(v);
  return text.length <= width || (typeof v === 'string' && !nested) ? text : undefined;
}

/** A list on one line, cut (with its length) when it is longer than `width`. */
function cutList(list: unknown[], width = INLINE_WIDTH): string {
  const parts: string[] = [];
  let used = 0;
  for (const x of list) {
    const t = inline(x, width, true) ?? '…';
    if (used + t.length > width) return `${parts.join(', ')}, … (${list.length} in all)`;
    parts.push(t);
    used += t.length + 2;
  }
  return parts.join(', ');
}

/** A record's entries with nested records spread into dotted keys (`replay.steps`). */
function flatten(o: Plain, prefix = ''): [string, unknown][] {
  return present(o).flatMap(([k, v]) => (isPlain(v) && present(v).length ? flatten(v, `${prefix}${k}.`) : [[`${prefix}${k}`, v] as [string, unknown]]));
}

/** A record of records (per-class counts before and after, per planted kind): one table, the longer side down. */
function matrixBlock(name: string, m: Plain): string {
  const outer = present(m).map(([k]) => k);
  const inner = [...new Set(outer.flatMap((k) => present(m[k] as Plain).map(([i]) => i)))];
  const at = (o: string, i: string) => (m[o] as Plain)[i];
  const [down, across, get] = inner.length > outer.length
    ? [inner, outer, (d: string, a: string) => at(a, d)]
    : [outer, inner, (d: string, a: string) => at(d, a)];
  return formatTable([name, ...across], down.map((d) => [d, ...across.map((a) => summaryCell(get(d, a)))]), summaryNumber);
}

/** A list of records (per-seed details, MGD rounds): entries alike in every record once, then a row per record. */
function gridBlocks(name: string, list: Plain[], out: string[]): void {
  const rows = list.map((o) => new Map(flatten(o)));
  const keys = [...new Set(rows.flatMap((r) => [...r.keys()]))];
  const text = (r: Map<string, unknown>, k: string) => inline(r.get(k), 40) ?? '…';
  const same = rows.length > 1 ? keys.filter((k) => rows.every((r) => text(r, k) === text(rows[0], k))) : [];
  const varying = keys.filter((k) => !same.includes(k));
  if (same.length) out.push(formatTable([`${name}: in every entry`, 'value'], same.map((k) => [k, summaryCell(rows[0].get(k), 40)]), summaryNumber));
  if (varying.length > GRID_COLUMNS) {
    rows.slice(0, GRID_ROWS).forEach((r, i) => summaryBlocks(Object.fromEntries(varying.map((k) => [k, r.get(k)])), `${name}[${i}]`, out));
  } else if (varying.length) {
    const shown = rows.slice(0, GRID_ROWS).map((r, i) => [i, ...varying.map((k) => summaryCell(r.get(k), 40))]);
    out.push(formatTable([name, ...varying], shown, summaryNumber));
  }
  if (rows.length > GRID_ROWS) out.push(`${name}: ${rows.length - GRID_ROWS} more not shown`);
}

/** A value as a table cell: numbers stay numbers (right-aligned), the rest on one line. */
function summaryCell(v: unknown, width = INLINE_WIDTH): Cell {
  if (typeof v === 'number') return v;
  if (Array.isArray(v)) return inline(v, width) ?? cutList(v, Math.max(width, INLINE_WIDTH));
  return inline(v, width) ?? '…';
}

function summaryBlocks(obj: Plain, name: string | undefined, out: string[]): void {
  const lines: Cell[][] = [];
  const nested: string[] = [];
  const sub = (key: string) => (name === undefined ? key : `${name}.${key}`);
  for (const [key, value] of present(obj)) {
    if (Array.isArray(value) && value.length && value.every(isPlain)) {
      gridBlocks(sub(key), value as Plain[], nested);
    } else if (Array.isArray(value)) {
      lines.push([key, summaryCell(value)]);
    } else if (isPlain(value)) {
      const entries = present(value);
      if (entries.length === 0) continue;
      // Settings-like records (a model spec) fit on a line; counts and measures (per class, per kind) stay tables.
      const oneLine = entries.length <= INLINE_ENTRIES && entries.some(([, v]) => typeof v !== 'number') ? inline(value) : undefined;
      if (entries.every(([, v]) => isPlain(v))) nested.push(matrixBlock(sub(key), value));
      else if (oneLine !== undefined) lines.push([key, oneLine]);
      else summaryBlocks(value, sub(key), nested);
    } else {
      lines.push([key, summaryCell(value)]);
    }
  }
  if (lines.length) {
    // The top level is plain `key  value` lines; a nested record gets its name as the header.
    out.push(name === undefined
      ? formatTable(['', ''], lines, summaryNumber).split('\n').slice(2).join('\n')
      : formatTable([name, 'value'], lines, summaryNumber));
  }
  out.push(...nested);
}

/**
 * A stage summary as text: plain entries as `key  value` lines; records as their
 * own tables (a record of records as one table, a list of records as a table
 * with a row each); numbers rounded for reading.
 */
export function formatSummary(summary: Record<string, unknown>): string {
  const out: string[] = [];
  summaryBlocks(summary, undefined, out);
  return out.join('\n\n');
}
