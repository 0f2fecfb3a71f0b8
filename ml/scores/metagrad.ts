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
 * Chosen by a label-free metasmoothness check (scripts/bench/metasmooth-sweep.ts):
 * with momentum 0.9 and batch 128 the run is rough in the example weights and
 * its metagradients are noise; momentum-free SGD on batches of 256 is smooth.
 */
export const METAGRAD_TRAIN_DEFAULTS: TrainDefaults = {
  // Parsed (every field spelled out): MGD selection records this config, so its form is part of their fingerprints.
  model: modelSpecSchema.parse({ kind: 'mlp', hidden: [512] }),
  optimizer: optimizerSpecSchema.parse({ kind: 'sgd', lr: 0.05, momentum: 0 }),
  epochs: 2,
  batchSize: 256,
};

/** REPLAY's branching factor and stored-state budget unless set (docs/methods/metagradients.md). */
export const REPLAY_DEFAULTS = { k: 16, maxMemoryMiB: 2048 } as const;

export const metagradScorer: Scorer = {
  name: 'metagrad',
  description: 'minus dφ/dw_i: φ is the target loss after training, w_i the row\'s loss weight',
  needsTarget: true,
  defaultSeeds: 1,
  orientation: -1,
  trainDefaults: METAGRAD_TRAIN_DEFAULTS,
  work: ({ trainer }) => trainer.steps,
  async score({ trainer, train, target, settings, work }) {
    const tgt = requireTarget('metagrad', train, target);
    const res = await metagradient(trainer, meanCrossEntropyTarget(trainer.model, tgt), {
      k: settings.k ?? REPLAY_DEFAULTS.k,
      maxStateBytes: settings.maxStateBytes ?? REPLAY_DEFAULTS.maxMemoryMiB * 2 ** 20,
      onProgress: (done) => work.advanceTo(done),
    });
    return { raw: res.grad, details: { targetLoss: res.targetLoss, replay: res.stats } };
  },
};
