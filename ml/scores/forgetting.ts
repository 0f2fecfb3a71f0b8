/**
 * Forgetting events (Toneva et al. 2019): how often a row goes from correct to
 * wrong between two presentations during training. Each row is judged every time
 * it is in a batch, by the logits of the step itself (at the parameters the step
 * starts from). Rows never classified correctly count as `epochs` flips, more
 * than any row can have. Low score = forgotten often, or never learned.
 */
import * as tf from '@tensorflow/tfjs';
import { UsageError } from '../../core/errors.js';
import { hardLabels } from '../evaluate.js';
import { BASELINE_TRAIN_DEFAULTS, withTrained } from './common.js';
import type { Scorer } from './types.js';

/** Counts forgetting events from each presentation's correctness. */
export class ForgettingTracker {
  readonly forgets: Int32Array;
  readonly presentations: Int32Array;
  /** 1 once a row has been correct at some presentation. */
  readonly learned: Uint8Array;
  private readonly previous: Uint8Array;

  constructor(readonly n: number) {
    this.forgets = new Int32Array(n);
    this.presentations = new Int32Array(n);
    this.learned = new Uint8Array(n);
    this.previous = new Uint8Array(n);
  }

  /** Rows `idx` were just evaluated; correct[r] is row idx[r]'s correctness. */
  update(idx: ArrayLike<number>, correct: ArrayLike<number | boolean>): void {
    if (idx.length !== correct.length) throw new UsageError(`${correct.length} correctness values for ${idx.length} rows`);
    for (let r = 0; r < idx.length; r++) {
      const i = idx[r];
      if (!(i >= 0 && i < this.n)) throw new UsageError(`row ${i} is outside 0..${this.n - 1}`);
      const c = correct[r] ? 1 : 0;
      if (this.previous[i] === 1 && c === 0) this.forgets[i]++;
      if (c === 1) this.learned[i] = 1;
      this.previous[i] = c;
      this.presentations[i]++;
    }
  }

  /** Forgetting counts, with rows never learned (or never presented) at `neverLearned`. */
  counts(neverLearned: number): Float32Array {
    const out = new Float32Array(this.n);
    for (let i = 0; i < this.n; i++) out[i] = this.learned[i] ? this.forgets[i] : neverLearned;
    return out;
  }
}

export const forgettingScorer: Scorer = {
  name: 'forgetting',
  description: 'minus the number of correct→wrong flips of each row during training',
  needsTarget: false,
  defaultSeeds: 1,
  orientation: -1,
  trainDefaults: BASELINE_TRAIN_DEFAULTS,
  work: ({ trainer }) => trainer.steps,
  async score({ trainer, train, work }) {
    const labels = hardLabels(train);
    const tracker = new ForgettingTracker(train.ids.length);
    await withTrained(trainer, trainer.steps, work, async () => undefined, {
      beforeStep: (t, p, inputs) => {
        const idx = trainer.batches[t];
        const pred = tf.tidy(() => tf.argMax(trainer.model.apply(p, inputs.x, { training: true }), 1));
        const predicted = pred.dataSync();
        pred.dispose();
        tracker.update(idx, Array.from(idx, (i, r) => predicted[r] === labels[i]));
      },
    });
    const neverLearnedCount = trainer.config.epochs;
    const neverLearned = tracker.learned.reduce((a, v) => a - v, train.ids.length);
    return { raw: tracker.counts(neverLearnedCount), details: { stepsTrained: trainer.steps, totalSteps: trainer.steps, neverLearned, neverLearnedCount } };
  },
};
