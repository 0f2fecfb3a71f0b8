/**
 * The Alchemist-style rater: a small network that rates each training example,
 * trained so that its weights help a target loss (`meta`) or onto the scores of
 * another method (`regress`). The method and its measurements:
 * docs/methods/rater.md. Modules: model (the network), train-meta and
 * train-regress (the two modes), rate (ratings), files (on disk).
 */
import { DataError, UsageError } from '../../core/errors.js';
import type { Examples } from '../../data/batch.js';
import { archFor, raterTrainSchema, type RaterTrainOutput, type RaterTrainSettings } from './common.js';
import { makeRater } from './model.js';
import { trainMeta } from './train-meta.js';
import { trainRegress } from './train-regress.js';

/**
 * Trains a rater on `train`: against `target` (meta mode) or onto `scores`, one per
 * training row, higher = more valuable (regress mode).
 */
export async function trainRater(
  train: Examples,
  inputs: { target?: Examples; scores?: Float32Array },
  settings: RaterTrainSettings,
  onProgress?: (done: number, total: number) => void,
): Promise<RaterTrainOutput> {
  const s = raterTrainSchema.parse(settings);
  if (train.ids.length === 0) throw new DataError('the training set is empty');
  const arch = archFor(train, s);
  const rater = makeRater(arch);
  if (s.mode === 'meta') {
    if (!inputs.target) throw new UsageError('meta-training a rater needs a target set', { hint: 'Pass --target <dataset>: a clean set held out from the training pool' });
    return trainMeta(rater, train, inputs.target, s, onProgress);
  }
  if (!inputs.scores) throw new UsageError('regress mode needs scores to regress onto', { hint: 'Pass --scores <sidecar> --by <column>' });
  return trainRegress(rater, train, inputs.scores, s, onProgress);
}

export { BODY_DEFAULTS, HEAD_HIDDEN, PROXY_DEFAULTS, makeRater, type Rater, type RaterArch } from './model.js';
export {
  RATER_MODES, pixelStats, raterTrainSchema, type NamedWeights, type RaterMode, type RaterTrainOutput, type RaterTrainSettings,
} from './common.js';
export { rankTargets } from './train-regress.js';
export { RATE_BATCH_SIZE, rateExamples, rateRange, type RateRange } from './rate.js';
export {
  RATER_FORMAT, RATER_FORMAT_VERSION, RATER_META_FILE, RATER_MODEL_FILE, RATER_WEIGHTS_FILE, RATING_DEFINITION,
  archOf, checkRaterFits, loadRater, raterMetaSchema, readRater, resolveRaterDir, writeRaterFiles,
  type LoadedRater, type RaterMeta, type RaterProvenance, type SavedRater,
} from './files.js';
