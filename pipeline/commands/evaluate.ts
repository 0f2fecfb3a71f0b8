/** `metacurate evaluate <train> --test <dir> ...`: test accuracy of fresh models, beside random and full data. */
import { PRESETS, evaluate, evaluateStage, type EvaluateReport } from '../../stages/evaluate.js';
import { formatTable } from '../table.js';
import { registerStageCommand } from './stage-command.js';
import type { RegisterCommand } from './common.js';

const pct = (s: { mean: number; std: number }) => `${(100 * s.mean).toFixed(2)} ± ${(100 * s.std).toFixed(2)}`;

function formatReport(r: EvaluateReport): string {
  const rows: (string | number)[][] = [['evaluated set', r.numTrain, pct(r.accuracy), r.epochs]];
  if (r.baselines?.random) rows.push(['random subset, same size', r.baselines.random.numTrain, pct(r.baselines.random.accuracy), r.baselines.random.epochs]);
  if (r.baselines?.full) rows.push(['full pool', r.baselines.full.numTrain, pct(r.baselines.full.accuracy), r.baselines.full.epochs]);
  return `${formatTable(['trained on', 'rows', 'test accuracy %', 'epochs'], rows)}\n\nprotocol: ${r.config.protocol}` +
    (r.baselinesSkipped ? `\nbaselines skipped: ${r.baselinesSkipped}` : '');
}

export const registerEvaluate: RegisterCommand = (program, session) => {
  registerStageCommand<EvaluateReport>(program, session, evaluateStage, {
    argument: { name: 'train', description: 'dataset to train on' },
    help: () => `Presets:
${Object.entries(PRESETS).map(([name, p]) => `  ${name.padEnd(8)}  ${p.summary}`).join('\n')}

Example:
  metacurate evaluate out/selected --test out/default/test --full-train out/default/train --preset fast --seeds 3`,
    queue: true,
    run: (s, cmd, train, options) => evaluate(train, options, s.context(cmd)),
    format: (report) => formatReport(report),
  });
};
