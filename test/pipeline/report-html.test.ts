// report.html (pipeline/report-html.ts) from a small real pipeline: ingest a
// slice of the built-in data, plant problems, score, list label issues, select
// and evaluate. Without a browser: the sections, escaping, the caps, the same
// page when every stage is skipped as current, and no sections for stages a
// pipeline does not have. In a real browser (Debian's chromium through
// puppeteer-core; skipped with a message when there is none): no errors, no
// request but the file itself, the chart and images drawn.
import { accessSync, constants, promises as fsp } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { parsePipelineConfig, type PipelineConfig } from '../../pipeline/config.js';
import { GALLERY_CACHE, HTML_LIMITS, REPORT_HTML, reportHtml } from '../../pipeline/report-html.js';
import { stageCounts, stageTable, writeReport, type PipelineReport } from '../../pipeline/report.js';
import { runPipeline } from '../../pipeline/runner.js';
import { REPO, assertBuilt, tempDir } from './helpers.js';

/** Debian's chromium (or another build on PATH), or undefined. */
function findChromium(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    for (const name of ['chromium', 'chromium-browser']) {
      const file = path.join(dir, name);
      try {
        accessSync(file, constants.X_OK);
        return file;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

const CHROMIUM = findChromium();
if (!CHROMIUM) console.warn('report.html browser test skipped: no chromium on PATH. Install it (Debian: apt-get install chromium) to run it.');

// Markup in the pipeline name: it must come out as text.
const NAME = 'tiny <script>alert(1)</script> & "report"';
const BUILTIN = path.join(REPO, 'data/builtin/fashion-mnist');

let dir: string;
let work: string;
let config: PipelineConfig;
let first: PipelineReport;
let html: string;

beforeAll(async () => {
  assertBuilt(); // the score, label-issues and evaluate workers run from dist/
  dir = await tempDir();
  work = path.join(dir, 'work');
  config = parsePipelineConfig({
    version: 1,
    name: NAME,
    workdir: work,
    seed: 0,
    stages: [
      { id: 'train', stage: 'ingest', inputs: [BUILTIN], options: { split: 'train', preset: 'fashion-mnist', limit: 400 } },
      { id: 'test', stage: 'ingest', inputs: [BUILTIN], options: { split: 'test', preset: 'fashion-mnist', limit: 200 } },
      { id: 'pool', stage: 'plant', inputs: ['${train}'], options: { offDomain: 0.2, transform: 'invert', labelNoise: 0.2 } },
      { id: 'aum', stage: 'score', inputs: { train: '${pool}' }, options: { method: 'aum', epochs: 2 } },
      { id: 'issues', stage: 'label-issues', inputs: ['${pool}'], options: { epochs: 2 } },
      { id: 'top-half', stage: 'select', inputs: ['${pool}', '${aum}'], options: { strategy: 'topk', by: 'aum', budget: 0.5 } },
      { id: 'eval-top-half', stage: 'evaluate', inputs: { train: '${top-half}', test: '${test}', fullTrain: '${pool}' }, options: { steps: 20, seeds: 2 } },
    ],
  }, { file: path.join(dir, 'tiny.json') });
  first = await runPipeline(config);
  html = await fsp.readFile(path.join(work, REPORT_HTML), 'utf8');
}, 120_000);

afterAll(async () => {
  if (dir) await fsp.rm(dir, { recursive: true, force: true });
});

/** The inside of one section of the page. */
function section(page: string, id: string): string | undefined {
  return page.match(new RegExp(`<section id="${id}">([\\s\\S]*?)</section>`))?.[1];
}

describe('report.html', () => {
  test('has every section, self-contained, with the data escaped', () => {
    expect(first.stages.every((s) => s.status === 'ran')).toBe(true);
    for (const id of ['stages', 'budget', 'evaluations', 'galleries', 'label-issues', 'selections', 'planted']) expect(section(html, id) !== undefined, id).toBe(true);
    expect(html).toContain(`content="default-src 'none'; img-src data:; style-src 'unsafe-inline'"`);
    // Nothing to fetch and nothing to run: no script, no URL but data: images and in-page links (the SVG namespace is a name, not a load).
    const outside = html.replaceAll('xmlns="http://www.w3.org/2000/svg"', '').match(/<script|<link|<iframe|https?:|src="(?!data:image\/png;base64,)/i);
    expect(outside?.[0]).toBeUndefined();
    expect(html).toContain('tiny &lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;report&quot;');
    expect(html).toContain('T-shirt/top');
    // The chart is the same SVG as budget.svg, inline and without its XML declaration.
    expect(section(html, 'budget')).toContain('<svg xmlns="http://www.w3.org/2000/svg"');
    expect(html).not.toContain('<?xml');
    // The evaluation's per-class accuracy beside its baselines, and a 10 × 10 confusion matrix.
    const evaluations = section(html, 'evaluations')!;
    expect(evaluations).toContain('random subset %');
    expect(evaluations.match(/<th class="pred">/g)).toHaveLength(10);
  });

  test('galleries: each class\'s lowest- and highest-scored rows, capped, with score, id and planted tag', () => {
    const galleries = section(html, 'galleries')!;
    const images = galleries.match(/<img src="data:image\/png;base64,/g) ?? [];
    // 400 rows, 10 classes of about 40: every class fills both sides.
    expect(images).toHaveLength(10 * 2 * HTML_LIMITS.galleryPerClass);
    expect(galleries).toContain('most harmful (lowest aum)');
    expect(galleries).toMatch(/<figcaption>-?\d[^<]*<br>train-\d{6}/);
    expect(galleries).toMatch(/<span class="tag">(label-noise|off-domain)<\/span>/);
  });

  test('label issues: the worst rows with their images, as many as the cap', () => {
    const issues = section(html, 'label-issues')!;
    const flagged = first.stages.find((s) => s.id === 'issues')!.summary.flagged as number;
    expect(flagged).toBeGreaterThan(0);
    const rows = issues.match(/<tr><td class="num">\d+<\/td>/g) ?? [];
    expect(rows).toHaveLength(Math.min(flagged, HTML_LIMITS.labelIssues));
    expect(issues.match(/<img /g)).toHaveLength(rows.length);
    expect(issues).toContain('<th>planted</th>');
  });

  test('stages skipped as current give the same page; a pipeline without those stages gives no such sections', async () => {
    const again = await runPipeline(config);
    expect(again.stages.every((s) => s.status === 'skipped')).toBe(true);
    const second = await fsp.readFile(path.join(work, REPORT_HTML), 'utf8');
    for (const id of ['budget', 'evaluations', 'galleries', 'label-issues', 'selections', 'planted']) expect(section(second, id) === section(html, id), id).toBe(true);
    // The score gallery of an unchanged stage comes from the workdir's cache, not from the pool: with the pool moved away it is the same.
    expect(JSON.parse(await fsp.readFile(path.join(work, GALLERY_CACHE), 'utf8'))).toHaveLength(1);
    const pool = path.join(work, again.stages.find((s) => s.id === 'pool')!.dir);
    await fsp.rename(pool, `${pool}-away`);
    try {
      const third = await fsp.readFile((await writeReport(work, again)).html, 'utf8');
      expect(section(third, 'galleries')).toBe(section(html, 'galleries'));
    } finally {
      await fsp.rename(`${pool}-away`, pool);
    }
    // The page the browser test opens: label issues draw their images from the pool, so write it again with the pool back.
    expect(await fsp.readFile((await writeReport(work, again)).html, 'utf8')).toBe(second);

    const ingestOnly: PipelineReport = { ...first, budget: undefined, stages: first.stages.filter((s) => s.stage === 'ingest') };
    const page = await reportHtml(work, { report: ingestOnly, stages: stageTable(ingestOnly), counts: stageCounts(ingestOnly), planted: {}, methods: {} });
    expect(section(page, 'stages')).toContain('train');
    for (const id of ['budget', 'evaluations', 'galleries', 'label-issues', 'selections', 'planted']) expect(section(page, id) === undefined, id).toBe(true);
  });

  test('a stage output that cannot be read is said on the page, and the report is still written', async () => {
    const elsewhere = await tempDir();
    try {
      const report: PipelineReport = { ...first, workdir: elsewhere, budget: undefined };
      const files = await writeReport(elsewhere, report);
      const page = await fsp.readFile(files.html, 'utf8');
      expect(section(page, 'galleries')).toMatch(/aum: could not be shown/);
      expect(section(page, 'evaluations')).toContain('No evaluation.json');
    } finally {
      await fsp.rm(elsewhere, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!CHROMIUM)('report.html in chromium', () => {
  test('loads with no error and no request, and draws the chart and every image', async () => {
    const { default: puppeteer } = await import('puppeteer-core');
    const browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      // CI runs as root, where chromium's sandbox cannot start.
      args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
      timeout: 20_000,
      protocolTimeout: 20_000,
    });
    try {
      const page = await browser.newPage();
      const url = pathToFileURL(path.join(work, REPORT_HTML)).href;
      const problems: string[] = [];
      const requests: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warn') problems.push(`console ${m.type()}: ${m.text()}`);
      });
      page.on('pageerror', (e) => problems.push(`page error: ${(e as Error).message}`));
      page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
      await page.setRequestInterception(true);
      page.on('request', (r) => {
        requests.push(r.url());
        // Nothing may leave the page: a request elsewhere is recorded (and fails the test), never made.
        if (r.url().startsWith('data:') || r.url() === url) void r.continue();
        else void r.abort();
      });
      await page.setViewport({ width: 1280, height: 900 });
      await page.goto(url, { waitUntil: 'load', timeout: 20_000 });

      expect(problems).toEqual([]);
      expect(requests.filter((u) => !u.startsWith('data:'))).toEqual([url]);
      expect(await page.title()).toBe(`Pipeline report: ${NAME}`);
      expect(await page.$$eval('script', (s) => s.length)).toBe(0);

      const chart = await page.$('#budget svg');
      const box = (await chart!.boundingBox())!;
      expect(box.width).toBeGreaterThan(300);
      expect(box.height).toBeGreaterThan(150);
      // Every image decoded and laid out: galleries and label issues.
      // The DOM's types are not in this project's lib: the few fields read, by hand.
      type Img = { complete: boolean; naturalWidth: number; getBoundingClientRect(): { width: number; height: number } };
      const images = await page.$$eval('#galleries img, #label-issues img', (els) => els.map((el) => {
        const img = el as unknown as Img;
        const r = img.getBoundingClientRect();
        return { complete: img.complete, natural: img.naturalWidth, width: r.width, height: r.height };
      }));
      expect(images.length).toBeGreaterThan(10 * 2 * HTML_LIMITS.galleryPerClass);
      for (const img of images) {
        expect(img.complete).toBe(true);
        expect(img.natural).toBeGreaterThan(0);
        expect(img.width * img.height).toBeGreaterThan(0);
      }
      const matrix = await page.$('#evaluations table.confusion');
      expect(((await matrix!.boundingBox())?.width ?? 0)).toBeGreaterThan(100);

      // The screenshot is not blank: the chart's region holds lines and text on white.
      const shot = Buffer.from(await page.screenshot({ fullPage: true, type: 'png' }));
      const region = await sharp(shot)
        .extract({ left: Math.round(box.x), top: Math.round(box.y), width: Math.round(box.width), height: Math.round(box.height) })
        .stats();
      expect(Math.max(...region.channels.slice(0, 3).map((c) => c.stdev))).toBeGreaterThan(10);
      expect(region.channels[0].min).toBeLessThan(100);
    } finally {
      await browser.close();
    }
  }, 60_000);
});
