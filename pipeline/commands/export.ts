/** `metacurate export <dir> --grid <file.png> | --parquet <dir>`: a contact sheet, or Parquet files. */
import { UsageError } from '../../core/errors.js';
import { writeContactSheet, writeParquet } from '../../data/export.js';
import { formatTable } from '../table.js';
import { parseCount, parsePositive, type RegisterCommand } from './common.js';

export const registerExport: RegisterCommand = (program, session) => {
  program
    .command('export')
    .description('Export a dataset for people or other tools: a contact-sheet PNG (one row per class), or Parquet')
    .argument('<dir>', 'dataset directory')
    .option('--grid <file.png>', 'write a contact sheet PNG')
    .option('--parquet <dir>', 'write one ZSTD Parquet file per shard into <dir>')
    .option('--per-class <n>', 'images per class row (default 10)', parsePositive)
    .option('--seed <n>', 'seed of the sample (default 0)', parseCount)
    .option('--scale <k>', 'upscaling factor per image (default 2)', parsePositive)
    .option('--overwrite', 'replace the output file if it exists')
    .addHelpText('after', '\nExamples:\n  metacurate export out/default/train --grid train.png --per-class 12 --scale 3\n  metacurate export out/default/train --parquet train-parquet')
    .action(async (dir: string, flags: { grid?: string; parquet?: string; perClass?: number; seed?: number; scale?: number; overwrite?: boolean }, cmd) => {
      if (!flags.grid && !flags.parquet) throw new UsageError('nothing to export', { hint: 'Pass --grid <file.png> or --parquet <dir>' });
      if (flags.parquet) {
        const pq = await writeParquet(dir, flags.parquet, { overwrite: flags.overwrite });
        session.output(cmd, pq, () =>
          `wrote ${pq.dir}\n\n` + formatTable(['file', 'rows', 'bytes'], pq.files.map((f) => [f.file, f.rows, f.bytes])),
        );
      }
      if (!flags.grid) return;
      const result = await writeContactSheet(dir, flags.grid, flags);
      session.output(cmd, result, () =>
        `wrote ${result.file} (${result.width} x ${result.height} px, ${result.perClass} per class)\n\n` +
        formatTable(['label', 'class', 'shown'], result.rows.map((r) => [r.label, r.name, r.shown])),
      );
    });
};
