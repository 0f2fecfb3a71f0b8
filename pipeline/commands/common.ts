/**
 * What every command shares: the global options, the per-invocation session
 * (signal, output streams, contexts to close) and option parsers.
 */
import { InvalidArgumentError, type Command } from 'commander';
import type { z } from 'zod';
import { UsageError } from '../../core/errors.js';
import { createCliContext, type CliContext } from '../progress.js';
import type { LogLevel } from '../log.js';
import { formatPath } from '../config.js';

export interface GlobalOptions {
  json: boolean;
  quiet: boolean;
  logLevel: LogLevel;
}

export interface CliSession {
  /** Aborted on SIGINT/SIGTERM; stages clean up their partial output. */
  signal: AbortSignal;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WriteStream;
  /** The StageContext for a command (bars or JSON lines, per the global options). */
  context(cmd: Command): CliContext;
  /** Prints the command's result: `json` with --json, else `text()`. */
  output(cmd: Command, json: unknown, text: () => string): void;
  /** A warning through the open context's log (above any bars), else a line on stderr. */
  warn(message: string): void;
}

/** Each command module exports one of these; cli.ts lists them. */
export type RegisterCommand = (program: Command, session: CliSession) => void;

export function globalsOf(cmd: Command): GlobalOptions {
  const o = cmd.optsWithGlobals<Partial<GlobalOptions>>();
  return { json: Boolean(o.json), quiet: Boolean(o.quiet), logLevel: o.logLevel ?? 'info' };
}

export function createSession(streams: { stdout: NodeJS.WritableStream; stderr: NodeJS.WriteStream }, signal: AbortSignal) {
  const contexts: CliContext[] = [];
  const session: CliSession & { closeAll(): void } = {
    signal,
    ...streams,
    context(cmd) {
      const g = globalsOf(cmd);
      const ctx = createCliContext({ json: g.json, quiet: g.quiet, logLevel: g.logLevel, signal, stream: streams.stderr });
      contexts.push(ctx);
      return ctx;
    },
    output(cmd, json, text) {
      const out = globalsOf(cmd).json ? JSON.stringify(json, null, 2) : text();
      streams.stdout.write(out.endsWith('\n') ? out : `${out}\n`);
    },
    warn(message) {
      const ctx = contexts.at(-1);
      if (ctx) ctx.log.warn(message);
      else streams.stderr.write(`metacurate: ${message}\n`);
    },
    closeAll() {
      for (const c of contexts.splice(0)) c.close();
    },
  };
  return session;
}

// Option parsers: commander reports their errors as usage errors (exit 64).

export function parseCount(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('expected a whole number');
  return n;
}

export function parsePositive(value: string): number {
  const n = parseCount(value);
  if (n < 1) throw new InvalidArgumentError('expected a positive whole number');
  return n;
}

/** Repeatable option: `--sidecar a --sidecar b`. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** `--shard-rows` for an option key `shardRows`. */
export function flagName(key: string): string {
  return `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/**
 * Validates a stage's options from flags; errors name the flag (exit 64). zod's
 * own messages are kept; only where they point is ours, since z.prettifyError
 * would name the option key (`batchSize`), not the flag the user typed
 * (`--batch-size`). The library path (stages/define.ts) uses z.prettifyError.
 */
export function parseStageOptions<S extends z.ZodTypeAny>(schema: S, options: Record<string, unknown>): z.infer<S> {
  const parsed = schema.safeParse(options);
  if (parsed.success) return parsed.data;
  const msg = parsed.error.issues
    .slice(0, 5)
    .map((i) => {
      const [key, ...rest] = i.path;
      const where = typeof key === 'string' ? flagName(key) + (rest.length ? ` (${formatPath(rest)})` : '') : formatPath(i.path);
      return `${where}: ${i.message}`;
    })
    .join('; ');
  throw new UsageError(msg, { hint: 'See --help' });
}

/** The allowed values of an enum option in a zod object schema, for --help. */
export function choicesOf(schema: z.ZodTypeAny, key: string): string[] | undefined {
  let s: any = (schema as any).shape?.[key];
  for (let i = 0; s && i < 5; i++) {
    if (Array.isArray(s.options) && s.options.every((o: unknown) => typeof o === 'string')) return s.options;
    s = s._zod?.def?.innerType ?? s.unwrap?.();
  }
  return undefined;
}

/** Commander leaves unset flags as undefined; zod defaults should fill them instead. */
export function definedOnly(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

/** `--model mlp` or a JSON spec `--model '{"kind":"mlp","hidden":[512]}'` (likewise --optimizer). */
export function parseKindOrJson(value: string): unknown {
  const v = value.trim();
  if (!v.startsWith('{')) return v;
  try {
    return JSON.parse(v);
  } catch (err) {
    throw new UsageError(`not valid JSON: ${v}`, { hint: `Pass a kind name or a JSON object (${(err as Error).message})` });
  }
}
