/**
 * Logs for the CLI: pino JSON lines on stderr, or short single lines on a TTY
 * (without pino-pretty). Stages only see the `Logger` interface of stages/context.ts.
 */
import { pino, type Logger as PinoLogger } from 'pino';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Where formatted log lines go (each ends with a newline). */
export type LineSink = (line: string) => void;

export interface LoggerOptions {
  level: LogLevel;
  /** Human single lines instead of JSON. */
  pretty: boolean;
  sink: LineSink;
}

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const HIDDEN_KEYS = new Set(['level', 'time', 'msg']);

/** One human line for a pino JSON record: `12:03:04 WARN message key=value ...`. */
export function prettyLine(json: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json);
  } catch {
    return json.endsWith('\n') ? json : `${json}\n`;
  }
  const time = new Date(Number(rec.time ?? Date.now())).toTimeString().slice(0, 8);
  const level = LEVEL_NAMES[Number(rec.level)] ?? String(rec.level);
  const fields = Object.entries(rec)
    .filter(([k]) => !HIDDEN_KEYS.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  return `${time} ${level.padEnd(5)} ${rec.msg ?? ''}${fields.length ? `  ${fields.join(' ')}` : ''}\n`;
}

export function createLogger(opts: LoggerOptions): PinoLogger {
  const stream = {
    write(line: string) {
      opts.sink(opts.pretty ? prettyLine(line) : line);
    },
  };
  // No pid/hostname: the lines are for this run's user, not a log aggregator.
  return pino({ level: opts.level, base: undefined }, stream);
}
