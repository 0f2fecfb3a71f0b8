// Kernel and train-step timings on wasm, stock tfjs vs ml/patches.
// Usage (after `npm run build`): node dist/scripts/bench/kernels.js [--quick] [--out FILE]
// Prints a table and writes JSON (default .bench/kernels.json). Times are
// medians of process CPU time (wasm runs on one thread), which is far more
// stable than wall time on a shared machine; wall time is in the JSON too.
import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import * as ops from '../../ml/ops.js';
import { registerPatches } from '../../ml/patches/index.js';

interface Row {
  name: string;
  variant: 'stock' | 'patched';
  /** Median CPU ms per run. */
  ms: number | null;
  wallMs?: number;
  note?: string;
}

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const outIdx = args.indexOf('--out');
const outFile = outIdx >= 0 ? args[outIdx + 1]! : path.join('.bench', 'kernels.json');
const rows: Row[] = [];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Median CPU and wall ms of `reps` runs after one warm-up. */
function time(f: () => tf.Tensor | tf.Tensor[] | number, reps: number): { cpu: number; wall: number } {
  const once = () => tf.tidy(() => {
    const r = f();
    if (typeof r !== 'number') (Array.isArray(r) ? r : [r]).forEach((t) => t.dataSync());
  });
  once();
  const cpu: number[] = [];
  const wall: number[] = [];
  for (let i = 0; i < reps; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    once();
    wall.push(performance.now() - t0);
    const c = process.cpuUsage(c0);
    cpu.push((c.user + c.system) / 1000);
  }
  return { cpu: median(cpu), wall: median(wall) };
}

function record(name: string, variant: Row['variant'], f: () => tf.Tensor | tf.Tensor[] | number, reps: number): void {
  try {
    const { cpu, wall } = time(f, reps);
    rows.push({ name, variant, ms: cpu, wallMs: wall });
  } catch (e) {
    rows.push({ name, variant, ms: null, note: (e instanceof Error ? e.message : String(e)).split('\n')[0] });
  }
}

const R = quick ? 2 : 5;

function kernels(variant: Row['variant']): void {
  const n = 512;
  const a = tf.randomNormal([n, n], 0, 1, 'float32', 1);
  const b = tf.randomNormal([n, n], 0, 1, 'float32', 2);
  record(`matMul ${n}x${n}`, variant, () => tf.matMul(a, b), R);
  record(`matMul ${n}x${n} transposeA`, variant, () => tf.matMul(a, b, true, false), variant === 'stock' ? 1 : R);
  record(`matMul ${n}x${n} transposeB`, variant, () => tf.matMul(a, b, false, true), variant === 'stock' ? 1 : R);

  const x = tf.randomNormal([128, 28, 28, 32], 0, 1, 'float32', 3);
  const w = tf.randomNormal([3, 3, 32, 32], 0, 0.1, 'float32', 4);
  const y = tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same');
  const tag = 'x[128,28,28,32] f[3,3,32,32] same';
  record(`Conv2D ${tag}`, variant, () => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same'), R);
  record(`Conv2DBackpropInput ${tag}`, variant, () => tf.conv2dTranspose(y, w as tf.Tensor4D, [128, 28, 28, 32], 1, 'same'), variant === 'stock' ? 2 : R);
  record(`Conv2DBackpropFilter ${tag}`, variant, () => tf.engine().runKernel(tf.Conv2DBackpropFilter, { x, dy: y },
    { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 32, 32] }) as tf.Tensor, R);
  const p = tf.avgPool(x as tf.Tensor4D, 2, 2, 'valid');
  record('AvgPoolGrad 2x2/2 x[128,28,28,32]', variant, () => tf.engine().runKernel(tf.AvgPoolGrad, { dy: p, input: x },
    { filterSize: 2, strides: 2, pad: 'valid' }) as tf.Tensor, R);
  const m = tf.maxPool(x as tf.Tensor4D, 2, 2, 'valid');
  record('MaxPoolGrad 2x2/2 x[128,28,28,32]', variant, () => tf.engine().runKernel(tf.MaxPoolGrad, { dy: m, input: x, output: m },
    { filterSize: 2, strides: 2, pad: 'valid' }) as tf.Tensor, R);
  tf.dispose([a, b, x, w, y, p, m]);
}

function steps(variant: Row['variant']): void {
  const B = 128;
  // MLP 784-256-10, plain SGD.
  const xm = tf.randomNormal([B, 784], 0, 1, 'float32', 5);
  const ym = tf.tensor1d(Array.from({ length: B }, (_, i) => i % 10), 'int32');
  const mlp = [tf.randomNormal([784, 256], 0, 0.05), tf.zeros([256]), tf.randomNormal([256, 10], 0, 0.05), tf.zeros([10])].map((t) => tf.variable(t));
  const mlpLoss = (p: tf.Tensor[]) => ops.softmaxCrossEntropy(ops.dense(ops.relu(ops.dense(xm, p[0]!, p[1]!)), p[2]!, p[3]!), ym);
  const sgd = (params: tf.Variable[], loss: (p: tf.Tensor[]) => tf.Scalar) => () => {
    const { value, grads } = tf.variableGrads(() => loss(params), params);
    params.forEach((v) => v.assign(tf.sub(v, tf.mul(0.01, grads[v.name]!))));
    return value;
  };
  const hvp = (params: tf.Tensor[], loss: (p: tf.Tensor[]) => tf.Scalar) => () => {
    const vs = params.map((q) => tf.onesLike(q));
    return tf.grads((...q: tf.Tensor[]) => {
      const gs = tf.grads((...r: tf.Tensor[]) => loss(r))(q);
      return ops.addAll(gs.map((g, i) => tf.sum(tf.mul(g, vs[i]!))));
    })(params);
  };
  record('MLP 784-256-10 SGD step, batch 128', variant, sgd(mlp, mlpLoss), quick ? 3 : 10);
  record('MLP 784-256-10 Hessian-vector product, batch 128', variant, hvp(mlp, mlpLoss), R);

  // ConvNet: conv3x3 -> instance norm -> relu -> avgpool, twice, then dense.
  const xc = tf.randomNormal([B, 28, 28, 1], 0, 1, 'float32', 6) as tf.Tensor4D;
  const conv = [tf.randomNormal([3, 3, 1, 32], 0, 0.3), tf.randomNormal([3, 3, 32, 64], 0, 0.06), tf.randomNormal([7 * 7 * 64, 10], 0, 0.02), tf.zeros([10])]
    .map((t) => tf.variable(t));
  const convLoss = (p: tf.Tensor[]) => {
    let h = ops.avgPool2x2(ops.relu(ops.instanceNorm(ops.conv2dSame(xc, p[0] as tf.Tensor4D))));
    h = ops.avgPool2x2(ops.relu(ops.instanceNorm(ops.conv2dSame(h, p[1] as tf.Tensor4D))));
    return ops.softmaxCrossEntropy(ops.dense(ops.flatten(h), p[2]!, p[3]!), ym);
  };
  record('ConvNet (2x conv32/64+IN+relu+avgpool, dense) SGD step, batch 128', variant, sgd(conv, convLoss), R);
  if (variant === 'patched') record('ConvNet Hessian-vector product, batch 128', variant, hvp(conv, convLoss), quick ? 1 : 3);
  tf.dispose([xm, ym, xc, ...mlp, ...conv]);
}

async function main(): Promise<void> {
  setWasmPaths(path.dirname(createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm')) + '/');
  if (!(await tf.setBackend('wasm'))) throw new Error('wasm backend unavailable');
  kernels('stock');
  steps('stock');
  registerPatches('wasm');
  kernels('patched');
  steps('patched');

  const names = [...new Set(rows.map((r) => r.name))];
  const fmt = (r?: Row) => (r == null ? '-' : r.ms == null ? 'fails' : r.ms.toFixed(1));
  console.log(`${'benchmark (wasm, CPU ms, median)'.padEnd(72)} ${'stock'.padStart(9)} ${'patched'.padStart(9)} ${'speedup'.padStart(8)}`);
  for (const name of names) {
    const s = rows.find((r) => r.name === name && r.variant === 'stock');
    const p = rows.find((r) => r.name === name && r.variant === 'patched');
    const speed = s?.ms != null && p?.ms != null ? `${(s.ms / p.ms).toFixed(1)}x` : '';
    console.log(`${name.padEnd(72)} ${fmt(s).padStart(9)} ${fmt(p).padStart(9)} ${speed.padStart(8)}`);
  }
  for (const r of rows.filter((x) => x.note != null)) console.log(`  ${r.variant} ${r.name}: ${r.note}`);
  mkdirSync(path.dirname(outFile), { recursive: true });
  writeFileSync(outFile, JSON.stringify({ backend: 'wasm', tfjs: tf.version_core, quick, date: new Date().toISOString(), rows }, null, 2) + '\n');
  console.log(`wrote ${outFile}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 70;
});
