/**
 * The `metacurate` command line: a thin shell over the library. Each command
 * lives in commands/<name>.ts and is registered by one line in COMMANDS.
 */
import { Command, CommanderError, Option } from 'commander';
import { ExitCode, MetacurateError, exitCodeOf } from '../core/errors.js';
import { CODE_VERSION } from '../core/version.js';
import { explainBackendAbort } from '../ml/backend.js';
import { LOG_LEVELS } from './log.js';
import { collect, createSession, globalsOf, type CliSession, type RegisterCommand } from './commands/common.js';
import { loadPlugins } from './plugins.js';
import { terminalSafe } from './table.js';
import { registerIngest } from './commands/ingest.js';
import { registerInspect } from './commands/inspect.js';
import { registerExport } from './commands/export.js';
import { registerRun } from './commands/run.js';
import { registerScore } from './commands/score.js';
import { registerEvaluate } from './commands/evaluate.js';
import { registerSelect } from './commands/select.js';
import { registerDistill } from './commands/distill.js';
import { registerRate } from './commands/rate.js';
import { registerPlant } from './commands/plant.js';
import { registerLabelIssues } from './commands/label-issues.js';
import { registerSchedule } from './commands/schedule.js';
import { registerWorker } from './commands/worker.js';

const COMMANDS: RegisterCommand[] = [
  registerIngest, registerPlant, registerScore, registerLabelIssues, registerRate, registerSelect, registerDistill, registerEvaluate, registerInspect, registerExport, registerRun,
  registerSchedule, registerWorker,
];

/** The values of every `--plugin X` / `--plugin=X` (a global option: no command has a flag of that name). */
export function pluginArgs(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') break;
    if (a === '--plugin' && i + 1 < argv.length) out.push(argv[++i]);
    else if (a.startsWith('--plugin=')) out.push(a.slice('--plugin='.length));
  }
  return out;
}

/** The exit code after SIGINT/SIGTERM (128 + SIGINT). */
export const EXIT_INTERRUPTED = 130;

export function buildProgram(session: CliSession): Command {
  const program = new Command('metacurate')
    .description('Curate image datasets with metagradients: ingest, score, rate, select and distill, on Apache Arrow shards.')
    .version(CODE_VERSION, '-V, --version')
    .option('--json', 'machine-readable output: one JSON result on stdout, JSON-line logs and progress on stderr')
    .option('-q, --quiet', 'only warnings and errors on stderr; no progress')
    .addOption(new Option('--log-level <level>', 'log level (debug also prints stack traces)').choices(LOG_LEVELS).default('info'))
    .option('--plugin <module>', 'load score methods and selection strategies from a JavaScript module (repeatable)', collect)
    .showHelpAfterError('(add --help for usage)')
    // Commands below inherit these: usage errors are thrown, not exited on.
    .exitOverride()
    .configureOutput({
      writeOut: (s) => session.stdout.write(s),
      writeErr: (s) => session.stderr.write(s),
    });
  for (const register of COMMANDS) register(program, session);
  return program;
}

/** Runs the CLI and returns its exit code, sysexits style (docs/architecture.md#errors-and-exit-codes). */
export async function main(argv: string[] = process.argv, streams = { stdout: process.stdout, stderr: process.stderr }): Promise<number> {
  const abort = new AbortController();
  const session = createSession(streams, abort.signal);
  let interrupts = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (++interrupts > 1) process.exit(EXIT_INTERRUPTED);
    session.warn(`${signal}: stopping and removing partial output (${signal === 'SIGINT' ? 'Ctrl-C' : 'signal'} again to quit at once)`);
    abort.abort(new Error(`interrupted by ${signal}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let program = buildProgram(session);
  try {
    // Plug-ins add methods, strategies and their flags: load them before the commands are built.
    const plugins = pluginArgs(argv);
    if (plugins.length) {
      await loadPlugins(plugins);
      program = buildProgram(session);
    }
    await program.parseAsync(argv);
    return ExitCode.ok;
  } catch (err) {
    session.closeAll(); // stop any bars before the error line
    if (err instanceof CommanderError) {
      // Help and --version arrive here too, with exit code 0; commander printed the message.
      if (err.exitCode === 0) return ExitCode.ok;
      // With --json, a usage error is a JSON result like any other error (commander already wrote the line on stderr).
      if (globalsOf(program).json || argv.slice(2).includes('--json')) {
        const message = err.message.replace(/^error: /, '');
        streams.stdout.write(JSON.stringify({ error: { name: 'UsageError', message, exit_code: ExitCode.usage } }) + '\n');
      }
      return ExitCode.usage;
    }
    const debug = ['debug', 'trace'].includes(globalsOf(program).logLevel);
    if (abort.signal.aborted) {
      streams.stderr.write('metacurate: interrupted\n');
      return EXIT_INTERRUPTED;
    }
    const explained = explainBackendAbort(err);
    reportError(explained, { json: globalsOf(program).json, debug, streams });
    return exitCodeOf(explained);
  } finally {
    session.closeAll();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** One clear line on stderr (the message carries file, row and hint); the stack only when debugging. */
function reportError(
  err: unknown,
  opts: { json: boolean; debug: boolean; streams: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream } },
): void {
  const ours = err instanceof MetacurateError;
  const message = err instanceof Error ? err.message : String(err);
  const code = exitCodeOf(err);
  const hint = !ours && code === ExitCode.internal ? ' (this looks like a bug: rerun with --log-level debug for the stack trace)' : '';
  // File names and class names in the message are the input's: no control characters reach the terminal.
  opts.streams.stderr.write(`metacurate: error: ${terminalSafe(message)}${hint}\n`);
  if (opts.debug && err instanceof Error && err.stack) opts.streams.stderr.write(`${err.stack}\n`);
  if (opts.json) {
    const e = err as Partial<MetacurateError>;
    const payload = { error: { name: err instanceof Error ? err.name : 'Error', message, exit_code: code, file: e.file, row: e.row, hint: e.hint } };
    opts.streams.stdout.write(JSON.stringify(payload) + '\n');
  }
}
