// Jobs through BullMQ on a throwaway redis-server (test/helpers/redis.ts): a
// stage's output through the queue is byte for byte its local output, errors come
// back as their own class, a coordinator's cancel removes its waiting jobs, and a
// worker killed mid-job has its job finished by another. Workers run the compiled
// dist/ (`npm test` builds first).
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MissingInputError, UsageError } from '../../core/errors.js';
import { readCuration } from '../../data/reader.js';
import { localJobs, runJobs, type EvaluateJob, type JobRunner } from '../../ml/pool.js';
import { runPipeline } from '../../pipeline/runner.js';
import { connectionOf, decodeValue, encodeValue, queueJobs, serveQueue, type QueueRunnerOptions } from '../../ml/queue.js';
import { quietContext, type StageContext } from '../../stages/context.js';
import { evaluate, type EvaluateOptions } from '../../stages/evaluate.js';
import { ingest } from '../../stages/ingest.js';
import { rate } from '../../stages/rate.js';
import { score, type ScoreOptions } from '../../stages/score.js';
import { BIN, assertBuilt, jsonLines } from '../pipeline/helpers.js';
import { HAVE_REDIS, NO_REDIS_MESSAGE, startRedis, type RedisServer } from '../helpers/redis.js';
import { useTmpDir } from '../helpers/tmp.js';
import { writeToySet } from '../helpers/toy.js';

if (!HAVE_REDIS) console.warn(NO_REDIS_MESSAGE);

const quickScore: ScoreOptions = { out: '', model: { kind: 'mlp', hidden: [8] }, epochs: 2, batchSize: 10, backend: 'wasm', lr: 0.1, method: 'metagrad', seeds: 3 };
const quickEval: EvaluateOptions = { preset: 'fast', model: { kind: 'mlp', hidden: [16] }, lr: 0.01, epochs: 6, batchSize: 16, backend: 'wasm', seeds: 2, fullEpochs: 4 };

/** Every file of an output but curation.json (which records times), as bytes; sub-folders not included. */
async function outputBytes(dir: string): Promise<Record<string, Buffer>> {
  const names = (await fsp.readdir(dir, { withFileTypes: true })).filter((d) => d.isFile() && d.name !== 'curation.json').map((d) => d.name).sort();
  return Object.fromEntries(await Promise.all(names.map(async (n) => [n, await fsp.readFile(path.join(dir, n))] as const)));
}

/** A folder of `n` small grey PNGs in two classes, and one file that is not an image. */
async function imageFolder(folder: string, n: number): Promise<string> {
  for (let i = 0; i < n; i++) {
    const cls = i % 3 === 0 ? 'a' : 'b';
    await fsp.mkdir(path.join(folder, cls), { recursive: true });
    const px = Buffer.alloc(64, (i * 13) % 256);
    px[i % 64] = 255;
    await sharp(px, { raw: { width: 8, height: 8, channels: 1 } }).png().toFile(path.join(folder, cls, `${i}.png`));
  }
  await fsp.writeFile(path.join(folder, 'a', 'broken.png'), 'not an image');
  return folder;
}

/** An evaluation report without its timings. */
function untimed(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(untimed);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'seconds').map(([k, x]) => [k, untimed(x)]));
  return v;
}

describe('typed-array codec', () => {
  it('round-trips typed arrays bit for bit, and non-finite numbers', () => {
    const f = new Float32Array([0.1, -0, NaN, 3e38, -1.5]);
    const back = decodeValue(JSON.parse(JSON.stringify(encodeValue({ a: f, b: [new Int32Array([-7, 2 ** 31 - 1])], c: Infinity, d: undefined, e: 'x' })))) as Record<string, unknown>;
    expect(new Uint8Array((back.a as Float32Array).buffer)).toEqual(new Uint8Array(f.buffer));
    expect(back.b).toEqual([new Int32Array([-7, 2 ** 31 - 1])]);
    expect(back.c).toBe(Infinity);
    expect('d' in back).toBe(false);
    expect(back.e).toBe('x');
  });

  it('refuses a URL that is not Redis\'s', () => {
    expect(() => connectionOf('http://host:6379')).toThrow(UsageError);
    expect(() => connectionOf('redis://127.0.0.1:6379/2')).not.toThrow();
  });
});

describe('the job runner of a stage context', () => {
  const tmp = useTmpDir('metacurate-runner-');

  it('ingests through decode jobs with the same bytes as in this process', async () => {
    const folder = await imageFolder(path.join(tmp(), 'images'), 300);
    const jobs: number[] = [];
    const recording: JobRunner = {
      run(js, o) {
        jobs.push(...js.map((j) => (j.kind === 'decode' ? j.items.length : -1)));
        return localJobs.run(js, o);
      },
    };
    const opts = { size: [6, 6] as [number, number], channels: 1 as const };
    const local = await ingest(folder, { ...opts, out: path.join(tmp(), 'ingest-local') });
    const remote = await ingest(folder, { ...opts, out: path.join(tmp(), 'ingest-jobs') }, { ...quietContext(), jobRunner: recording });
    // 301 items in batches of 256; the broken file is refused there as here.
    expect(jobs).toEqual([256, 45]);
    expect(remote.fingerprint).toBe(local.fingerprint);
    expect(remote.summary).toMatchObject({ rows: 300, rejected: 1 });
    expect(await outputBytes(remote.dir)).toEqual(await outputBytes(local.dir));
  });

  it('gets the jobs of every stage of a pipeline run', async () => {
    await writeToySet(tmp(), 'pool', 30, 1);
    await writeToySet(tmp(), 'held', 20, 2);
    const file = path.join(tmp(), 'p.json');
    await fsp.writeFile(file, JSON.stringify({
      version: 1, workdir: 'work', stages: [
        { id: 'scores', stage: 'score', inputs: ['pool'], options: { method: 'loss', seeds: 2, model: 'logreg', epochs: 1, backend: 'wasm' } },
        { id: 'eval', stage: 'evaluate', inputs: { train: 'pool', test: 'held' }, options: { preset: 'fast', seeds: 1, epochs: 1, backend: 'wasm' } },
        { id: 'rated', stage: 'rate', inputs: { dataset: 'pool', scores: '${scores}' }, options: { trainRater: true, mode: 'regress', by: 'loss', epochs: 1, backend: 'wasm' } },
      ],
    }));
    const kinds: string[] = [];
    const recording: JobRunner = {
      run(jobs, o) {
        kinds.push(...jobs.map((j) => j.kind));
        return localJobs.run(jobs, o);
      },
    };
    const report = await runPipeline(file, { ctx: { ...quietContext(), jobRunner: recording } });
    expect(report.stages.map((s) => s.status)).toEqual(['ran', 'ran', 'ran']);
    // Rating: the rater's training, then one job per range of rows (30 rows: one).
    expect(kinds).toEqual(['score', 'score', 'evaluate', 'trainRater', 'rate']);
  });
});

describe.skipIf(!HAVE_REDIS)('jobs through a Redis queue', () => {
  let tmp: string;
  let redis: RedisServer;
  let train: string;
  let target: string;
  let test: string;
  let full: string;

  beforeAll(async () => {
    assertBuilt();
    tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'metacurate-queue-'));
    redis = await startRedis(tmp);
    train = await writeToySet(tmp, 'train', 40, 1);
    target = await writeToySet(tmp, 'target', 30, 2);
    test = await writeToySet(tmp, 'test', 60, 3);
    full = await writeToySet(tmp, 'full', 150, 4);
  });

  afterAll(async () => {
    await redis?.stop();
    if (tmp) await fsp.rm(tmp, { recursive: true, force: true });
  });

  describe('with a worker in this process', () => {
    const name = 'in-process';
    const stop = new AbortController();
    const spills: string[] = [];
    let serving: Promise<void>;
    const queued = (extra: Partial<StageContext> = {}, runner: Partial<QueueRunnerOptions> = {}): StageContext =>
      ({ ...quietContext(), jobRunner: queueJobs({ url: redis.url, name, ...runner }), ...extra });

    beforeAll(() => {
      serving = serveQueue({ url: redis.url, name, concurrency: 2, signal: stop.signal, log: (_level, fields) => 'spilled' in fields && spills.push(String(fields.spilled)) });
    });
    afterAll(async () => {
      stop.abort();
      await serving;
    });

    it('scores and evaluates exactly as a local run does', async () => {
      const local = await score(train, { ...quickScore, out: path.join(tmp, 'score-local'), target });
      const remote = await score(train, { ...quickScore, out: path.join(tmp, 'score-queue'), target }, queued());
      expect(remote.fingerprint).toBe(local.fingerprint);
      expect(await outputBytes(remote.dir)).toEqual(await outputBytes(local.dir));
      expect(Object.keys(await outputBytes(remote.dir)).some((n) => n.endsWith('.arrow'))).toBe(true);
      // Results too large for Redis come back through files on the shared storage, removed once read.
      const spillIn = path.join(tmp, 'spill');
      await fsp.mkdir(spillIn);
      const spilled = await score(train, { ...quickScore, out: path.join(tmp, 'score-spilled'), target }, queued({}, { spillIn, spillAbove: 1 }));
      expect(await outputBytes(spilled.dir)).toEqual(await outputBytes(local.dir));
      expect(spills).toHaveLength(3);
      for (const file of spills) expect(file.startsWith(path.join(spillIn, '.metacurate-queue'))).toBe(true);
      expect(await fsp.readdir(spillIn)).toEqual([]);

      const localEval = await evaluate(train, { ...quickEval, test, fullTrain: full, out: path.join(tmp, 'eval-local') });
      let ticks = 0;
      const ctx = queued({ progress: () => ({ tick: (n = 1) => void (ticks += n), setTotal: () => undefined, done: () => undefined }) });
      const remoteEval = await evaluate(train, { ...quickEval, test, fullTrain: full, out: path.join(tmp, 'eval-queue') }, ctx);
      expect(remoteEval.fingerprint).toBe(localEval.fingerprint);
      const report = async (dir: string) => untimed(JSON.parse(await fsp.readFile(path.join(dir, 'evaluation.json'), 'utf8')));
      expect(await report(path.join(tmp, 'eval-queue'))).toEqual(await report(path.join(tmp, 'eval-local')));
      // Remote progress reached the stage: every job's steps, once.
      expect(ticks).toBe(2 * (remoteEval.steps + remoteEval.baselines!.random!.steps + remoteEval.baselines!.full!.steps));
    });

    it('ingests a folder exactly as a local run does, the images decoded by the workers', async () => {
      const folder = await imageFolder(path.join(tmp, 'images'), 280);
      const local = await ingest(folder, { out: path.join(tmp, 'ingest-local'), size: [6, 6], channels: 1 });
      const remote = await ingest(folder, { out: path.join(tmp, 'ingest-queue'), size: [6, 6], channels: 1 }, queued());
      expect(remote.fingerprint).toBe(local.fingerprint);
      expect(await outputBytes(remote.dir)).toEqual(await outputBytes(local.dir));
    });

    it('trains a rater and rates exactly as a local run does', async () => {
      const scores = await score(train, { ...quickScore, method: 'loss', seeds: 1, out: path.join(tmp, 'loss-for-rater') });
      const opts = { trainRater: true, mode: 'regress' as const, scores: scores.dir, by: 'loss', epochs: 2, batchSize: 10, backend: 'wasm' as const };
      const local = await rate(train, { ...opts, out: path.join(tmp, 'rate-local') });
      const remote = await rate(train, { ...opts, out: path.join(tmp, 'rate-queue') }, queued());
      expect(remote.fingerprint).toBe(local.fingerprint);
      expect(await outputBytes(remote.dir)).toEqual(await outputBytes(local.dir));
      const weights = async (dir: string) => fsp.readFile(path.join(dir, 'rater', 'weights.bin'));
      expect(await weights(remote.dir)).toEqual(await weights(local.dir));
    });

    it('brings a worker\'s error back as its own class and exit code', async () => {
      const job: EvaluateJob = {
        kind: 'evaluate', train: { dir: path.join(tmp, 'no-such-set') }, test: { dir: test },
        config: { model: { kind: 'mlp', hidden: [4] }, optimizer: { kind: 'sgd', lr: 0.1 }, schedule: { kind: 'constant' }, batchSize: 8, epochs: 1, seed: 0 },
      };
      const err = await runJobs([job], { runner: queueJobs({ url: redis.url, name }), backend: 'wasm' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(MissingInputError);
      expect((err as MissingInputError).exitCode).toBe(66);
    });
  });

  it('removes its waiting jobs when cancelled, and says when no worker serves the queue', async () => {
    const name = 'nobody-serves';
    const warnings: string[] = [];
    const abort = new AbortController();
    const jobs = [1, 2, 3].map((seed): EvaluateJob => ({
      kind: 'evaluate', train: { dir: train }, test: { dir: test },
      config: { model: { kind: 'mlp', hidden: [4] }, optimizer: { kind: 'sgd', lr: 0.1 }, schedule: { kind: 'constant' }, batchSize: 8, epochs: 1, seed },
    }));
    const running = runJobs(jobs, { runner: queueJobs({ url: redis.url, name, onWarn: (m) => warnings.push(m) }), signal: abort.signal }).catch((e: unknown) => e);
    const queue = new Queue(name, { connection: connectionOf(redis.url) });
    try {
      let waiting = 0;
      for (let i = 0; i < 200 && waiting < 3; i++) {
        waiting = await queue.getWaitingCount();
        await new Promise((r) => setTimeout(r, 25));
      }
      expect(waiting).toBe(3);
      abort.abort(new Error('cancelled by the test'));
      expect(((await running) as Error).message).toBe('cancelled by the test');
      expect(await queue.getWaitingCount()).toBe(0);
      expect(warnings.join('\n')).toMatch(/no worker serves the queue "nobody-serves"/);
    } finally {
      await queue.close();
    }
  });

  it('finishes a run whose worker was killed mid-job, with the same output', async () => {
    const epochs = 40;
    const flags = ['--target', target, '--method', 'metagrad', '--seeds', '4', '--model', 'mlp', '--epochs', String(epochs), '--batch-size', '10', '--backend', 'wasm', '--lr', '0.1'];
    const workers: ChildProcess[] = [];
    const logs: string[] = [];
    const started = (w: number) => logs[w].includes('"msg":"job started"');
    try {
      for (let w = 0; w < 2; w++) {
        const child = spawn(process.execPath, [BIN, '--json', 'worker', '--redis', redis.url, '--concurrency', '1', '--stalled-after', '2'], { stdio: ['ignore', 'ignore', 'pipe'] });
        logs.push('');
        child.stderr!.on('data', (d) => (logs[w] += d));
        workers.push(child);
      }
      // Both take jobs from the start, so each gets one of the first two.
      for (let i = 0; i < 600 && !logs.every((l) => l.includes('worker ready')); i++) await new Promise((r) => setTimeout(r, 25));
      const out = path.join(tmp, 'score-killed');
      const coordinator = spawn(process.execPath, [BIN, '--json', 'score', train, ...flags, '--queue', redis.url, '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      coordinator.stdout!.on('data', (d) => (stdout += d));
      coordinator.stderr!.on('data', (d) => (stderr += d));
      const exited = new Promise<number | null>((resolve) => coordinator.on('exit', resolve));
      // Kill the first worker as soon as it is running a job.
      for (let i = 0; i < 600 && !started(0); i++) await new Promise((r) => setTimeout(r, 25));
      expect(started(0)).toBe(true);
      workers[0].kill('SIGKILL');
      const local = await score(train, { ...quickScore, out: path.join(tmp, 'score-killed-local'), target, seeds: 4, epochs, model: 'mlp' });
      expect(await exited, stderr).toBe(0);
      expect(JSON.parse(stdout).fingerprint).toBe(local.fingerprint);
      expect((await readCuration(out))?.fingerprint).toBe(local.fingerprint);
      expect(await outputBytes(out)).toEqual(await outputBytes(local.dir));
      // The survivor ran all four jobs, the killed one's included.
      expect(jsonLines(logs[1]).filter((l) => l.msg === 'job finished')).toHaveLength(4);
    } finally {
      for (const w of workers) if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL');
    }
  });
});
