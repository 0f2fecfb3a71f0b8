import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { BackendError, BackendOutOfMemoryError, backendName, explainBackendAbort, initBackend } from '../../ml/backend.js';
import * as ops from '../../ml/ops.js';
import { kernelPatchesFor } from '../../ml/patches/index.js';
import { runJobs, type TrainJob } from '../../ml/pool.js';
import { describeAdapter, isSoftwareAdapter, webgpuAdapter } from '../../ml/webgpu.js';
import { writeImageDataset } from '../helpers/datasets.js';
import { useTmpDir } from '../helpers/tmp.js';
import { WEBGPU_SKIP } from './backends.js';

function resolvable(spec: string): boolean {
  try {
    createRequire(import.meta.url).resolve(spec);
    return true;
  } catch {
    return false;
  }
}
const nodeBackendInstalled = resolvable('@tensorflow/tfjs-node') || resolvable('@tensorflow/tfjs-node-gpu');
const gpuHardware = await webgpuAdapter().then((a) => !a.software, () => false);

afterEach(() => {
  vi.restoreAllMocks();
});

describe('initBackend', () => {
  it('auto picks the best available backend, once', async () => {
    expect(backendName()).toBeNull();
    const [a, b] = await Promise.all([initBackend(), initBackend('auto')]);
    expect(a).toBe(b);
    // Never a software WebGPU adapter (lavapipe here, when installed).
    expect(a.name).toBe(nodeBackendInstalled ? 'tensorflow' : gpuHardware ? 'webgpu' : 'wasm');
    expect(a.tf.getBackend()).toBe(a.name);
    expect(backendName()).toBe(a.name);
    expect(await initBackend()).toBe(a);
    expect(await initBackend(a.name as 'wasm')).toBe(a);
  });

  it('rejects unknown names with a usage error (exit code 64)', async () => {
    const err = await initBackend('gpu' as never).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect((err as BackendError).exitCode).toBe(64);
    expect((err as Error).message).toMatch(/unknown backend 'gpu'.*auto, tensorflow, webgpu, wasm, cpu/);
  });

  it('explains the wasm module aborting (its heap ran out) as a usage error with a hint; other errors pass through', () => {
    // What the wasm module throws (WebAssembly is not in this project's TypeScript libs).
    const { RuntimeError } = (globalThis as unknown as { WebAssembly: { RuntimeError: ErrorConstructor } }).WebAssembly;
    const abort = new RuntimeError('Aborted(). Build with -sASSERTIONS for more info.');
    const err = explainBackendAbort(abort) as BackendOutOfMemoryError;
    expect(err).toBeInstanceOf(BackendOutOfMemoryError);
    expect(err.exitCode).toBe(64);
    expect(err.message).toMatch(/wasm backend aborted.*memory/);
    expect(err.hint).toMatch(/--nets/);
    expect(err.cause).toBe(abort);
    const other = new RuntimeError('unreachable');
    expect(explainBackendAbort(other)).toBe(other);
    const plain = new Error('Aborted() by a user');
    expect(explainBackendAbort(plain)).toBe(plain);
  });

  it.skipIf(nodeBackendInstalled)('explains a missing tensorflow backend and keeps the current one', async () => {
    const before = await initBackend();
    const err = await initBackend('tensorflow').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect((err as Error).message).toMatch(/@tensorflow\/tfjs-node/);
    expect(tf.getBackend()).toBe(before.name);
    expect(backendName()).toBe(before.name);
  });

  it('switches between explicit backends without console noise, patching each once', async () => {
    const wasm = await initBackend('wasm');
    const patched = kernelPatchesFor('wasm').map((k) => tf.getKernel(k, 'wasm'));
    expect(patched.every((k) => k != null)).toBe(true);
    const warn = vi.spyOn(console, 'warn');
    const log = vi.spyOn(console, 'log');

    const cpu = await initBackend('cpu');
    expect(cpu.name).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(tf.tidy(() => tf.add(tf.tensor1d([1, 2]), 1).arraySync())).toEqual([2, 3]);
    expect(await initBackend('wasm')).toBe(wasm);
    expect(tf.getBackend()).toBe('wasm');
    expect(await initBackend('cpu')).toBe(cpu);
    expect(await initBackend('wasm')).toBe(wasm);

    // Re-initialising did not re-wrap the kernels.
    expect(kernelPatchesFor('wasm').map((k) => tf.getKernel(k, 'wasm'))).toEqual(patched);
    expect(warn).not.toHaveBeenCalled();
    expect(log).not.toHaveBeenCalled();
  });
});

describe('training on the patched wasm backend', () => {
  it('a small ConvNet trains (needs Conv2DBackpropFilter) without leaking tensors', async () => {
    await initBackend('wasm');
    const x = tf.randomNormal([16, 8, 8, 1], 0, 1, 'float32', 1);
    const labels = tf.tensor1d(Array.from({ length: 16 }, (_, i) => i % 2), 'int32');
    // Class 1 gets a brighter centre, so the task is learnable.
    const mask = tf.pad(tf.ones([16, 4, 4, 1]), [[0, 0], [2, 2], [2, 2], [0, 0]]);
    const xs = tf.add(x, tf.mul(mask, tf.reshape(tf.cast(labels, 'float32'), [16, 1, 1, 1])));
    const params = [
      tf.variable(tf.randomNormal([3, 3, 1, 8], 0, 0.3, 'float32', 2)),
      tf.variable(tf.randomNormal([8 * 4 * 4, 2], 0, 0.1, 'float32', 3)),
    ];
    const loss = () => {
      const h = ops.relu(ops.instanceNorm(ops.conv2dSame(xs as tf.Tensor4D, params[0] as tf.Tensor4D)));
      return ops.softmaxCrossEntropy(ops.dense(ops.flatten(ops.avgPool2x2(h)), params[1]!), labels);
    };
    const opt = tf.train.sgd(0.5);
    const step = () => tf.tidy(() => opt.minimize(loss, true)!.dataSync()[0]!);
    const first = step();
    const tensors = tf.memory().numTensors;
    let last = first;
    for (let i = 0; i < 15; i++) last = step();
    expect(tf.memory().numTensors).toBe(tensors);
    expect(last).toBeLessThan(first * 0.5);
    opt.dispose();
    tf.dispose([x, labels, mask, xs, ...params]);
  });
});

describe('the webgpu backend', () => {
  const tmp = useTmpDir();

  it('tells software adapters from GPU hardware', () => {
    const lavapipe = { vendor: 'mesa', architecture: 'software', device: 'llvmpipe-llvm-15', description: 'llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)' };
    const swiftshader = { vendor: 'google', architecture: 'swiftshader', device: '', description: 'SwiftShader Device (Subzero)' };
    const nvidia = { vendor: 'nvidia', architecture: 'hopper', device: '', description: 'NVIDIA H100 80GB HBM3' };
    const radv = { vendor: 'amd', architecture: 'rdna-3', device: '', description: 'AMD Radeon RX 7900 XTX (RADV NAVI31)' };
    expect([lavapipe, swiftshader, nvidia, radv].map((a) => isSoftwareAdapter(a))).toEqual([true, true, false, false]);
    expect(isSoftwareAdapter({ ...nvidia, isFallbackAdapter: true })).toBe(true);
    expect(describeAdapter({ ...lavapipe, software: true })).toBe('llvmpipe: Mesa 25.0.7 (LLVM 15.0.6), software');
    expect(describeAdapter({ ...nvidia, software: false })).toBe('NVIDIA H100 80GB HBM3');
    expect(describeAdapter({ ...radv, description: '', software: false })).toBe('amd rdna-3');
  });

  it.skipIf(WEBGPU_SKIP)('asked for by name, uses any adapter, records it, and reads GPU results synchronously', async () => {
    const adapter = await webgpuAdapter();
    const info = await initBackend('webgpu');
    expect(tf.getBackend()).toBe('webgpu');
    expect(info.adapter).toEqual(adapter);
    expect(info.label).toBe(`webgpu (${describeAdapter(adapter)})`);
    // Computed on the GPU, read with dataSync (stock tfjs-backend-webgpu needs an OffscreenCanvas for that).
    const a = [[1, 2, 3], [4, 5, 6]];
    const b = [[1, 0], [0, 1], [2, -1]];
    const product = tf.tidy(() => tf.matMul(tf.tensor2d(a), tf.tensor2d(b)).arraySync());
    expect(product).toEqual([[7, -1], [16, -1]]);
    expect(tf.tidy(() => Array.from(tf.relu(tf.sub(tf.range(0, 4), 1.5)).dataSync()))).toEqual([0, 0, 0.5, 1.5]);
    expect(await initBackend('wasm')).not.toBe(info);
    expect(await initBackend('webgpu')).toBe(info);
  });

  it.skipIf(WEBGPU_SKIP)('runs in worker threads, one device each, with the results of wasm', async () => {
    const dir = path.join(tmp(), 'train');
    await writeImageDataset(dir, 24, { shape: [4, 4, 1], classes: 3 });
    const job = (seed: number): TrainJob => ({
      kind: 'train', train: { dir }, config: { model: { kind: 'mlp', hidden: [8] }, optimizer: { kind: 'sgd', lr: 0.1 }, epochs: 2, batchSize: 8, seed },
    });
    const [onGpu, onWasm] = [await runJobs([job(1), job(2)], { backend: 'webgpu', size: 2 }), await runJobs([job(1), job(2)], { backend: 'wasm', size: 1 })];
    const label = `webgpu (${describeAdapter(await webgpuAdapter())})`;
    expect(onGpu.map((r) => r.backend)).toEqual([label, label]);
    for (let j = 0; j < 2; j++) {
      const gpu = onGpu[j]!.params.flatMap((p) => Array.from(p));
      const cpu = onWasm[j]!.params.flatMap((p) => Array.from(p));
      expect(gpu.length).toBe(cpu.length);
      expect(Math.max(...gpu.map((v, i) => Math.abs(v - cpu[i]!)))).toBeLessThan(1e-4);
    }
    // Different seeds, different runs: the comparison above is not vacuous.
    expect(onGpu[0]!.params[0]).not.toEqual(onGpu[1]!.params[0]);
  });
});
