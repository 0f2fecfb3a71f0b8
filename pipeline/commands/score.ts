/** `metacurate score <train> --target <dir> --method ... --out <dir>`: per-example scores as a sidecar. */
import { Option } from 'commander';
import { score, scoreStage } from '../../stages/score.js';
import { formatSummary } from '../table.js';
import { choicesOf, definedOnly, parseCount, parseKindOrJson, parsePositive, parseStageOptions, type RegisterCommand } from './common.js';

export const registerScore: RegisterCommand = (program, session) => {
  const schema = scoreStage.options;
  program
    .command('score')
    .description('Score every training example (higher = more valuable to keep) and write the scores as a sidecar dataset')
    .argument('<train>', 'training dataset')
    .requiredOption('-o, --out <dir>', 'output sidecar directory')
    .option('--target <dir>', 'clean held-out target set (needed by metagrad and tracin)')
    .addOption(new Option('--method <m>', 'scoring method (default: metagrad)').choices(choicesOf(schema, 'method') ?? []))
    .option('--model <kind|json>', 'logreg, mlp, convnet, or a JSON model spec (default: MLP 512 for metagrad, 256 otherwise)', parseKindOrJson)
    .option('--optimizer <kind|json>', 'sgd, adam, adamw, or a JSON spec (default: SGD lr 0.05, momentum 0 for metagrad, 0.9 otherwise)', parseKindOrJson)
    .option('--lr <x>', 'learning rate', Number)
    .option('--epochs <n>', 'epochs of the scored training run (default 2)', parsePositive)
    .option('--batch-size <n>', 'batch size (default 256 for metagrad, 128 otherwise)', parsePositive)
    .option('--seeds <n>', 'independent runs to average; adds a <method>_std column', parsePositive)
    .option('--seed <n>', 'first seed (default 0)', parseCount)
    .option('--k <n>', 'metagrad: REPLAY branching factor (default 16)', parsePositive)
    .option('--max-memory-mib <n>', 'metagrad: memory for stored training states (default 2048)', parsePositive)
    .option('--epochs-for-score <n>', 'el2n, grand: epochs trained before scoring', parseCount)
    .addOption(new Option('--backend <name>', 'compute backend (default: best available)').choices(choicesOf(schema, 'backend') ?? []))
    .option('--parallelism <n>', 'worker threads at most (default: all cores)', parsePositive)
    .option('--overwrite', 'replace the output if it exists')
    .addHelpText('after', `
Every score is oriented so that higher means more valuable to keep:
  metagrad    -dphi/dw_i: phi is the target loss after training, w_i the example's loss weight
  loss, el2n, grand, forgetting   minus the loss / EL2N / gradient norm / forgetting count
  tracin      sum over checkpoints of lr <grad target loss, grad loss_i>

Example:
  metacurate score out/pool --target out/heldout --method metagrad --out out/scores`)
    .action(async (train: string, flags: Record<string, unknown>, cmd) => {
      const options = parseStageOptions(schema, definedOnly(flags));
      const ctx = session.context(cmd);
      const result = await score(train, options, ctx);
      const { details: _d, protocol, ...shown } = result.summary;
      session.output(cmd, result, () =>
        `scored ${train} -> ${result.dir}\n\n${formatSummary({ fingerprint: result.fingerprint, ...shown, model: JSON.stringify(protocol.model), optimizer: JSON.stringify(protocol.optimizer) })}`);
    });
};
