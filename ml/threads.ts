/**
 * What every launcher of worker threads shares (the job pool, ml/pool.ts, and
 * data-parallel runs, ml/data-parallel.ts): how a dataset is named to a thread,
 * where the compiled worker script is, and how an error crosses threads with its
 * class (hence exit code) intact.
 */
import {
  ConfigError, DataError, ExitCode, InternalError, IoError, MetacurateError, MissingInputError, OutputError, UsageError, exitCodeOf,
} from '../core/errors.js';
import { TrainingDivergedError } from './train.js';

/** A dataset by reference: its directory, optional sidecars, optional row subset. */
export interface DataRef {
  dir: string;
  sidecars?: string[];
  /** Rows to keep (in this order); all rows when absent. */
  indices?: Int32Array;
}

/**
 * The compiled worker script. Under vitest this module is the .ts source, and
 * worker threads cannot run TypeScript: use the build output in the package's dist/.
 */
export function workerScript(): URL {
  const here = import.meta.url;
  return here.endsWith('.ts') ? new URL('../dist/ml/worker.js', here) : new URL('./worker.js', here);
}

/** An error as it crosses threads (or a queue): enough to rebuild its class and message. */
export interface SerializedError {
  name: string;
  message: string;
  exitCode: number;
  stack?: string;
  /** TrainingDivergedError's fields, to rebuild it on the main thread. */
  diverged?: { step: number; lr: number; detail: string };
}

/** The error of a thread's work, as a message. */
export function serializeError(err: unknown): SerializedError {
  const e = err instanceof Error ? err : new Error(String(err));
  const own = (err as { exitCode?: unknown })?.exitCode;
  const exitCode = err instanceof MetacurateError ? err.exitCode : typeof own === 'number' ? own : exitCodeOf(err);
  return {
    name: e.name,
    message: e.message,
    exitCode: exitCode ?? ExitCode.internal,
    stack: e.stack,
    diverged: err instanceof TrainingDivergedError ? { step: err.step, lr: err.lr, detail: err.detail } : undefined,
  };
}

/** Rebuilds a worker's error on this thread: same message, same class (hence exit code). */
export function rebuildError(e: SerializedError): Error {
  let err: Error;
  if (e.diverged) err = new TrainingDivergedError(e.diverged.step, e.diverged.lr, e.diverged.detail);
  else {
    const byCode: Record<number, new (m: string) => MetacurateError> = {
      [ExitCode.usage]: UsageError,
      [ExitCode.dataError]: DataError,
      [ExitCode.noInput]: MissingInputError,
      [ExitCode.cannotCreate]: OutputError,
      [ExitCode.io]: IoError,
      [ExitCode.config]: ConfigError,
    };
    const Cls = byCode[e.exitCode];
    err = Cls ? new Cls(e.message) : new InternalError(`in a worker thread: ${e.message}`);
    if (Cls) err.name = e.name;
  }
  if (e.stack) err.stack = `${err.name}: ${err.message}\n    --- in a worker thread ---\n${e.stack.split('\n').slice(1).join('\n')}`;
  return err;
}

