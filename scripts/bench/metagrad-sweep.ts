/**
 * Benchmark: choose the metagradient ensemble's training settings and size K by
 * a rule that reads no label-noise flag — how reproducible the ensemble's
 * ranking is (split-half agreement), whether the run trains, whether its
 * metagradient predicts the target loss's change (metasmoothness), and its cost.
 * The AUROC of every candidate at finding flipped labels is computed only with
 * `--auroc`, after the choice is recorded.
 *
 *   npm run build && node dist/scripts/bench/metagrad-sweep.js [--src DIR] [--runs 6] [--only a,b] [--out FILE]
 *   node dist/scripts/bench/metagrad-sweep.js --auroc      # after the choice: reads the planted truth
 *
 * Protocol (candidates, probe and RULE fixed in this file before it was run):
 * 1. Data: the dev split of scripts/bench/common.ts (curationData 'dev'): a
 *    45,000-row pool with 20% symmetric label noise planted (seed 1) and a clean
 *    5,000-row target, both from Fashion-MNIST's training split. The pool's
 *    `planted` column is read only by --auroc.
 * 2. Per candidate: `runs` metagradient runs (seeds 0…runs−1: initialisation and
 *    batch order), two at a time in worker threads; per run, its target loss and
 *    wall time. The ensemble combines percentile ranks. Agreement: the Spearman
 *    correlation of the two halves' combinations (runs/2 each); from it, by
 *    Spearman–Brown, r₁ (one run against another) and the K whose halves agree at
 *    0.8: K = 2·ceil(0.8(1 − r₁) / (0.2 r₁)).
 * 3. Metasmoothness probe: φ after training at w, w + h·d, w + 2h·d (h = 0.1, d a
 *    seeded ±1 direction, weights entering where the candidate's do), roughness
 *    |Δ₂ − Δ₁| / max |Δ|, and predicted/actual h⟨g, d⟩ / Δ₁ with run 0's g.
 * 4. RULE: among candidates that train (mean target loss ≤ best + 0.25 nats) and
 *    are smooth (predicted/actual in [0.5, 2]), the one whose K (step 2) costs the
 *    fewest seconds (K × mean run seconds); ties within 10% go to the higher
 *    split-half agreement. The default K is that candidate's K, rounded up to an
 *    even number, at least 4 — unless K runs on 60,000 rows would not fit 5
 *    minutes on 2 cores, in which case K is the largest that fits and the miss is
 *    reported.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { exitCodeOf, MissingInputError } from '../../core/errors.js';
import { auroc, spearman } from '../../core/metrics.js';
import { loadExamples } from '../../data/batch.js';
import { openDataset, readStrings } from '../../data/reader.js';
import { initBackend } from '../../ml/backend.js';
import { meanCrossEntropyTarget, metasmoothness } from '../../ml/metagrad.js';
import { runJobs, type ScoreJob } from '../../ml/pool.js';
import { combineSeeds, splitHalfAgreement } from '../../ml/scores/index.js';
import { createTrainer, type TrainConfig } from '../../ml/train.js';
import { benchMeta, curationData, fashionMnistCandidates, findFashionMnist, printTable, writeBenchJson } from './common.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');

const mlp = (hidden: number) => ({ kind: 'mlp' as const, hidden: [hidden] });
const sgd = (lr: number) => ({ kind: 'sgd' as const, lr, momentum: 0 });
const linear = { kind: 'linear' as const, warmup: 0, finalFactor: 0 };

/** The candidates: today's default and what MGD's recipe suggests for smoother, steadier metagradients. */
const CANDIDATES: { name: string; why: string; train: Omit<TrainConfig, 'seed'>; enterAt: number }[] = [
  { name: 'base', why: 'the current default: MLP 512, SGD 0.05, batch 256, 2 epochs', train: { model: mlp(512), optimizer: sgd(0.05), epochs: 2, batchSize: 256 }, enterAt: 0 },
  { name: 'late', why: 'base, weights entering at half the run', train: { model: mlp(512), optimizer: sgd(0.05), epochs: 2, batchSize: 256 }, enterAt: 0.5 },
  { name: 'lin', why: 'base, LR decayed linearly to 0', train: { model: mlp(512), optimizer: sgd(0.05), schedule: linear, epochs: 2, batchSize: 256 }, enterAt: 0 },
  { name: 'late-lin', why: 'late and lin', train: { model: mlp(512), optimizer: sgd(0.05), schedule: linear, epochs: 2, batchSize: 256 }, enterAt: 0.5 },
  { name: 'late-lin-e3', why: 'late-lin over 3 epochs, weights entering for the last', train: { model: mlp(512), optimizer: sgd(0.05), schedule: linear, epochs: 3, batchSize: 256 }, enterAt: 2 / 3 },
  { name: 'late-lin-b512', why: 'late-lin with batches of 512 at LR 0.1', train: { model: mlp(512), optimizer: sgd(0.1), schedule: linear, epochs: 2, batchSize: 512 }, enterAt: 0.5 },
  { name: 'late-lin-w1024', why: 'late-lin, a wider net (784-1024-10)', train: { model: mlp(1024), optimizer: sgd(0.05), schedule: linear, epochs: 2, batchSize: 256 }, enterAt: 0.5 },
];

const RULE = {
  lossMargin: 0.25,
  predictedOverActual: [0.5, 2] as [number, number],
  agreement: 0.8,
  tie: 0.1,
  /** The cost target: K runs on 60,000 rows within 5 minutes on 2 cores. */
  budgetSeconds: 300,
  referenceRows: 60000,
};

interface Result {
  name: string;
  why: string;
  enterAt: number;
  train: Omit<TrainConfig, 'seed'>;
  runs: number;
  targetLoss: number;
  runSeconds: number;
  splitHalf: number;
  r1: number;
  meanPairwise: number;
  kFor08: number;
  costFor08: number;
  roughness: number;
  predictedOverActual: number | null;
  trained?: boolean;
  smooth?: boolean;
  auroc?: number;
  aurocSingle?: number;
}

function kFor(r1: number, target: number): number {
  if (!(r1 > 0)) return Infinity;
  const m = Math.ceil((target * (1 - r1)) / ((1 - target) * r1));
  return 2 * Math.max(1, m);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      src: { type: 'string' }, out: { type: 'string' }, runs: { type: 'string', default: '6' }, only: { type: 'string' },
      workdir: { type: 'string', default: path.join('.bench', 'curation-dev') }, auroc: { type: 'boolean', default: false },
    },
  });
  const src = findFashionMnist(fashionMnistCandidates(root, values.src), ['train', 'test']);
  if (!src) throw new MissingInputError('the full Fashion-MNIST is not here', { hint: 'Run scripts/fetch-fashion-mnist first' });
  const data = await curationData(src, values.workdir!, 'dev');
  const pool = data.arms.noisy;
  const gradDir = path.join('.bench', 'metagrad-sweep');
  const jsonFile = path.resolve(values.out ?? path.join('.bench', 'metagrad-sweep.json'));

  if (values.auroc) {
    const record = JSON.parse(await fsp.readFile(jsonFile, 'utf8')) as { results: Result[]; choice: string };
    const planted = await readStrings(await openDataset(pool), 'planted');
    const clean = planted.map((k) => k === 'clean');
    for (const r of record.results) {
      const runs = await Promise.all(Array.from({ length: r.runs }, async (_, i) => new Float32Array((await fsp.readFile(path.join(gradDir, `${r.name}-${i}.f32`))).buffer.slice(0))));
      r.auroc = auroc(combineSeeds(runs, 'rank').scores, clean);
      r.aurocSingle = auroc(runs[0], clean);
    }
    printTable(`AUROC at finding the 20% flipped labels (computed after the choice: ${record.choice})`,
      record.results.map((r) => ({ candidate: r.name + (r.name === record.choice ? ' (chosen)' : ''), runs: r.runs, 'AUROC ensemble': r.auroc, 'AUROC one run': r.aurocSingle })));
    await writeBenchJson('metagrad-sweep-auroc', { ...benchMeta(), choice: record.choice, results: record.results }, jsonFile.replace(/\.json$/, '-auroc.json'));
    return;
  }

  const runs = Number(values.runs);
  const only = values.only?.split(',');
  await fsp.mkdir(gradDir, { recursive: true });
  const tfb = await initBackend('auto');
  const poolEx = await loadExamples(await openDataset(pool));
  const targetEx = await loadExamples(await openDataset(data.target));
  const results: Result[] = [];
  for (const cand of CANDIDATES.filter((c) => !only || only.includes(c.name))) {
    console.log(`${cand.name}: ${runs} runs on ${poolEx.ids.length} rows`);
    const t0 = performance.now();
    const jobs: ScoreJob[] = Array.from({ length: runs }, (_, seed) => ({
      kind: 'score', train: { dir: pool }, target: { dir: data.target },
      settings: { method: 'metagrad', train: { ...cand.train, seed }, k: 16, enterAt: cand.enterAt },
    }));
    const out = await runJobs(jobs, { size: 2 });
    const wall = (performance.now() - t0) / 1000;
    const scores = out.map((r) => r.scores);
    for (const [i, s] of scores.entries()) await fsp.writeFile(path.join(gradDir, `${cand.name}-${i}.f32`), new Uint8Array(s.buffer));
    const agree = splitHalfAgreement(scores, 'rank')!;
    const m = runs / 2;
    const r1 = agree.splitHalf / (m - (m - 1) * agree.splitHalf);
    let pair = 0;
    let pairs = 0;
    for (let i = 0; i < runs; i++) for (let j = i + 1; j < runs; j++) { pair += spearman(scores[i], scores[j]); pairs++; }
    // Metasmoothness along one seeded direction, weights entering as the candidate's do.
    const cfg = { ...cand.train, seed: 0 };
    const from = Math.round(cand.enterAt * createTrainer(cfg, poolEx).steps);
    const tl = meanCrossEntropyTarget(createTrainer(cfg, poolEx).model, targetEx);
    const phi = async (w: Float32Array) => {
      const { params } = await createTrainer(cfg, poolEx, { weights: w, weightsFrom: from }).run();
      let v = 0;
      for (let c = 0; c < tl.chunks; c++) v += tf.tidy(() => tl.loss(params, c).dataSync()[0]);
      tf.dispose(params);
      return v;
    };
    const grad = Float32Array.from(scores[0], (v) => -v);
    const probe = await metasmoothness(phi, poolEx.ids.length, { h: 0.1, seed: 0, grad });
    const targetLosses = out.map((r) => Number(r.details.targetLoss));
    // Wall seconds per run with two workers busy: K runs on 2 cores take K × this.
    const runSeconds = wall / runs;
    const k = kFor(r1, RULE.agreement);
    results.push({
      name: cand.name, why: cand.why, enterAt: cand.enterAt, train: cand.train, runs,
      targetLoss: targetLosses.reduce((a, b) => a + b, 0) / runs, runSeconds,
      splitHalf: agree.splitHalf, r1, meanPairwise: pair / pairs, kFor08: k, costFor08: k * runSeconds,
      roughness: probe.roughness, predictedOverActual: probe.predictedOverActual ?? null,
    });
    console.log(JSON.stringify(results[results.length - 1]));
  }
  const best = Math.min(...results.map((r) => r.targetLoss));
  for (const r of results) {
    r.trained = r.targetLoss <= best + RULE.lossMargin;
    r.smooth = r.predictedOverActual !== null && r.predictedOverActual >= RULE.predictedOverActual[0] && r.predictedOverActual <= RULE.predictedOverActual[1];
  }
  const eligible = results.filter((r) => r.trained && r.smooth).sort((a, b) => a.costFor08 - b.costFor08);
  const cheapest = eligible[0];
  const choice = cheapest
    ? eligible.filter((r) => r.costFor08 <= cheapest.costFor08 * (1 + RULE.tie)).sort((a, b) => b.splitHalf - a.splitHalf)[0]
    : undefined;
  // Seconds per run scale with rows; the default K must fit the cost target on 60,000 rows with 2 workers.
  const perRun60k = choice ? choice.runSeconds * (RULE.referenceRows / poolEx.ids.length) : Infinity;
  const fits = Math.floor(RULE.budgetSeconds / perRun60k / 2) * 2;
  const k = choice ? Math.min(Math.max(4, choice.kFor08 + (choice.kFor08 % 2)), fits) : undefined;
  printTable('Metagradient ensembles (noisy dev pool; the rule reads no noise flag)', results.map((r) => ({
    candidate: r.name, 'enter at': r.enterAt, 'target loss': r.targetLoss, 's/run (2 cores)': r.runSeconds,
    [`split-half (${r.runs / 2} v ${r.runs / 2})`]: r.splitHalf, 'r1 (Spearman-Brown)': r.r1, 'mean pairwise': r.meanPairwise,
    'K for 0.8': r.kFor08, 'seconds for 0.8': r.costFor08, roughness: r.roughness, 'pred/actual': r.predictedOverActual,
    trained: String(r.trained), smooth: String(r.smooth),
  })));
  console.log(`rule: ${choice ? `chose ${choice.name}, K = ${k}${k! < choice.kFor08 ? ` (the 5-minute cost target caps K; 0.8 needs ${choice.kFor08})` : ''}` : 'no candidate is eligible'}`);
  console.log(`backend ${tfb.name}`);
  const file = await writeBenchJson('metagrad-sweep', { ...benchMeta(), rule: RULE, choice: choice?.name, k, results }, values.out);
  console.log(`wrote ${file}`);
}

main().catch((err) => {
  console.error(`metagrad-sweep: ${err instanceof Error ? err.stack : String(err)}`);
  process.exit(exitCodeOf(err));
});
