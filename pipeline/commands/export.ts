/** `metacurate export <dir> --grid <file.png> | --parquet <dir>`: a contact sheet, or Parquet files. */
import { UsageError } from '../../core/errors.js';
import { writeContactSheet, writeParquet } from '../../data/export.js';
import { openDataset } from '../../data/reader.js';
import { formatTable } from '../table.js';
import { collect, parseCount, parsePositive, type RegisterCommand } from './common.js';

export const registerExport: RegisterCommand = (program, session) => {
  program
    .command('export')
    .description('Export a dataset for people or other tools: a contact-sheet PNG (one row per class), or Parquet')
    .argument('<dir>', 'dataset directory')
    .option('--grid <file.png>', 'write a contact sheet PNG')
    .option('--parquet <dir>', 'write one ZSTD Parquet file per shard into <dir>, with the sidecars\' columns, a label_name column and HF\'s class names')
    .option('--per-class <n>', 'images per class row (default 10)', parsePositive)
    .option('--seed <n>', 'seed of the sample (default 0)', parseCount)
    .option('--scale <k>', 'upscaling factor per image (default 2)', parsePositive)
    .option('--sidecar <dir>', 'join a sidecar (scores, ratings): for --by, and written with --parquet (repeatable)', collect)
    .option('--by <column>', 'grid: each class row shows its rows ranked by this numeric column, annotated with it')
    .option('--worst <n>', 'grid with --by: the n lowest rows of each class (the default order)', parsePositive)
    .option('--best <n>', 'grid with --by: the n highest rows of each class', parsePositive)
    .option('--annotate', 'grid: write each cell\'s id and class under it and the class names beside the rows (always with --by)')
    .option('--overwrite', 'replace the output file if it exists')
    .addHelpText('after', '\nExamples:\n  metacurate export out/default/train --grid train.png --per-class 12 --scale 3\n' +
      '  metacurate export out/default/pool --sidecar out/default/metagrad --by metagrad --worst 8 --grid harmful.png\n' +
      '  metacurate export out/default/pool --sidecar out/default/metagrad --parquet pool-parquet')
    .action(async (dir: string, flags: {
      grid?: string; parquet?: string; perClass?: number; seed?: number; scale?: number; overwrite?: boolean;
      sidecar?: string[]; by?: string; worst?: number; best?: number; annotate?: boolean;
    }, cmd) => {
      if (!flags.grid && !flags.parquet) throw new UsageError('nothing to export', { hint: 'Pass --grid <file.png> or --parquet <dir>' });
      if ((flags.worst !== undefined || flags.best !== undefined) && flags.by === undefined) throw new UsageError('--worst and --best rank by a column', { hint: 'Add --by <column>' });
      if (flags.worst !== undefined && flags.best !== undefined) throw new UsageError('give --worst or --best, not both');
      if (flags.parquet) {
        const pq = await writeParquet(dir, flags.parquet, { overwrite: flags.overwrite, sidecars: flags.sidecar });
        session.output(cmd, pq, () =>
          `wrote ${pq.dir}\ncolumns: ${pq.columns.join(', ')}\n\n` + formatTable(['file', 'rows', 'bytes'], pq.files.map((f) => [f.file, f.rows, f.bytes])),
        );
      }
      if (!flags.grid) return;
      const ds = await openDataset(dir, { sidecars: flags.sidecar });
      const result = await writeContactSheet(ds, flags.grid, {
        ...flags,
        perClass: flags.worst ?? flags.best ?? flags.perClass,
        order: flags.best !== undefined ? 'best' : 'worst',
      });
      session.output(cmd, result, () =>
        `wrote ${result.file} (${result.width} x ${result.height} px, ${result.perClass} per class)\n\n` +
        formatTable(['label', 'class', 'shown'], result.rows.map((r) => [r.label, r.name, r.shown])),
      );
    });
};
