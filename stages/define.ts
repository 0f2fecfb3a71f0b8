/**
 * The stage template. A stage declares its options (a zod object, each option
 * described once), its inputs by name, a `plan` (what the output is a function
 * of) and a `run` (the work). The template owns what every stage would otherwise
 * repeat: parsing options, sorting inputs into their roles, the fingerprint
 * (computed once, handed to the writer), refusing an output that would clobber
 * an input, creating / aborting / committing the output, timing, and the
 * library call. See docs/extending.md for how to add a stage.
 */
import path from 'node:path';
import { z } from 'zod';
import { outputFailure, pathExists } from '../core/atomic.js';
import { OutputError, UsageError } from '../core/errors.js';
import { isWithin } from '../core/paths.js';
import { fingerprint as computeFingerprint } from '../core/hash.js';
import type { ParentRef } from '../data/format.js';
import { readCuration } from '../data/reader.js';
import { DatasetWriter, OutputDir, type WriterOptions } from '../data/writer.js';
import { quietContext, type StageContext, type StageResult } from './context.js';

export interface InputSpec {
  /** The role: `inputs: { <name>: ... }` in a pipeline; an option of the same name may give it too. */
  name: string;
  description: string;
  optional?: boolean;
  /** Takes several paths (e.g. score sidecars). */
  many?: boolean;
}

/** Inputs as a pipeline or a caller gives them: a list (by position) or by role. */
export type StageInputs = readonly string[] | Readonly<Record<string, string | readonly string[] | undefined>>;
/** Inputs sorted into roles: every declared role, with zero or more paths. */
export type NamedInputs = Record<string, string[]>;

/** What an output is a function of; the fingerprint hashes exactly this. */
export interface PlanBase {
  /** Canonical options: recorded in curation.json and hashed. */
  options: Record<string, unknown>;
  /**
   * The choices that do not follow from the inputs, where `options` also holds
   * something derived from them (a fingerprint of a model trained on them): what
   * a rerun compares to tell "the inputs grew" from "the settings changed".
   */
  choices?: Record<string, unknown>;
  seed?: number;
  parents: ParentRef[];
  /** What the fingerprint hashes for the parents, when not their fingerprints (kept for outputs made before the template). */
  hashParents?: string[];
}

export type Planned<P extends PlanBase> = P & { fingerprint: string };

/** The output of one run: created on demand, committed by the template with the summary. */
export interface Output {
  /** The final directory, or undefined when the stage was asked for no output. */
  dir?: string;
  /** A dataset (shards + metadata); the metadata's fingerprint, options and parents come from the plan. */
  dataset(opts: Omit<WriterOptions, 'meta' | 'overwrite' | 'append'> & { description?: string; license?: string; sidecarOf?: string; sidecarShards?: string[] }): Promise<DatasetWriter>;
  /** A directory of other files (a report, a model), completed with the same curation.json marker. */
  files(): Promise<OutputDir>;
}

export interface RunOutcome<X> {
  summary: Record<string, unknown>;
  /** Rows of a non-dataset output (e.g. the rows evaluated); datasets count their own. */
  numRows?: number;
  /** A value for library callers beside the written output (e.g. evaluate's full report). */
  extra?: X;
  /** An appending stage that found nothing to add: the output stays as it is (no writer was opened). */
  unchanged?: boolean;
}

export interface StageDefinition<S extends z.ZodObject, P extends PlanBase, X> {
  name: string;
  version: string;
  /** One line for --help and the docs. */
  description: string;
  options: S;
  inputs: InputSpec[];
  /** Stages whose output is optional (evaluate) leave `out` unset to write nothing. */
  outputOptional?: boolean;
  /**
   * Whether this run adds to the existing output instead of replacing it: ingest
   * --append, or a per-shard stage whose output covers the input's first shards
   * (rate with a saved rater after rows were appended).
   */
  appends?(o: z.output<S>, plan: P): boolean;
  /** Checks across options that zod's schema does not express (e.g. "only for strategy X"). */
  check?(o: z.output<S>): void;
  /** Sorts a plain list of inputs into roles when position is not enough (default: by position). */
  fromList?(paths: readonly string[], o: z.output<S>): Promise<NamedInputs>;
  /** Checks which inputs are given against the options, reading none of them, so a pipeline can refuse a step before any stage runs. */
  checkInputs?(inputs: NamedInputs, o: z.output<S>): void;
  plan(inputs: NamedInputs, o: z.output<S>): Promise<P>;
  run(ctx: StageContext, plan: Planned<P>, o: z.output<S>, out: Output): Promise<RunOutcome<X>>;
}

/** A stage whose fingerprint is known and whose work has not started. */
export interface Prepared<X = unknown> {
  fingerprint: string;
  out?: string;
  /** What the fingerprint hashes, for telling what changed against an earlier output. */
  stageVersion: string;
  options: Record<string, unknown>;
  /** PlanBase.choices, else the options. */
  choices: Record<string, unknown>;
  parents: ParentRef[];
  execute(ctx?: StageContext, opts?: { overwrite?: boolean }): Promise<StageResult & { extra?: X }>;
}

export interface Stage<S extends z.ZodObject = z.ZodObject, X = unknown> {
  name: string;
  version: string;
  description: string;
  options: S;
  inputs: InputSpec[];
  outputOptional: boolean;
  /** Parses the options, sorts the inputs and computes the fingerprint, without doing the work. */
  prepare(inputs: StageInputs, options: unknown): Promise<Prepared<X>>;
  /**
   * Checks the options and, where the roles are known without reading the
   * inputs, which inputs are given: what `prepare` would refuse before its plan.
   * Pipelines call it for every step before the first one runs.
   */
  validate(inputs: StageInputs, options: unknown): void;
  /** prepare + execute: what the CLI and library callers use. */
  run(ctx: StageContext | undefined, inputs: StageInputs, options: unknown): Promise<StageResult & { extra?: X }>;
}

function parseWith<S extends z.ZodObject>(def: { name: string; options: S; check?: (o: z.output<S>) => void }, options: unknown): z.output<S> {
  const r = def.options.safeParse(options);
  if (!r.success) throw new UsageError(`invalid ${def.name} options: ${z.prettifyError(r.error).replace(/\n/g, '; ')}`, { hint: 'See --help' });
  def.check?.(r.data);
  return r.data;
}

/** Sorts inputs into the declared roles; an option named like a role gives it too (both at once must agree). */
async function nameInputs<S extends z.ZodObject>(def: StageDefinition<S, PlanBase, unknown>, given: StageInputs, o: z.output<S>): Promise<NamedInputs> {
  const listed = Array.isArray(given) && def.fromList ? await def.fromList(given as readonly string[], o) : undefined;
  return rolesOf(def, given, o, listed);
}

/** nameInputs' work once a plain list is sorted (`listed`, by fromList) or needs no sorting. */
function rolesOf<S extends z.ZodObject>(def: StageDefinition<S, PlanBase, unknown>, given: StageInputs, o: z.output<S>, listed?: NamedInputs): NamedInputs {
  let named: NamedInputs;
  if (listed) named = listed;
  else if (Array.isArray(given)) {
    const list = given as readonly string[];
    named = {};
    let i = 0;
    for (const spec of def.inputs) named[spec.name] = spec.many ? list.slice(i, (i = list.length)) : list.slice(i, ++i);
    if (list.length > i) {
      const roles = def.inputs.map((s) => (s.optional ? `[${s.name}]` : s.name)).join(' ');
      throw new UsageError(`${def.name} takes inputs ${roles}, got ${list.length}`);
    }
  } else {
    const byName = given as Record<string, string | readonly string[] | undefined>;
    const unknown = Object.keys(byName).filter((k) => !def.inputs.some((s) => s.name === k));
    if (unknown.length) {
      throw new UsageError(`${def.name} has no input named ${unknown.map((k) => `"${k}"`).join(', ')}`, { hint: `Its inputs are ${def.inputs.map((s) => s.name).join(', ')}` });
    }
    named = Object.fromEntries(def.inputs.map((s) => {
      const v = byName[s.name];
      return [s.name, v === undefined ? [] : typeof v === 'string' ? [v] : [...v]];
    }));
  }
  const opts = o as Record<string, unknown>;
  for (const spec of def.inputs) {
    named[spec.name] ??= [];
    const fromOption = opts[spec.name];
    if (fromOption === undefined) continue;
    const paths = typeof fromOption === 'string' ? [fromOption] : Array.isArray(fromOption) ? (fromOption as string[]) : [];
    if (spec.many) named[spec.name] = [...new Set([...named[spec.name], ...paths].map((p) => p))];
    else if (named[spec.name].length && path.resolve(named[spec.name][0]) !== path.resolve(paths[0])) {
      throw new UsageError(`two ${spec.name} inputs given: ${named[spec.name][0]} and ${paths[0]}`, { hint: `Give the ${spec.name} once` });
    } else named[spec.name] = paths;
  }
  for (const spec of def.inputs) {
    if (!spec.optional && named[spec.name].length === 0) throw new UsageError(`${def.name} needs its ${spec.name} input (${spec.description})`);
    if (!spec.many && named[spec.name].length > 1) throw new UsageError(`${def.name} takes one ${spec.name} input, got ${named[spec.name].length}`);
  }
  return named;
}

/**
 * Refuses an output that would destroy what the user did not ask to replace: an
 * input (or a folder holding one, or one inside it), or an existing folder that
 * is not a metacurate output.
 */
async function checkOutput(stage: string, out: string, inputs: NamedInputs, overwrite: boolean): Promise<void> {
  const target = path.resolve(out);
  for (const p of Object.values(inputs).flat()) {
    const input = path.resolve(p);
    if (isWithin(target, input) || isWithin(input, target)) {
      throw new OutputError(`the output ${target === input ? 'is' : isWithin(target, input) ? 'lies inside' : 'contains'} the input ${p}`, {
        file: out,
        hint: `Write the ${stage} output somewhere else: replacing it would destroy the input`,
      });
    }
  }
  if (!(await pathExists(target))) return;
  if (!overwrite) throw new OutputError('output already exists', { file: out, hint: 'Choose another --out, or pass --overwrite to replace it' });
  if (!(await readCuration(target))) {
    throw new OutputError('exists and is not a metacurate output, so it will not be replaced', { file: out, hint: 'Move it away or choose another --out' });
  }
}

export function defineStage<S extends z.ZodObject, P extends PlanBase, X = undefined>(def: StageDefinition<S, P, X>): Stage<S, X> {
  const prepare = async (inputs: StageInputs, options: unknown): Promise<Prepared<X>> => {
    const o = parseWith(def, options);
    const named = await nameInputs(def as unknown as StageDefinition<S, PlanBase, unknown>, inputs, o);
    def.checkInputs?.(named, o);
    const plan = await def.plan(named, o);
    const fingerprint = computeFingerprint({
      stage: def.name,
      stageVersion: def.version,
      options: plan.options,
      seed: plan.seed,
      parents: plan.hashParents ?? plan.parents.map((p) => p.fingerprint),
    });
    const planned = { ...plan, fingerprint } as Planned<P>;
    const opts = o as { out?: string; overwrite?: boolean };
    if (opts.out === undefined && !def.outputOptional) throw new UsageError(`${def.name} needs an output directory`, { hint: 'Pass --out <dir>' });
    return {
      fingerprint,
      out: opts.out,
      stageVersion: def.version,
      options: plan.options,
      choices: plan.choices ?? plan.options,
      parents: plan.parents,
      async execute(ctx = quietContext(), how = {}) {
        const overwrite = how.overwrite ?? opts.overwrite ?? false;
        const append = def.appends?.(o, plan) ?? false;
        const started = performance.now();
        const meta = (extra: { description?: string; license?: string; sidecarOf?: string; sidecarShards?: string[] } = {}) => ({
          fingerprint, stage: def.name, stageVersion: def.version, options: plan.options, choices: plan.choices, seed: plan.seed, parents: plan.parents, ...extra,
        });
        let writer: DatasetWriter | OutputDir | undefined;
        const own = (w: DatasetWriter | OutputDir) => {
          if (writer) throw new UsageError(`the ${def.name} stage opened its output twice`);
          writer = w;
          return w;
        };
        const out: Output = {
          dir: opts.out,
          async dataset(w) {
            if (!opts.out) throw new UsageError(`${def.name} was given no output directory`);
            const { description, license, sidecarOf, sidecarShards, ...rest } = w;
            return own(await DatasetWriter.create(opts.out, { ...rest, overwrite, append, meta: meta({ description, license, sidecarOf, sidecarShards }) })) as DatasetWriter;
          },
          async files() {
            if (!opts.out) throw new UsageError(`${def.name} was given no output directory`);
            return own(await OutputDir.create(opts.out, meta(), { overwrite })) as OutputDir;
          },
        };
        // Refuse before any work, not after hours of it (an append expects the output to be there).
        if (opts.out !== undefined) await checkOutput(def.name, opts.out, named, overwrite || append);
        let outcome: RunOutcome<X>;
        try {
          outcome = await def.run(ctx, planned, o, out);
        } catch (err) {
          await writer?.abort();
          throw opts.out === undefined ? err : outputFailure(err, opts.out);
        }
        const summary = { ...outcome.summary, seconds: Math.round(performance.now() - started) / 1000 };
        if (outcome.unchanged && opts.out !== undefined) {
          const kept = await readCuration(opts.out);
          if (kept) {
            // Nothing to add after all: what the run opened is dropped, the output stays as it was.
            await writer?.abort();
            return { dir: path.resolve(opts.out), fingerprint: kept.fingerprint, numRows: kept.num_rows, summary, extra: outcome.extra };
          }
        }
        if (!writer) return { dir: '', fingerprint, numRows: outcome.numRows ?? 0, summary, extra: outcome.extra };
        const w: DatasetWriter | OutputDir = writer;
        try {
          const written = w instanceof DatasetWriter ? await w.finish(summary) : await w.finish(summary, outcome.numRows);
          return { dir: written.dir, fingerprint, numRows: written.numRows, summary, extra: outcome.extra };
        } catch (err) {
          // finish removes what it wrote; say which output failed, not which temporary.
          throw outputFailure(err, opts.out!);
        }
      },
    };
  };
  return {
    name: def.name,
    version: def.version,
    description: def.description,
    // A getter: a stage whose options grow with plug-ins (select) rebuilds its schema.
    get options() {
      return def.options;
    },
    inputs: def.inputs,
    outputOptional: def.outputOptional ?? false,
    prepare,
    validate(inputs, options) {
      const o = parseWith(def, options);
      // A plain list that only reading can sort (select's sidecars and target) is checked when the stage runs.
      if (Array.isArray(inputs) && def.fromList) return;
      def.checkInputs?.(rolesOf(def as unknown as StageDefinition<S, PlanBase, unknown>, inputs, o), o);
    },
    async run(ctx, inputs, options) {
      return (await prepare(inputs, options)).execute(ctx);
    },
  };
}

/** The one path of a single-path role (undefined when absent). */
export function one(inputs: NamedInputs, name: string): string | undefined {
  return inputs[name]?.[0];
}

/** A ParentRef for a described input (with its rows, so a later run can tell how much it grew). */
export function parentOf(d: { dir: string; n?: number; ds: { fingerprint: string } }, role: string): ParentRef {
  return { fingerprint: d.ds.fingerprint, path: path.resolve(d.dir), role, ...(d.n !== undefined ? { rows: d.n } : {}) };
}
