/** `metacurate score <train> --target <dir> --method ... --out <dir>`: per-example scores as a sidecar. */
import { allScorers } from '../../ml/scores/index.js';
import { scoreStage, type ScoreResult } from '../../stages/score.js';
import { formatSummary } from '../table.js';
import { listing, registerStageCommand } from './stage-command.js';
import type { RegisterCommand } from './common.js';

export const registerScore: RegisterCommand = (program, session) => {
  registerStageCommand<ScoreResult>(program, session, scoreStage, {
    argument: { name: 'train', description: 'training dataset' },
    queue: true,
    help: () => `${listing('Methods (every score: higher = more valuable to keep)', allScorers())}

Example:
  metacurate score out/pool --target out/heldout --method metagrad --out out/scores`,
    format(result, train) {
      const { details: _d, protocol, ...shown } = result.summary;
      return `scored ${train} -> ${result.dir}\n\n${formatSummary({ fingerprint: result.fingerprint, ...shown, model: JSON.stringify(protocol.model), optimizer: JSON.stringify(protocol.optimizer) })}`;
    },
  });
};
