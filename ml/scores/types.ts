/**
 * The one interface every score method implements (one file per method in this
 * folder, registered in index.ts). A scorer computes a raw per-row quantity for
 * ONE trained model; the dispatcher (index.ts) orients it so that higher means
 * more valuable to keep, and the score stage runs and combines the seeds.
 * How to add one: docs/extending.md.
 */
import type { Examples } from '../../data/batch.js';
import type { ModelSpec } from '../models.js';
import type { OptimizerSpec } from '../optim.js';
import type { ScheduleSpec } from '../schedule.js';
import type { Trainer } from '../train.js';
import type { Work } from './common.js';

/** The training run a scorer gets unless the user overrides it. */
export interface TrainDefaults {
  model: ModelSpec;
  optimizer: OptimizerSpec;
  /** Default constant. */
  schedule?: ScheduleSpec;
  epochs: number;
  batchSize: number;
  /** Fewest optimizer steps worth scoring with: a smaller pool trains more epochs (default: the score stage's MIN_TRAIN_STEPS). */
  minSteps?: number;
}

/** Knobs that only some methods read; each method documents which. */
export interface ScorerSettings {
  /** metagrad: REPLAY branching factor. */
  k?: number;
  /** metagrad: memory the stored training states may take, bytes. */
  maxStateBytes?: number;
  /** el2n, grand: epochs trained before scoring (default: 10% of the run, at least 1). */
  epochsForScore?: number;
  /** tracin: step counts after which the parameters are checkpoints (default: every epoch's end). */
  checkpoints?: number[];
  /** grand, tracin: rows per scoring batch (default: the training batch size). */
  scoreBatchSize?: number;
  /** Folds of out-of-sample methods (confident). */
  folds?: number;
  /** metagrad: the fraction of the run after which the example weights enter (0 = from the start). */
  enterAt?: number;
}

/** An extra per-row column a method writes beside its score (e.g. a label-issue flag). */
export interface ExtraColumn {
  values: Float32Array;
  /** How several seeds combine: their mean (fractions, probabilities) or their most common value (labels). */
  combine: 'mean' | 'mode';
}

export interface ScorerInput {
  train: Examples;
  target?: Examples;
  /** A trainer for this seed's run on `train` (config, batches, steps). */
  trainer: Trainer;
  settings: ScorerSettings;
  /** Progress and cancellation: tick once per unit of `Scorer.work`. */
  work: Work;
}

export interface ScorerOutput {
  /** The method's own quantity, one per training row, not yet oriented. */
  raw: Float32Array;
  /** Numbers worth recording in the score summary (target loss, steps, ...). */
  details: Record<string, unknown>;
  /** Extra columns, written as `<method>_<name>`. */
  columns?: Record<string, ExtraColumn>;
}

export interface Scorer {
  /** The method name: `--method <name>` and the score column. */
  name: string;
  /** One line for --help and the docs. */
  description: string;
  /** Needs a clean target (validation) set. */
  needsTarget: boolean;
  /** Independent runs averaged unless the user says otherwise. */
  defaultSeeds: number;
  /** +1 when a higher raw value means keep, −1 when a lower one does. */
  orientation: 1 | -1;
  /**
   * How seeds combine (default 'mean'): 'rank' averages each run's percentile
   * ranks, for scores whose scale varies from run to run (metagradients).
   */
  combine?: 'mean' | 'rank';
  /** The scored training run's defaults. */
  trainDefaults: TrainDefaults;
  /** False for a method that scores without training (the training-length check and scaling then skip it); default true. */
  trains?: boolean;
  /** Units of work one seed takes (progress), known before any work. */
  work(input: Omit<ScorerInput, 'work'>): number;
  score(input: ScorerInput): Promise<ScorerOutput>;
  /** Bump when the method's output changes meaning; recorded in the fingerprint when set. */
  version?: string;
}
