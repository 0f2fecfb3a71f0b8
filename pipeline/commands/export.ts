/** `metacurate export <dir> --grid <file.png>`: a contact sheet of a dataset. */
import { UsageError } from '../../core/errors.js';
import { writeContactSheet } from '../../data/export.js';
import { formatTable } from '../table.js';
import { parseCount, parsePositive, type RegisterCommand } from './common.js';

export const registerExport: RegisterCommand = (program, session) => {
  program
    .command('export')
    .description('Export a dataset for people or other tools: a contact-sheet PNG (one row per class)')
    .argument('<dir>', 'dataset directory')
    .option('--grid <file.png>', 'write a contact sheet PNG')
    .option('--per-class <n>', 'images per class row (default 10)', parsePositive)
    .option('--seed <n>', 'seed of the sample (default 0)', parseCount)
    .option('--scale <k>', 'upscaling factor per image (default 2)', parsePositive)
    .option('--overwrite', 'replace the output file if it exists')
    .addHelpText('after', '\nExample:\n  metacurate export out/default/train --grid train.png --per-class 12 --scale 3')
    .action(async (dir: string, flags: { grid?: string; perClass?: number; seed?: number; scale?: number; overwrite?: boolean }, cmd) => {
      if (!flags.grid) throw new UsageError('nothing to export', { hint: 'Pass --grid <file.png>' });
      const result = await writeContactSheet(dir, flags.grid, flags);
      session.output(cmd, result, () =>
        `wrote ${result.file} (${result.width} x ${result.height} px, ${result.perClass} per class)\n\n` +
        formatTable(['label', 'class', 'shown'], result.rows.map((r) => [r.label, r.name, r.shown])),
      );
    });
};
