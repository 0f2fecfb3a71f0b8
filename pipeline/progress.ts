/**
 * The CLI's StageContext: progress bars (cli-progress) when stderr is a TTY and
 * output is for a person, JSON lines otherwise, both with the time left from
 * eta.ts (a steady estimate, not cli-progress's own); logs through pino (log.ts).
 */
import cliProgress from 'cli-progress';
import type { Logger, Progress, StageContext } from '../stages/context.js';
import { Eta, formatEta } from './eta.js';
import { createLogger, type LogLevel } from './log.js';

export interface CliContextOptions {
  /** Machine-readable output: JSON lines on stderr even on a TTY. */
  json: boolean;
  /** Warnings and errors only; no progress. */
  quiet: boolean;
  logLevel: LogLevel;
  signal?: AbortSignal;
  /** Defaults to process.stderr. */
  stream?: NodeJS.WriteStream;
  /** Least time between two JSON progress lines of one phase (default 500 ms). */
  throttleMs?: number;
}

export interface CliContext extends StageContext {
  /** Stops any bars still drawn (call once at the end). */
  close(): void;
}

export function createCliContext(opts: CliContextOptions): CliContext {
  const stream = opts.stream ?? process.stderr;
  const bars = Boolean(stream.isTTY) && !opts.json && !opts.quiet;
  const level: LogLevel = opts.quiet && levelRank(opts.logLevel) < levelRank('warn') ? 'warn' : opts.logLevel;
  let multibar: cliProgress.MultiBar | undefined;
  let active = 0;

  const log = createLogger({
    level,
    pretty: bars,
    // While bars are drawn, lines go above them (cli-progress prints them on redraw).
    sink: (line) => (multibar?.isActive ? multibar.log(line) : stream.write(line)),
  });
  const logger: Logger = log;

  function stopBars(): void {
    if (!multibar) return;
    // A redraw first: it prints the log lines cli-progress holds until then.
    if (multibar.isActive) multibar.update();
    multibar.stop();
    multibar = undefined;
    active = 0;
  }

  function barProgress(label: string, total: number | undefined): Progress {
    if (!multibar) {
      multibar = new cliProgress.MultiBar(
        {
          stream,
          format: ' {label} |{bar}| {percentage}% {value}/{total} {duration_formatted} eta {eta}',
          hideCursor: true,
          clearOnComplete: false,
          barsize: 30,
          etaBuffer: 50,
        },
        cliProgress.Presets.shades_classic,
      );
    }
    const eta = new Eta();
    const bar = multibar.create(total ?? 0, 0, { label: label.padEnd(12), eta: formatEta(undefined) });
    active++;
    let finished = false;
    let value = 0;
    return {
      tick(n = 1) {
        value += n;
        bar.increment(n, { eta: formatEta(eta.secondsLeft(value, bar.getTotal())) });
      },
      setTotal: (t) => bar.setTotal(t),
      done() {
        if (finished) return;
        finished = true;
        // An unknown or short total becomes the count reached; an interrupted phase stays short.
        if (bar.getTotal() < value || bar.getTotal() === 0) bar.setTotal(value);
        bar.update(value);
        // Leave the finished bars on screen as a record of the phases.
        if (--active === 0) stopBars();
      },
    };
  }

  function lineProgress(label: string, total: number | undefined): Progress {
    const throttle = opts.throttleMs ?? 500;
    let done = 0;
    let last = 0;
    let finished = false;
    const eta = new Eta();
    const emit = () => {
      last = Date.now();
      const left = eta.secondsLeft(done, total);
      log.info({ progress: label, done, total, ...(left !== undefined ? { eta_s: Math.round(left) } : {}) }, 'progress');
    };
    return {
      tick(n = 1) {
        done += n;
        if (Date.now() - last >= throttle) emit();
      },
      setTotal(t) {
        total = t;
      },
      done() {
        if (finished) return;
        finished = true;
        if (total === undefined || total < done) total = done;
        emit();
      },
    };
  }

  const noop = () => undefined;
  return {
    log: logger,
    signal: opts.signal,
    progress(label, total) {
      if (opts.quiet) return { tick: noop, setTotal: noop, done: noop };
      return bars ? barProgress(label, total) : lineProgress(label, total);
    },
    close: stopBars,
  };
}

function levelRank(level: LogLevel): number {
  return ['trace', 'debug', 'info', 'warn', 'error', 'silent'].indexOf(level);
}
