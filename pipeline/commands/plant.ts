/** `metacurate plant <dataset> --out <dir> --label-noise 0.2 --off-domain 0.3 --duplicates 0.05`: known problems, for judging methods. */
import { plantStage } from '../../stages/plant.js';
import type { StageResult } from '../../stages/context.js';
import { formatSummary } from '../table.js';
import { registerStageCommand } from './stage-command.js';
import type { RegisterCommand } from './common.js';

export const registerPlant: RegisterCommand = (program, session) => {
  registerStageCommand<StageResult>(program, session, plantStage, {
    argument: { name: 'dataset', description: 'a labelled dataset' },
    help: () => `Each row gets at most one problem; the truth is the "planted" column. Score and select
report, for every planted kind, how well a score finds it and how much a selection kept.

Example:
  metacurate plant out/default/train --label-noise 0.2 --off-domain 0.3 --transform invert --out out/planted
  metacurate score out/planted --method confident --out out/planted-cl     # summary: AUROC per planted kind`,
    format: (result, dataset) => `planted into ${dataset} -> ${result.dir}\n\n${formatSummary({ fingerprint: result.fingerprint, ...result.summary })}`,
  });
};
