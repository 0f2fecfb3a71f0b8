/**
 * A pipeline on a cron schedule (croner), one run at a time: a tick that comes
 * while a run is still going is skipped and logged, never queued. Each run is
 * logged and appended as one JSON line to a run log; a failed run is recorded
 * with its exit code and the schedule goes on. The pipeline's own lock
 * (lock.ts) still keeps other processes off its workdir.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { Cron } from 'croner';
import { UsageError, exitCodeOf } from '../core/errors.js';
import type { Logger } from '../stages/context.js';
import { REPORT_JSON, type PipelineReport } from './report.js';

/** The run log's name in the workdir. */
export const RUN_LOG = 'schedule.log.jsonl';

export interface ScheduleOptions {
  /** A cron expression: 5 fields, 6 with seconds first, or a nickname such as @hourly. */
  cron: string;
  /** The IANA timezone the expression is read in (default: this host's). */
  timezone?: string;
  /** One run at start, before the first tick. */
  runNow?: boolean;
  /** Stop after this many runs (skipped ticks do not count). */
  maxRuns?: number;
  /** The file each run appends a JSON line to. */
  runLog: string;
  log: Logger;
  /** Stops the schedule; the run in progress stops at its next stage boundary (or sooner, as the stage allows). */
  signal?: AbortSignal;
}

/** One line of the run log. */
export interface RunRecord {
  /** The run's number since the schedule started (a skipped tick has none). */
  run?: number;
  trigger: 'start' | 'schedule';
  outcome: 'ok' | 'failed' | 'interrupted' | 'skipped';
  started_at: string;
  finished_at?: string;
  seconds?: number;
  /** 0, or the sysexits code of the error (docs/architecture.md#errors-and-exit-codes). */
  exit_code?: number;
  error?: string;
  /** Stage ids that ran and that were skipped as current. */
  ran?: string[];
  skipped?: string[];
  report?: string;
}

export interface ScheduleResult {
  runs: number;
  failed: number;
  skippedTicks: number;
  last?: RunRecord;
  /** The error of the last run, when it failed. */
  lastError?: unknown;
}

/** The next time the schedule fires; a UsageError (64) naming the expression or timezone when either is wrong. */
export function checkSchedule(cron: string, timezone?: string): Date | null {
  let job: Cron | undefined;
  try {
    job = new Cron(cron, { timezone, paused: true });
    return job.nextRun();
  } catch (err) {
    const why = (err as Error).message.replace(/^\w+: /, '');
    throw new UsageError(`invalid schedule "${cron}"${timezone ? ` in timezone "${timezone}"` : ''}: ${why}`, {
      hint: 'Give 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or @hourly/@daily/@weekly; and an IANA --timezone such as Europe/Paris',
    });
  } finally {
    job?.stop();
  }
}

/** Runs `runOnce` on the schedule until `maxRuns` runs have finished or `signal` aborts. */
export async function runOnSchedule(runOnce: () => Promise<PipelineReport>, o: ScheduleOptions): Promise<ScheduleResult> {
  checkSchedule(o.cron, o.timezone);
  const result: ScheduleResult = { runs: 0, failed: 0, skippedTicks: 0 };
  let current: Promise<void> | undefined;
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const over = () => Boolean(o.signal?.aborted) || (o.maxRuns !== undefined && result.runs >= o.maxRuns);

  const record = async (rec: RunRecord) => {
    result.last = rec.outcome === 'skipped' ? result.last : rec;
    try {
      await fsp.mkdir(path.dirname(o.runLog), { recursive: true });
      await fsp.appendFile(o.runLog, JSON.stringify(rec) + '\n');
    } catch (err) {
      o.log.warn({ runLog: o.runLog, error: (err as Error).message }, 'schedule: could not append to the run log');
    }
  };

  const runOne = async (run: number, trigger: RunRecord['trigger']) => {
    const started = new Date();
    o.log.info({ run, trigger }, 'schedule: run started');
    let rec: RunRecord;
    try {
      const report = await runOnce();
      const ids = (status: string) => report.stages.filter((s) => s.status === status).map((s) => s.id);
      rec = { run, trigger, outcome: 'ok', started_at: started.toISOString(), exit_code: 0, ran: ids('ran'), skipped: ids('skipped'), report: path.join(report.workdir, REPORT_JSON) };
      result.lastError = undefined;
    } catch (err) {
      const interrupted = Boolean(o.signal?.aborted);
      rec = {
        run, trigger, outcome: interrupted ? 'interrupted' : 'failed', started_at: started.toISOString(),
        ...(interrupted ? {} : { exit_code: exitCodeOf(err) }), error: err instanceof Error ? err.message : String(err),
      };
      if (!interrupted) result.failed++;
      result.lastError = interrupted ? undefined : err;
    }
    const finishedAt = new Date();
    Object.assign(rec, { finished_at: finishedAt.toISOString(), seconds: (finishedAt.getTime() - started.getTime()) / 1000 });
    const fields = { run, outcome: rec.outcome, exit_code: rec.exit_code, seconds: rec.seconds, ran: rec.ran, skipped: rec.skipped, error: rec.error };
    if (rec.outcome === 'failed') o.log.error(fields, 'schedule: run failed; the schedule goes on');
    else o.log.info(fields, `schedule: run ${rec.outcome === 'ok' ? 'finished' : 'interrupted'}`);
    await record(rec);
  };

  const start = (trigger: RunRecord['trigger']) => {
    if (over()) return;
    if (current) {
      result.skippedTicks++;
      o.log.warn({ trigger, running: result.runs }, 'schedule: the previous run is still going; this tick is skipped');
      void record({ trigger, outcome: 'skipped', started_at: new Date().toISOString() });
      return;
    }
    current = runOne(++result.runs, trigger).finally(() => {
      current = undefined;
      if (over()) finish();
      else o.log.info({ next: job.nextRun()?.toISOString() }, 'schedule: waiting for the next tick');
    });
  };

  const job = new Cron(o.cron, { timezone: o.timezone, paused: true }, () => start('schedule'));
  // With a run going, its end finishes the schedule (once it has stopped at a stage boundary).
  const onAbort = () => {
    if (!current) finish();
  };
  o.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    if (o.signal?.aborted) finish();
    o.log.info({ cron: o.cron, timezone: o.timezone, next: job.nextRun()?.toISOString(), runLog: o.runLog }, 'schedule: started');
    job.resume();
    if (o.runNow) start('start');
    await finished;
  } finally {
    job.stop();
    o.signal?.removeEventListener('abort', onAbort);
    await current;
  }
  return result;
}
