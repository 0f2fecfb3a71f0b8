/**
 * The pipeline runner: stages in order, each skipped when its output already
 * carries the fingerprint the run would produce. It holds the workdir's lock for
 * the whole run; outputs are written atomically by the stages, so a run that was
 * killed resumes by rerunning it (finished stages are current, nothing is half
 * written, stale temporaries are swept).
 */
import path from 'node:path';
import { pathExists, recoverOutput } from '../core/atomic.js';
import { OutputError } from '../core/errors.js';
import { CODE_VERSION } from '../core/version.js';
import type { CurationInfo } from '../data/format.js';
import { readCuration } from '../data/reader.js';
import { whatChanged, type Change } from '../stages/lineage.js';
import { quietContext, type Logger, type StageContext } from '../stages/context.js';
import { loadPipelineConfig, type PipelineConfig, type RefreshRule, type ResolvedStep } from './config.js';
import { acquireLock } from './lock.js';
import { STAGES, type StageRegistry } from './registry.js';
import { writeReport, type PipelineReport, type StageReport } from './report.js';

export interface RunPipelineOptions {
  /** Rerun every stage even when its output is current. */
  force?: boolean;
  ctx?: StageContext;
  /** Stages the pipeline may name (default: all built-in stages). */
  registry?: StageRegistry;
  /** Take over a lock held by a run on another host, which the caller knows is gone (pipeline/lock.ts). */
  takeOverLock?: boolean;
}

/** Runs a pipeline file (or a loaded config) and returns its report. */
export async function runPipeline(pipeline: string | PipelineConfig, opts: RunPipelineOptions = {}): Promise<PipelineReport> {
  const registry = opts.registry ?? STAGES;
  const ctx = opts.ctx ?? quietContext();
  const config = typeof pipeline === 'string' ? await loadPipelineConfig(pipeline, registry) : pipeline;
  const started = new Date();
  const lock = await acquireLock(config.workdir, { log: ctx.log, takeOverRemote: opts.takeOverLock });
  try {
    // What a killed run left of this pipeline's outputs: an interrupted replacement is
    // finished or undone, abandoned temporaries removed. Nothing else in the workdir is touched.
    for (const step of config.stages) {
      for (const action of [...(await recoverOutput(step.out)), ...(await recoverOutput(`${step.out}.checkpoint`))]) {
        ctx.log.warn({ stage: step.id }, action);
      }
    }
    const stages: StageReport[] = [];
    for (const step of config.stages) {
      ctx.signal?.throwIfAborted();
      stages.push(await runStep(config, step, registry, ctx, opts.force ?? false));
    }
    const finished = new Date();
    const report: PipelineReport = {
      name: config.name,
      config: config.file ? path.relative(config.workdir, config.file) : undefined,
      workdir: config.workdir,
      code_version: CODE_VERSION,
      started_at: started.toISOString(),
      finished_at: finished.toISOString(),
      seconds: (finished.getTime() - started.getTime()) / 1000,
      stages,
    };
    const files = await writeReport(config.workdir, report);
    ctx.log.info({ report: files.md }, 'pipeline finished');
    return report;
  } finally {
    await lock.release();
  }
}

/** The run's context, with every log line and progress phase tagged with the stage id. */
function stageContext(ctx: StageContext, id: string): StageContext {
  const tag = (level: keyof Logger) => (o: object | string, msg?: string) =>
    typeof o === 'string' ? ctx.log[level]({ stage: id }, o) : ctx.log[level]({ stage: id, ...o }, msg);
  return {
    log: { debug: tag('debug'), info: tag('info'), warn: tag('warn'), error: tag('error') },
    progress: (label, total) => ctx.progress(`${id}: ${label}`, total),
    signal: ctx.signal,
    jobRunner: ctx.jobRunner,
  };
}

async function runStep(
  config: PipelineConfig,
  step: ResolvedStep,
  registry: StageRegistry,
  ctx: StageContext,
  force: boolean,
): Promise<StageReport> {
  const stage = registry[step.stage];
  const rel = (p: string) => path.relative(config.workdir, p) || '.';
  // `overwrite` is in no fingerprint. Forced, it also stops select and rate from adding to an output whose
  // inputs only grew: a forced step is rebuilt whole. The run below sets it when the output exists.
  const prepared = await stage.prepare(step.resolvedInputs, { ...step.options, out: step.out, overwrite: force });
  const expected = prepared.fingerprint;
  const existing = await readCuration(step.out);
  const base = { id: step.id, stage: step.stage, dir: rel(step.out), inputs: step.inputPaths.map(rel) };
  if (existing?.fingerprint === expected && !force) {
    ctx.log.info({ stage: step.id, fingerprint: expected }, 'skipped (current)');
    return { ...base, status: 'skipped', fingerprint: expected, numRows: existing.num_rows, seconds: 0, summary: existing.summary ?? {} };
  }
  const change = existing && !force ? await whatChanged(existing, prepared) : undefined;
  const keep = change && step.refresh ? keptBy(step.refresh, change, existing!) : undefined;
  if (keep) {
    ctx.log.info({ stage: step.id, why: keep }, 'kept (refresh rule)');
    return { ...base, status: 'skipped', reason: 'kept', why: keep, fingerprint: existing!.fingerprint, numRows: existing!.num_rows, seconds: 0, summary: existing!.summary ?? {} };
  }
  const exists = await pathExists(step.out);
  if (exists && !existing) {
    throw new OutputError('exists but is not a metacurate dataset, so the pipeline will not replace it', {
      file: step.out,
      hint: `Move it away, or change the workdir or the stage id "${step.id}"`,
    });
  }
  const reason = !existing ? 'new' : force ? 'forced' : 'stale';
  ctx.log.info({ stage: step.id, kind: step.stage, fingerprint: expected, reason, why: change?.what }, 'stage started');
  const t0 = performance.now();
  const result = await prepared.execute(stageContext(ctx, step.id), { overwrite: exists });
  const seconds = (performance.now() - t0) / 1000;
  ctx.log.info({ stage: step.id, rows: result.numRows, seconds: Math.round(seconds * 100) / 100 }, 'stage finished');
  // An appending stage that found nothing new keeps its output, fingerprint and all.
  const why = existing && result.fingerprint === existing.fingerprint ? 'nothing new to add' : change?.what;
  return { ...base, status: 'ran', reason, ...(why ? { why } : {}), fingerprint: result.fingerprint, numRows: result.numRows, seconds, summary: result.summary };
}

/** Why a grown-only output is kept under its refresh rule, or undefined when the rule says rerun. */
function keptBy(rule: RefreshRule, change: Change, existing: CurationInfo): string | undefined {
  if (!change.grew) return undefined;
  const ageDays = (Date.now() - Date.parse(existing.created_at)) / 86_400_000;
  if (rule.days !== undefined && !(ageDays < rule.days)) return undefined;
  // Without row counts to go by, only the age can keep it.
  if (rule.rows !== undefined && (change.newRows === undefined || change.newRows >= rule.rows)) return undefined;
  const until = [rule.rows !== undefined ? `${rule.rows} new rows` : '', rule.days !== undefined ? `${rule.days} days` : ''].filter(Boolean).join(' or ');
  return `${change.what}; kept until ${until} (${ageDays.toFixed(1)} days old)`;
}
