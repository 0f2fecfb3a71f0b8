/**
 * `metacurate rate <dataset> --rater <dir> --out <dir>`: ratings of any dataset by a trained rater;
 * `metacurate rate <train> --train-rater (--target <dir> | --mode regress --scores <dir>) --out <dir>`: train one, then rate.
 */
import { Option } from 'commander';
import { rate, rateStage } from '../../stages/rate.js';
import { formatSummary } from '../table.js';
import { choicesOf, definedOnly, parseCount, parseKindOrJson, parsePositive, parseStageOptions, type RegisterCommand } from './common.js';

export const registerRate: RegisterCommand = (program, session) => {
  const schema = rateStage.options;
  program
    .command('rate')
    .description('Rate every row with an Alchemist-style rater (higher = more valuable to keep) and write the ratings as a sidecar; --train-rater trains the rater first')
    .argument('<dataset>', 'dataset to rate (with --train-rater: the training pool)')
    .requiredOption('-o, --out <dir>', 'output ratings sidecar directory (columns id, rating)')
    .option('--rater <dir>', 'a trained rater: its directory, or a ratings sidecar that holds one in rater/')
    .option('--train-rater', 'train a rater on <dataset> first, then rate <dataset> with it')
    .option('--rater-out <dir>', 'with --train-rater: where to write the rater (default <out>/rater)')
    .option('--target <dir>', 'meta mode: clean target set, held out from the training pool')
    .addOption(new Option('--mode <m>', 'with --train-rater: meta (default) or regress').choices(choicesOf(schema, 'mode') ?? []))
    .option('--scores <dir>', 'regress mode: score sidecar of <dataset> (metacurate score)')
    .option('--by <column>', 'regress mode: the score column (default metagrad)')
    .option('--body <kind|json>', 'rater body: mlp (default, hidden [128]), convnet (width 16, depth 2), or a JSON model spec', parseKindOrJson)
    .option('--feature-dim <n>', 'features the body feeds the heads (default 32)', parsePositive)
    .option('--no-labels', 'do not condition the rater on labels (default: conditioned when the data has labels)')
    .option('--epochs <n>', 'training epochs (default 10)', parsePositive)
    .option('--batch-size <n>', 'training batch size (default 128)', parsePositive)
    .option('--lr <x>', 'rater AdamW learning rate (default 1e-3)', Number)
    .option('--weight-decay <x>', 'rater AdamW weight decay (default 0.01)', Number)
    .option('--proxy <kind|json>', 'meta mode: proxy model, mlp (default, hidden [64]), convnet, logreg or a JSON spec', parseKindOrJson)
    .option('--proxy-lr <x>', 'meta mode: proxy SGD learning rate, momentum 0.9 (default 0.05)', Number)
    .option('--warmup-steps <n>', 'meta mode: plain proxy steps before meta-training (default 50)', parseCount)
    .option('--val-mix <x>', 'meta mode: target-loss share of the proxy loss at the start, decaying to 0 over an epoch (default 0.5)', Number)
    .option('--logit-penalty <x>', 'meta mode: weight of mean z^2 in the rater loss (default 0.1)', Number)
    .option('--target-batch-size <n>', 'meta mode: target rows per step (default 256)', parsePositive)
    .option('--holdout <x>', 'regress mode: fraction of rows held out to measure the Spearman correlation (default 0.1)', Number)
    .option('--seed <n>', 'seed (default 0)', parseCount)
    .option('--rate-batch-size <n>', 'rows per rating batch (default 256)', parsePositive)
    .addOption(new Option('--backend <name>', 'compute backend (default: best available)').choices(choicesOf(schema, 'backend') ?? []))
    .option('--parallelism <n>', 'worker threads at most (default: all cores)', parsePositive)
    .option('--overwrite', 'replace the outputs if they exist')
    .addHelpText('after', `
The rating of a row is the rater's instance logit z: comparable across batches and
datasets, higher = more valuable to keep. In a batch the rater's weight of row i is
softmax_i(sigmoid(z)) x group(batch) (Alchemist); the sidecar keeps z.

Training (--train-rater):
  meta     first-order bilevel: a proxy model trains on the rater-weighted loss; the
           rater minimises sum_i w_i a_i + rho mean(z^2), where a_i = -<grad l_i, grad L_target>
           at the proxy, i.e. it raises the weight of rows whose gradient lowers the
           target loss. Needs --target.
  regress  regress z onto the rank-normalised --scores column (e.g. metagrad): cheap.
A rater is a directory: model.json + weights.bin (tfjs weights-manifest layout) and
rater.json (input shape, classes, normalisation, architecture, training provenance).

Examples:
  metacurate rate out/default/train --train-rater --target out/target --out out/ratings
  metacurate rate out/default/train --train-rater --mode regress --scores out/default/scores --out out/ratings
  metacurate rate new-data --rater out/ratings --out new-data-ratings      # data ingested later`)
    .action(async (dataset: string, flags: Record<string, unknown>, cmd) => {
      // --no-labels defaults to true in commander; only an explicit --no-labels is an option.
      const { labels, ...rest } = flags;
      const options = parseStageOptions(schema, definedOnly({ ...rest, labels: labels === false ? false : undefined }));
      const result = await rate(dataset, options, session.context(cmd));
      const { training, rating, rater, ...shown } = result.summary;
      session.output(cmd, result, () =>
        `rated ${dataset} -> ${result.dir}\n\n${formatSummary({
          fingerprint: result.fingerprint,
          ...shown,
          rater: `${rater.dir} (${rater.mode}, ${rater.fingerprint})`,
          'rows/s': Math.round(rating.rowsPerSecond),
          workers: rating.workers,
          ...(training ? { 'training seconds': Math.round(training.seconds * 10) / 10 } : {}),
        })}`);
    });
};
