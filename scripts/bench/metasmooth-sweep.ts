/**
 * Benchmark: choose the metagradient's training settings by MGD's metasmoothness
 * diagnostic, a criterion that uses only the clean target loss, never the noise
 * flags; the AUROC of the choice is measured afterwards (noise-auroc).
 *
 *   npm run build && node dist/scripts/bench/metasmooth-sweep.js [--jobs 2] [--only a,b] [--data DIR] [--out FILE]
 *   node dist/scripts/bench/metasmooth-sweep.js --auroc     # only after the choice is recorded
 *
 * Protocol (CANDIDATES, PROBES and RULE were fixed in this file before it was run):
 * 1. Data: noise-auroc's split (run it once first): the 55,000-row Fashion-MNIST
 *    pool with 20% symmetric label noise and the clean 5,000-row target, in
 *    `.bench/noise-auroc/t5000-p55000/` (or `--data DIR`). The pool's `noisy`
 *    column is never read by the sweep.
 * 2. For each candidate training setting, in its own child process (`--jobs` at a
 *    time): the metagradient g = dφ/dw at w = 1 (REPLAY k = 4; φ = mean CE on the
 *    target after training), then φ after training at w + s·h·d, s = 1, 2, along
 *    three directions d: two seeded random ±1 directions (ml/metagrad's
 *    `metasmoothness`, h = 0.1) and the descent sign direction d = −sign(g)
 *    (h = 0.05: it is aligned with g, so its first-order change is already large).
 *    Per direction: roughness |Δ₂ − Δ₁| / max(|Δ₁|, |Δ₂|) and predicted/actual
 *    h·⟨g, d⟩ / Δ₁.
 * 3. RULE (below) picks one candidate from target loss, roughness and
 *    predicted/actual alone. The table and the choice go to
 *    `.bench/metasmooth-sweep.json`; each candidate's g to
 *    `.bench/metasmooth-sweep/grad-<name>.f32` (little-endian float32).
 * 4. `--auroc`, run after step 3, reads the noise flags and reports every
 *    candidate's AUROC at finding flipped labels (−score = g against `noisy`),
 *    marking the one the rule chose; it writes `.bench/metasmooth-sweep-auroc.json`.
 *
 * Wall and CPU seconds are per candidate (metagradient and probes apart) on a
 * machine that may be shared; the 1-minute load average is recorded beside them.
 */
import { spawn } from 'node:child_process';
import { existsSync, promises as fsp } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { MissingInputError, UsageError, exitCodeOf } from '../../core/errors.js';
import { auroc } from '../../core/metrics.js';
import { openDataset } from '../../data/reader.js';
import type { SmoothnessReport } from '../../ml/metagrad.js';
import type { TrainConfig } from '../../ml/train.js';
import { benchMeta, printTable, writeBenchJson } from './common.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// dist/scripts/bench → the repository root.
const root = path.resolve(here, '../../..');
const DEFAULT_DATA = path.join('.bench', 'noise-auroc', 't5000-p55000');
const GRAD_DIR = path.join('.bench', 'metasmooth-sweep');

const mlp = (hidden: number, outputScale = 1) => ({ kind: 'mlp' as const, hidden: [hidden], outputScale });

/**
 * The candidates: the two settings noise-auroc already ran (controls), and seven
 * from MGD's metasmoothness advice (docs/methods/metagradients.md,
 * "Metasmoothness"): a smaller LR, no or low momentum, larger batches, fewer
 * steps, logits ÷ 10, a wider net, a decaying LR, Adam.
 */
const CANDIDATES: { name: string; why: string; train: TrainConfig }[] = [
  {
    name: 'ref',
    why: 'control: noise-auroc\'s metagrad (SGD lr 0.05 m 0.9, batch 128, 3 epochs)',
    train: { model: mlp(256), optimizer: { kind: 'sgd', lr: 0.05, momentum: 0.9 }, epochs: 3, batchSize: 128, seed: 0 },
  },
  {
    name: 'ref-os0.1',
    why: 'control: noise-auroc\'s metagrad-smooth (ref with logits ÷ 10)',
    train: { model: mlp(256, 0.1), optimizer: { kind: 'sgd', lr: 0.05, momentum: 0.9 }, epochs: 3, batchSize: 128, seed: 0 },
  },
  {
    name: 'sgd0.01-b256-e2',
    why: 'careful LR, no momentum, larger batch, fewer steps',
    train: { model: mlp(256), optimizer: { kind: 'sgd', lr: 0.01 }, epochs: 2, batchSize: 256, seed: 0 },
  },
  {
    name: 'sgd0.05-b256-e2',
    why: 'the default LR without momentum (10× smaller effective step), larger batch, fewer steps',
    train: { model: mlp(256), optimizer: { kind: 'sgd', lr: 0.05 }, epochs: 2, batchSize: 256, seed: 0 },
  },
  {
    name: 'sgd0.05-b256-e2-lin',
    why: 'sgd0.05-b256-e2 with the LR decayed linearly to 0, so the last steps (where φ is read) are gentle',
    train: { model: mlp(256), optimizer: { kind: 'sgd', lr: 0.05 }, schedule: { kind: 'linear', warmup: 0, finalFactor: 0 }, epochs: 2, batchSize: 256, seed: 0 },
  },
  {
    name: 'sgd0.02m0.5-os0.1-b256-e2',
    why: 'logits ÷ 10 with a careful LR and low momentum',
    train: { model: mlp(256, 0.1), optimizer: { kind: 'sgd', lr: 0.02, momentum: 0.5 }, epochs: 2, batchSize: 256, seed: 0 },
  },
  {
    name: 'sgd1-os0.1-b256-e2',
    why: 'logits ÷ 10 with the LR raised to train: a step moves the logits by ∝ lr·scale² (0.01), the hidden layer by ∝ lr·scale (0.1)',
    train: { model: mlp(256, 0.1), optimizer: { kind: 'sgd', lr: 1 }, epochs: 2, batchSize: 256, seed: 0 },
  },
  {
    name: 'adam1e-3-b256-e2',
    why: 'Adam lr 1e-3 (per-parameter step sizes), larger batch, fewer steps',
    train: { model: mlp(256), optimizer: { kind: 'adam', lr: 1e-3 }, epochs: 2, batchSize: 256, seed: 0 },
  },
  {
    name: 'mlp512-sgd0.05-b256-e2',
    why: 'wider net (784-512-10), else sgd0.05-b256-e2',
    train: { model: mlp(512), optimizer: { kind: 'sgd', lr: 0.05 }, epochs: 2, batchSize: 256, seed: 0 },
  },
];

/** The metasmoothness probes: two random ±1 directions and the metagradient's descent sign direction. */
const PROBES = { k: 4, random: { h: 0.1, seeds: [0, 1] }, sign: { h: 0.05 } } as const;

/** The choice, fixed before any AUROC was computed. */
const RULE = {
  /** Trains: final target loss within this many nats of the best candidate's. */
  lossMargin: 0.25,
  /** Predicts: predicted/actual within this band along every probe direction. */
  predictedOverActual: [0.5, 2] as [number, number],
  text:
    'among candidates that trained (target loss ≤ best + 0.25 nats, no divergence) and whose metagradient predicts the change ' +
    '(predicted/actual in [0.5, 2] along all three probe directions), the lowest roughness (max over the directions); ' +
    'if none predicts, the trained candidate whose predicted/actual is closest to 1 in the worst direction (max |ln ratio|, a non-positive ratio counts as ∞)',
};

interface Probe {
  direction: string;
  h: number;
  phi: [number, number, number];
  roughness: number;
  predicted: number;
  actual: number;
  predictedOverActual: number | null;
}

interface CandidateResult {
  name: string;
  train: TrainConfig;
  backend: string;
  steps?: number;
  /** φ at w = 1 from the metagradient's run and from plain training (equal when training is deterministic). */
  targetLoss?: number;
  targetLossRetrained?: number;
  probes: Probe[];
  error?: string;
  metagrad: { seconds: number; cpuSeconds: number };
  probe: { seconds: number; cpuSeconds: number };
  loadAvg: [number, number];
  /** The child's CPU in all, data loading and backend start-up included. */
  processCpuSeconds?: number;
}

// ─── child: one candidate ───────────────────────────────────────────────────

function timer() {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  return () => {
    const c = process.cpuUsage(c0);
    return { seconds: (performance.now() - t0) / 1000, cpuSeconds: (c.user + c.system) / 1e6 };
  };
}

/** The same diagnostic as ml/metagrad's `metasmoothness`, along a given direction. */
function probeAlong(direction: string, h: number, phi: [number, number, number], grad: Float32Array, d: Float32Array): Probe {
  const d1 = phi[1] - phi[0];
  const d2 = phi[2] - phi[1];
  const scale = Math.max(Math.abs(d1), Math.abs(d2));
  let dot = 0;
  for (let i = 0; i < grad.length; i++) dot += grad[i] * d[i];
  return {
    direction, h, phi,
    roughness: scale === 0 ? 0 : Math.abs(d2 - d1) / scale,
    predicted: h * dot, actual: d1, predictedOverActual: d1 === 0 ? null : (h * dot) / d1,
  };
}

async function child(name: string, dataDir: string, resultFile: string, gradFile: string): Promise<void> {
  const cand = CANDIDATES.find((c) => c.name === name);
  if (!cand) throw new UsageError(`unknown candidate '${name}'`);
  const { initBackend } = await import('../../ml/backend.js');
  const backend = (await initBackend('auto')).name;
  const { loadExamples } = await import('../../data/batch.js');
  const { createTrainer } = await import('../../ml/train.js');
  const { meanCrossEntropyTarget, metagradient, metasmoothness } = await import('../../ml/metagrad.js');
  const tf = await import('@tensorflow/tfjs');
  // loadExamples reads ids, pixels and labels: the pool's `noisy` column stays unread.
  const pool = await loadExamples(await openDataset(path.join(dataDir, 'pool-noisy')));
  const target = await loadExamples(await openDataset(path.join(dataDir, 'target')));
  const n = pool.ids.length;

  const load0 = os.loadavg()[0];
  const out: CandidateResult = {
    name, train: cand.train, backend, probes: [],
    metagrad: { seconds: 0, cpuSeconds: 0 }, probe: { seconds: 0, cpuSeconds: 0 }, loadAvg: [load0, load0],
  };
  const finish = async () => {
    out.loadAvg[1] = os.loadavg()[0];
    const c = process.cpuUsage();
    out.processCpuSeconds = (c.user + c.system) / 1e6;
    await fsp.writeFile(resultFile, JSON.stringify(out));
  };

  let lastReport = 0;
  const onProgress = (done: number, total: number) => {
    if (Date.now() - lastReport > 60_000 || done === total) {
      lastReport = Date.now();
      process.stderr.write(`  [${name}] backward ${done}/${total}\n`);
    }
  };
  let grad: Float32Array;
  const stopMetagrad = timer();
  try {
    const trainer = createTrainer(cand.train, pool);
    const res = await metagradient(trainer, meanCrossEntropyTarget(trainer.model, target), { k: PROBES.k, onProgress });
    grad = res.grad;
    out.steps = res.stats.steps;
    out.targetLoss = res.targetLoss;
  } catch (err) {
    out.metagrad = stopMetagrad();
    out.error = err instanceof Error ? err.message : String(err);
    return finish();
  }
  out.metagrad = stopMetagrad();
  await fsp.writeFile(gradFile, Buffer.from(grad.buffer, grad.byteOffset, grad.byteLength));

  const stopProbe = timer();
  let phi0: number | undefined;
  const phi = async (weights: Float32Array): Promise<number> => {
    // w = 1 comes up in every probe; train it once.
    const base = weights.every((w) => w === 1);
    if (base && phi0 !== undefined) return phi0;
    const trainer = createTrainer(cand.train, pool, { weights });
    const { params } = await trainer.run();
    const tl = meanCrossEntropyTarget(trainer.model, target);
    let v = 0;
    for (let c = 0; c < tl.chunks; c++) v += tf.tidy(() => tl.loss(params, c).dataSync()[0]);
    tf.dispose(params);
    if (base) phi0 = v;
    process.stderr.write(`  [${name}] φ = ${v.toFixed(5)}\n`);
    return v;
  };
  try {
    for (const seed of PROBES.random.seeds) {
      const r: SmoothnessReport = await metasmoothness(phi, n, { h: PROBES.random.h, seed, grad });
      const actual = r.phi[1] - r.phi[0];
      out.probes.push({
        direction: `random ±1 (seed ${seed})`, h: r.h, phi: r.phi, roughness: r.roughness,
        predicted: (r.predictedOverActual ?? NaN) * actual, actual, predictedOverActual: r.predictedOverActual ?? null,
      });
    }
    const d = grad.map((g) => -Math.sign(g));
    const h = PROBES.sign.h;
    const at = (s: number) => Float32Array.from(d, (di) => 1 + s * h * di);
    out.probes.push(probeAlong('−sign(g)', h, [await phi(at(0)), await phi(at(1)), await phi(at(2))], grad, d));
    out.targetLossRetrained = phi0;
  } catch (err) {
    out.error = `probe: ${err instanceof Error ? err.message : String(err)}`;
  }
  out.probe = stopProbe();
  return finish();
}

// ─── parent ─────────────────────────────────────────────────────────────────

function runChild(name: string, dataDir: string, resultFile: string, gradFile: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [fileURLToPath(import.meta.url), '--child', name, '--data', dataDir, '--result', resultFile, '--grad', gradFile], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    proc.on('error', reject);
    proc.on('exit', (code, signal) => (code === 0 ? resolve() : reject(new Error(`${name}: child exited with ${signal ?? code}`))));
  });
}

interface Summary {
  name: string;
  targetLoss?: number;
  /** Max over the probe directions. */
  roughness?: number;
  ratios: (number | null)[];
  trained: boolean;
  predicts: boolean;
  /** Max over directions of |ln(predicted/actual)|; ∞ for a non-positive ratio. */
  worstLogRatio: number;
}

function summarise(results: CandidateResult[]): Summary[] {
  const ok = results.filter((r) => !r.error && r.targetLoss !== undefined);
  const best = Math.min(...ok.map((r) => r.targetLoss!));
  const [lo, hi] = RULE.predictedOverActual;
  return results.map((r) => {
    const ratios = r.probes.map((p) => p.predictedOverActual);
    const failed = !!r.error || r.targetLoss === undefined;
    return {
      name: r.name,
      targetLoss: r.targetLoss,
      roughness: r.probes.length ? Math.max(...r.probes.map((p) => p.roughness)) : undefined,
      ratios,
      trained: !failed && r.targetLoss! <= best + RULE.lossMargin,
      predicts: !failed && ratios.length > 0 && ratios.every((q) => q !== null && q >= lo && q <= hi),
      worstLogRatio: failed || ratios.length === 0 ? Infinity : Math.max(...ratios.map((q) => (q === null || q <= 0 ? Infinity : Math.abs(Math.log(q))))),
    };
  });
}

function choose(summaries: Summary[]): { name: string | null; how: string } {
  const trained = summaries.filter((s) => s.trained);
  const predicting = trained.filter((s) => s.predicts);
  if (predicting.length > 0) {
    const pick = predicting.reduce((a, b) => (b.roughness! < a.roughness! ? b : a));
    return { name: pick.name, how: `lowest roughness among the ${predicting.length} trained candidates that predict` };
  }
  if (trained.length === 0) return { name: null, how: 'no candidate trained' };
  const pick = trained.reduce((a, b) => (b.worstLogRatio < a.worstLogRatio || (b.worstLogRatio === a.worstLogRatio && b.roughness! < a.roughness!) ? b : a));
  return { name: pick.name, how: 'fallback: no trained candidate predicts in every direction; closest predicted/actual to 1 in its worst direction' };
}

async function sweep(values: Record<string, string | boolean | undefined>): Promise<void> {
  const dataDir = path.resolve(root, (values.data as string | undefined) ?? DEFAULT_DATA);
  for (const part of ['pool-noisy', 'target']) {
    if (!existsSync(path.join(dataDir, part))) {
      throw new MissingInputError(`${path.join(dataDir, part)} does not exist`, {
        hint: 'Run noise-auroc once first (node dist/scripts/bench/noise-auroc.js --methods loss): it writes the split and the noisy pool',
      });
    }
  }
  const only = (values.only as string | undefined)?.split(',').map((s) => s.trim()).filter(Boolean);
  for (const o of only ?? []) if (!CANDIDATES.some((c) => c.name === o)) throw new UsageError(`unknown candidate '${o}'`, { hint: `Use some of ${CANDIDATES.map((c) => c.name).join(', ')}` });
  const jobs = Number(values.jobs);
  if (!Number.isInteger(jobs) || jobs < 1) throw new UsageError(`--jobs must be a positive integer, got ${values.jobs}`);
  const gradDir = path.join(root, GRAD_DIR);
  await fsp.mkdir(gradDir, { recursive: true });

  const names = CANDIDATES.map((c) => c.name).filter((n) => !only || only.includes(n));
  console.log(`metasmoothness sweep: ${names.length} candidates on ${path.relative(root, dataDir)}, ${jobs} jobs; probes ${JSON.stringify(PROBES)}`);
  console.log(`rule: ${RULE.text}`);
  const started = Date.now();
  const results = new Map<string, CandidateResult>();
  const queue = [...names];
  const worker = async () => {
    for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
      const resultFile = path.join(gradDir, `result-${name}.json`);
      const t0 = Date.now();
      console.log(`${name}: started`);
      try {
        await fsp.rm(resultFile, { force: true });
        await runChild(name, dataDir, resultFile, path.join(gradDir, `grad-${name}.f32`));
        results.set(name, JSON.parse(await fsp.readFile(resultFile, 'utf8')) as CandidateResult);
      } catch (err) {
        const cand = CANDIDATES.find((c) => c.name === name)!;
        results.set(name, {
          name, train: cand.train, backend: '?', probes: [], error: err instanceof Error ? err.message : String(err),
          metagrad: { seconds: 0, cpuSeconds: 0 }, probe: { seconds: 0, cpuSeconds: 0 }, loadAvg: [0, 0],
        });
      }
      console.log(`${name}: finished after ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, names.length) }, worker));
  const wall = (Date.now() - started) / 1000;

  const ordered = names.map((n) => results.get(n)!);
  const summaries = summarise(ordered);
  const choice = choose(summaries);
  const fmt = (q: number | null | undefined) => (q === null || q === undefined ? '–' : q.toFixed(2));
  printTable(`Metasmoothness of the metagradient's training run (label-free): pool ${path.relative(root, dataDir)}, target loss = mean CE on the clean target`, ordered.map((r, i) => {
    const s = summaries[i];
    return {
      candidate: (r.name === choice.name ? '* ' : '  ') + r.name,
      steps: r.steps,
      'target loss': r.targetLoss === undefined ? undefined : Number(r.targetLoss.toFixed(4)),
      roughness: r.probes.length ? r.probes.map((p) => p.roughness.toFixed(2)).join(' / ') : undefined,
      'pred/actual': r.probes.length ? r.probes.map((p) => fmt(p.predictedOverActual)).join(' / ') : undefined,
      trained: s.trained ? 'yes' : 'no',
      predicts: s.predicts ? 'yes' : 'no',
      'mg s': Number(r.metagrad.seconds.toFixed(0)),
      'mg cpu s': Number(r.metagrad.cpuSeconds.toFixed(0)),
      'probe s': Number(r.probe.seconds.toFixed(0)),
      'probe cpu s': Number(r.probe.cpuSeconds.toFixed(0)),
      load: r.loadAvg.map((l) => l.toFixed(1)).join('→'),
      note: r.error ?? '',
    };
  }));
  console.log('roughness and pred/actual per direction: random ±1 seed 0 / random ±1 seed 1 / −sign(g)');
  console.log(`chosen: ${choice.name ?? 'none'} (${choice.how})`);
  const cpuSeconds = ordered.reduce((a, r) => a + r.metagrad.cpuSeconds + r.probe.cpuSeconds, 0);
  const processCpuSeconds = ordered.reduce((a, r) => a + (r.processCpuSeconds ?? 0), 0);
  console.log(`wall ${wall.toFixed(0)} s; children's CPU ${cpuSeconds.toFixed(0)} s scoring and probing, ${processCpuSeconds.toFixed(0)} s in all`);

  const file = await writeBenchJson('metasmooth-sweep', {
    meta: benchMeta(), data: path.relative(root, dataDir), probes: PROBES, rule: RULE, candidates: CANDIDATES,
    chosen: choice.name, chosenHow: choice.how, chosenAt: new Date().toISOString(),
    wallSeconds: wall, cpuSeconds, processCpuSeconds, jobs, results: ordered, summaries,
  }, values.out as string | undefined);
  console.log(`wrote ${path.relative(process.cwd(), file)}`);
}

// ─── after the choice: AUROC of every candidate ──────────────────────────────

async function aurocs(values: Record<string, string | boolean | undefined>): Promise<void> {
  const sweepFile = path.resolve((values.out as string | undefined) ?? path.join(root, '.bench', 'metasmooth-sweep.json'));
  if (!existsSync(sweepFile)) throw new MissingInputError(`${sweepFile} does not exist`, { hint: 'Run the sweep first: the choice is recorded before any AUROC is computed' });
  const sweepRec = JSON.parse(await fsp.readFile(sweepFile, 'utf8')) as { data: string; chosen: string | null; chosenAt: string; results: CandidateResult[] };
  const pool = await openDataset(path.join(root, sweepRec.data, 'pool-noisy'));
  const noisy = new Uint8Array(await pool.countRows());
  for await (const b of pool.blocks()) {
    const v = b.column('noisy');
    for (let i = 0; i < b.length; i++) noisy[b.offset + i] = v.get(i) ? 1 : 0;
  }
  const rows: Record<string, unknown>[] = [];
  for (const r of sweepRec.results) {
    const gradFile = path.join(root, GRAD_DIR, `grad-${r.name}.f32`);
    let a: number | undefined;
    if (r.targetLoss !== undefined) {
      const buf = await fsp.readFile(gradFile);
      const grad = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
      // score = −g, and the AUROC is of −score against the flags.
      a = auroc(grad, noisy);
    }
    rows.push({ candidate: (r.name === sweepRec.chosen ? '* ' : '  ') + r.name, AUROC: a === undefined ? undefined : Number(a.toFixed(4)), 'target loss': r.targetLoss });
  }
  printTable(`AUROC at finding flipped labels of every swept candidate's metagradient (* = chosen by the rule at ${sweepRec.chosenAt}, before this)`, rows);
  const file = await writeBenchJson('metasmooth-sweep-auroc', { meta: benchMeta(), sweep: path.relative(root, sweepFile), chosen: sweepRec.chosen, chosenAt: sweepRec.chosenAt, rows });
  console.log(`wrote ${path.relative(process.cwd(), file)}`);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      jobs: { type: 'string', default: String(Math.min(2, os.cpus().length)) },
      only: { type: 'string' },
      data: { type: 'string' },
      out: { type: 'string' },
      auroc: { type: 'boolean', default: false },
      child: { type: 'string' },
      result: { type: 'string' },
      grad: { type: 'string' },
    },
  });
  if (values.child) return child(values.child, values.data!, values.result!, values.grad!);
  if (values.auroc) return aurocs(values);
  return sweep(values);
}

main().catch((err) => {
  console.error(`metasmooth-sweep: ${err instanceof Error ? err.message : String(err)}`);
  if (!(err instanceof UsageError || err instanceof MissingInputError)) console.error(err);
  process.exit(exitCodeOf(err));
});
