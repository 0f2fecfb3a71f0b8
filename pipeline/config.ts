/**
 * Pipeline files: YAML or JSON, validated by a zod schema built from the stage
 * registry (so each stage's options are checked, and the published JSON Schema
 * lists them). Paths in the file are relative to the file.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { parseDocument } from 'yaml';
import { didYouMean, nameForm } from './suggest.js';
import { ConfigError, MissingInputError, UsageError } from '../core/errors.js';
import type { StageInputs } from '../stages/define.js';
import { packageFile } from '../core/version.js';
import { loadPlugins } from './plugins.js';
import { BACKEND_REQUESTS } from '../ml/backend.js';
import { RUNNER_OPTIONS, STAGES, type AnyStage, type StageRegistry } from './registry.js';

export const PIPELINE_VERSION = 1;
/** A stage input naming an earlier stage's output: `${stageId}`. */
const REFERENCE = /^\$\{([^}]+)\}$/;
const STAGE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** One step as written in the file (options without the runner's own keys). */
export interface PipelineStep {
  id: string;
  stage: string;
  /** By position, or by the stage's input names: `{ pool: '${pool}', target: '${target}' }`. */
  inputs: string[] | Record<string, string | string[]>;
  options: Record<string, unknown>;
  /** Keep a stale output whose inputs only grew (rows appended) until this much has changed. */
  refresh?: RefreshRule;
}

/** When a whole-pool stage reruns for appended rows: after this many new input rows, or once its output is this many days old. */
export interface RefreshRule {
  rows?: number;
  days?: number;
}

/** A loaded, validated pipeline: paths resolved, references checked. */
export interface PipelineConfig {
  /** The pipeline file (absolute), or undefined for a config built in code. */
  file?: string;
  name: string;
  /** Root of all outputs (absolute). */
  workdir: string;
  seed?: number;
  backend?: (typeof BACKEND_REQUESTS)[number];
  stages: ResolvedStep[];
}

export interface ResolvedStep extends PipelineStep {
  /** Output directory: `<workdir>/<id>`. */
  out: string;
  /** Inputs as absolute paths (references replaced by the referenced stage's `out`), in the form they were written. */
  resolvedInputs: StageInputs;
  /** The same paths as one list, in the stage's input order (the report's). */
  inputPaths: string[];
  /** Ids of the earlier stages this one reads. */
  dependsOn: string[];
}

/** The options a pipeline file may give a stage: the stage's own, minus the runner's keys. */
function stepOptionsSchema(stage: AnyStage): z.ZodTypeAny {
  const schema = stage.options as z.ZodTypeAny;
  if (schema instanceof z.ZodObject) {
    // Rebuild from the shape: refinements are checked later against the full options.
    const shape = Object.fromEntries(
      Object.entries(schema.shape).filter(([k]) => !(RUNNER_OPTIONS as readonly string[]).includes(k)),
    ) as z.ZodRawShape;
    return z.strictObject(shape);
  }
  return z.record(z.string(), z.unknown());
}

/** The zod schema of a pipeline file, for the stages in `registry`. */
export function pipelineSchema(registry: StageRegistry = STAGES) {
  const steps = Object.entries(registry).map(([name, stage]) =>
    z.strictObject({
      id: z.string().regex(STAGE_ID, 'use letters, digits, "_", "-" or "." (the id names the output directory)')
        .describe('Unique id; the output goes to <workdir>/<id> and later stages refer to it as "${id}".'),
      stage: z.literal(name),
      inputs: z.union([
        z.array(z.string().min(1)),
        z.strictObject(Object.fromEntries(stage.inputs.map((spec) => [
          spec.name,
          z.union([z.string().min(1), z.array(z.string().min(1))]).optional().describe(spec.description),
        ]))),
      ]).default([])
        .describe(`Input paths (relative to the pipeline file) or "\${id}" references to earlier stages: a list in the order ${stage.inputs.map((i) => i.name).join(', ')}, or an object by those names.`),
      options: stepOptionsSchema(stage).prefault({}).describe(`Options of the ${name} stage.`),
      refresh: z.strictObject({
        rows: z.number().int().positive().optional().describe('rerun once the inputs have this many rows more than when the output was made'),
        days: z.number().positive().optional().describe('rerun once the output is this many days old'),
      }).refine((r) => r.rows !== undefined || r.days !== undefined, 'give rows, days or both').optional()
        .describe('For a stage over the whole pool (score, rater training, distill, evaluate): while its inputs only grew by appended rows, keep its output until this rule is met; any other change reruns it at once.'),
    }),
  );
  const [first, ...rest] = steps;
  if (!first) throw new ConfigError('no stages are registered');
  return z.strictObject({
    $schema: z.string().optional(),
    version: z.literal(PIPELINE_VERSION).describe('Pipeline file format version.'),
    name: z.string().min(1).optional().describe('Pipeline name (defaults to the file name).'),
    workdir: z.string().min(1).describe('Root of all stage outputs, relative to the pipeline file.'),
    seed: z.number().int().nonnegative().optional()
      .describe('Default seed for every stage that takes one and does not set its own.'),
    backend: z.enum(BACKEND_REQUESTS).optional()
      .describe('Default compute backend for every stage that takes one and does not set its own.'),
    plugins: z.array(z.string().min(1)).optional()
      .describe('JavaScript modules (relative to the pipeline file) that add score methods and selection strategies.'),
    stages: z.array(z.discriminatedUnion('stage', [first, ...rest])).min(1),
  });
}

/** The published JSON Schema of pipeline files (schema/pipeline.schema.json). */
export function pipelineJsonSchema(registry: StageRegistry = STAGES): Record<string, unknown> {
  const json = z.toJSONSchema(pipelineSchema(registry), { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return {
    ...json,
    title: 'metacurate pipeline',
    description: 'A metacurate pipeline: stages run in order, each writing <workdir>/<id>.',
  };
}

/** The value at a path in parsed YAML/JSON, or undefined. */
function valueAt(value: unknown, p: readonly PropertyKey[]): unknown {
  let v = value;
  for (const k of p) v = v !== null && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : undefined;
  return v;
}

/** `stages[0].options.size` from a zod issue path. */
export function formatPath(p: readonly PropertyKey[]): string {
  let out = '';
  for (const k of p) out += typeof k === 'number' ? `[${k}]` : out ? `.${String(k)}` : String(k);
  return out || '(top level)';
}

/** The option names a stage takes, for "did you mean" on an unknown key. */
type KnownKeys = (path: readonly PropertyKey[]) => string[] | undefined;

/**
 * zod's issue messages, placed at the file's own path (stages[2].options.size),
 * with a "did you mean" for unknown keys and stage kinds and each alternative's
 * complaint for a union: what z.prettifyError cannot add, hence our own.
 */
function issuesMessage(issues: readonly z.core.$ZodIssue[], prefix: readonly PropertyKey[] = [], knownKeys?: KnownKeys, value?: unknown): string {
  const shown = issues.slice(0, 5).map((i) => {
    let msg = i.message;
    if (i.code === 'invalid_union' && (i as { note?: string }).note === 'No matching discriminator') {
      const known = ((i as { options?: unknown[] }).options ?? []).map(String);
      // The issue points at the step or at its `stage` key, depending on the zod version.
      const typed = valueAt(value, i.path.at(-1) === 'stage' ? i.path : [...i.path, 'stage']);
      msg = `unknown stage${typeof typed === 'string' ? ` "${typed}"${didYouMean(typed, known)}` : ''}; known stages: ${known.join(', ')}`;
    } else if (i.code === 'unrecognized_keys') {
      const known = knownKeys?.([...prefix, ...i.path]);
      msg = i.keys.map((k) => `unknown option "${k}"${known ? didYouMean(k, known) : ''}`).join('; ');
    } else if (i.code === 'invalid_union' && i.errors.length > 0) {
      // "Invalid input" alone does not say what would do: list each alternative's complaint.
      const alternatives = i.errors.map((e) => (e[0]?.message ?? '').replace(/^Invalid input: /, ''));
      msg = `Invalid input: ${alternatives.join('; or ')}`;
    }
    return `${formatPath([...prefix, ...i.path])}: ${msg}`;
  });
  const more = issues.length > 5 ? `; and ${issues.length - 5} more` : '';
  return shown.join('; ') + more;
}

/** Parses YAML or JSON text; errors name the line. */
function parseText(text: string, file: string): unknown {
  if (file.endsWith('.json')) {
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new ConfigError(`invalid JSON: ${(err as Error).message}`, { file });
    }
  }
  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const line = e.linePos?.[0];
    const what = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
    throw new ConfigError(`invalid YAML${line ? ` at line ${line.line}, column ${line.col}` : ''}: ${what}`, { file });
  }
  try {
    // The yaml library refuses excessive alias expansion ("billion laughs") here.
    return doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new ConfigError(`invalid YAML: ${(err as Error).message.split('\n')[0]}`, { file, hint: 'Write the pipeline out without deeply nested aliases' });
  }
}

/**
 * Reads and validates a pipeline file. Every error is a ConfigError (78) naming
 * the file and field. Its plug-ins are loaded first: they add methods and
 * strategies the stages' options are checked against.
 */
export async function loadPipelineConfig(file: string, registry: StageRegistry = STAGES): Promise<PipelineConfig> {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    throw new MissingInputError(`cannot read the pipeline file: ${(err as Error).message}`, { file, hint: 'Check the path' });
  }
  const value = parseText(text, file);
  const plugins = (value as { plugins?: unknown } | null)?.plugins;
  if (Array.isArray(plugins) && plugins.every((p) => typeof p === 'string')) await loadPlugins(plugins, path.dirname(path.resolve(file)));
  return parsePipelineConfig(value, { file, registry });
}

/**
 * Validates a pipeline given as a value. `file` (or `baseDir`) anchors relative
 * paths; for a config built in code they are relative to the working directory.
 */
export function parsePipelineConfig(
  value: unknown,
  opts: { file?: string; baseDir?: string; registry?: StageRegistry } = {},
): PipelineConfig {
  const registry = opts.registry ?? STAGES;
  const file = opts.file ? path.resolve(opts.file) : undefined;
  const label = opts.file ?? '<pipeline>';
  const baseDir = opts.baseDir ?? (file ? path.dirname(file) : process.cwd());
  const parsed = pipelineSchema(registry).safeParse(withOptionKeysAsDeclared(value, registry, label));
  if (!parsed.success) {
    // stages[i].options: the option names of the stage kind that step names.
    const knownKeys: KnownKeys = (p) => {
      if (p.length !== 3 || p[0] !== 'stages' || p[2] !== 'options') return undefined;
      const kind = valueAt(value, ['stages', p[1], 'stage']);
      return typeof kind === 'string' && kind in registry ? Object.keys(registry[kind].options.shape) : undefined;
    };
    throw new ConfigError(issuesMessage(parsed.error.issues, [], knownKeys, value), { file: label, hint: schemaHint() });
  }
  const cfg = parsed.data;
  const workdir = path.resolve(baseDir, cfg.workdir);
  const seen = new Map<string, ResolvedStep>();
  const stages: ResolvedStep[] = cfg.stages.map((raw, i) => {
    const step = raw as PipelineStep;
    const where = `stages[${i}]`;
    if (seen.has(step.id)) {
      throw new ConfigError(`${where}.id: "${step.id}" is used twice; ids must be unique`, { file: label });
    }
    const dependsOn: string[] = [];
    const resolveOne = (input: string, at: string): string => {
      const ref = REFERENCE.exec(input);
      if (!ref) return path.resolve(baseDir, input);
      const target = seen.get(ref[1]);
      if (!target) {
        throw new ConfigError(`${where}.inputs${at}: "${input}" names no earlier stage`, {
          file: label,
          hint: `Refer to a stage listed before this one: ${[...seen.keys()].map((k) => `\${${k}}`).join(', ') || '(none)'}`,
        });
      }
      dependsOn.push(target.id);
      return target.out;
    };
    const stageInputs = registry[step.stage].inputs;
    let resolvedInputs: StageInputs;
    let inputPaths: string[];
    if (Array.isArray(step.inputs)) {
      inputPaths = step.inputs.map((input, j) => resolveOne(input, `[${j}]`));
      resolvedInputs = inputPaths;
    } else {
      const byName = step.inputs;
      const named = Object.fromEntries(Object.entries(byName).map(([k, v]) => [
        k, typeof v === 'string' ? resolveOne(v, `.${k}`) : v.map((x, j) => resolveOne(x, `.${k}[${j}]`)),
      ]));
      resolvedInputs = named;
      inputPaths = stageInputs.flatMap((spec) => named[spec.name] ?? []);
    }
    const stage = registry[step.stage];
    const options = withPipelineDefaults(stage, step.options, cfg);
    const out = path.join(workdir, step.id);
    // Check the stage's full option schema (refinements included) before anything runs.
    const full = stage.options.safeParse({ ...options, out });
    if (!full.success) {
      throw new ConfigError(issuesMessage(full.error.issues, ['stages', i, 'options'], () => Object.keys(stage.options.shape)), { file: label, hint: schemaHint() });
    }
    // Options that depend on each other or on which named inputs are given (select with no `by`,
    // metagrad with no target): refused now, before any stage runs, not when this step's turn comes.
    // A step whose inputs are a plain list is sorted into roles when it runs, and checked then.
    try {
      stage.validate(resolvedInputs, { ...options, out });
    } catch (err) {
      if (!(err instanceof UsageError)) throw err;
      throw new ConfigError(`stages[${i}] (${step.id}): ${err.text}`, { file: label, hint: err.hint });
    }
    const resolved: ResolvedStep = { ...step, options, out, resolvedInputs, inputPaths, dependsOn };
    seen.set(step.id, resolved);
    return resolved;
  });
  return {
    file,
    name: cfg.name ?? (file ? path.basename(file).replace(/\.(ya?ml|json)$/i, '') : 'pipeline'),
    workdir,
    seed: cfg.seed,
    backend: cfg.backend,
    stages,
  };
}

/** Where to read what a pipeline file may say: the installed schema, else the command that prints the options. */
function schemaHint(): string {
  const schema = packageFile('schema/pipeline.schema.json');
  return `${schema ? `The schema of pipeline files is ${schema}; ` : ''}each stage's options are listed by metacurate <stage> --help`;
}


/**
 * A copy of the parsed file whose stage option keys are spelled as the stages
 * declare them, so the CLI's spellings (`batch-size`, `max-memory-mib`) and
 * snake_case work in a pipeline file too. Keys that match no option are left as
 * they are (the schema then refuses them with a suggestion); two spellings of
 * one option in the same step are refused here.
 */
function withOptionKeysAsDeclared(value: unknown, registry: StageRegistry, label: string): unknown {
  const steps = valueAt(value, ['stages']);
  if (!Array.isArray(steps)) return value;
  return {
    ...(value as Record<string, unknown>),
    stages: steps.map((step, i) => {
      const kind = valueAt(step, ['stage']);
      const options = valueAt(step, ['options']);
      if (typeof kind !== 'string' || !(kind in registry) || options === null || typeof options !== 'object' || Array.isArray(options)) return step;
      const declared = new Map(Object.keys(registry[kind].options.shape).map((k) => [nameForm(k), k]));
      const renamed: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(options)) {
        const key = declared.get(nameForm(k)) ?? k;
        if (key in renamed) {
          throw new ConfigError(`stages[${i}].options: "${k}" and another key both spell option "${key}"`, { file: label, hint: 'Keep one of them' });
        }
        renamed[key] = v;
      }
      return { ...(step as Record<string, unknown>), options: renamed };
    }),
  };
}

/** Fills a stage's `seed` and `backend` from the pipeline's, where the stage takes them and leaves them unset. */
function withPipelineDefaults(
  stage: AnyStage,
  options: Record<string, unknown>,
  cfg: { seed?: number; backend?: string },
): Record<string, unknown> {
  const schema = stage.options as z.ZodTypeAny;
  const keys = schema instanceof z.ZodObject ? Object.keys(schema.shape) : [];
  const out = { ...options };
  if (cfg.seed !== undefined && keys.includes('seed') && out.seed === undefined) out.seed = cfg.seed;
  if (cfg.backend !== undefined && keys.includes('backend') && out.backend === undefined) out.backend = cfg.backend;
  return out;
}
