/**
 * The metacurate library: the same functions the CLI calls.
 *   import { ingest, openDataset, runPipeline } from 'metacurate';
 */
export {
  MetacurateError, UsageError, DataError, MissingInputError, InternalError, OutputError, IoError, ConfigError,
  ExitCode, exitCodeOf, type ErrorContext, type ExitCodeValue,
} from './core/errors.js';
export { Rng } from './core/rng.js';
export { fingerprint, canonicalJson } from './core/hash.js';
export { CODE_VERSION } from './core/version.js';

export { openDataset, readCuration, Dataset, type Block, type OpenOptions, type ShardInfo } from './data/reader.js';
export { writeDataset, DatasetWriter, OutputDir, type WriterOptions, type WriteResult, type DatasetMeta } from './data/writer.js';
export { fixedListValues, numericValues, type ImageValue } from './data/columns.js';
export type { ColumnKind, ColumnSpec, CurationInfo, PixelShape, ShardRecord } from './data/format.js';
export type { IdList } from './data/id-list.js';
export {
  loadExamples, batchSchedule, gatherPixels, gatherTargets, gatherLabels, subsetExamples, type Examples,
} from './data/batch.js';
export { inspectDataset, type DatasetInspection, type InspectOptions } from './data/inspect.js';
export { writeContactSheet, type ContactSheetOptions, type ContactSheetResult } from './data/export.js';

export { quietContext, type StageContext, type StageResult, type Logger, type Progress } from './stages/context.js';
export { defineStage, type Stage, type StageDefinition, type InputSpec, type StageInputs, type NamedInputs, type Output, type Prepared } from './stages/define.js';
export { ingest, ingestStage } from './stages/ingest.js';
export { score, scoreStage, type ScoreOptions, type ScoreResult } from './stages/score.js';
export {
  select, selectStage, registerStrategy, strategyNames, type SelectInput, type SelectResult, type Strategy, type Selection, type DecideInput, type Decision,
} from './stages/select/index.js';
export { rate, rateStage, type RateOptions, type RateResult } from './stages/rate.js';
export { evaluate, evaluateStage, type EvaluateOptions, type EvaluateReport } from './stages/evaluate.js';
export { distill, distillStage, type DistillOptions, type DistillResult } from './stages/distill.js';
export { plant, plantStage, type PlantOptions } from './stages/plant.js';
export { labelIssues, labelIssuesStage, type LabelIssuesOptions } from './stages/label-issues.js';

export { initBackend, type BackendName, type BackendRequest } from './ml/backend.js';
export { makeModel, type Model, type ModelSpec } from './ml/models.js';
export { createTrainer, TrainingDivergedError, type Trainer, type TrainConfig } from './ml/train.js';
export { metagradient, metasmoothness, meanCrossEntropyTarget, replayPlan, type MetagradResult, type TargetLoss } from './ml/metagrad.js';
export { trainDataParallel, type DataParallelOptions, type DataParallelResult } from './ml/data-parallel.js';
export { runJobs, localJobs, type JobRunner, type RunJobsOptions } from './ml/pool.js';
export { queueJobs, serveQueue, type QueueRunnerOptions, type QueueWorkerOptions } from './ml/queue.js';
export {
  computeScores, scoreSeeds, registerScorer, scorerNames, getScorer, type Scorer, type ScorerInput, type ScorerOutput, type ScoreSettings,
} from './ml/scores/index.js';

export { runPipeline, type RunPipelineOptions } from './pipeline/runner.js';
export { runOnSchedule, checkSchedule, type ScheduleOptions, type ScheduleResult, type RunRecord } from './pipeline/schedule.js';
export { loadPlugins, type LoadedPlugin } from './pipeline/plugins.js';
export {
  loadPipelineConfig, parsePipelineConfig, pipelineSchema, pipelineJsonSchema,
  type PipelineConfig, type PipelineStep, type ResolvedStep,
} from './pipeline/config.js';
export { STAGES, type StageRegistry, type AnyStage } from './pipeline/registry.js';
export type { PipelineReport, StageReport } from './pipeline/report.js';
