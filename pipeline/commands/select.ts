/** `metacurate select <dataset> --by <column> --budget 0.5 --strategy ... --out <dir>`: the pruner. */
import { selectStage, type SelectResult } from '../../stages/select/index.js';
import { allStrategies } from '../../stages/select/strategies.js';
import { formatSummary } from '../table.js';
import { listing, registerStageCommand } from './stage-command.js';
import type { RegisterCommand } from './common.js';

export const registerSelect: RegisterCommand = (program, session) => {
  registerStageCommand<SelectResult>(program, session, selectStage, {
    argument: { name: 'dataset', description: 'the pool to select from' },
    queue: true,
    flags: { metagradKey: { hidden: true } },
    help: () => `${listing('Strategies', allStrategies())}
Options named "<strategy>: ..." apply to that strategy only.

Examples:
  metacurate select out/default/train --scores out/scores --by metagrad --budget 0.5 --strategy stratified --out out/selected
  metacurate select out/pool --strategy mgd --target out/heldout --budget 0.3 --epochs 2 --rounds 10 --out out/mgd
  metacurate select out/default/train --strategy random --budget 1000 --out out/heldout
  metacurate select out/default/train --strategy random --budget 1000 --invert --out out/pool`,
    format: (result, dataset) => `selected from ${dataset} -> ${result.dir}\n\n${formatSummary({ fingerprint: result.fingerprint, ...result.summary })}`,
  });
};
