/**
 * metagrad: dφ/dw_i, the gradient of the target loss after training with respect
 * to each row's loss weight, by exact reverse mode through the whole run
 * (ml/metagrad.ts, REPLAY). Upweighting a row with a positive dφ/dw_i raises the
 * target loss, so the score is −dφ/dw_i. See docs/methods/metagradients.md.
 */
import { meanCrossEntropyTarget, metagradient } from '../metagrad.js';
import { modelSpecSchema } from '../models.js';
import { optimizerSpecSchema } from '../optim.js';
import { requireTarget } from './common.js';
import type { Scorer, TrainDefaults } from './types.js';

/**
 * Chosen by a rule that reads no label-noise flag (scripts/bench/metagrad-sweep.ts,
 * docs/methods/metagradients.md): among settings that train and whose
 * metagradient predicts the target loss's change, the one that reaches a
 * reproducible ensemble (two halves agreeing at Spearman 0.8) for the least
 * compute: momentum-free SGD with the LR decayed linearly to 0, batches of 512,
 * two epochs, the weights entering at half the run, six runs.
 */
export const METAGRAD_TRAIN_DEFAULTS: TrainDefaults = {
  // Parsed (every field spelled out): MGD selection records this config, so its form is part of their fingerprints.
  model: modelSpecSchema.parse({ kind: 'mlp', hidden: [512] }),
  optimizer: optimizerSpecSchema.parse({ kind: 'sgd', lr: 0.1, momentum: 0 }),
  schedule: { kind: 'linear', warmup: 0, finalFactor: 0 },
  epochs: 2,
  batchSize: 512,
};

/** The fraction of the run after which the scored weights enter, and the ensemble's size. */
export const METAGRAD_DEFAULTS = { enterAt: 0.5, seeds: 6 } as const;

/**
 * REPLAY's stored-state budget unless set (docs/methods/metagradients.md). Its
 * branching factor is, unless set, the shallowest tree's that fits the budget.
 * `fingerprintK` is the k that fingerprints record when none is set: k changes
 * time and memory, never the metagradient, and 16 was the default before the
 * tree was sized to the budget, so outputs made before keep their fingerprints.
 */
export const REPLAY_DEFAULTS = { maxMemoryMiB: 2048, fingerprintK: 16 } as const;

/**
 * The first differentiated step of a run of `steps`: the weight enters at
 * `enterAt` of training, but never after the last step (a run of one step would
 * otherwise differentiate nothing and score every row 0).
 */
function enterStep(steps: number, enterAt: number | undefined): number {
  return Math.min(Math.round((enterAt ?? METAGRAD_DEFAULTS.enterAt) * steps), Math.max(0, steps - 1));
}

export const metagradScorer: Scorer = {
  name: 'metagrad',
  description: 'minus dφ/dw_i: φ is the target loss after training, w_i the row\'s loss weight',
  needsTarget: true,
  orientation: -1,
  combine: 'rank',
  defaultSeeds: METAGRAD_DEFAULTS.seeds,
  trainDefaults: METAGRAD_TRAIN_DEFAULTS,
  // 2: the ensemble defaults (rank-combined runs, late entry, LR decay).
  version: '2',
  work: ({ trainer, settings }) => trainer.steps - enterStep(trainer.steps, settings.enterAt),
  async score({ trainer, train, target, settings, work }) {
    const tgt = requireTarget('metagrad', train, target);
    const res = await metagradient(trainer, meanCrossEntropyTarget(trainer.model, tgt), {
      from: enterStep(trainer.steps, settings.enterAt),
      k: settings.k,
      maxStateBytes: settings.maxStateBytes ?? REPLAY_DEFAULTS.maxMemoryMiB * 2 ** 20,
      onProgress: (done) => work.advanceTo(done),
    });
    // Whether upweighting the row lowers the target loss: ensembles average it into the share of runs it helped in.
    // A row no differentiated step saw has dφ/dw = 0: it counts as neither.
    const helpful = res.grad.map((g) => (g < 0 ? 1 : g > 0 ? 0 : 0.5));
    return { raw: res.grad, details: { targetLoss: res.targetLoss, replay: res.stats }, columns: { helpful: { values: helpful, combine: 'mean' } } };
  },
};
