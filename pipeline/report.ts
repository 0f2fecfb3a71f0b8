/**
 * The pipeline report: what each stage did (ran or skipped as current), its
 * fingerprint, rows and summary. Written as `<workdir>/report.json` and
 * `report.md`, and printed by `metacurate run`.
 */
import path from 'node:path';
import { writeFileAtomic } from '../core/atomic.js';
import { formatNumber, formatSummary, formatTable } from './table.js';

export const REPORT_JSON = 'report.json';
export const REPORT_MD = 'report.md';

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

export function reportMarkdown(report: PipelineReport): string {
  const lines = [
    `# Pipeline report: ${report.name}`,
    '',
    `- config: \`${report.config ?? '(in code)'}\``,
    `- code version: ${report.code_version}`,
    `- started: ${report.started_at}, finished: ${report.finished_at} (${formatNumber(round(report.seconds))} s)`,
    `- stages: ${report.stages.filter((s) => s.status === 'ran').length} ran, ${report.stages.filter((s) => s.status === 'skipped').length} skipped (current)`,
    '',
    '| stage | kind | status | rows | seconds | fingerprint | output |',
    '| --- | --- | --- | ---: | ---: | --- | --- |',
    ...report.stages.map((s) =>
      `| ${s.id} | ${s.stage} | ${statusText(s)} | ${formatNumber(s.numRows)} | ${formatNumber(round(s.seconds))} | \`${s.fingerprint}\` | \`${s.dir}\` |`,
    ),
  ];
  for (const s of report.stages) {
    lines.push('', `## ${s.id} (${s.stage})`, '');
    if (s.inputs.length) lines.push(`inputs: ${s.inputs.map((i) => `\`${i}\``).join(', ')}`, '');
    lines.push('```', formatSummary(s.summary), '```');
  }
  return lines.join('\n') + '\n';
}

/** Writes report.json and report.md into the workdir (each atomically). */
export async function writeReport(workdir: string, report: PipelineReport): Promise<{ json: string; md: string }> {
  const json = path.join(workdir, REPORT_JSON);
  const md = path.join(workdir, REPORT_MD);
  await writeFileAtomic(json, JSON.stringify(report, null, 2) + '\n');
  await writeFileAtomic(md, reportMarkdown(report));
  return { json, md };
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
