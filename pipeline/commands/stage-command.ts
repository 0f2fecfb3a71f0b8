/**
 * A stage as a command: flags, help text and defaults come from the stage's zod
 * options (each described once, there), so the CLI, the pipeline schema and the
 * docs say the same thing. A command file only adds what is particular to it:
 * the positional argument, a few parsers, examples and how to print the result.
 */
import path from 'node:path';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { z } from 'zod';
import type { Stage } from '../../stages/define.js';
import type { StageResult } from '../../stages/context.js';
import { collect, definedOnly, parseCount, parseKindOrJson, parsePositive, parseStageOptions, type CliSession } from './common.js';
import { queueOption, withQueue } from './queue.js';

/** What a flag's JSON Schema says: enough to choose its argument and parser. */
interface JsonField {
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  anyOf?: JsonField[];
  oneOf?: JsonField[];
  items?: JsonField;
  minimum?: number;
  exclusiveMinimum?: number;
  default?: unknown;
  description?: string;
}

export interface FlagOverride {
  /** The argument's name in the help, e.g. 'HxW'. */
  arg?: string;
  parse?: (value: string) => unknown;
  /** Not offered on the command line (library-only options). */
  hidden?: boolean;
  /** e.g. '-o' for --out. */
  short?: string;
}

export interface StageCommandSpec<R> {
  /** The positional argument: the stage's first input. */
  argument: { name: string; description: string };
  flags?: Record<string, FlagOverride>;
  /** Help after the options: examples, methods. */
  help?: () => string;
  /** Offers --queue: the stage's jobs can run on `metacurate worker`s (ml/queue.ts). */
  queue?: boolean;
  /** Runs the stage (default: stage.run with the positional as the first input). */
  run?: (session: CliSession, cmd: Command, input: string, options: Record<string, unknown>) => Promise<R>;
  /** The text printed without --json. */
  format(result: R, input: string): string;
}

/** Argument names of common option names, for the help. */
const ARG_NAMES: Record<string, string> = { out: 'dir', target: 'dir', test: 'dir', fullTrain: 'dir', scores: 'dir', rater: 'dir', raterOut: 'dir', by: 'column' };

// maxMemoryMiB → --max-memory-mib: a unit stays one word.
const kebab = (key: string) => key.replace(/MiB$/, 'Mib').replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/** Decimal notation only: Number() would also read '0x10' as 16 and '0b1' as 1. */
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

/** The number a flag value spells in decimal, else undefined. */
function decimalOf(value: string): number | undefined {
  const n = Number(value);
  return DECIMAL.test(value.trim()) && Number.isFinite(n) ? n : undefined;
}

function parseNumber(value: string): number {
  const n = decimalOf(value);
  if (n === undefined) throw new InvalidArgumentError('expected a number');
  return n;
}

function parseInteger(value: string): number {
  if (!/^-?\d+$/.test(value.trim())) throw new InvalidArgumentError('expected a whole number');
  return Number(value);
}

/** A field's alternatives, nested unions flattened (a model kind | a spec that is itself a union of kinds). */
function alternatives(f: JsonField): JsonField[] {
  const alts = f.anyOf ?? f.oneOf;
  return alts ? alts.flatMap(alternatives) : [f];
}

function typesOf(f: JsonField): string[] {
  return alternatives(f).flatMap((a) => (Array.isArray(a.type) ? a.type : a.type ? [a.type] : a.const !== undefined ? [typeof a.const] : []));
}

/** One flag for one option, from its JSON Schema. */
function flagFor(key: string, schema: z.ZodType, override: FlagOverride = {}): Option[] {
  const f = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonField;
  const types = typesOf(f);
  const description = (f.description ?? '') + (f.default !== undefined && typeof f.default !== 'object' && f.default !== false ? ` (default: ${String(f.default)})` : '');
  const name = `--${kebab(key)}`;
  const flags = (arg: string) => `${override.short ? `${override.short}, ` : ''}${name} <${override.arg ?? arg}>`;
  if (types.length === 1 && types[0] === 'boolean') {
    if (f.default === true) return [new Option(`--no-${kebab(key)}`, `do not: ${description.replace(/ \(default: true\)$/, '')}`)];
    const on = new Option(name, description);
    // Without a default, both senses can be said (e.g. --labels / --no-labels).
    return f.default === undefined ? [on, new Option(`--no-${kebab(key)}`, `the opposite of ${name}`)] : [on];
  }
  let opt: Option;
  const consts = alternatives(f).map((a) => a.const).filter((c) => c !== undefined);
  if (override.parse) opt = new Option(flags('value'), description).argParser(override.parse);
  else if (f.enum) opt = new Option(flags(key === 'strategy' || key === 'method' ? key.slice(0, 1) : 'value'), description).choices(f.enum.map(String));
  else if (consts.length > 1 && consts.length === alternatives(f).length) {
    opt = new Option(flags('value'), description).choices(consts.map(String)).argParser((v) => consts.find((c) => String(c) === v));
  } else if (types.includes('object')) {
    const kinds = alternatives(f).flatMap((a) => a.enum ?? []);
    opt = new Option(flags(kinds.length ? 'kind|json' : 'json'), description).argParser(parseKindOrJson);
  } else if (types.length === 1 && types[0] === 'array') opt = new Option(flags(ARG_NAMES[key] ?? 'value'), `${description} (repeatable)`).argParser(collect);
  else if (types.length === 1 && types[0] === 'integer') {
    const min = f.exclusiveMinimum !== undefined ? f.exclusiveMinimum + 1 : f.minimum;
    opt = new Option(flags('n'), description).argParser(min !== undefined && min >= 1 ? parsePositive : min === 0 ? parseCount : parseInteger);
  } else if (types.length === 1 && types[0] === 'number') opt = new Option(flags('x'), description).argParser(parseNumber);
  else if (types.includes('number') || types.includes('integer')) {
    // A number or a word (e.g. --drop 0.2 | auto): numbers as numbers, words as they are.
    opt = new Option(flags('value'), description).argParser((v) => decimalOf(v) ?? v);
  }
  else opt = new Option(flags(ARG_NAMES[key] ?? 'value'), description);
  return [opt];
}

/** Adds a flag for every option of `stage` (but the hidden ones), in the schema's order. */
export function addStageFlags(cmd: Command, stage: Stage, overrides: Record<string, FlagOverride> = {}): Command {
  for (const [key, schema] of Object.entries(stage.options.shape)) {
    const o = overrides[key];
    if (o?.hidden) continue;
    for (const opt of flagFor(key, schema as z.ZodType, key === 'out' ? { short: '-o', ...o } : o)) {
      if (key === 'out' && !stage.outputOptional) opt.makeOptionMandatory();
      cmd.addOption(opt);
    }
  }
  return cmd;
}

/** Registers `metacurate <stage.name> <input> [flags]`. */
export function registerStageCommand<R = StageResult>(program: Command, session: CliSession, stage: Stage, spec: StageCommandSpec<R>): Command {
  const cmd = program.command(stage.name).description(stage.description).argument(`<${spec.argument.name}>`, spec.argument.description);
  addStageFlags(cmd, stage, spec.flags);
  if (spec.queue) cmd.addOption(queueOption());
  if (spec.help) cmd.addHelpText('after', () => `\n${spec.help!()}`);
  cmd.action(async (input: string, all: Record<string, unknown>, c: Command) => {
    // --queue says where the work runs, not what it computes: it is no stage option.
    const { queue, ...flags } = all;
    const options = parseStageOptions(stage.options, definedOnly(flags));
    const out = typeof options.out === 'string' ? path.dirname(path.resolve(options.out)) : undefined;
    const s = withQueue(session, queue as string | undefined, out);
    const result = spec.run
      ? await spec.run(s, c, input, options)
      : ((await stage.run(s.context(c), [input], options)) as unknown as R);
    session.output(c, result, () => spec.format(result, input));
  });
  return cmd;
}

/** A help section listing names and one-line descriptions. */
export function listing(title: string, items: { name: string; description: string }[]): string {
  const width = Math.max(...items.map((i) => i.name.length));
  return `${title}:\n${items.map((i) => `  ${i.name.padEnd(width)}  ${i.description}`).join('\n')}`;
}
