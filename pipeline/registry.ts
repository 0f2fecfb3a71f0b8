/**
 * The stages a pipeline (and the runner) can name. Adding a stage is one line in
 * STAGES. By convention every stage's options take `out` (its output directory)
 * and `overwrite`; the runner sets both, so pipeline files never do.
 */
import type { Stage } from '../stages/define.js';
import { ingestStage } from '../stages/ingest.js';
import { scoreStage } from '../stages/score.js';
import { selectStage } from '../stages/select/index.js';
import { rateStage } from '../stages/rate.js';
import { evaluateStage } from '../stages/evaluate.js';
import { distillStage } from '../stages/distill.js';
import { plantStage } from '../stages/plant.js';
import { labelIssuesStage } from '../stages/label-issues.js';

export type AnyStage = Stage;
export type StageRegistry = Readonly<Record<string, AnyStage>>;

export const STAGES: StageRegistry = {
  ingest: ingestStage,
  score: scoreStage,
  rate: rateStage,
  select: selectStage,
  evaluate: evaluateStage,
  distill: distillStage,
  plant: plantStage,
  'label-issues': labelIssuesStage,
};

/** Options the runner owns: a pipeline file may not set them. */
export const RUNNER_OPTIONS = ['out', 'overwrite'] as const;
