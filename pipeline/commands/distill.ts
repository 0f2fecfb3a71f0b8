/** `metacurate distill <train> --ipc 10 --method rcig|krr|dm --out <dir>`: a small synthetic training set. */
import { Option } from 'commander';
import { distill, distillStage, METHOD_DEFAULTS } from '../../stages/distill.js';
import { formatSummary } from '../table.js';
import { choicesOf, definedOnly, parseCount, parsePositive, parseStageOptions, type RegisterCommand } from './common.js';

export const registerDistill: RegisterCommand = (program, session) => {
  const schema = distillStage.options;
  const d = METHOD_DEFAULTS;
  program
    .command('distill')
    .description('Synthesise a few images per class (with soft labels) that train a model like the whole set (full rows out, plus contact_sheet.png)')
    .argument('<train>', 'labelled training dataset')
    .requiredOption('-o, --out <dir>', 'output dataset directory')
    .addOption(new Option('--method <m>', 'distillation method (default: rcig)').choices(choicesOf(schema, 'method') ?? []))
    .option('--ipc <n>', 'synthetic images per class (default 10)', parsePositive)
    .option('--steps <n>', `outer steps (default: rcig ${d.rcig.steps}, krr ${d.krr.steps}, dm ${d.dm.steps})`, parsePositive)
    .option('--time-budget <seconds>', 'stop after this many seconds and write what there is (the checkpoint is kept)', Number)
    .option('--seed <n>', 'seed of the initial real images, batches and nets (default 0)', parseCount)
    .option('--checkpoint-every <n>', 'steps between checkpoints in <out>.checkpoint/ (default 50)', parsePositive)
    .option('--lr <x>', `learning rate of the images and labels (default: rcig ${d.rcig.lr}, krr ${d.krr.lr} (Adam), dm ${d.dm.lr} (SGD))`, Number)
    .option('--batch-size <n>', `real images per step (dm: per class; default: rcig ${d.rcig.batchSize}, krr ${d.krr.batchSize}, dm ${d.dm.batchSize})`, parsePositive)
    .option('--width <n>', `ConvNet width (default: rcig ${d.rcig.width}, krr ${d.krr.width}, dm ${d.dm.width})`, parsePositive)
    .option('--depth <n>', 'ConvNet depth (default 3, less for small images)', parsePositive)
    .addOption(new Option('--norm <n>', 'ConvNet normalisation (default: instance, as the DC-bench ConvNet)').choices(choicesOf(schema, 'norm') ?? []))
    .option('--nets <n>', `krr: random nets per kernel (default ${d.krr.nets}); rcig: model pool size (default ${d.rcig.nets})`, parsePositive)
    .option('--no-learn-labels', 'krr, rcig: keep the labels one-hot instead of learning them')
    .addOption(new Option('--loss <l>', 'krr: loss of the kernel predictions (default: ce)').choices(choicesOf(schema, 'loss') ?? []))
    .option('--inner-steps <n>', `rcig: Adam steps of the inner solve (default ${d.rcig.innerSteps})`, parsePositive)
    .option('--hinv-steps <n>', `rcig: Adam steps of the Hessian-inverse solve (default ${d.rcig.hinvSteps})`, parsePositive)
    .option('--ridge <x>', `ridge factor (default: rcig ${d.rcig.ridge}·n·mean diag K, krr ${d.krr.ridge}·mean diag K)`, Number)
    .addOption(new Option('--backend <name>', 'compute backend (default: best available)').choices(choicesOf(schema, 'backend') ?? []))
    .option('--overwrite', 'replace the output if it exists (and continue a checkpoint kept by a time-budgeted run)')
    .addHelpText('after', `
Methods:
  rcig  convexified implicit gradients: body linearised around a pool model, last layer by
        kernel ridge regression, implicit gradient through an Adam H^-1 solve (clipped)
  krr   KIP/RFAD: kernel ridge regression on features of random ConvNets (one solve per step)
  dm    distribution matching: class-mean embeddings under fresh random ConvNets

A rerun with the same options resumes from <out>.checkpoint/; other options are refused.
The output has label, soft_label and uint8 pixels; 'metacurate evaluate' trains on the soft labels.

Examples:
  metacurate distill out/default/train --method krr --ipc 10 --steps 300 --out out/distilled
  metacurate distill out/fmnist/train --method rcig --ipc 1 --time-budget 1800 --out out/rcig-1`)
    .action(async (train: string, flags: Record<string, unknown>, cmd) => {
      const options = parseStageOptions(schema, definedOnly(flags));
      const result = await distill(train, options, session.context(cmd));
      const { settings, details, ...shown } = result.summary;
      session.output(cmd, result, () =>
        `distilled ${train} -> ${result.dir}\n\n${formatSummary({ fingerprint: result.fingerprint, ...shown, settings: JSON.stringify(settings), ...details })}`);
    });
};
