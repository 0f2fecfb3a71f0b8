/**
 * Benchmark (issue 3, quality): how well each per-example score finds flipped
 * labels in Fashion-MNIST with 20% symmetric label noise, as AUROC.
 *
 *   npm run build && node dist/scripts/bench/noise-auroc.js [--quick] [--methods metagrad,loss,...]
 *       [--pool N] [--target N] [--jobs 2] [--src DIR] [--out FILE] [--metagrad-config JSON]
 *
 * Protocol (settings fixed in SETTINGS below before any result was seen):
 * 1. Ingest the full Fashion-MNIST training split (60,000 rows) into .bench/data/
 *    (skipped when the cached dataset's fingerprint is current).
 * 2. Split it, seeded: a stratified *target* set of 5,000 rows with clean labels
 *    (500 a class; the held-out set metagrad and tracin measure against — not the
 *    test split), and the *pool*, the other 55,000 rows (or a stratified `--pool N`
 *    of them).
 * 3. Flip 20% of the pool's labels symmetrically (the plant stage; its `planted` column is the truth).
 * 4. Score the noisy pool with each method, each in its own child process, `--jobs`
 *    at a time (wasm is single-threaded: one process a core).
 * 5. AUROC of −score against the `noisy` flags: every score is oriented so that
 *    higher = more valuable to keep (ml/scores/), so a flipped row should score
 *    low. 0.5 = chance, 1 = every flipped row below every clean one.
 *
 * Methods: metagrad (ml/metagrad, REPLAY k = 4, through the same training run the
 * baselines use), metagrad-smooth (the same with the logits divided by 10,
 * MGD's metasmoothness recipe; declared up front as the one variant), and the
 * baselines loss, el2n, grand, forgetting, tracin at their default seeds
 * (DEFAULT_SEEDS: 4 models for el2n and grand, 1 for the others) and default
 * score epochs (EL2N/GraNd after 10% of the run, at least 1 epoch). If SGD
 * diverges for a baseline, it is rerun with Adam lr 1e-3 and the table says so.
 *
 * Wall time is per method, scoring only (data loading and backend start-up
 * excluded), on a machine that may be shared: the CPU seconds of the child and
 * the 1-minute load average are recorded beside it.
 *
 * `--metagrad-config JSON` runs the `metagrad` method (only it) with the given
 * TrainConfig instead of SETTINGS.train, e.g. a setting chosen by
 * scripts/bench/metasmooth-sweep; the JSON records it beside the result.
 *
 * `--quick` shrinks to a 1,000-row target and a 4,000-row pool for a smoke run.
 * Prints a table and a Spearman matrix between the methods' scores, and writes
 * JSON (default .bench/noise-auroc.json).
 */
import { spawn } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ConfigError, MissingInputError, UsageError, exitCodeOf } from '../../core/errors.js';
import { fingerprint as computeFingerprint } from '../../core/hash.js';
import { auroc, spearman } from '../../core/metrics.js';
import { Rng } from '../../core/rng.js';
import { numericValues } from '../../data/columns.js';
import { openDataset, readStrings, type Dataset } from '../../data/reader.js';
import { DatasetWriter } from '../../data/writer.js';
import { largestRemainder } from '../../stages/select/common.js';
import { rowReader } from '../../stages/select/rows.js';
import type { SmoothnessReport } from '../../ml/metagrad.js';
import { trainConfigSchema, type TrainConfig } from '../../ml/train.js';
import { plant, plantStage } from '../../stages/plant.js';
import { benchMeta, ensureIngested, FASHION_MNIST_IDX, fashionMnistCandidates, findFashionMnist, isCurrent, printTable, writeBenchJson } from './common.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// dist/scripts/bench → the repository root.
const root = path.resolve(here, '../../..');

const METHODS = ['metagrad', 'metagrad-smooth', 'loss', 'el2n', 'grand', 'forgetting', 'tracin'] as const;
type Method = (typeof METHODS)[number];

/** Everything that decides the numbers; printed and recorded with them. */
const SETTINGS = {
  noise: { kind: 'symmetric', rate: 0.2, seed: 0 },
  split: { targetSize: 5000, seed: 0, stratified: true },
  quick: { targetSize: 1000, poolSize: 4000 },
  train: {
    model: { kind: 'mlp', hidden: [256] },
    optimizer: { kind: 'sgd', lr: 0.05, momentum: 0.9 },
    epochs: 3,
    batchSize: 128,
    seed: 0,
  } satisfies TrainConfig,
  /** Used for a baseline only if SGD diverges on it. */
  fallbackOptimizer: { kind: 'adam', lr: 1e-3 },
  metagrad: { k: 4 },
  /** The metasmoothness probe (ml/metagrad): step h along a seeded random ±1 direction. */
  smoothnessProbe: { h: 0.1, seed: 0 },
  smoothOutputScale: 0.1,
} as const;

/** `--metagrad-config`: the `metagrad` method's TrainConfig, replacing SETTINGS.train for it alone. */
let metagradOverride: TrainConfig | undefined;

function parseTrainConfig(json: string): TrainConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (err) {
    throw new ConfigError(`--metagrad-config is not JSON: ${(err as Error).message}`, { hint: 'Pass a TrainConfig as JSON, e.g. \'{"model":{"kind":"mlp","hidden":[256]},"optimizer":{"kind":"sgd","lr":0.05},"epochs":2,"batchSize":256,"seed":0}\'' });
  }
  const parsed = trainConfigSchema.safeParse(raw);
  if (!parsed.success) {
    throw new ConfigError(`--metagrad-config is not a valid TrainConfig: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`, {
      hint: 'See ml/train.ts (trainConfigSchema) for the fields',
    });
  }
  return raw as TrainConfig;
}

function trainConfigFor(method: Method): TrainConfig {
  if (method === 'metagrad' && metagradOverride) return metagradOverride;
  const t = SETTINGS.train;
  const model = method === 'metagrad-smooth' ? { ...t.model, hidden: [...t.model.hidden], outputScale: SETTINGS.smoothOutputScale } : { ...t.model, hidden: [...t.model.hidden] };
  return { ...t, model, optimizer: { ...t.optimizer } };
}

// ─── child: score one method ────────────────────────────────────────────────

interface ChildResult {
  method: Method;
  backend: string;
  seconds: number;
  cpuSeconds: number;
  loadAvg: [number, number];
  optimizer: string;
  details: Record<string, unknown>;
  scores: number[];
}

async function child(method: Method, dataDir: string, resultFile: string): Promise<void> {
  const { initBackend } = await import('../../ml/backend.js');
  const backend = (await initBackend('auto')).name;
  const { loadExamples } = await import('../../data/batch.js');
  const { computeScores, scoreSeeds } = await import('../../ml/scores/index.js');
  const { TrainingDivergedError, createTrainer } = await import('../../ml/train.js');
  const { meanCrossEntropyTarget, metasmoothness } = await import('../../ml/metagrad.js');
  const tf = await import('@tensorflow/tfjs');
  const pool = await loadExamples(await openDataset(path.join(dataDir, 'pool-noisy')));
  const target = await loadExamples(await openDataset(path.join(dataDir, 'target')));

  let lastReport = 0;
  const onProgress = (done: number, total: number) => {
    const now = Date.now();
    if (now - lastReport > 30_000 || done === total) {
      lastReport = now;
      process.stderr.write(`  [${method}] ${done}/${total}\n`);
    }
  };
  const score = async (): Promise<{ scores: Float32Array; details: Record<string, unknown>; optimizer: string }> => {
    if (method === 'metagrad' || method === 'metagrad-smooth') {
      const res = await computeScores(pool, target, { method: 'metagrad', train: trainConfigFor(method), k: SETTINGS.metagrad.k }, onProgress);
      return { ...res, optimizer: 'sgd' };
    }
    const run = async (train: TrainConfig) => {
      const res = await scoreSeeds(pool, target, { method, train }, { onProgress });
      return { scores: res.scores, details: { ...res.details } };
    };
    try {
      return { ...(await run(trainConfigFor(method))), optimizer: 'sgd' };
    } catch (err) {
      if (!(err instanceof TrainingDivergedError)) throw err;
      process.stderr.write(`  [${method}] SGD diverged (${err.message}); rerunning with Adam lr 1e-3\n`);
      const res = await run({ ...trainConfigFor(method), optimizer: { ...SETTINGS.fallbackOptimizer } });
      return { ...res, optimizer: 'adam (sgd diverged)' };
    }
  };

  const load0 = os.loadavg()[0];
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const { scores, details, optimizer } = await score();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const load1 = os.loadavg()[0];

  if (method === 'metagrad' || method === 'metagrad-smooth') {
    // MGD's metasmoothness diagnostic, untimed: does φ(w) respond linearly along a
    // random direction, and does the metagradient predict the change?
    const cfg = trainConfigFor(method);
    const phi = async (weights: Float32Array): Promise<number> => {
      const trainer = createTrainer(cfg, pool, { weights });
      const { params } = await trainer.run();
      const tl = meanCrossEntropyTarget(trainer.model, target);
      let v = 0;
      for (let c = 0; c < tl.chunks; c++) v += tf.tidy(() => tl.loss(params, c).dataSync()[0]);
      tf.dispose(params);
      return v;
    };
    const grad = scores.map((s) => -s);
    details.smoothness = await metasmoothness(phi, pool.ids.length, { ...SETTINGS.smoothnessProbe, grad });
  }
  const out: ChildResult = {
    method, backend, seconds, cpuSeconds: (cpu.user + cpu.system) / 1e6, loadAvg: [load0, load1],
    optimizer, details: { ...details }, scores: Array.from(scores),
  };
  await fsp.writeFile(resultFile, JSON.stringify(out));
}

// ─── parent: data preparation ───────────────────────────────────────────────

function findSource(explicit: string | undefined): string {
  const candidates = fashionMnistCandidates(root, explicit);
  const dir = findFashionMnist(candidates, ['train']);
  if (dir) return dir;
  throw new MissingInputError(`the full Fashion-MNIST (${FASHION_MNIST_IDX.train.join(', ')}) is not in ${candidates.join(' or ')}`, {
    hint: 'Run scripts/fetch-fashion-mnist (it copies Debian\'s dataset-fashion-mnist or downloads the files), or pass --src DIR',
  });
}

/** Row indices of a stratified seeded sample: `size` rows spread over classes by their shares. */
function stratifiedSample(rows: number[], labels: Float64Array, classes: number, size: number, rng: Rng): number[] {
  const byClass: number[][] = Array.from({ length: classes }, () => []);
  for (const i of rows) byClass[labels[i]].push(i);
  const quotas = largestRemainder(byClass.map((r) => r.length), size);
  const picked: number[] = [];
  byClass.forEach((r, c) => picked.push(...rng.shuffle(r).slice(0, quotas[c])));
  return picked.sort((a, b) => a - b);
}

async function readLabels(ds: Dataset): Promise<Float64Array> {
  const out = new Float64Array(await ds.countRows());
  for await (const b of ds.blocks()) out.set(numericValues(b.column('label')), b.offset);
  return out;
}

/** Writes the rows `keep` (sorted) of `ds` to `out` unless a current copy is there. */
async function writeSubset(ds: Dataset, keep: number[], out: string, role: string, options: Record<string, unknown>): Promise<void> {
  const meta = {
    stage: 'bench-holdout-split', stageVersion: '1', options: { ...options, role }, seed: options.seed as number,
    parents: [{ fingerprint: ds.fingerprint, path: ds.dir, role: 'source' }],
  };
  const fp = computeFingerprint({ stage: meta.stage, stageVersion: meta.stageVersion, options: meta.options, seed: meta.seed, parents: [ds.fingerprint] });
  if (await isCurrent(out, fp)) return;
  const writer = await DatasetWriter.create(out, { columns: ds.ownColumns, pixelShape: ds.pixelShape, meta, overwrite: true });
  const want = new Uint8Array(await ds.countRows());
  for (const i of keep) want[i] = 1;
  try {
    for await (const b of ds.blocks()) {
      const read = rowReader(b, ds.ownColumns);
      for (let r = 0; r < b.length; r++) if (want[b.offset + r]) await writer.writeRow(read(r));
    }
  } catch (err) {
    await writer.abort();
    throw err;
  }
  await writer.finish({ rows: keep.length, role });
}

interface Prepared {
  dir: string;
  poolRows: number;
  targetRows: number;
  flipped: number;
  noisy: Uint8Array;
}

async function prepare(src: string, targetSize: number, poolSize: number | undefined): Promise<Prepared> {
  const train = await ensureIngested(src, 'train', path.join(root, '.bench', 'data', 'fashion-mnist-train'));
  const n = await train.countRows();
  const labels = await readLabels(train);
  const classes = train.classNames?.length ?? 0;
  if (targetSize + (poolSize ?? 1) > n) throw new UsageError(`--target ${targetSize} plus --pool ${poolSize ?? 'rest'} exceed the ${n} training rows`);
  const rng = Rng.derive(SETTINGS.split.seed, 'noise-auroc/split');
  const target = stratifiedSample(Array.from({ length: n }, (_, i) => i), labels, classes, targetSize, rng);
  const inTarget = new Set(target);
  const rest = Array.from({ length: n }, (_, i) => i).filter((i) => !inTarget.has(i));
  const pool = poolSize === undefined ? rest : stratifiedSample(rest, labels, classes, poolSize, rng);
  const dir = path.join(root, '.bench', 'noise-auroc', `t${target.length}-p${pool.length}`);
  const splitOptions = { targetSize, poolSize: poolSize ?? 'rest', seed: SETTINGS.split.seed, stratified: true };
  await writeSubset(train, target, path.join(dir, 'target'), 'target', splitOptions);
  await writeSubset(train, pool, path.join(dir, 'pool'), 'pool', splitOptions);
  const noiseOpts = { out: path.join(dir, 'pool-noisy'), labelNoise: SETTINGS.noise.rate, seed: SETTINGS.noise.seed, overwrite: true };
  if (!(await isCurrent(noiseOpts.out, (await plantStage.prepare([path.join(dir, 'pool')], noiseOpts)).fingerprint))) {
    await plant(path.join(dir, 'pool'), noiseOpts);
  }
  const noisy = Uint8Array.from(await readStrings(await openDataset(noiseOpts.out), 'planted'), (k) => (k === 'label-noise' ? 1 : 0));
  const flipped = noisy.reduce((a, v) => a + v, 0);
  return { dir, poolRows: pool.length, targetRows: target.length, flipped, noisy };
}

// ─── parent: run the children ───────────────────────────────────────────────

function runChild(method: Method, dataDir: string, resultFile: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const args = ['--child', method, '--data', dataDir, '--result', resultFile];
    if (metagradOverride) args.push('--metagrad-config', JSON.stringify(metagradOverride));
    const proc = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    proc.on('error', reject);
    proc.on('exit', (code, signal) => (code === 0 ? resolve() : reject(new Error(`${method}: child exited with ${signal ?? code}`))));
  });
}

async function runAll(methods: Method[], dataDir: string, jobs: number): Promise<Map<Method, ChildResult | Error>> {
  const results = new Map<Method, ChildResult | Error>();
  const queue = [...methods];
  const worker = async () => {
    for (let m = queue.shift(); m !== undefined; m = queue.shift()) {
      const file = path.join(dataDir, `result-${m}.json`);
      const started = Date.now();
      console.log(`scoring: ${m} started`);
      try {
        await fsp.rm(file, { force: true });
        await runChild(m, dataDir, file);
        results.set(m, JSON.parse(await fsp.readFile(file, 'utf8')) as ChildResult);
      } catch (err) {
        results.set(m, err instanceof Error ? err : new Error(String(err)));
      }
      console.log(`scoring: ${m} finished after ${((Date.now() - started) / 1000).toFixed(0)} s`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, methods.length) }, worker));
  return results;
}

function methodSettings(m: Method, r: ChildResult): string {
  const d = r.details as Record<string, any>;
  const parts: string[] = [];
  if (m.startsWith('metagrad')) {
    parts.push(`k=${SETTINGS.metagrad.k}`, `T=${d.replay?.steps}`);
    if (m === 'metagrad' && metagradOverride) parts.push(`config=${JSON.stringify(metagradOverride)}`);
    if (m === 'metagrad-smooth') parts.push(`outputScale=${SETTINGS.smoothOutputScale}`);
    parts.push(`φ=${Number(d.targetLoss).toFixed(3)}`);
    const sm = d.smoothness as SmoothnessReport | undefined;
    if (sm) parts.push(`roughness=${sm.roughness.toFixed(2)}`, `pred/actual=${sm.predictedOverActual?.toFixed(2) ?? '–'}`);
  } else {
    parts.push(`seeds=${(d.seeds as number[] | undefined)?.length ?? 1}`, `steps=${d.stepsTrained}/${d.totalSteps}`);
    if (d.epochsForScore !== undefined) parts.push(`scoreEpochs=${d.epochsForScore}`);
    if (d.checkpoints) parts.push(`checkpoints=${(d.checkpoints as number[]).length}`);
  }
  parts.push(r.optimizer);
  return parts.join(' ');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      methods: { type: 'string', default: METHODS.join(',') },
      pool: { type: 'string' },
      target: { type: 'string' },
      jobs: { type: 'string', default: String(Math.min(2, os.cpus().length)) },
      src: { type: 'string' },
      out: { type: 'string' },
      child: { type: 'string' },
      data: { type: 'string' },
      result: { type: 'string' },
      'metagrad-config': { type: 'string' },
    },
  });
  if (values['metagrad-config'] !== undefined) metagradOverride = parseTrainConfig(values['metagrad-config']);
  const methods = values.methods!.split(',').map((s) => s.trim()).filter(Boolean);
  for (const m of methods) {
    if (!(METHODS as readonly string[]).includes(m)) throw new UsageError(`unknown method '${m}'`, { hint: `Use some of ${METHODS.join(', ')}` });
  }
  if (values.child) return child(values.child as Method, values.data!, values.result!);

  const int = (v: string | undefined, name: string) => {
    if (v === undefined) return undefined;
    const x = Number(v);
    if (!Number.isInteger(x) || x < 1) throw new UsageError(`--${name} must be a positive integer, got ${v}`);
    return x;
  };
  const targetSize = int(values.target, 'target') ?? (values.quick ? SETTINGS.quick.targetSize : SETTINGS.split.targetSize);
  const poolSize = int(values.pool, 'pool') ?? (values.quick ? SETTINGS.quick.poolSize : undefined);
  const jobs = int(values.jobs, 'jobs')!;

  const src = findSource(values.src);
  const data = await prepare(src, targetSize, poolSize);
  console.log(`settings${values.quick ? ' (--quick)' : ''}:`, JSON.stringify(SETTINGS));
  console.log(`pool ${data.poolRows} rows (${data.flipped} flipped), target ${data.targetRows} clean held-out rows; ${jobs} jobs`);

  // Longest first, so the short baselines fill the other core meanwhile.
  const ordered = [...(methods as Method[])].sort((a, b) => Number(b.startsWith('metagrad')) - Number(a.startsWith('metagrad')));
  const started = Date.now();
  const results = await runAll(ordered, data.dir, jobs);
  const wall = (Date.now() - started) / 1000;

  const rows: Record<string, unknown>[] = [];
  const records: Record<string, unknown>[] = [];
  const scored: { m: Method; scores: number[] }[] = [];
  for (const m of methods as Method[]) {
    const r = results.get(m)!;
    if (r instanceof Error) {
      rows.push({ method: m, AUROC: undefined, seconds: undefined, 'cpu s': undefined, settings: `FAILED: ${r.message}` });
      records.push({ method: m, error: r.message });
      continue;
    }
    const a = auroc(r.scores.map((s) => -s), data.noisy);
    scored.push({ m, scores: r.scores });
    rows.push({ method: m, AUROC: Number(a.toFixed(4)), seconds: Number(r.seconds.toFixed(1)), 'cpu s': Number(r.cpuSeconds.toFixed(1)), load: r.loadAvg.map((l) => l.toFixed(1)).join('→'), settings: methodSettings(m, r) });
    records.push({ method: m, auroc: a, seconds: r.seconds, cpuSeconds: r.cpuSeconds, loadAvg: r.loadAvg, backend: r.backend, optimizer: r.optimizer, trainConfig: trainConfigFor(m), details: r.details });
  }
  printTable(`AUROC at finding flipped labels (−score vs noisy): Fashion-MNIST pool ${data.poolRows} rows, ${data.flipped} flipped (${SETTINGS.noise.rate * 100}% symmetric), target ${data.targetRows} clean; MLP 784-256-10, SGD lr 0.05 m 0.9, batch 128, ${SETTINGS.train.epochs} epochs${metagradOverride ? ' (metagrad: --metagrad-config, see its settings)' : ''}`, rows);

  const corr: Record<string, Record<string, number>> = {};
  for (const a of scored) {
    corr[a.m] = {};
    for (const b of scored) corr[a.m][b.m] = a === b ? 1 : Number(spearman(a.scores, b.scores).toFixed(3));
  }
  if (scored.length > 1) printTable('Spearman rank correlation between the methods\' scores', scored.map((a) => ({ method: a.m, ...corr[a.m] })));

  const file = await writeBenchJson('noise-auroc', {
    meta: benchMeta(), settings: SETTINGS, quick: values.quick, pool: data.poolRows, target: data.targetRows, flipped: data.flipped,
    metagradConfig: metagradOverride, wallSeconds: wall, jobs, results: records, spearman: corr,
  }, values.out);
  console.log(`wrote ${path.relative(process.cwd(), file)} (${wall.toFixed(0)} s in all)`);
}

main().catch((err) => {
  console.error(`noise-auroc: ${err instanceof Error ? err.message : String(err)}`);
  if (!(err instanceof UsageError || err instanceof MissingInputError)) console.error(err);
  process.exit(exitCodeOf(err));
});
