/** `metacurate select <dataset> --by <column> --budget 0.5 --strategy ... --out <dir>`: the pruner. */
import { Option } from 'commander';
import { selectStage } from '../../stages/select.js';
import { formatSummary } from '../table.js';
import { choicesOf, collect, definedOnly, parseCount, parsePositive, parseStageOptions, type RegisterCommand } from './common.js';

export const registerSelect: RegisterCommand = (program, session) => {
  const schema = selectStage.options;
  program
    .command('select')
    .description('Pick a subset under a budget by a score or rating column (full rows out, plus selection.arrow)')
    .argument('<dataset>', 'the pool to select from')
    .requiredOption('-o, --out <dir>', 'output dataset directory')
    .option('--by <column>', 'score column (higher = keep), from the dataset or a --scores sidecar')
    .option('--scores <dir>', 'a score sidecar to attach (repeatable)', collect)
    .option('--budget <x>', 'a fraction in (0, 1] or a row count', Number)
    .addOption(new Option('--strategy <s>', 'selection strategy (default: topk)').choices(choicesOf(schema, 'strategy') ?? []))
    .option('--threshold <x>', 'threshold: keep rows scoring at least x', Number)
    .option('--shift <f>', 'shift-gsample: fraction dropped from the top (default 0.1)', Number)
    .option('--mu <p>', 'shift-gsample: centre percentile, 0 = best (default 0.5)', Number)
    .option('--sigma <p>', 'shift-gsample: width in percentile units (default 0.15)', Number)
    .option('--seed <n>', 'seed of random draws (default 0)', parseCount)
    .option('--shard-rows <n>', 'rows per output shard at most', parsePositive)
    .option('--overwrite', 'replace the output if it exists')
    .addHelpText('after', '\nExample:\n  metacurate select out/default/train --scores out/scores --by metagrad --budget 0.5 --strategy stratified --out out/selected')
    .action(async (dataset: string, flags: Record<string, unknown>, cmd) => {
      const options = parseStageOptions(schema, definedOnly(flags));
      const result = await selectStage.run(session.context(cmd), [dataset], options);
      session.output(cmd, result, () => `selected from ${dataset} -> ${result.dir}\n\n${formatSummary({ fingerprint: result.fingerprint, ...result.summary })}`);
    });
};
