/**
 * `--queue <redis-url>` on `run`, `schedule`, `ingest`, `score`, `evaluate`, `select`, `rate` and `distill`: the
 * stages' independent trainings go to `metacurate worker`s through Redis
 * (ml/queue.ts) instead of this process's threads. Results are the same either way.
 */
import { Option } from 'commander';
import { queueJobs } from '../../ml/queue.js';
import type { CliSession } from './common.js';

/** The work a coordinator sends to `metacurate worker`s (one list, for both commands' help). */
export const QUEUED_WORK = 'decoding images for ingest, score seeds, evaluation seeds and baselines, select\'s quick models, rating ranges and rater training, distillation restarts';

export function queueOption(): Option {
  return new Option('--queue <redis-url>', `run the independent work (${QUEUED_WORK}) on \`metacurate worker\`s through this Redis, e.g. redis://host:6379`);
}

/**
 * The session, with every context it makes sending jobs to the queue at `url`.
 * `outputsIn` is a folder on the shared storage where the command writes.
 */
export function withQueue(session: CliSession, url: string | undefined, outputsIn: string | undefined): CliSession {
  if (!url) return session;
  return {
    ...session,
    context(cmd) {
      const ctx = session.context(cmd);
      ctx.jobRunner = queueJobs({
        url,
        // Results too large for Redis pass beside the outputs: on the storage the workers share.
        spillIn: outputsIn,
        onWarn: (message) => ctx.log.warn(message),
      });
      return ctx;
    },
  };
}
