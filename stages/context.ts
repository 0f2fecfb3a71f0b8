/**
 * What a stage reports through: a logger, progress bars and a cancellation
 * signal, provided by the CLI, the pipeline runner or a library caller. A stage
 * knows nothing about the CLI. (The stage template itself is stages/define.ts.)
 */
import type { JobRunner } from '../ml/pool.js';

export interface Logger {
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
}

export interface Progress {
  /** Advances by `n` items (default 1). */
  tick(n?: number): void;
  /** Sets or corrects the total once known. */
  setTotal(total: number): void;
  done(): void;
}

export interface StageContext {
  log: Logger;
  /** A progress reporter for a named phase of work. */
  progress(label: string, total?: number): Progress;
  /** Cancels long work (e.g. SIGINT, or a pipeline's time budget). */
  signal?: AbortSignal;
  /** Where independent trainings run (default: worker threads here); results do not depend on it. */
  jobRunner?: JobRunner;
}

/** What every stage returns: the written dataset and its summary. */
export interface StageResult {
  dir: string;
  fingerprint: string;
  numRows: number;
  summary: Record<string, unknown>;
}

const noop = (): void => undefined;

/** A context that logs nothing: the default for library callers. */
export function quietContext(): StageContext {
  const log: Logger = { debug: noop, info: noop, warn: noop, error: noop };
  return { log, progress: () => ({ tick: noop, setTotal: noop, done: noop }) };
}
