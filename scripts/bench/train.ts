/**
 * Benchmark: training throughput of the trainer (ml/train.ts) on wasm, beside
 * PyTorch CPU on the same model and batch size (issue 3).
 *
 *   npm run build && node dist/scripts/bench/train.js [--quick] [--out FILE]
 *       [--models mlp,convnet-w32,convnet-w128] [--no-stock] [--no-webgpu] [--no-torch] [--no-parallel] [--python /usr/bin/python3]
 *
 * Models, all at batch 128 on synthetic Fashion-MNIST-shaped data (28×28×1,
 * 10 classes, seeded, generated in memory: no download), SGD lr 0.01 momentum 0.9:
 *   mlp           MLP 784-256-10
 *   convnet-w32   DC-bench ConvNet, width 32, depth 3, instance norm, avg pool
 *   convnet-w128  the same at width 128 (the DC-bench default; slow on wasm)
 *
 * Each measurement runs in a fresh child process: `trainer.run()` over warm-up +
 * timed steps, timing the timed steps only (examples/s = batch × steps / seconds).
 * "stock" is the same run on wasm without the kernel patches of ml/patches
 * (the gradient patches stay: the trainer's ops need them); stock wasm has no
 * Conv2DBackpropFilter kernel, so conv nets fail there. "webgpu" is the same
 * run on the webgpu backend when it has an adapter (optional packages and a
 * Vulkan driver; see docs/tfjs.md). On a software adapter (Mesa's lavapipe) its
 * column is marked as CPU emulation: such numbers say nothing about a GPU.
 * PyTorch runs through
 * scripts/bench/torch_train.py with one thread per core and with one thread;
 * wasm in Node is single-threaded, so "ours/torch 1t" is the per-core
 * comparison. A second table divides by the process's CPU time instead of wall
 * time: for the single-threaded runs it estimates idle-machine throughput when
 * other work shares the cores. Install PyTorch with scripts/install-torch
 * (python3-torch + OpenBLAS); without it the torch columns stay empty. The
 * machine load (1-minute load average) is recorded beside every number:
 * measure on an idle machine when you can.
 *
 * "parallel" is one run on every core (ml/data-parallel.ts): each batch cut into
 * one slice per core, one worker thread per slice, from a dataset written to a
 * temporary folder. It is compared with PyTorch at the same thread count and
 * with the one-thread run ("parallel ×").
 *
 * Prints a table and writes JSON (default .bench/train.json).
 */
import { execFileSync } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { exitCodeOf, UsageError } from '../../core/errors.js';
import { Rng } from '../../core/rng.js';
import type { Examples } from '../../data/batch.js';
import type { ModelSpec } from '../../ml/models.js';
import { describeAdapter, webgpuAdapter } from '../../ml/webgpu.js';
import { benchMeta, printTable, writeBenchJson } from './common.js';

const here = path.dirname(fileURLToPath(import.meta.url));
// dist/scripts/bench → the repository root (torch_train.py is not compiled).
const root = path.resolve(here, '../../..');
const TORCH_SCRIPT = path.join(root, 'scripts', 'bench', 'torch_train.py');
const BATCH = 128;
const SEED = 0;

interface Case {
  name: string;
  label: string;
  model: ModelSpec;
  /** torch_train.py arguments selecting the same model. */
  torchArgs: string[];
  warmup: number;
  steps: number;
  quickSteps: number;
}

const CASES: Case[] = [
  {
    name: 'mlp', label: 'MLP 784-256-10',
    model: { kind: 'mlp', hidden: [256] },
    torchArgs: ['--model', 'mlp'],
    warmup: 5, steps: 50, quickSteps: 15,
  },
  {
    name: 'convnet-w32', label: 'ConvNet w32 d3 IN avgpool',
    model: { kind: 'convnet', width: 32, depth: 3, norm: 'instance' },
    torchArgs: ['--model', 'convnet', '--width', '32', '--depth', '3'],
    warmup: 2, steps: 20, quickSteps: 5,
  },
  {
    name: 'convnet-w128', label: 'ConvNet w128 d3 IN avgpool',
    model: { kind: 'convnet', width: 128, depth: 3, norm: 'instance' },
    torchArgs: ['--model', 'convnet', '--width', '128', '--depth', '3'],
    warmup: 1, steps: 8, quickSteps: 2,
  },
];

type Variant = 'patched' | 'stock' | 'webgpu' | 'parallel';

interface OursResult {
  variant: Variant;
  backend: string;
  steps: number;
  seconds: number | null;
  msPerStep: number | null;
  examplesPerSec: number | null;
  /** Examples per CPU-second of the process (user + system): less sensitive to other load than wall time. */
  examplesPerCpuSec: number | null;
  lastLoss: number | null;
  /** webgpu: the adapter is a CPU emulation (lavapipe), so the numbers are not GPU numbers. */
  software?: boolean;
  /** Why the run failed (stock wasm lacks kernels). */
  error?: string;
  load1m: number;
}

interface TorchResult {
  threads: number;
  steps: number;
  seconds: number;
  msPerStep: number;
  examplesPerSec: number;
  examplesPerCpuSec: number;
  lastLoss: number;
  torch: string;
  /** The BLAS library torch loaded (its Linear layers use it). */
  blas: string | null;
  load1m: number;
}

/** Fashion-MNIST-shaped data: a random uint8 template per class plus Gaussian noise (σ 40), seeded. */
function syntheticExamples(n: number, seed: number): Examples {
  const H = 28;
  const W = 28;
  const K = 10;
  const len = H * W;
  const rng = Rng.derive(seed, 'bench/train');
  const templates = Float32Array.from({ length: K * len }, () => rng.next() * 255);
  const labels = Int32Array.from({ length: n }, () => rng.int(K));
  const pixels = new Uint8Array(n * len);
  for (let i = 0; i < n; i++) {
    const t = labels[i] * len;
    for (let j = 0; j < len; j++) {
      pixels[i * len + j] = Math.min(255, Math.max(0, Math.round(templates[t + j] + 40 * rng.normal())));
    }
  }
  return {
    ids: Array.from({ length: n }, (_, i) => `synthetic-${i}`),
    pixels,
    shape: [H, W, 1],
    labels,
    numClasses: K,
    classNames: Array.from({ length: K }, (_, k) => `class${k}`),
  };
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0];
}

/** Child process: one training run of `c` on wasm (stock or patched) or webgpu; prints an OursResult as JSON. */
async function child(c: Case, variant: Variant, steps: number): Promise<void> {
  if (variant === 'parallel') return childParallel(c, steps);
  const tf = await import('@tensorflow/tfjs');
  const { createTrainer } = await import('../../ml/train.js');
  let backend: string;
  let software: boolean | undefined;
  if (variant !== 'stock') {
    const { initBackend } = await import('../../ml/backend.js');
    const info = await initBackend(variant === 'webgpu' ? 'webgpu' : 'wasm');
    backend = info.label;
    software = info.adapter?.software;
  } else {
    // Stock wasm: the same backend, without ml/backend.ts registering kernel patches.
    const { setWasmPaths } = await import('@tensorflow/tfjs-backend-wasm');
    setWasmPaths(path.dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm')) + '/');
    if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend is unavailable');
    backend = 'wasm (stock kernels)';
  }
  const total = c.warmup + steps;
  const trainer = createTrainer(
    {
      model: c.model,
      optimizer: { kind: 'sgd', lr: 0.01, momentum: 0.9 },
      epochs: 1,
      batchSize: BATCH,
      seed: SEED,
      dropLast: true,
    },
    syntheticExamples(BATCH * total, SEED),
  );
  // onStep runs after the step's loss is read back, i.e. after the step's work is done.
  let wall0 = 0;
  let cpu0 = process.cpuUsage();
  let wall = 0;
  let cpu = 0;
  let lastLoss: number | null = null;
  const out: OursResult = {
    variant, backend, steps, seconds: null, msPerStep: null, examplesPerSec: null, examplesPerCpuSec: null, lastLoss: null,
    software, load1m: os.loadavg()[0],
  };
  try {
    const { params } = await trainer.run({
      onStep: (t, loss) => {
        if (t === c.warmup - 1) {
          wall0 = performance.now();
          cpu0 = process.cpuUsage();
        } else if (t === total - 1) {
          wall = (performance.now() - wall0) / 1000;
          const d = process.cpuUsage(cpu0);
          cpu = (d.user + d.system) / 1e6;
        }
        lastLoss = loss;
      },
    });
    tf.dispose(params);
    Object.assign(out, {
      seconds: wall, msPerStep: (1000 * wall) / steps, examplesPerSec: (BATCH * steps) / wall, examplesPerCpuSec: (BATCH * steps) / cpu, lastLoss,
    });
  } catch (e) {
    out.error = firstLine(e);
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

/** Child process: the same run with each batch's slices spread over one worker thread per core. */
async function childParallel(c: Case, steps: number): Promise<void> {
  const { trainDataParallel } = await import('../../ml/data-parallel.js');
  const { writeDataset } = await import('../../data/writer.js');
  const threads = os.availableParallelism();
  const total = c.warmup + steps;
  const ex = syntheticExamples(BATCH * total, SEED);
  const len = 28 * 28;
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'metacurate-bench-train-'));
  const out: OursResult = {
    variant: 'parallel', backend: `wasm, ${threads} worker threads`, steps, seconds: null, msPerStep: null, examplesPerSec: null,
    examplesPerCpuSec: null, lastLoss: null, load1m: os.loadavg()[0],
  };
  try {
    await writeDataset(path.join(dir, 'data'), ex.ids.map((id, i) => ({ id, label: ex.labels![i], pixels: (ex.pixels as Uint8Array).subarray(i * len, (i + 1) * len) })), {
      columns: [
        { name: 'id', kind: 'string' },
        { name: 'label', kind: 'classLabel', names: ex.classNames },
        { name: 'pixels', kind: 'uint8Vector', length: len },
      ],
      pixelShape: [28, 28, 1],
      meta: { stage: 'bench', stageVersion: '1', options: {}, parents: [] },
    });
    let wall0 = 0;
    let cpu0 = process.cpuUsage();
    await trainDataParallel({
      model: c.model, optimizer: { kind: 'sgd', lr: 0.01, momentum: 0.9 }, epochs: 1, batchSize: BATCH, seed: SEED, dropLast: true, slices: threads,
    }, { dir: path.join(dir, 'data') }, {
      threads,
      backend: 'wasm',
      onStep: (t, loss) => {
        if (t === c.warmup - 1) {
          wall0 = performance.now();
          cpu0 = process.cpuUsage();
        } else if (t === total - 1) {
          const wall = (performance.now() - wall0) / 1000;
          const d = process.cpuUsage(cpu0);
          Object.assign(out, {
            seconds: wall, msPerStep: (1000 * wall) / steps, examplesPerSec: (BATCH * steps) / wall,
            examplesPerCpuSec: (BATCH * steps) / ((d.user + d.system) / 1e6), lastLoss: loss,
          });
        }
      },
    });
  } catch (e) {
    out.error = firstLine(e);
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

/** The last line of a child's stdout, parsed. */
function runJson<T>(file: string, args: string[]): T {
  const stdout = execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 24 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as T;
}

/** torch's version and default thread count, or null when `python` cannot import torch. */
function torchAvailable(python: string): { version: string; defaultThreads: number } | null {
  try {
    const out = execFileSync(python, ['-c', 'import torch; print(torch.__version__, torch.get_num_threads())'],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split(' ');
    return { version: out[0], defaultThreads: Number(out[1]) };
  } catch {
    return null;
  }
}

const round = (v: number | null | undefined, digits = 0): number | null =>
  v == null ? null : Number(v.toFixed(digits));
const ratio = (a: number | null | undefined, b: number | null | undefined): number | null =>
  a == null || b == null ? null : round(a / b, 2);

const OPTIONS = {
  quick: { type: 'boolean', default: false },
  out: { type: 'string' },
  models: { type: 'string', default: CASES.map((c) => c.name).join(',') },
  'no-stock': { type: 'boolean', default: false },
  'no-webgpu': { type: 'boolean', default: false },
  'no-torch': { type: 'boolean', default: false },
  'no-parallel': { type: 'boolean', default: false },
  python: { type: 'string', default: '/usr/bin/python3' },
  // Internal: the child-process mode.
  child: { type: 'string' },
  steps: { type: 'string' },
} as const;

async function main(): Promise<void> {
  let values: ReturnType<typeof parseArgs<{ options: typeof OPTIONS }>>['values'];
  try {
    ({ values } = parseArgs({ options: OPTIONS }));
  } catch (e) {
    throw new UsageError(firstLine(e), { hint: 'Options: --quick, --out FILE, --models LIST, --no-stock, --no-webgpu, --no-torch, --no-parallel, --python PATH' });
  }
  const names = values.models!.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const cases = names.map((n) => {
    const c = CASES.find((x) => x.name === n);
    if (!c) throw new UsageError(`unknown model '${n}'`, { hint: `Use --models with some of: ${CASES.map((x) => x.name).join(', ')}` });
    return c;
  });

  if (values.child) {
    const [name, variant] = values.child.split(':');
    return child(cases.find((c) => c.name === name)!, variant as Variant, Number(values.steps));
  }

  const self = fileURLToPath(import.meta.url);
  const python = values.python!;
  const torchInfo = values['no-torch'] ? null : torchAvailable(python);
  if (!values['no-torch'] && torchInfo == null) {
    console.log(`PyTorch is not importable by ${python}: skipping the torch columns (install it with scripts/install-torch).`);
  }
  const webgpu = values['no-webgpu'] ? null : await webgpuAdapter().catch((e: unknown) => {
    console.log(`webgpu is unavailable: skipping its column (${firstLine(e)}; see docs/tfjs.md#webgpu).`);
    return null;
  });
  const webgpuColumn = webgpu?.software ? 'webgpu ex/s (CPU-emulated, not a GPU)' : 'webgpu ex/s';
  const loadStart = os.loadavg();
  console.log(`load average at start: ${loadStart.map((l) => l.toFixed(2)).join(', ')} on ${os.cpus().length} cores`);

  const results: { case: string; label: string; steps: number; warmup: number; ours: OursResult[]; torch: TorchResult[] }[] = [];
  const rows: Record<string, unknown>[] = [];
  const cpuRows: Record<string, unknown>[] = [];
  for (const c of cases) {
    const steps = values.quick ? c.quickSteps : c.steps;
    const variants: Variant[] = ['patched', ...(values['no-stock'] ? [] : ['stock'] as const), ...(webgpu ? ['webgpu'] as const : []),
      ...(values['no-parallel'] || os.availableParallelism() < 2 ? [] : ['parallel'] as const)];
    const ours = variants.map((v) => {
      process.stderr.write(`${c.name}: ${v === 'webgpu' || v === 'parallel' ? v : `wasm ${v}`}, ${c.warmup} + ${steps} steps ...\n`);
      return runJson<OursResult>(process.execPath, [self, '--child', `${c.name}:${v}`, '--models', c.name, '--steps', String(steps)]);
    });
    const torch: TorchResult[] = [];
    if (torchInfo != null) {
      // One thread per core (torch's default thread count varies by build), then one thread.
      for (const threads of [...new Set([os.cpus().length, 1])]) {
        process.stderr.write(`${c.name}: torch, ${threads} thread(s) ...\n`);
        const load1m = os.loadavg()[0];
        try {
          const r = runJson<Omit<TorchResult, 'load1m'>>(python, [TORCH_SCRIPT, ...c.torchArgs, '--batch', String(BATCH),
            '--steps', String(steps), '--warmup', String(c.warmup), '--threads', String(threads), '--seed', String(SEED)]);
          torch.push({ ...r, load1m });
        } catch (e) {
          // The reference is optional: report and keep the wasm numbers.
          console.log(`  ${c.name}: torch with ${threads} thread(s) failed: ${firstLine(e)}`);
        }
      }
    }
    results.push({ case: c.name, label: c.label, steps, warmup: c.warmup, ours, torch });

    const patched = ours.find((o) => o.variant === 'patched');
    const stock = ours.find((o) => o.variant === 'stock');
    const gpu = ours.find((o) => o.variant === 'webgpu');
    const parallel = ours.find((o) => o.variant === 'parallel');
    const tOne = torch.find((t) => t.threads === 1);
    const tAll = torch.find((t) => t.threads > 1);
    const tAllName = `torch ${os.cpus().length}t`;
    rows.push({
      model: c.label,
      steps,
      'wasm ms/step': round(patched?.msPerStep, 1),
      'wasm ex/s': round(patched?.examplesPerSec),
      'stock ex/s': stock == null ? null : stock.error != null ? 'fails' : round(stock.examplesPerSec),
      'patches ×': ratio(patched?.examplesPerSec, stock?.examplesPerSec),
      ...(webgpu ? { [webgpuColumn]: gpu?.error != null ? 'fails' : round(gpu?.examplesPerSec) } : {}),
      [`${tAllName} ex/s`]: round(tAll?.examplesPerSec),
      'torch 1t ex/s': round(tOne?.examplesPerSec),
      [`ours/${tAllName}`]: ratio(patched?.examplesPerSec, tAll?.examplesPerSec),
      'ours/torch 1t': ratio(patched?.examplesPerSec, tOne?.examplesPerSec),
      ...(parallel ? {
        [`wasm ${os.availableParallelism()}t ex/s`]: parallel.error != null ? 'fails' : round(parallel.examplesPerSec),
        'parallel ×': ratio(parallel.examplesPerSec, patched?.examplesPerSec),
        [`parallel/${tAllName}`]: ratio(parallel.examplesPerSec, tAll?.examplesPerSec),
      } : {}),
      'load 1m': round(patched?.load1m, 1),
    });
    cpuRows.push({
      model: c.label,
      'wasm ex/cpu-s': round(patched?.examplesPerCpuSec),
      'stock ex/cpu-s': stock == null ? null : stock.error != null ? 'fails' : round(stock.examplesPerCpuSec),
      'patches ×': ratio(patched?.examplesPerCpuSec, stock?.examplesPerCpuSec),
      'torch 1t ex/cpu-s': round(tOne?.examplesPerCpuSec),
      'ours/torch 1t': ratio(patched?.examplesPerCpuSec, tOne?.examplesPerCpuSec),
    });
  }
  const loadEnd = os.loadavg();

  const torchNote = torchInfo == null ? (values['no-torch'] ? 'torch skipped' : 'torch not installed') : `torch ${torchInfo.version}, its default here: ${torchInfo.defaultThreads} thread(s)`;
  printTable(`training throughput, batch ${BATCH}, SGD momentum, examples/s of wall time (wasm single-threaded; ${torchNote})`, rows);
  if (webgpu?.software) {
    console.log(`  webgpu ran on a software adapter (${describeAdapter(webgpu)}), which emulates a GPU on these CPUs:`
      + ' its numbers say nothing about GPU speed (the adapter is there for correctness tests)\n');
  }
  printTable('the same per CPU-second of the process (single-threaded runs: a load-robust per-core comparison)', cpuRows);
  const blas = results.flatMap((r) => r.torch.map((t) => t.blas)).find((b) => b != null);
  if (blas != null && !/openblas|mkl|blis|atlas/i.test(blas)) {
    console.log(`  torch loaded ${blas}: likely the slow reference BLAS, which slows its Linear layers; see scripts/install-torch`);
  }
  for (const r of results) {
    for (const o of r.ours) if (o.error != null) console.log(`  ${r.case} ${o.variant}: ${o.error}`);
  }
  console.log(`load average at end: ${loadEnd.map((l) => l.toFixed(2)).join(', ')} (other work on the machine slows every column)`);
  if (Math.max(loadStart[0], loadEnd[0]) > os.cpus().length) {
    console.log('  the machine was busy (load > cores): multi-threaded torch (OpenMP) swings widely under contention;'
      + ' trust the 1-thread and CPU-time columns');
  }
  const file = await writeBenchJson('train', {
    meta: benchMeta(),
    quick: values.quick,
    batch: BATCH,
    optimizer: { kind: 'sgd', lr: 0.01, momentum: 0.9 },
    data: 'synthetic 28x28x1, 10 classes (class template + noise), seeded',
    torch: torchInfo,
    webgpu: webgpu && { adapter: describeAdapter(webgpu), software: webgpu.software },
    loadAverage: { start: loadStart, end: loadEnd },
    results,
    rows,
    cpuRows,
  }, values.out);
  console.log(`wrote ${file}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(exitCodeOf(err));
});
