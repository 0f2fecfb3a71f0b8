/**
 * The one home of the training knobs that several stages share (score, select's
 * metagradient strategies, evaluate): how `--model mlp` or `--optimizer sgd`
 * expand to full specs, the option fields themselves (described once), and how a
 * stage's choices plus a method's defaults become a training config.
 */
import { z } from 'zod';
import { modelSpecSchema, type ModelSpec } from '../ml/models.js';
import { optimizerSpecSchema, type OptimizerSpec } from '../ml/optim.js';
import { scheduleSpecSchema, type ScheduleSpec } from '../ml/schedule.js';
import { REPLAY_DEFAULTS, type TrainDefaults } from '../ml/scores/index.js';
import type { TrainConfig } from '../ml/train.js';

export { METAGRAD_TRAIN_DEFAULTS, REPLAY_DEFAULTS, BASELINE_TRAIN_DEFAULTS } from '../ml/scores/index.js';

/** A model kind (expanded with MODEL_DEFAULTS) or a full model spec. */
export const modelChoice = z.union([z.enum(['logreg', 'mlp', 'convnet']), modelSpecSchema]);
/** An optimizer kind (expanded with OPTIMIZER_DEFAULTS) or a full optimizer spec. */
export const optimizerChoice = z.union([z.enum(['sgd', 'adam', 'adamw']), optimizerSpecSchema]);

/** What `--model <kind>` and `--optimizer <kind>` mean without a full spec. */
export const MODEL_DEFAULTS: Record<'logreg' | 'mlp' | 'convnet', ModelSpec> = {
  logreg: { kind: 'logreg' },
  mlp: { kind: 'mlp', hidden: [256] },
  convnet: { kind: 'convnet', width: 32, depth: 3, norm: 'instance' },
};
export const OPTIMIZER_DEFAULTS: Record<'sgd' | 'adam' | 'adamw', OptimizerSpec> = {
  sgd: { kind: 'sgd', lr: 0.05, momentum: 0.9 },
  adam: { kind: 'adam', lr: 1e-3 },
  adamw: { kind: 'adamw', lr: 1e-3 },
};

const positiveInt = z.number().int().positive();

/** The option fields of a trained run; each stage says in `what` whose run it is. */
export function trainingOptions(what: string) {
  return {
    model: modelChoice.optional().describe(`${what}: logreg, mlp, convnet, or a JSON model spec (default: the method's)`),
    optimizer: optimizerChoice.optional().describe(`${what}: sgd, adam, adamw, or a JSON optimizer spec (default: the method's)`),
    lr: z.number().positive().optional().describe(`${what}: learning rate (overrides the optimizer's)`),
    epochs: positiveInt.optional().describe(`${what}: epochs of the training run (default: the method's)`),
    batchSize: positiveInt.optional().describe(`${what}: batch size (default: the method's)`),
  };
}

/** `--slices`: the one place it is described (evaluate, score). */
export const slicesOption = positiveInt.optional().describe('cut each batch into this many slices whose gradients add up in order; '
  + 'threads left over by the seeds then share one model\'s training. Results depend on the slice count, never on the thread count (default 1: whole batches)');

/** The slices as a config or fingerprint field: absent when unset or 1 (whole batches either way). */
export function slicesField(slices: number | undefined): { slices?: number } {
  return slices !== undefined && slices > 1 ? { slices } : {};
}

/** REPLAY's options (metagradients): they change memory and time, `k` also the float rounding. */
export function replayOptions(what: string) {
  return {
    k: z.number().int().min(2).describe(`${what}: REPLAY branching factor (memory O(k log_k T) states; default: the shallowest tree within the memory budget; changes time and memory, not the result)`),
    maxMemoryMiB: positiveInt.describe(`${what}: memory the stored training states may take, MiB (default ${REPLAY_DEFAULTS.maxMemoryMiB})`),
  };
}

/** The training choices a stage's options make, before the method's defaults fill the gaps. */
export interface TrainChoices {
  model: z.output<typeof modelChoice>;
  optimizer: z.output<typeof optimizerChoice>;
  lr?: number;
  schedule: ScheduleSpec;
  epochs: number;
  batchSize: number;
  slices?: number;
}

/** Fills the training choices a user left unset with the method's defaults. */
export function trainChoicesFor(d: TrainDefaults, o: Partial<TrainChoices> & { schedule?: ScheduleSpec }): TrainChoices {
  return {
    model: o.model ?? (d.model as TrainChoices['model']),
    optimizer: o.optimizer ?? (d.optimizer as TrainChoices['optimizer']),
    lr: o.lr,
    schedule: o.schedule ?? d.schedule ?? { kind: 'constant' },
    epochs: o.epochs ?? d.epochs,
    batchSize: o.batchSize ?? d.batchSize,
    slices: o.slices,
  };
}

/** Resolves kinds to specs and applies `lr`: the full training config of one seed. */
export function trainConfigOf(o: TrainChoices, seed: number): TrainConfig {
  const model = typeof o.model === 'string' ? MODEL_DEFAULTS[o.model] : o.model;
  const base = typeof o.optimizer === 'string' ? OPTIMIZER_DEFAULTS[o.optimizer] : o.optimizer;
  const optimizer = o.lr !== undefined ? { ...base, lr: o.lr } : base;
  return { model, optimizer, schedule: o.schedule, epochs: o.epochs, batchSize: o.batchSize, seed, ...slicesField(o.slices) };
}

export { scheduleSpecSchema };
