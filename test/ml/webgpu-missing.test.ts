// Without the optional webgpu packages: `auto` goes on to the next backend, and
// asking for webgpu is a usage error that says what to install.
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it, vi } from 'vitest';
import { BackendError, backendName, initBackend } from '../../ml/backend.js';

const dawn = vi.hoisted(() => ({ imports: 0 }));
vi.mock('webgpu', () => {
  dawn.imports++;
  throw new Error("Cannot find package 'webgpu'");
});
// As on a machine with a GPU, so that `auto` gets as far as importing Dawn.
vi.mock('../../ml/webgpu.js', async (original) => ({ ...(await original<object>()), gpuDevicePresent: () => true }));

describe('webgpu without its optional packages', () => {
  it('auto tries it and goes on to the next backend', async () => {
    expect(backendName()).toBeNull();
    const chosen = await initBackend('auto');
    expect(dawn.imports).toBe(1);
    expect(['tensorflow', 'wasm']).toContain(chosen.name);
  });

  it('asked for by name, fails with exit code 64, naming the packages, the driver and the docs; the current backend stays', async () => {
    await initBackend('cpu');
    const err = await initBackend('webgpu').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect((err as BackendError).exitCode).toBe(64);
    const message = (err as Error).message;
    expect(message).toMatch(/backend 'webgpu' is not available: the optional package webgpu could not be loaded/);
    expect(message).toMatch(/needs the optional packages webgpu and @tensorflow\/tfjs-backend-webgpu .*and a Vulkan driver/);
    expect(message).toMatch(/scripts\/install-vulkan\.sh.*docs\/tfjs\.md#webgpu/);
    expect(tf.getBackend()).toBe('cpu');
  });
});
