/** `metacurate schedule <pipeline> --cron "0 * * * *"`: run a pipeline on a schedule, one run at a time. */
import path from 'node:path';
import { Option } from 'commander';
import { loadPipelineConfig } from '../config.js';
import { runPipeline } from '../runner.js';
import { RUN_LOG, checkSchedule, runOnSchedule } from '../schedule.js';
import { parsePositive, type RegisterCommand } from './common.js';
import { queueOption, withQueue } from './queue.js';

interface ScheduleFlags {
  cron: string;
  timezone?: string;
  runNow?: boolean;
  maxRuns?: number;
  runLog?: string;
  queue?: string;
}

export const registerSchedule: RegisterCommand = (program, session) => {
  program
    .command('schedule')
    .description('Run a pipeline on a cron schedule, one run at a time; each run is logged and appended to a JSON-lines run log')
    .argument('<pipeline>', 'pipeline file (.yaml, .yml or .json); reread before each run')
    .requiredOption('--cron <expression>', 'when to run: 5 fields (minute hour day-of-month month day-of-week), 6 with seconds first, or @hourly, @daily, @weekly')
    .option('--timezone <zone>', 'the IANA timezone --cron is read in, e.g. Europe/Paris (default: this host\'s)')
    .option('--run-now', 'run once at start too, before the first tick')
    .addOption(new Option('--max-runs <n>', 'stop after this many runs (default: run until stopped)').argParser(parsePositive))
    .option('--run-log <file>', `the JSON-lines run log (default: <workdir>/${RUN_LOG})`)
    .addOption(queueOption())
    .addHelpText('after', `
A tick that comes while a run is still going is skipped (and logged). A failed run
is logged with its exit code and the schedule goes on. Ctrl-C or SIGTERM stops the
run in progress (its partial output is removed), releases the workdir's lock and
exits 0; with --max-runs, the exit code is the last run's. To schedule from cron,
systemd or Kubernetes instead, see docs/production.md.

Examples:
  metacurate schedule pipelines/default.yaml --cron "0 * * * *"
  metacurate schedule pipelines/default.yaml --cron "30 2 * * *" --timezone Europe/Paris --run-now`)
    .action(async (file: string, flags: ScheduleFlags, cmd) => {
      checkSchedule(flags.cron, flags.timezone);
      // Refuses a bad pipeline file now (exit 78), not at the first tick; each run rereads it.
      const config = await loadPipelineConfig(file);
      const ctx = withQueue(session, flags.queue, config.workdir).context(cmd);
      const result = await runOnSchedule(() => runPipeline(file, { ctx }), {
        cron: flags.cron,
        timezone: flags.timezone,
        runNow: flags.runNow,
        maxRuns: flags.maxRuns,
        runLog: path.resolve(flags.runLog ?? path.join(config.workdir, RUN_LOG)),
        log: ctx.log,
        signal: session.signal,
      });
      session.output(cmd, result, () =>
        `schedule of ${config.name}: ${result.runs} runs (${result.failed} failed), ${result.skippedTicks} ticks skipped while a run was going`);
      // Ended by --max-runs (not by a signal): the exit code is the last run's, for one-shot use.
      if (!session.signal.aborted && result.lastError !== undefined) throw result.lastError;
    });
};
