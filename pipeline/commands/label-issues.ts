/** `metacurate label-issues <dataset> --out <dir> [--csv FILE]`: the rows whose label looks wrong, worst first. */
import { labelIssuesStage } from '../../stages/label-issues.js';
import type { StageResult } from '../../stages/context.js';
import { formatSummary } from '../table.js';
import { registerStageCommand } from './stage-command.js';
import type { RegisterCommand } from './common.js';

export const registerLabelIssues: RegisterCommand = (program, session) => {
  registerStageCommand<StageResult>(program, session, labelIssuesStage, {
    argument: { name: 'dataset', description: 'a labelled dataset' },
    help: () => `Columns: id, row, given_label, suggested_label, confidence (how sure the label is wrong, 0..1), rank (1 = worst).

Examples:
  metacurate label-issues out/pool --out out/issues --csv issues.csv
  metacurate label-issues out/pool --scores out/pool-confident --out out/issues     # reuse score --method confident`,
    format: (result, dataset) => `label issues of ${dataset} -> ${result.dir}\n\n${formatSummary({ fingerprint: result.fingerprint, ...result.summary })}`,
  });
};
