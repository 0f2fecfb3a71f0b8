/**
 * Benchmark: the metagradient (REPLAY) against plain training of the same run.
 *
 *   npm run build && node dist/scripts/bench/metagrad.js [--steps 100,400,1600] [--k 4] [--model mlp|convnet] [--out file.json]
 *
 * For each T it runs, each in a fresh child process so peak RSS is its own:
 * plain training for T steps, then the metagradient of the target loss through
 * those T steps three times: through REPLAY's tree with branching factor --k, as
 * by default (every state stored when they fit the budget, else REPLAY's
 * shallowest tree within it), and as by default but with every
 * step reversed by the generic tape instead of the written-out VJP of a dense
 * network's SGD step (MLP only; the ConvNet always uses the tape). It prints wall
 * time, the ratio to training, peak RSS and stored states of each, and writes JSON. Data: the built-in Fashion-MNIST
 * subset (6,000 train; the 1,000 test rows are the target set).
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { benchMeta, printTable, writeBenchJson } from './common.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../../..');

type Mode = 'train' | 'metagrad' | 'replay' | 'tape';

interface ChildResult {
  mode: Mode;
  steps: number;
  seconds: number;
  peakRssMiB: number;
  backend: string;
  peakStoredStates?: number;
  storedAll?: boolean;
  stateMiB?: number;
  depth?: number;
  targetLoss?: number;
  fused?: boolean;
  k?: number;
}

/**
 * train: the run alone; metagrad: the default (every state stored when they fit, else REPLAY);
 * replay: REPLAY's tree always; tape: the default storage, every step reversed by the tape.
 */
async function child(mode: Mode, steps: number, k: number, model: string): Promise<void> {
  const { initBackend } = await import('../../ml/backend.js');
  const { createTrainer } = await import('../../ml/train.js');
  const { makeModel } = await import('../../ml/models.js');
  const { meanCrossEntropyTarget, metagradient } = await import('../../ml/metagrad.js');
  const { loadExamples } = await import('../../data/batch.js');
  const { ingest } = await import('../../stages/ingest.js');
  const { openDataset } = await import('../../data/reader.js');
  const { name: backend } = await initBackend('auto');
  const cache = path.join(root, '.bench', 'data');
  const load = async (split: 'train' | 'test') => {
    const dir = path.join(cache, `builtin-${split}`);
    try {
      return await loadExamples(await openDataset(dir));
    } catch {
      await ingest(path.join(root, 'data/builtin/fashion-mnist'), { out: dir, split, overwrite: true });
      return loadExamples(await openDataset(dir));
    }
  };
  const train = await load('train');
  const target = await load('test');
  // 6,000 rows in batches of 120: 50 steps an epoch, so T = 100/400/1600 are whole epochs.
  const batchSize = 120;
  const perEpoch = Math.ceil(train.ids.length / batchSize);
  const epochs = Math.max(1, Math.round(steps / perEpoch));
  const spec = model === 'convnet'
    ? { kind: 'convnet' as const, width: 32, depth: 3, norm: 'instance' as const, outputScale: 0.1 }
    : { kind: 'mlp' as const, hidden: [256], outputScale: 0.1 };
  const trainer = createTrainer(
    { model: spec, optimizer: { kind: 'sgd', lr: 0.05, momentum: 0.9 }, epochs, batchSize, seed: 0 },
    train,
  );
  const t0 = performance.now();
  const out: ChildResult = { mode, steps: trainer.steps, seconds: 0, peakRssMiB: 0, backend };
  if (mode === 'train') {
    const { params } = await trainer.run();
    params.forEach((p) => p.dispose());
  } else {
    const m = makeModel(spec, { inputShape: train.shape, numClasses: train.numClasses });
    // REPLAY with the k asked for; the default sizes its tree to the budget when the states do not all fit.
    const res = await metagradient(trainer, meanCrossEntropyTarget(m, target), { k: mode === 'replay' ? k : undefined, storeAll: mode !== 'replay', tape: mode === 'tape' });
    out.k = res.stats.k;
    out.fused = res.stats.fused;
    out.storedAll = res.stats.storedAll;
    out.peakStoredStates = res.stats.peakStoredStates;
    out.stateMiB = res.stats.stateBytes / 2 ** 20;
    out.depth = res.stats.depth;
    out.targetLoss = res.targetLoss;
  }
  out.seconds = (performance.now() - t0) / 1000;
  out.peakRssMiB = process.resourceUsage().maxRSS / 1024;
  process.stdout.write(JSON.stringify(out) + '\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      steps: { type: 'string', default: '100,400,1600' },
      k: { type: 'string', default: '16' },
      model: { type: 'string', default: 'mlp' },
      out: { type: 'string' },
      child: { type: 'string' },
    },
  });
  const k = Number(values.k);
  if (values.child) {
    const [mode, steps] = values.child.split(':');
    return child(mode as Mode, Number(steps), k, values.model!);
  }
  const self = fileURLToPath(import.meta.url);
  const rows: Record<string, unknown>[] = [];
  const runs: ChildResult[] = [];
  for (const T of values.steps!.split(',').map(Number)) {
    const run = (mode: string): ChildResult => {
      const stdout = execFileSync(process.execPath, [self, '--child', `${mode}:${T}`, '--k', String(k), '--model', values.model!], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
      return JSON.parse(stdout.trim().split('\n').pop()!);
    };
    const train = run('train');
    const replay = run('replay');
    const mg = run('metagrad');
    const tape = values.model === 'mlp' ? run('tape') : undefined;
    runs.push(train, replay, mg, ...(tape ? [tape] : []));
    rows.push({
      T,
      'train s': train.seconds.toFixed(2),
      'REPLAY s': replay.seconds.toFixed(2),
      'REPLAY ratio': (replay.seconds / train.seconds).toFixed(2),
      'REPLAY RSS MiB': replay.peakRssMiB.toFixed(0),
      'REPLAY states': replay.peakStoredStates,
      'default s': mg.seconds.toFixed(2),
      'default ratio': (mg.seconds / train.seconds).toFixed(2),
      'default RSS MiB': mg.peakRssMiB.toFixed(0),
      'default states': mg.peakStoredStates,
      'stored all': mg.storedAll ? 'yes' : `no: k ${mg.k}, depth ${mg.depth}`,
      VJP: mg.fused ? 'written out' : 'tape',
      'tape s': tape ? tape.seconds.toFixed(2) : '',
      'tape ratio': tape ? (tape.seconds / train.seconds).toFixed(2) : '',
      'train RSS MiB': train.peakRssMiB.toFixed(0),
      'state MiB': mg.stateMiB?.toFixed(2),
      'same φ': replay.targetLoss === mg.targetLoss && (!tape || tape.targetLoss === mg.targetLoss) ? 'yes' : 'no',
    });
  }
  printTable(`metagradient vs training (${values.model}, batch 120, SGD momentum, k=${k}, backend ${runs[0]?.backend})`, rows);
  const file = await writeBenchJson('metagrad', { meta: benchMeta(), k, model: values.model, runs, rows }, values.out);
  console.log(`wrote ${file}`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
