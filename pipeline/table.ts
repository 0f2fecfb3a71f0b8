/** Plain-text tables for the CLI's human output. */

export type Cell = string | number | undefined | null;

/** Columns padded to their widest cell; numbers right-aligned. */
// Control characters (C0 but tab and newline, DEL, C1): an ESC in a class name would
// otherwise drive the terminal (colours, cursor moves, title changes).
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/** Text safe to print on a terminal: control characters shown as \xNN escapes. */
export function terminalSafe(text: string): string {
  return text.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

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

export function formatTable(headers: string[], rows: Cell[][]): string {
  const text = rows.map((r) => r.map((c) => (c === undefined || c === null ? '' : typeof c === 'number' ? formatNumber(c) : terminalSafe(c))));
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

/**
 * A stage summary as text: scalar entries as `key  value` lines, and each
 * object-valued entry (e.g. per-class counts) as its own two-column table.
 */
export function formatSummary(summary: Record<string, unknown>): string {
  const scalars: Cell[][] = [];
  const tables: string[] = [];
  for (const [key, value] of Object.entries(summary)) {
    // Entries that do not apply (e.g. another strategy's settings) are left out.
    if (value === undefined || value === null) continue;
    if (typeof value === 'object' && !Array.isArray(value)) {
      const entries = Object.entries(value as Record<string, unknown>);
      if (entries.length === 0) continue;
      tables.push(formatTable([key, 'value'], entries.map(([k, v]) => [k, scalarCell(v)])));
    } else {
      scalars.push([key, scalarCell(value)]);
    }
  }
  const parts: string[] = [];
  if (scalars.length) parts.push(formatTable(['', ''], scalars).split('\n').slice(2).join('\n'));
  parts.push(...tables);
  return parts.join('\n\n');
}

function scalarCell(v: unknown): Cell {
  if (typeof v === 'number') return v;
  if (typeof v === 'string') return v;
  if (v === undefined || v === null) return '';
  return JSON.stringify(v);
}
