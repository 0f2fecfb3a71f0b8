/** `metacurate distill <train> --ipc 10 --method rcig|krr|dm --out <dir>`: a small synthetic training set. */
import { distillStage, type DistillResult } from '../../stages/distill.js';
import { formatSummary } from '../table.js';
import { registerStageCommand } from './stage-command.js';
import type { RegisterCommand } from './common.js';

export const registerDistill: RegisterCommand = (program, session) => {
  registerStageCommand<DistillResult>(program, session, distillStage, {
    queue: true,
    argument: { name: 'train', description: 'labelled training dataset' },
    help: () => `Methods:
  rcig  convexified implicit gradients: body linearised around a pool model, last layer by
        kernel ridge regression, implicit gradient through an Adam H^-1 solve (clipped)
  krr   KIP/RFAD: kernel ridge regression on features of random ConvNets (one solve per step)
  dm    distribution matching: class-mean embeddings under fresh random ConvNets

A rerun with the same options resumes from <out>.checkpoint/; other options are refused.
The output has label, soft_label and uint8 pixels; 'metacurate evaluate' trains on the soft labels.

Examples:
  metacurate distill out/default/train --method krr --ipc 10 --steps 300 --out out/distilled
  metacurate distill out/fmnist/train --method rcig --ipc 1 --time-budget 1800 --out out/rcig-1`,
    format(result, train) {
      const { settings, details, ...shown } = result.summary;
      return `distilled ${train} -> ${result.dir}\n\n${formatSummary({ fingerprint: result.fingerprint, ...shown, settings: JSON.stringify(settings), ...details })}`;
    },
  });
};
