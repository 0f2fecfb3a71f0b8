/**
 * The pipeline report as one self-contained page, `<workdir>/report.html`: the
 * stage table; the accuracy-vs-budget chart (inline SVG) and table; per-class
 * accuracy and the confusion matrix of every evaluation; for every score, the
 * rows it ranks lowest (most harmful) and highest (most helpful) in each class,
 * as images; the label issues with their images; what each selection kept of
 * each class; the planted-problem tables. The tables report.md also shows come
 * built from pipeline/report.ts; the rest is read from the stage outputs on
 * disk, so the page is the same whether the stages ran now or were skipped as
 * current. A section whose stage is absent is left out.
 *
 * Self-contained: no script and no external resource (its Content-Security-Policy
 * forbids every load but data: images and inline styles); images are small PNG
 * data: URIs. Everything that comes from data or the pipeline file is escaped.
 * HTML_LIMITS bound its size whatever the pool's: galleries keep only each
 * class's top rows while streaming (TopK), label issues only the first rows.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../core/atomic.js';
import { escapeXml as esc } from '../core/text.js';
import { formatValue, rankPerClass, rowsAt, thumbnailPng, type ShownRow } from '../data/export.js';
import type { PixelShape } from '../data/format.js';
import { openDataset } from '../data/reader.js';
import { REPORT_FILE as EVALUATION_FILE, type EvaluateReport } from '../stages/evaluate.js';
import { PLANTED_COLUMN } from '../stages/plant.js';
import type { NotedTable, PipelineReport, StageReport } from './report.js';
import { formatNumber, formatPercent, type ReportCell, type ReportTable } from './table.js';

export const REPORT_HTML = 'report.html';

/** Caps that keep the page small for any pool. */
export const HTML_LIMITS = {
  /** Images per class on each side of a score's gallery. */
  galleryPerClass: 6,
  /** Classes (the first, by label) in each gallery. */
  galleryClasses: 20,
  /** Label issues shown, worst first. */
  labelIssues: 40,
  /** Classes up to which a confusion matrix is drawn. */
  confusionClasses: 30,
  /** Class rows of the per-class tables. */
  classRows: 100,
  /** Largest side of a thumbnail, px: larger images are shrunk. */
  thumbnailSide: 64,
};
export type HtmlLimits = typeof HTML_LIMITS;

/** What pipeline/report.ts has already built for report.md, and the selection methods by select stage output. */
export interface HtmlReportInput {
  report: PipelineReport;
  stages: ReportTable;
  /** How the stages went: "3 ran, 2 skipped (current)". */
  counts: string;
  budget?: { svg: string; table: ReportTable; note: string; protocols: string[] };
  planted: { detection?: NotedTable; kept?: NotedTable };
  /** Each select stage's method ("curate issues", "topk by metagrad"), by its id. */
  methods: Record<string, string>;
  /** Score galleries built before, by `galleryKey`: read for this page, then left holding exactly this page's galleries. */
  galleries?: Map<string, string>;
}

/**
 * A score gallery streams the whole pool for its images, so a run whose score
 * stages are all current would read the pool once per score just to draw the
 * same page again. Galleries are kept by what decides them: the stage's id and
 * fingerprint (which covers the pool's), the cap and this file's layout version.
 */
export const GALLERY_CACHE = '.report-galleries.json';
const GALLERY_VERSION = 1;

function galleryKey(s: StageReport, limits: HtmlLimits): string {
  return JSON.stringify([GALLERY_VERSION, s.id, s.fingerprint, s.dir, s.inputs[0] ?? null, limits.galleryPerClass]);
}

async function readGalleryCache(file: string): Promise<Map<string, string>> {
  try {
    const entries: unknown = JSON.parse(await fsp.readFile(file, 'utf8'));
    if (!Array.isArray(entries)) return new Map();
    return new Map(entries.filter((e): e is [string, string] => Array.isArray(e) && typeof e[0] === 'string' && typeof e[1] === 'string'));
  } catch {
    // None yet, or unreadable: every gallery is built afresh (and the file rewritten).
    return new Map();
  }
}

const CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'";

const STYLE = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1d1d1f;background:#fff;max-width:1280px;margin:0 auto;padding:0 20px 48px}
h1{font-size:24px;margin:24px 0 8px}h2{font-size:19px;margin:36px 0 8px;padding-bottom:4px;border-bottom:1px solid #ddd}h3{font-size:15px;margin:20px 0 6px}
nav{margin:8px 0 0}nav a{margin-right:14px;color:#1f5fbf}
ul.meta{margin:6px 0;padding-left:18px;color:#444}
table{border-collapse:collapse;margin:6px 0 14px}th,td{border:1px solid #e1e1e1;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f5f5f7;font-weight:600}.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace}
.note{color:#5f6368;max-width:900px}.warn{color:#a33}
.chart svg{display:block;max-width:100%;height:auto;border:1px solid #eee}
.cards{display:flex;flex-wrap:wrap;gap:8px 28px}.card{flex:0 1 auto}
table.confusion td{text-align:right;min-width:2.4em;padding:2px 4px;font-variant-numeric:tabular-nums}
table.confusion th.pred{writing-mode:vertical-rl;transform:rotate(180deg);font-weight:500;padding:4px 2px}
table.gallery td{padding:4px}table.gallery th{white-space:nowrap}
figure.thumb{display:inline-block;width:66px;margin:0 3px 3px 0;vertical-align:top}
figure.thumb img{display:block;width:56px;height:auto;image-rendering:pixelated;background:#808080;border:1px solid #ccc}
figcaption{font-size:10px;line-height:1.25;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.tag{display:inline-block;padding:0 3px;border-radius:3px;background:#fde6c8;color:#6a3d00;font-size:10px}
th small{display:block;font-weight:400;color:#5f6368}
`;

function cellHtml(c: ReportCell): string {
  if (c === undefined || c === null) return '';
  if (typeof c === 'number') return formatNumber(c);
  if (typeof c === 'object') return `<code>${esc(c.code)}</code>`;
  return esc(c);
}

/** A report table (pipeline/report.ts) as HTML. */
export function htmlTable(t: ReportTable, cls = ''): string {
  const num = (j: number) => (t.numeric?.[j] ? ' class="num"' : '');
  return `<table${cls ? ` class="${cls}"` : ''}><thead><tr>${t.headers.map((h, j) => `<th${num(j)}>${esc(h)}</th>`).join('')}</tr></thead>` +
    `<tbody>${t.rows.map((r) => `<tr>${r.map((c, j) => `<td${num(j)}>${cellHtml(c)}</td>`).join('')}</tr>`).join('\n')}</tbody></table>`;
}

const note = (text: string, cls = 'note') => `<p class="${cls}">${esc(text)}</p>`;

/** The image of a row as a data: URI. */
async function imageUri(row: ShownRow, shape: PixelShape, limits: HtmlLimits): Promise<string> {
  return `data:image/png;base64,${(await thumbnailPng(row.pixels, shape, limits.thumbnailSide)).toString('base64')}`;
}

/** A row as a captioned thumbnail: `lines` under the image, the whole description as alt and tooltip. */
async function figure(row: ShownRow, shape: PixelShape, limits: HtmlLimits, describe: string, lines: string[]): Promise<string> {
  const planted = row.extra[PLANTED_COLUMN];
  const tag = planted && planted !== 'clean' ? `<span class="tag">${esc(planted)}</span>` : '';
  const alt = esc(`${describe}${planted ? ` (planted: ${planted})` : ''}`);
  return `<figure class="thumb"><img src="${await imageUri(row, shape, limits)}" alt="${alt}" title="${alt}">` +
    `<figcaption>${lines.map((l) => esc(l)).join('<br>')}${tag ? `<br>${tag}` : ''}</figcaption></figure>`;
}

const className = (names: readonly string[] | undefined, label: number) => names?.[label] ?? String(label);

/** Each class's lowest- and highest-scored rows of one score stage, with their images. */
async function scoreGallery(workdir: string, s: StageReport, limits: HtmlLimits): Promise<string> {
  const column = typeof s.summary.method === 'string' ? s.summary.method : undefined;
  const head = `<h3>${esc(s.id)} <small>(${esc(column ?? 'score')}; higher = keep)</small></h3>`;
  if (!column || s.inputs.length === 0) return head + note('This score stage records no method or input.');
  const ds = await openDataset(path.resolve(workdir, s.inputs[0]), { sidecars: [path.resolve(workdir, s.dir)] });
  const of = ds.sidecars[0].curation?.sidecar_of;
  if (of !== undefined && of !== ds.fingerprint) return head + note(`The scores were written for another version of ${s.inputs[0]}; rerun the pipeline.`, 'warn');
  const shape = ds.pixelShape;
  if (!shape || !ds.column('pixels') || !ds.column(column)) return head + note(`${s.inputs[0]} has no pixels (or no ${column} column) to show.`);
  const ranked = await rankPerClass(ds, limits.galleryPerClass, column, ['worst', 'best'], {
    extras: [PLANTED_COLUMN],
    classes: (label) => label < limits.galleryClasses,
  });
  const names = ds.classNames;
  const labels = [...new Set([...ranked.worst.keys(), ...ranked.best.keys()])].sort((a, b) => a - b);
  const strip = async (rows: ShownRow[] | undefined) => (await Promise.all((rows ?? []).map((r) =>
    figure(r, shape, limits, `${className(names, r.label)}: ${r.id}, ${column} ${formatValue(r.value!)}`, [formatValue(r.value!), r.id])))).join('');
  const body: string[] = [];
  for (const label of labels) {
    body.push(`<tr><th>${esc(className(names, label))}</th><td>${await strip(ranked.worst.get(label))}</td><td>${await strip(ranked.best.get(label))}</td></tr>`);
  }
  const classes = names?.length ?? labels.length;
  const cut = classes > limits.galleryClasses ? note(`The first ${limits.galleryClasses} of ${classes} classes.`) : '';
  return head + cut +
    `<table class="gallery"><thead><tr><th>class</th><th>most harmful (lowest ${esc(column)})</th><th>most helpful (highest ${esc(column)})</th></tr></thead>` +
    `<tbody>${body.join('\n')}</tbody></table>`;
}

/** The first (worst) label issues of a label-issues stage, each with its image from the input dataset. */
async function labelIssueTable(workdir: string, s: StageReport, limits: HtmlLimits): Promise<string> {
  const issues = await openDataset(path.resolve(workdir, s.dir));
  const rows: { id: string; row: number; given: string; suggested: string; confidence: number; rank: number }[] = [];
  for await (const b of issues.blocks()) {
    for (let i = 0; i < b.length && rows.length < limits.labelIssues; i++) {
      rows.push({
        id: String(b.column('id').get(i)), row: Number(b.column('row').get(i)), given: String(b.column('given_label').get(i)),
        suggested: String(b.column('suggested_label').get(i)), confidence: Number(b.column('confidence').get(i)), rank: Number(b.column('rank').get(i)),
      });
    }
    if (rows.length >= limits.labelIssues) break;
  }
  const flagged = typeof s.summary.flagged === 'number' ? s.summary.flagged : issues.numRows ?? rows.length;
  const rowsIn = typeof s.summary.rows_in === 'number' ? ` of ${formatNumber(s.summary.rows_in)}` : '';
  const head = `<h3>${esc(s.id)}</h3>` + note(`${formatNumber(flagged)}${rowsIn} rows flagged` +
    (flagged > rows.length ? `; the ${rows.length} worst shown (all in ${s.dir}/label_issues.csv).` : '.') +
    ' Confidence: how sure the given label is wrong (0.5 = a tie with the suggested one).');
  if (rows.length === 0) return head;
  const input = s.inputs.length ? await openDataset(path.resolve(workdir, s.inputs[0])) : undefined;
  const shape = input?.pixelShape;
  const images = input && shape && input.column('pixels') ? await rowsAt(input, rows.map((r) => r.row), [PLANTED_COLUMN]) : new Map<number, ShownRow>();
  const planted = input?.column(PLANTED_COLUMN) !== undefined;
  const body: string[] = [];
  for (const r of rows) {
    const shown = images.get(r.row);
    // The row index is the input's: an image of another id means the input changed since.
    const img = shown && shown.id === r.id && shape ? await figure(shown, shape, limits, `${r.id}: labelled ${r.given}, looks like ${r.suggested}`, []) : '';
    body.push(`<tr><td class="num">${r.rank}</td><td>${img}</td><td><code>${esc(r.id)}</code></td><td>${esc(r.given)}</td><td>${esc(r.suggested)}</td>` +
      `<td class="num">${r.confidence.toFixed(3)}</td>${planted ? `<td>${esc(shown?.extra[PLANTED_COLUMN] ?? '')}</td>` : ''}</tr>`);
  }
  return head + `<table><thead><tr><th class="num">rank</th><th>image</th><th>id</th><th>given label</th><th>suggested label</th><th class="num">confidence</th>` +
    `${planted ? '<th>planted</th>' : ''}</tr></thead><tbody>${body.join('\n')}</tbody></table>`;
}

const pct = (v: number | null | undefined) => (typeof v === 'number' ? (100 * v).toFixed(1) : '–');

/** A confusion matrix, mean rows over seeds, shaded by each true class's share: green on the diagonal, red off it. */
function confusionTable(classes: string[], confusion: number[][]): string {
  const head = `<tr><th>true \\ predicted</th>${classes.map((c) => `<th class="pred">${esc(c)}</th>`).join('')}</tr>`;
  const body = confusion.map((row, t) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    const cells = row.map((v, p) => {
      const share = v / total;
      // Off-diagonal shares are small: doubled so that a 10% confusion shows.
      const alpha = (t === p ? share : Math.min(1, 2 * share)) * 0.85;
      const rgb = t === p ? '44,160,44' : '214,39,40';
      const text = Number.isInteger(v) ? String(v) : v.toFixed(1);
      return `<td style="background:rgba(${rgb},${alpha.toFixed(3)})" title="${esc(`${classes[t]} → ${classes[p]}: ${text} (${formatPercent(share)})`)}">${v === 0 ? '' : text}</td>`;
    });
    return `<tr><th>${esc(classes[t])}</th>${cells.join('')}</tr>`;
  });
  return `<table class="confusion"><thead>${head}</thead><tbody>${body.join('\n')}</tbody></table>`;
}

/** Per-class accuracy (beside the evaluate stage's baselines) and the confusion matrix of one evaluation. */
async function evaluationCard(workdir: string, s: StageReport, input: HtmlReportInput, limits: HtmlLimits): Promise<string> {
  const row = input.report.budget?.rows.find((r) => r.evaluation === s.id);
  const what = row ? `${row.method}, ${formatPercent(row.budget)} of the pool` : `trained on ${s.inputs[0] ?? '?'}`;
  const acc = typeof s.summary.accuracy === 'number' ? ` — ${pct(s.summary.accuracy)}%` : '';
  const head = `<h3>${esc(s.id)}${esc(acc)} <small>(${esc(what)})</small></h3>`;
  let r: Partial<EvaluateReport>;
  try {
    r = JSON.parse(await fsp.readFile(path.join(workdir, s.dir, EVALUATION_FILE), 'utf8'));
  } catch {
    return head + note(`No ${EVALUATION_FILE} in ${s.dir}.`);
  }
  if (!r.classes || !r.perClass || !r.confusion) {
    return head + note('This evaluation was written before evaluate recorded per-class results: rerun it (metacurate run --force) to see them.');
  }
  const random = r.baselines?.random?.perClass;
  const full = r.baselines?.full?.perClass;
  const classes = r.classes;
  const table: ReportTable = {
    headers: ['class', 'accuracy %', ...(random ? ['random subset %'] : []), ...(full ? ['full pool %'] : [])],
    numeric: [false, true, true, true],
    rows: classes.slice(0, limits.classRows).map((c, i) => [c, pct(r.perClass![i]), ...(random ? [pct(random[i])] : []), ...(full ? [pct(full[i])] : [])]),
  };
  const cut = classes.length > limits.classRows ? note(`The first ${limits.classRows} of ${classes.length} classes.`) : '';
  const matrix = classes.length <= limits.confusionClasses
    ? `<div class="card"><p class="note">Confusion matrix: test rows by true class and prediction, mean over seeds.</p>${confusionTable(classes, r.confusion)}</div>`
    : `<div class="card">${note(`${classes.length} classes: too many to draw the confusion matrix (it is in ${s.dir}/${EVALUATION_FILE}).`)}</div>`;
  return head + `<div class="cards"><div class="card">${cut}${htmlTable(table)}</div>${matrix}</div>`;
}

type PerClass = { before?: Record<string, number>; after?: Record<string, number> };

/** What every selection kept of each class: rows kept and their share of the class. */
function keptPerClass(stages: StageReport[], methods: Record<string, string>, limits: HtmlLimits): string {
  const sels = stages.filter((s) => s.stage === 'select' && (s.summary.per_class as PerClass | undefined)?.after);
  if (sels.length === 0) return '';
  const per = (s: StageReport) => s.summary.per_class as PerClass;
  const classes = [...new Set(sels.flatMap((s) => Object.keys(per(s).before ?? per(s).after ?? {})))];
  const head = `<tr><th>class</th>${sels.map((s) => {
    const rowsIn = typeof s.summary.rows_in === 'number' ? s.summary.rows_in : undefined;
    const rows = typeof s.summary.rows === 'number' ? s.summary.rows : undefined;
    const share = rowsIn && rows !== undefined ? `, ${formatPercent(rows / rowsIn)}` : '';
    return `<th class="num">${esc(s.id)}<small>${esc(`${methods[s.id] ?? ''}${share}`)}</small></th>`;
  }).join('')}</tr>`;
  const body = classes.slice(0, limits.classRows).map((c) => `<tr><th>${esc(c)}</th>${sels.map((s) => {
    const kept = per(s).after?.[c] ?? 0;
    const before = per(s).before?.[c];
    return `<td class="num">${formatNumber(kept)}${before ? ` <small>(${formatPercent(kept / before)})</small>` : ''}</td>`;
  }).join('')}</tr>`);
  const cut = classes.length > limits.classRows ? note(`The first ${limits.classRows} of ${classes.length} classes.`) : '';
  return note('Rows each selection kept of each class, and their share of the class in its input.') + cut +
    `<table><thead>${head}</thead><tbody>${body.join('\n')}</tbody></table>`;
}

/** A section built from stage outputs; if one cannot be read, the page says so instead of failing the run. */
async function guarded(what: string, build: () => Promise<string>): Promise<string> {
  try {
    return await build();
  } catch (err) {
    return note(`${what}: could not be shown (${(err as Error).message})`, 'warn');
  }
}

/** The whole page. */
export async function reportHtml(workdir: string, input: HtmlReportInput, limits: HtmlLimits = HTML_LIMITS): Promise<string> {
  const { report } = input;
  const of = (kind: string) => report.stages.filter((s) => s.stage === kind);
  const sections: { id: string; title: string; body: string }[] = [];
  const add = (id: string, title: string, body: string) => {
    if (body) sections.push({ id, title, body });
  };

  add('stages', 'Stages', htmlTable(input.stages));
  if (input.budget) {
    // The chart's XML declaration has no place inside HTML.
    const svg = input.budget.svg.replace(/^<\?xml[^>]*\?>\s*/, '');
    const protocols = input.budget.protocols.length ? note(`Protocol: ${input.budget.protocols.join(' / ')}`) : '';
    add('budget', 'Accuracy vs budget', `<div class="chart">${svg}</div>${note(input.budget.note)}${htmlTable(input.budget.table)}${protocols}`);
  }
  const evaluations = await Promise.all(of('evaluate').map((s) => guarded(s.id, () => evaluationCard(workdir, s, input, limits))));
  add('evaluations', 'Per-class accuracy', evaluations.length
    ? note('Test accuracy on each class, mean over the seeds, beside the evaluate stage\'s baselines.') + evaluations.join('\n') : '');
  const galleries: string[] = [];
  const shown = new Map<string, string>();
  for (const s of of('score')) {
    const key = galleryKey(s, limits);
    const known = input.galleries?.get(key);
    if (known !== undefined) {
      shown.set(key, known);
      galleries.push(known);
      continue;
    }
    // A gallery that fails is shown as a note and not kept: the next run tries again.
    galleries.push(await guarded(s.id, async () => {
      const built = await scoreGallery(workdir, s, limits);
      shown.set(key, built);
      return built;
    }));
  }
  if (input.galleries) {
    input.galleries.clear();
    for (const [k, v] of shown) input.galleries.set(k, v);
  }
  add('galleries', 'Most harmful and most helpful rows', galleries.length
    ? note(`For each score, the ${limits.galleryPerClass} rows of each class it ranks lowest and highest; under each image its score and id, ` +
      'and a tag where a problem was planted.') + galleries.join('\n') : '');
  const issues: string[] = [];
  for (const s of of('label-issues')) issues.push(await guarded(s.id, () => labelIssueTable(workdir, s, limits)));
  add('label-issues', 'Label issues', issues.join('\n'));
  add('selections', 'What each selection kept, per class', keptPerClass(report.stages, input.methods, limits));
  const planted = [input.planted.detection, input.planted.kept].filter((t): t is NotedTable => t !== undefined);
  add('planted', 'Planted problems', planted.map((t) => note(t.note) + htmlTable(t.table)).join('\n'));

  const title = `Pipeline report: ${report.name}`;
  return [
    '<!DOCTYPE html>',
    '<html lang="en">',
    '<head>',
    '<meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="${CSP}">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${esc(title)}</title>`,
    `<style>${STYLE}</style>`,
    '</head>',
    '<body>',
    `<h1>${esc(title)}</h1>`,
    '<ul class="meta">',
    `<li>config: <code>${esc(report.config ?? '(in code)')}</code>; code version ${esc(report.code_version)}</li>`,
    `<li>started ${esc(report.started_at)}, finished ${esc(report.finished_at)} (${formatNumber(Math.round(report.seconds * 10) / 10)} s)</li>`,
    `<li>stages: ${esc(input.counts)}</li>`,
    '</ul>',
    `<nav>${sections.map((s) => `<a href="#${s.id}">${esc(s.title)}</a>`).join('')}</nav>`,
    ...sections.map((s) => `<section id="${s.id}"><h2>${esc(s.title)}</h2>\n${s.body}\n</section>`),
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

/**
 * Writes report.html into the workdir (atomically) and returns its path. Score
 * galleries come from the workdir's gallery cache when their stage is unchanged;
 * the cache keeps only the galleries of this page.
 */
export async function writeReportHtml(workdir: string, input: HtmlReportInput, limits: HtmlLimits = HTML_LIMITS): Promise<string> {
  const file = path.join(workdir, REPORT_HTML);
  const cacheFile = path.join(workdir, GALLERY_CACHE);
  const galleries = await readGalleryCache(cacheFile);
  const page = await reportHtml(workdir, { ...input, galleries }, limits);
  await writeFileAtomic(cacheFile, JSON.stringify([...galleries]));
  await writeFileAtomic(file, page);
  return file;
}
