/**
 * The label-issues stage: the rows whose given label the data contradicts, as a
 * list to review, worst first. It reads a `confident` score sidecar when given
 * one (score --method confident), else computes one: out-of-sample predicted
 * probabilities and per-class thresholds decide which rows are flagged — how
 * many follows from the data, no noise rate is assumed (ml/scores/confident.ts).
 *
 * Output: a dataset of the flagged rows, worst first — `id`, `row` (in the
 * input), `given_label`, `suggested_label` (class names), `confidence` (how
 * sure the label is wrong: (1 − margin)/2, margin = p_given − the largest other
 * probability, in [0, 1]) and `rank` (1 = worst) — plus the same table as
 * `label_issues.csv` inside it and, with --csv, at that path too.
 */
import path from 'node:path';
import { z } from 'zod';
import { writeFileAtomic } from '../core/atomic.js';
import { DataError } from '../core/errors.js';
import { numericValues } from '../data/columns.js';
import { openDataset, readStrings } from '../data/reader.js';
import { combineColumns, getScorer } from '../ml/scores/index.js';
import type { StageContext, StageResult } from './context.js';
import { defineStage, one, parentOf } from './define.js';
import { backendOption, checkLabelled, describeDataset } from './inputs.js';
import { detection, plantedKinds } from './planted.js';
import { runScoreJobs, trainingLength } from './score.js';
import { trainChoicesFor, trainConfigOf, trainingOptions } from './training.js';

export const LABEL_ISSUES_VERSION = '1';
export const LABEL_ISSUES_CSV = 'label_issues.csv';
const METHOD = 'confident';

const positiveInt = z.number().int().positive();

export const labelIssuesOptions = z.object({
  out: z.string().min(1).describe('output dataset directory (the flagged rows, worst first, and label_issues.csv)'),
  scores: z.string().min(1).optional().describe('a confident score sidecar of the dataset to reuse (score --method confident); else it is computed'),
  csv: z.string().min(1).optional().describe('also write the table as CSV to this file'),
  folds: z.number().int().min(2).optional().describe('folds of the out-of-sample predictions (default 5)'),
  ...trainingOptions('the fold models'),
  seed: z.number().int().min(0).default(0).describe('seed of the folds and the models'),
  backend: backendOption,
  parallelism: positiveInt.optional().describe('worker threads at most (default: all cores); does not change the results'),
  overwrite: z.boolean().default(false).describe('replace the output if it exists'),
}).strict();

export type LabelIssuesOptions = z.input<typeof labelIssuesOptions>;

/** A CSV field: quoted when it holds a comma, a quote or a line break. */
function csvField(v: unknown): string {
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export const labelIssuesStage = defineStage({
  name: 'label-issues',
  version: LABEL_ISSUES_VERSION,
  description: 'List the rows whose label looks wrong, worst first, with a suggested label (a dataset plus label_issues.csv)',
  options: labelIssuesOptions,
  inputs: [
    { name: 'dataset', description: 'a labelled dataset' },
    { name: 'scores', description: 'a confident score sidecar of it', optional: true },
  ],
  async plan(inputs, o) {
    const data = await describeDataset(inputs.dataset[0], 'labelled');
    checkLabelled(data);
    if (!data.hasLabels || data.classNames.length < 2) throw new DataError('label issues need a label column with class names', { file: data.dir, hint: 'Ingest with labels' });
    const scoresDir = one(inputs, 'scores');
    const sidecar = scoresDir ? await openDataset(scoresDir) : undefined;
    if (sidecar) {
      for (const c of [METHOD, `${METHOD}_issue`, `${METHOD}_suggested`]) {
        if (!sidecar.column(c)) throw new DataError(`the sidecar has no "${c}" column`, { file: scoresDir, hint: 'Give the output of score --method confident, or no --scores to compute it' });
      }
      if (sidecar.curation?.sidecar_of !== undefined && sidecar.curation.sidecar_of !== data.ds.fingerprint) {
        throw new DataError('the scores were written for another dataset', { file: scoresDir, hint: `Rerun score --method confident on ${data.dir}` });
      }
    }
    const { out: _o, overwrite: _w, csv: _c, scores: _s, backend: _b, parallelism: _p, ...options } = o;
    // A small pool trains more epochs, as score's does (part of the fingerprint only then).
    const length = trainingLength({ ...o, method: METHOD }, data.n);
    return {
      data, scoresDir, epochs: length.epochs, warning: scoresDir ? undefined : length.warning,
      options: scoresDir ? { scores: sidecar!.fingerprint } : { ...options, ...(length.scaled ? { epochs: length.epochs } : {}) },
      seed: scoresDir ? undefined : o.seed,
      parents: [parentOf(data, 'dataset'), ...(sidecar ? [{ fingerprint: sidecar.fingerprint, path: path.resolve(scoresDir!), role: 'scores' }] : [])],
    };
  },
  async run(ctx, plan, o, out) {
    const { data } = plan;
    let margin: Float32Array;
    let issue: Float32Array;
    let suggested: Float32Array;
    if (plan.scoresDir) {
      const ds = await openDataset(data.dir, { sidecars: [plan.scoresDir] });
      margin = new Float32Array(data.n);
      issue = new Float32Array(data.n);
      suggested = new Float32Array(data.n);
      for await (const b of ds.blocks()) {
        margin.set(numericValues(b.column(METHOD)), b.offset);
        issue.set(numericValues(b.column(`${METHOD}_issue`)), b.offset);
        suggested.set(numericValues(b.column(`${METHOD}_suggested`)), b.offset);
      }
    } else {
      ctx.log.info({ rows: data.n, epochs: plan.epochs }, 'label-issues: out-of-sample predictions (confident learning)');
      if (plan.warning) ctx.log.warn({}, `label-issues: ${plan.warning}`);
      const train = trainConfigOf(trainChoicesFor(getScorer(METHOD).trainDefaults, { ...o, epochs: plan.epochs }), o.seed);
      const [r] = await runScoreJobs(ctx, [{ kind: 'score', train: { dir: data.dir }, settings: { method: METHOD, train, folds: o.folds } }], { ...o, method: METHOD });
      margin = r.scores;
      ({ issue, suggested } = combineColumns([r]) as { issue: Float32Array; suggested: Float32Array });
    }
    const ids = await readStrings(data.ds, 'id');
    const labels = new Int32Array(data.n);
    for await (const b of data.ds.blocks()) labels.set(numericValues(b.column('label')), b.offset);
    const flagged = Array.from(issue.keys()).filter((i) => issue[i] >= 0.5).sort((a, b) => margin[a] - margin[b] || a - b);
    const names = data.classNames;
    const rows = flagged.map((i, r) => ({
      id: ids[i], row: i, given_label: names[labels[i]], suggested_label: names[suggested[i]],
      confidence: (1 - margin[i]) / 2, rank: r + 1,
    }));
    const writer = await out.dataset({
      columns: [
        { name: 'id', kind: 'string' }, { name: 'row', kind: 'int64' }, { name: 'given_label', kind: 'string' },
        { name: 'suggested_label', kind: 'string' }, { name: 'confidence', kind: 'float32' }, { name: 'rank', kind: 'int64' },
      ],
      description: `rows of ${path.basename(data.dir)} whose label looks wrong, worst first`,
    });
    for (const row of rows) await writer.writeRow(row);
    const header = ['id', 'row', 'given_label', 'suggested_label', 'confidence', 'rank'];
    const csv = [header.join(','), ...rows.map((r) => header.map((h) => csvField(h === 'confidence' ? r.confidence.toFixed(4) : r[h as keyof typeof r])).join(','))].join('\n') + '\n';
    await writeFileAtomic(path.join(writer.tempDir, LABEL_ISSUES_CSV), csv);
    if (o.csv) await writeFileAtomic(path.resolve(o.csv), csv);
    const perClass: Record<string, number> = {};
    for (const i of flagged) perClass[names[labels[i]]] = (perClass[names[labels[i]]] ?? 0) + 1;
    const planted = await plantedKinds(data.ds);
    ctx.log.info({ flagged: flagged.length, of: data.n }, `label-issues: ${flagged.length} of ${data.n} rows flagged`);
    return {
      summary: {
        rows_in: data.n,
        flagged: flagged.length,
        share: flagged.length / data.n,
        how: 'confident learning: out-of-sample probabilities from k-fold models; per given class, the confident joint counts the rows whose most probable class among those whose threshold (the mean probability of the class over the rows labelled it) they clear is another one, and that many rows of the class with the lowest margins are flagged; no noise rate assumed',
        per_class: perClass,
        ...(planted ? { planted: detection(margin, planted, issue) } : {}),
        ...(plan.warning ? { warnings: [plan.warning] } : {}),
      },
    };
  },
});

/** Lists the label issues of the dataset at `dir` (the library form of `metacurate label-issues`). */
export async function labelIssues(dir: string, options: LabelIssuesOptions, ctx?: StageContext): Promise<StageResult> {
  return labelIssuesStage.run(ctx, { dataset: dir }, options);
}
