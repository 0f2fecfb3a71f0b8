// Backend selection: tensorflow (tfjs-node[-gpu], optional) > webgpu (optional,
// GPU hardware only) > wasm > cpu. Every backend gets the gradient patches; wasm
// also gets kernel patches (see ml/patches/). Call initBackend() before building tensors.
import { createRequire } from 'node:module';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { registerPatches } from './patches/index.js';
import { WEBGPU_HINT, describeAdapter, gpuDevicePresent, registerWebgpuBackend, webgpuAdapter, type GpuAdapterInfo } from './webgpu.js';
import { UsageError } from '../core/errors.js';

export type BackendName = 'tensorflow' | 'webgpu' | 'wasm' | 'cpu';
export type BackendRequest = 'auto' | BackendName;

export interface BackendInfo {
  name: string;
  /** What summaries record: the name, and for webgpu its adapter ("webgpu (llvmpipe: Mesa …, software)"). */
  label: string;
  /** The webgpu backend's adapter. */
  adapter?: GpuAdapterInfo;
  tf: typeof import('@tensorflow/tfjs');
}

/** An unknown or unavailable backend was asked for (a usage error, exit 64). */
export class BackendError extends UsageError {
  constructor(message: string, options?: { cause?: unknown; hint?: string }) {
    super(message, { cause: options?.cause, hint: options?.hint });
  }
}

/**
 * The wasm module aborted. It says only "Aborted()"; in practice its heap (at most
 * 4 GiB) ran out, e.g. distilling 50 images a class with 4 random nets at once.
 */
export class BackendOutOfMemoryError extends UsageError {
  constructor(cause: unknown) {
    super('the wasm backend aborted: most likely its memory (at most 4 GiB) ran out', {
      cause,
      hint: 'Use smaller settings (distill: fewer --nets, a smaller --batch-size or --ipc; evaluate/score: a smaller batch size), or the tensorflow backend (@tensorflow/tfjs-node)',
    });
  }
}

/** `err` as a clear error when it is the wasm module aborting, else `err` itself. */
export function explainBackendAbort(err: unknown): unknown {
  const aborted = err instanceof Error && err.name === 'RuntimeError' && /^Aborted\(/.test(err.message);
  return aborted ? new BackendOutOfMemoryError(err) : err;
}

const PREFERENCE: readonly BackendName[] = ['tensorflow', 'webgpu', 'wasm', 'cpu'];
/** What `--backend` (and a pipeline's `backend:`) accepts. */
export const BACKEND_REQUESTS = ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'] as const satisfies readonly BackendRequest[];
const REQUESTS: readonly string[] = BACKEND_REQUESTS;
// Optional packages: computed specifiers so TypeScript does not need them installed.
const NODE_PACKAGES = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'];
/** What to do when a backend asked for by name is unavailable. */
const HINTS: Partial<Record<BackendName, string>> = {
  tensorflow: 'Install @tensorflow/tfjs-node or @tensorflow/tfjs-node-gpu, or use --backend wasm',
  webgpu: `${WEBGPU_HINT}. Or use --backend wasm`,
};

const infos = new Map<string, BackendInfo>();
let current: BackendInfo | null = null;
let queue: Promise<unknown> = Promise.resolve();
let wasmPathsSet = false;

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

async function loadTensorflow(): Promise<void> {
  if (tf.findBackendFactory('tensorflow') != null) return;
  const failures: string[] = [];
  for (const spec of NODE_PACKAGES) {
    try {
      await import(spec);
    } catch (e) {
      failures.push(`${spec}: ${errorMessage(e).split('\n')[0]}`);
      continue;
    }
    if (tf.findBackendFactory('tensorflow') != null) return;
    failures.push(`${spec} loaded but registered no 'tensorflow' backend with this @tensorflow/tfjs (version mismatch?)`);
  }
  throw new Error(failures.join('; '));
}

function wasmDistDir(): string {
  // The .wasm binaries ship next to the package's main file (dist/).
  const main = createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm');
  return path.dirname(main) + '/';
}

/** The webgpu adapter, once its packages are loaded; `auto` takes GPU hardware only. */
async function prepareWebgpu(auto: boolean): Promise<GpuAdapterInfo> {
  if (auto && !gpuDevicePresent()) throw new Error('this machine shows no GPU device (/dev/dri/renderD*, /dev/nvidia*)');
  const adapter = await webgpuAdapter();
  if (auto && adapter.software) {
    throw new Error(`its adapter is a software rasteriser (${describeAdapter(adapter)}), for correctness tests only; ask for --backend webgpu to use it anyway`);
  }
  await registerWebgpuBackend();
  return adapter;
}

async function activate(name: BackendName, auto = false): Promise<BackendInfo> {
  if (name === 'tensorflow') await loadTensorflow();
  const adapter = name === 'webgpu' ? await prepareWebgpu(auto) : undefined;
  if (name === 'wasm' && !wasmPathsSet) {
    setWasmPaths(wasmDistDir());
    wasmPathsSet = true;
  }
  let ok: boolean;
  try {
    ok = await tf.setBackend(name);
  } catch (e) {
    throw new Error(errorMessage(e));
  }
  if (!ok || tf.getBackend() !== name) throw new Error(`tfjs could not initialise the '${name}' backend`);
  await tf.ready();
  if (name === 'cpu') {
    // The cpu backend's first write prints "install tfjs-node to speed things up";
    // initBackend has already tried that, and reports the backend it chose.
    const b = tf.backend() as unknown as { firstUse?: boolean };
    if (b.firstUse === true) b.firstUse = false;
  }
  registerPatches(name);
  let info = infos.get(name);
  if (info == null) {
    info = { name, label: adapter ? `${name} (${describeAdapter(adapter)})` : name, adapter, tf };
    infos.set(name, info);
  }
  current = info;
  return info;
}

async function init(requested: BackendRequest): Promise<BackendInfo> {
  if (requested === 'auto') {
    if (current != null && tf.getBackend() === current.name) return current;
    const failures: string[] = [];
    for (const name of PREFERENCE) {
      try {
        return await activate(name, true);
      } catch (e) {
        failures.push(`${name}: ${errorMessage(e)}`);
      }
    }
    throw new BackendError(`no usable tfjs backend (${failures.join('; ')})`);
  }
  if (current?.name === requested && tf.getBackend() === requested) return current;
  try {
    return await activate(requested);
  } catch (e) {
    throw new BackendError(`backend '${requested}' is not available: ${errorMessage(e)}`, { cause: e, hint: HINTS[requested] });
  }
}

/**
 * Selects and initialises a backend and registers the patches for it.
 * 'auto' picks the best available the first time and afterwards returns the
 * active one; an explicit name switches to that backend. Repeated calls return
 * the same BackendInfo object. Concurrent calls are serialised.
 */
export async function initBackend(requested: BackendRequest = 'auto'): Promise<BackendInfo> {
  if (typeof requested !== 'string' || !REQUESTS.includes(requested)) {
    throw new BackendError(`unknown backend '${String(requested)}': expected one of ${REQUESTS.join(', ')}`);
  }
  const next = queue.then(() => init(requested));
  queue = next.catch(() => undefined);
  return next;
}

/** Name of the backend chosen by initBackend, or null before the first call. */
export function backendName(): string | null {
  return current?.name ?? null;
}

/**
 * Whether `request` trains on the native backend (tfjs-node), where long
 * protocols are affordable: asked for by name, or `auto` with its package
 * installed. Decided without loading any backend, so a stage's plan (and its
 * fingerprint) can depend on it.
 */
export function trainsNatively(request: BackendRequest): boolean {
  if (request === 'tensorflow') return true;
  if (request !== 'auto') return false;
  const require = createRequire(import.meta.url);
  return NODE_PACKAGES.some((spec) => {
    try {
      require.resolve(spec);
      return true;
    } catch {
      return false;
    }
  });
}
