/**
 * `metacurate rate <dataset> --rater <dir> --out <dir>`: ratings of any dataset by a trained rater;
 * `metacurate rate <train> --train-rater (--target <dir> | --mode regress --scores <dir>) --out <dir>`: train one, then rate.
 */
import { rateStage, type RateResult } from '../../stages/rate.js';
import { formatSummary } from '../table.js';
import { registerStageCommand } from './stage-command.js';
import type { RegisterCommand } from './common.js';

export const registerRate: RegisterCommand = (program, session) => {
  registerStageCommand<RateResult>(program, session, rateStage, {
    argument: { name: 'dataset', description: 'dataset to rate (with --train-rater: the training pool)' },
    queue: true,
    help: () => `The rating of a row is the rater's instance logit z: comparable across batches and
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
  metacurate rate new-data --rater out/ratings --out new-data-ratings      # data ingested later`,
    format(result, dataset) {
      const { training, rating, rater, ...shown } = result.summary;
      return `rated ${dataset} -> ${result.dir}\n\n${formatSummary({
        fingerprint: result.fingerprint,
        ...shown,
        rater: `${rater.dir} (${rater.mode}, ${rater.fingerprint})`,
        'rows/s': Math.round(rating.rowsPerSecond),
        workers: rating.workers,
        ...(training ? { 'training seconds': Math.round(training.seconds * 10) / 10 } : {}),
      })}`;
    },
  });
};
