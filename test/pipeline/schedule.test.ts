// `metacurate schedule`: runs on a per-second cron, one at a time (a tick during a
// run is skipped), a failed run logged and followed by the next, the run log, a
// bad expression refused, and SIGTERM stopping a run at once with its lock released.
import { existsSync, promises as fsp } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, test } from 'vitest';
import { DataError, ExitCode, UsageError } from '../../core/errors.js';
import { LOCK_FILE } from '../../pipeline/lock.js';
import type { PipelineReport } from '../../pipeline/report.js';
import { checkSchedule, runOnSchedule, type RunRecord } from '../../pipeline/schedule.js';
import { quietContext } from '../../stages/context.js';
import { useTmpDir } from '../helpers/tmp.js';
import { assertBuilt, cli, cliSignalledMidWork, jsonLines, writeIdxFixture } from './helpers.js';

const tmp = useTmpDir('metacurate-schedule-');
let dir: string;
beforeAll(() => {
  assertBuilt();
  dir = tmp();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function runLog(file: string): Promise<RunRecord[]> {
  return jsonLines(await fsp.readFile(file, 'utf8')) as unknown as RunRecord[];
}

function fakeReport(ran: string[], skipped: string[]): PipelineReport {
  return {
    name: 'fake', workdir: dir,
    stages: [...ran.map((id) => ({ id, status: 'ran' })), ...skipped.map((id) => ({ id, status: 'skipped' }))],
  } as unknown as PipelineReport;
}

describe('runOnSchedule', () => {
  test('a failed run is logged with its exit code and the next one runs; ticks during a run are skipped', async () => {
    const file = path.join(dir, 'fake.log.jsonl');
    let active = 0;
    let most = 0;
    const runs = [
      async () => { throw new DataError('the source is broken'); },
      // Longer than two ticks: the ticks in between are skipped, not queued.
      async () => { await sleep(2300); return fakeReport(['a'], ['b']); },
      async () => fakeReport([], ['a', 'b']),
    ];
    let n = 0;
    const result = await runOnSchedule(async () => {
      most = Math.max(most, ++active);
      try {
        return await runs[n++]();
      } finally {
        active--;
      }
    }, { cron: '* * * * * *', runNow: true, maxRuns: 3, runLog: file, log: quietContext().log });
    expect(most).toBe(1);
    expect(n).toBe(3);
    expect(result).toMatchObject({ runs: 3, failed: 1 });
    expect(result.lastError).toBeUndefined();
    expect(result.skippedTicks).toBeGreaterThanOrEqual(1);
    const lines = await runLog(file);
    const done = lines.filter((l) => l.outcome !== 'skipped');
    expect(done.map((l) => [l.run, l.trigger, l.outcome, l.exit_code])).toEqual([
      [1, 'start', 'failed', ExitCode.dataError], [2, 'schedule', 'ok', 0], [3, 'schedule', 'ok', 0],
    ]);
    expect(done[0].error).toMatch(/the source is broken/);
    expect(done[1]).toMatchObject({ ran: ['a'], skipped: ['b'] });
    expect(done[1].seconds).toBeGreaterThan(2);
    // The skipped ticks came while run 2 was going.
    const skipped = lines.filter((l) => l.outcome === 'skipped');
    expect(skipped).toHaveLength(result.skippedTicks);
    for (const s of skipped) expect(s.started_at >= done[1].started_at && s.started_at <= done[1].finished_at!).toBe(true);
  });

  test('an abort stops the run in progress and the schedule', async () => {
    const file = path.join(dir, 'abort.log.jsonl');
    const abort = new AbortController();
    const t0 = performance.now();
    const result = await runOnSchedule(() => new Promise<PipelineReport>((_, reject) => {
      setTimeout(() => abort.abort(new Error('SIGTERM')), 100);
      abort.signal.addEventListener('abort', () => reject(abort.signal.reason));
    }), { cron: '0 0 1 1 *', runNow: true, runLog: file, log: quietContext().log, signal: abort.signal });
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(result).toMatchObject({ runs: 1, failed: 0 });
    expect((await runLog(file)).map((l) => l.outcome)).toEqual(['interrupted']);
  });

  test('a bad expression or timezone is a usage error naming it', () => {
    expect(() => checkSchedule('61 * * * *')).toThrow(UsageError);
    expect(() => checkSchedule('every hour')).toThrow(/invalid schedule "every hour"/);
    expect(() => checkSchedule('0 * * * *', 'Mars/Olympus')).toThrow(/timezone "Mars\/Olympus"/);
    expect(checkSchedule('0 * * * *', 'Europe/Paris')).toBeInstanceOf(Date);
  });
});

describe('metacurate schedule', () => {
  async function pipeline(name: string, images: number, options: Record<string, unknown> = {}): Promise<{ file: string; work: string }> {
    const src = path.join(dir, `${name}-src`);
    await writeIdxFixture(src, { prefix: 'train', n: images, classes: 3 });
    const file = path.join(dir, `${name}.json`);
    await fsp.writeFile(file, JSON.stringify({ version: 1, workdir: `${name}-work`, stages: [{ id: 'train', stage: 'ingest', inputs: [`${name}-src`], options }] }));
    return { file, work: path.join(dir, `${name}-work`) };
  }

  test('runs on the cron until --max-runs; a current stage is skipped the second time', async () => {
    const { file, work } = await pipeline('tiny', 30);
    const r = await cli(['--json', 'schedule', file, '--cron', '* * * * * *', '--run-now', '--max-runs', '2']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ runs: 2, failed: 0 });
    const lines = (await runLog(path.join(work, 'schedule.log.jsonl'))).filter((l) => l.outcome !== 'skipped');
    expect(lines.map((l) => [l.outcome, l.ran, l.skipped])).toEqual([['ok', ['train'], []], ['ok', [], ['train']]]);
    expect(lines[0].report).toBe(path.join(work, 'report.json'));
    const logs = jsonLines(r.stderr).map((l) => l.msg);
    expect(logs).toContain('schedule: run started');
    expect(existsSync(path.join(work, LOCK_FILE))).toBe(false);
  });

  test('an invalid cron expression exits 64 and names it', async () => {
    const { file } = await pipeline('bad-cron', 3);
    const r = await cli(['schedule', file, '--cron', '0 25 * * *']);
    expect(r.code).toBe(ExitCode.usage);
    expect(r.stderr).toMatch(/invalid schedule "0 25 \* \* \*"/);
  });

  test('SIGTERM stops the run in progress, releases the lock and exits 0', async () => {
    // Resizing 3000 images takes seconds: the signal lands mid-stage.
    const { file, work } = await pipeline('slow', 3000, { size: [32, 32], concurrency: 1 });
    const { code, signalled, stderr } = await cliSignalledMidWork(['--json', 'schedule', file, '--cron', '0 0 1 1 *', '--run-now'], 'SIGTERM');
    expect(signalled).toBe(true);
    expect(code, stderr).toBe(0);
    expect((await runLog(path.join(work, 'schedule.log.jsonl'))).map((l) => l.outcome)).toEqual(['interrupted']);
    expect(existsSync(path.join(work, LOCK_FILE))).toBe(false);
    expect(existsSync(path.join(work, 'train'))).toBe(false);
  });
});
