/** `metacurate select <dataset> --by <column> --budget 0.5 --strategy ... --out <dir>`: the pruner. */
import { Option } from 'commander';
import { selectStage } from '../../stages/select.js';
import { formatSummary } from '../table.js';
import { choicesOf, collect, definedOnly, parseCount, parseKindOrJson, parsePositive, parseStageOptions, type RegisterCommand } from './common.js';

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
    .option('--drop <f>', 'prune: fraction dropped from the bottom before the random draw (default 0.2)', Number)
    .option('--rounds <n>', 'mgd: rounds of metagradient + swap (default 10)', parsePositive)
    .option('--swap <f>', 'mgd: count moved in the first round, as a fraction of the budget (default 0.2)', Number)
    .option('--max-count <n>', 'mgd: highest count one row may reach (default 1: a plain subset)', parsePositive)
    .option('--target <dir>', 'mgd: clean held-out target set the metagradient measures the loss on')
    .option('--model <kind|json>', 'mgd: model trained through: logreg, mlp, convnet, or a JSON spec (default: MLP 512)', parseKindOrJson)
    .option('--optimizer <kind|json>', 'mgd: sgd, adam, adamw, or a JSON spec (default: SGD lr 0.05, no momentum)', parseKindOrJson)
    .option('--lr <x>', 'mgd: learning rate', Number)
    .option('--epochs <n>', 'mgd: epochs of the training run (default 2)', parsePositive)
    .option('--batch-size <n>', 'mgd: batch size (default 256)', parsePositive)
    .option('--k <n>', 'mgd: REPLAY branching factor (default 16)', parsePositive)
    .option('--max-memory-mib <n>', 'mgd: memory for stored training states (default 2048)', parsePositive)
    .addOption(new Option('--backend <name>', 'mgd: compute backend (default: best available)').choices(choicesOf(schema, 'backend') ?? []))
    .option('--invert', 'keep the rows the strategy does not choose (the complement)')
    .option('--seed <n>', 'seed of random draws, and of mgd\'s training run (default 0)', parseCount)
    .option('--shard-rows <n>', 'rows per output shard at most', parsePositive)
    .option('--overwrite', 'replace the output if it exists')
    .addHelpText('after', `
mgd trains on the pool with per-row counts as loss weights (scaled to mean 1 over the
pool), takes the metagradient of the target loss, and swaps counts from the most harmful
rows to the most helpful, for --rounds rounds. It starts from the top-k by --by if given,
else from a random subset.

Examples:
  metacurate select out/default/train --scores out/scores --by metagrad --budget 0.5 --strategy stratified --out out/selected
  metacurate select out/pool --strategy mgd --target out/heldout --budget 0.3 --epochs 2 --rounds 10 --out out/mgd
  metacurate select out/default/train --strategy random --budget 1000 --out out/heldout
  metacurate select out/default/train --strategy random --budget 1000 --invert --out out/pool`)
    .action(async (dataset: string, flags: Record<string, unknown>, cmd) => {
      const options = parseStageOptions(schema, definedOnly(flags));
      const result = await selectStage.run(session.context(cmd), [dataset], options);
      session.output(cmd, result, () => `selected from ${dataset} -> ${result.dir}\n\n${formatSummary({ fingerprint: result.fingerprint, ...result.summary })}`);
    });
};
