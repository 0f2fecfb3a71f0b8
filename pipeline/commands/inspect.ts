/** `metacurate inspect <dir>`: schema, shards, classes, lineage and samples of a dataset. */
import { UsageError } from '../../core/errors.js';
import { inspectDataset, type DatasetInspection } from '../../data/inspect.js';
import { formatBytes, formatNumber, formatTable } from '../table.js';
import { collect, parsePositive, type RegisterCommand } from './common.js';

export const registerInspect: RegisterCommand = (program, session) => {
  program
    .command('inspect')
    .description('Summarise a dataset: columns, rows, shards, class histogram, lineage, sample rows, rejected inputs')
    .argument('<dir>', 'dataset directory')
    .option('--verify', 'check every shard\'s sha256 against curation.json')
    .option('--sidecar <dir>', 'join a sidecar dataset (repeatable)', collect)
    .option('--samples <n>', 'sample rows to show (default 5)', parsePositive)
    .option('--sort-by <column>', 'show the rows with the highest values of a numeric column (a score from --sidecar) instead of the first rows')
    .option('--asc', 'with --sort-by: lowest values first (for scores, the rows most worth dropping)')
    .addHelpText('after', '\nExample: the 20 rows the metagradient says help least\n  metacurate inspect out/default/pool --sidecar out/default/metagrad --sort-by metagrad --asc --samples 20')
    .action(async (dir: string, flags: { verify?: boolean; sidecar?: string[]; samples?: number; sortBy?: string; asc?: boolean }, cmd) => {
      if (flags.asc && flags.sortBy === undefined) throw new UsageError('--asc orders the rows of --sort-by', { hint: 'Add --sort-by <column>' });
      const report = await inspectDataset(dir, { verify: flags.verify, sidecars: flags.sidecar, samples: flags.samples, sortBy: flags.sortBy, ascending: flags.asc });
      session.output(cmd, report, () => formatInspection(report));
    });
};

export function formatInspection(r: DatasetInspection): string {
  const parts: string[] = [];
  const head: [string, string][] = [
    ['dataset', r.dir],
    ['fingerprint', r.fingerprint],
    ['rows', formatNumber(r.rows)],
    ['size', `${formatBytes(r.bytes)} in ${r.shards.length} shard${r.shards.length === 1 ? '' : 's'}${r.verified ? ' (sha256 verified)' : ''}`],
  ];
  if (r.pixel_shape) head.push(['pixels', r.pixel_shape.join(' x ') + ' (H x W x C)']);
  if (r.rejected) head.push(['rejected', `${formatNumber(r.rejected.count)} inputs (rejected.jsonl)`]);
  const keyWidth = Math.max(...head.map(([k]) => k.length));
  parts.push(head.map(([k, v]) => `${k.padEnd(keyWidth)}  ${v}`).join('\n'));

  parts.push(section('columns', formatTable(
    ['name', 'kind', 'detail', 'nullable', 'from'],
    r.columns.map((c) => [c.name, c.kind, c.detail, c.nullable ? 'yes' : 'no', c.source === r.dir ? '.' : c.source]),
  )));
  parts.push(section('shards', formatTable(['file', 'rows', 'bytes'], r.shards.map((s) => [s.file, s.rows, s.bytes]))));
  if (r.classes) {
    parts.push(section('classes', formatTable(
      ['label', 'name', 'count', 'share'],
      r.classes.map((c) => [c.label, c.name, c.count, r.rows ? `${((100 * c.count) / r.rows).toFixed(1)}%` : '']),
    )));
  }
  if (r.lineage.length) {
    parts.push(section('lineage', formatTable(
      ['depth', 'stage', 'version', 'fingerprint', 'parents', 'code', 'created'],
      r.lineage.map((l) => [l.depth, l.stage, l.stage_version, l.fingerprint, l.parents.map((p) => p.fingerprint).join(',') || '-', l.code_version, l.created_at]),
    )));
    const own = r.lineage[0];
    parts.push(`options (${own.stage}): ${JSON.stringify(own.options)}${own.seed !== undefined ? `, seed ${own.seed}` : ''}`);
  }
  if (r.sidecars.length) {
    parts.push(section('sidecars', formatTable(['dir', 'stage', 'fingerprint'], r.sidecars.map((s) => [s.dir, s.stage, s.fingerprint]))));
  }
  if (r.samples.length) {
    const by = r.sorted_by;
    const sorted = by !== undefined;
    parts.push(section(by ? `rows by ${by.column}, ${by.ascending ? 'lowest' : 'highest'} first` : 'samples', formatTable(
      ['row', 'id', 'label', 'class', ...(by ? [by.column] : []), 'pixels min/max/mean'],
      r.samples.map((s) => [s.row, s.id, s.label, s.class_name, ...(sorted ? [s.value] : []), s.pixels ? `${s.pixels.min}/${s.pixels.max}/${s.pixels.mean}` : '']),
    )));
  }
  if (r.rejected && r.rejected.count > 0) {
    parts.push(section('rejected', formatTable(['reason', 'count'], Object.entries(r.rejected.reasons).map(([k, v]) => [k, v]))));
  }
  return parts.join('\n\n');
}

function section(title: string, body: string): string {
  return `${title}\n${body}`;
}
