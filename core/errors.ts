/**
 * Errors that reach a user carry a sysexits-style exit code and, where known,
 * the file and row at fault plus a hint on what to do. The codes:
 * docs/architecture.md#errors-and-exit-codes.
 */
export const ExitCode = {
  ok: 0,
  usage: 64,
  dataError: 65,
  noInput: 66,
  internal: 70,
  cannotCreate: 73,
  io: 74,
  config: 78,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export interface ErrorContext {
  file?: string;
  row?: number | string;
  hint?: string;
  cause?: unknown;
}

export class MetacurateError extends Error {
  readonly exitCode: ExitCodeValue;
  readonly file?: string;
  readonly row?: number | string;
  readonly hint?: string;
  /** The message alone, without the file and the hint (for restating it elsewhere). */
  readonly text: string;

  constructor(exitCode: ExitCodeValue, message: string, ctx: ErrorContext = {}) {
    super(formatMessage(message, ctx), ctx.cause === undefined ? undefined : { cause: ctx.cause });
    this.text = message;
    this.name = new.target.name;
    this.exitCode = exitCode;
    this.file = ctx.file;
    this.row = ctx.row;
    this.hint = ctx.hint;
  }
}

function formatMessage(message: string, ctx: ErrorContext): string {
  const where = ctx.file ? `${ctx.file}${ctx.row !== undefined ? ` (row ${ctx.row})` : ''}: ` : '';
  return `${where}${message}${ctx.hint ? `. ${ctx.hint}` : ''}`;
}

/** Bad flags or arguments (64). */
export class UsageError extends MetacurateError {
  constructor(message: string, ctx?: ErrorContext) { super(ExitCode.usage, message, ctx); }
}
/** The input exists but its content is wrong (65). */
export class DataError extends MetacurateError {
  constructor(message: string, ctx?: ErrorContext) { super(ExitCode.dataError, message, ctx); }
}
/** The input does not exist or cannot be opened (66). */
export class MissingInputError extends MetacurateError {
  constructor(message: string, ctx?: ErrorContext) { super(ExitCode.noInput, message, ctx); }
}
/** A bug or an impossible state (70). */
export class InternalError extends MetacurateError {
  constructor(message: string, ctx?: ErrorContext) { super(ExitCode.internal, message, ctx); }
}
/** The output cannot be created, e.g. it exists and --overwrite was not given (73). */
export class OutputError extends MetacurateError {
  constructor(message: string, ctx?: ErrorContext) { super(ExitCode.cannotCreate, message, ctx); }
}
/** Reading or writing failed at the OS level (74). */
export class IoError extends MetacurateError {
  constructor(message: string, ctx?: ErrorContext) { super(ExitCode.io, message, ctx); }
}
/** A pipeline or option file is invalid (78). */
export class ConfigError extends MetacurateError {
  constructor(message: string, ctx?: ErrorContext) { super(ExitCode.config, message, ctx); }
}

/**
 * An OS error met while making an output, restated to name the output the user
 * gave (not its hidden temporary) and what to do. `isOurs` says whether a path
 * in the error belongs to the output (its temporary, or a folder on the way to
 * it); a read error on an input keeps its own message.
 */
export function restateOutputError(err: unknown, out: string, isOurs: (p: string) => boolean): unknown {
  if (err instanceof MetacurateError) return err;
  const e = err as NodeJS.ErrnoException | undefined;
  const ours = typeof e?.path !== 'string' || isOurs(e.path);
  if (e?.code === 'ENOSPC' || e?.code === 'EDQUOT') {
    return new IoError('the disk is full: the output could not be written, and what was written is removed', { file: out, hint: 'Free some space, or choose an --out on another disk' });
  }
  if (!ours) return err;
  if (e?.code === 'EACCES' || e?.code === 'EPERM' || e?.code === 'EROFS') {
    const why = e.code === 'EROFS' ? 'the file system is read-only' : 'permission denied';
    return new OutputError(`cannot create the output: ${why}`, { file: out, hint: 'Choose an --out in a folder you can write to' });
  }
  if (e?.code === 'EIO') return new IoError('an I/O error while writing the output; what was written is removed', { file: out });
  return err;
}

/** The exit code for any thrown value: ours keep theirs, anything else is internal. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof MetacurateError) return err.exitCode;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') return ExitCode.noInput;
  if (code === 'EACCES' || code === 'EEXIST') return ExitCode.cannotCreate;
  if (code === 'EIO' || code === 'ENOSPC' || code === 'EDQUOT') return ExitCode.io;
  return ExitCode.internal;
}
