/** `metacurate evaluate <train> --test <dir> ...`: test accuracy of fresh models, beside random and full data. */
import { Option } from 'commander';
import { evaluate, evaluateStage, type EvaluateReport } from '../../stages/evaluate.js';
import { formatTable } from '../table.js';
import { choicesOf, definedOnly, parseCount, parseKindOrJson, parsePositive, parseStageOptions, type RegisterCommand } from './common.js';

const pct = (s: { mean: number; std: number }) => `${(100 * s.mean).toFixed(2)} ± ${(100 * s.std).toFixed(2)}`;

function formatReport(r: EvaluateReport): string {
  const rows: (string | number)[][] = [['evaluated set', r.numTrain, pct(r.accuracy), r.epochs]];
  if (r.baselines?.random) rows.push(['random subset, same size', r.baselines.random.numTrain, pct(r.baselines.random.accuracy), r.baselines.random.epochs]);
  if (r.baselines?.full) rows.push(['full pool', r.baselines.full.numTrain, pct(r.baselines.full.accuracy), r.baselines.full.epochs]);
  return `${formatTable(['trained on', 'rows', 'test accuracy %', 'epochs'], rows)}\n\nprotocol: ${r.config.protocol}` +
    (r.baselinesSkipped ? `\nbaselines skipped: ${r.baselinesSkipped}` : '');
}

export const registerEvaluate: RegisterCommand = (program, session) => {
  const schema = evaluateStage.options;
  program
    .command('evaluate')
    .description('Train fresh models on a dataset (several seeds, in parallel) and report test accuracy mean ± std, beside a random subset and the full pool')
    .argument('<train>', 'dataset to train on')
    .requiredOption('--test <dir>', 'held-out test set')
    .option('--full-train <dir>', 'the full pool, for the random-subset and full-data baselines')
    .addOption(new Option('--preset <name>', 'training protocol (default: dc-bench)').choices(choicesOf(schema, 'preset') ?? []))
    .option('--model <kind|json>', 'logreg, mlp, convnet, or a JSON model spec (default: the preset\'s)', parseKindOrJson)
    .option('--optimizer <kind|json>', 'sgd, adam, adamw, or a JSON spec (default: the preset\'s)', parseKindOrJson)
    .option('--lr <x>', 'learning rate', Number)
    .option('--epochs <n>', 'epochs (default: by dataset size)', parsePositive)
    .option('--full-epochs <n>', 'epochs of the full-pool baseline', parsePositive)
    .option('--batch-size <n>', 'batch size', parsePositive)
    .option('--seeds <n>', 'models per arm (default 3)', parsePositive)
    .option('--seed <n>', 'first seed (default 0)', parseCount)
    .option('--no-baselines', 'skip the random-subset and full-pool arms')
    .addOption(new Option('--backend <name>', 'compute backend (default: best available)').choices(choicesOf(schema, 'backend') ?? []))
    .option('--parallelism <n>', 'worker threads at most (default: all cores)', parsePositive)
    .option('-o, --out <dir>', 'write evaluation.json (and curation.json) here')
    .option('--overwrite', 'replace --out if it exists')
    .addHelpText('after', '\nExample:\n  metacurate evaluate out/selected --test out/default/test --full-train out/default/train --preset fast --seeds 3')
    .action(async (train: string, flags: Record<string, unknown>, cmd) => {
      const options = parseStageOptions(schema, definedOnly(flags));
      const report = await evaluate(train, options, session.context(cmd));
      session.output(cmd, report, () => formatReport(report));
    });
};
