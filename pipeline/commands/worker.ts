/** `metacurate worker --redis <url>`: run the queued jobs of coordinators (`--queue`) on this host's cores. */
import os from 'node:os';
import { Option } from 'commander';
import { DEFAULT_STALLED_AFTER_MS, serveQueue } from '../../ml/queue.js';
import { parsePositive, type RegisterCommand } from './common.js';
import { QUEUED_WORK } from './queue.js';

export const registerWorker: RegisterCommand = (program, session) => {
  program
    .command('worker')
    .description(`Take jobs from a Redis queue and run them on this host's cores: the ${QUEUED_WORK} of commands run with --queue`)
    .requiredOption('--redis <url>', 'the Redis the coordinators queue on, e.g. redis://host:6379')
    .addOption(new Option('--concurrency <n>', 'jobs at once, one thread each (default: the cores)').argParser(parsePositive))
    .addOption(new Option('--stalled-after <seconds>', 'a job whose worker has not been heard from for this long goes to another worker')
      .argParser(parsePositive).default(DEFAULT_STALLED_AFTER_MS / 1000))
    .addHelpText('after', `
Every host needs the datasets at the same paths as the coordinator (shared storage),
and the same metacurate version. Ctrl-C or SIGTERM stops taking jobs and lets the
jobs in hand finish (again to quit at once: other workers take them over).
The backend each job runs on is the coordinator's choice (its stages' --backend).

Example:
  metacurate worker --redis redis://queue-host:6379`)
    .action(async (flags: { redis: string; concurrency?: number; stalledAfter: number }, cmd) => {
      const ctx = session.context(cmd);
      await serveQueue({
        url: flags.redis,
        concurrency: flags.concurrency ?? os.availableParallelism(),
        stalledAfterMs: flags.stalledAfter * 1000,
        signal: session.signal,
        log: (level, fields, message) => ctx.log[level](fields, message),
      });
    });
};
