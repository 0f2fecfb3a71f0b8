// The webgpu backend's setup. Dawn's Node binding (npm `webgpu`) provides
// navigator.gpu, and @tensorflow/tfjs-backend-webgpu registers a tfjs backend on
// it. Both are optional dependencies, imported on first use with computed
// specifiers, so neither the build nor `npm ci` needs them.
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';

/** The optional packages the webgpu backend needs (Dawn's binding first). */
export const WEBGPU_PACKAGES = ['webgpu', '@tensorflow/tfjs-backend-webgpu'] as const;

/** What to do when the webgpu backend is unavailable (error hints, test skip notices). */
export const WEBGPU_HINT = `The webgpu backend needs the optional packages ${WEBGPU_PACKAGES.join(' and ')} `
  + `(npm install ${WEBGPU_PACKAGES.join(' ')}) and a Vulkan driver: the GPU's, or for correctness tests Mesa's `
  + 'software one (as root: scripts/install-vulkan.sh, in the metacurate repository); see docs/tfjs.md#webgpu';

/** The adapter Dawn offers, as its info describes it. */
export interface GpuAdapterInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A CPU emulation (Mesa's llvmpipe/lavapipe, SwiftShader, a fallback adapter): right numbers, no GPU speed. */
  software: boolean;
}

const SOFTWARE_NAMES = /llvmpipe|lavapipe|softpipe|swiftshader/i;

/** Whether an adapter is a software rasteriser rather than GPU hardware. */
export function isSoftwareAdapter(info: Omit<GpuAdapterInfo, 'software'> & { isFallbackAdapter?: boolean }): boolean {
  return info.isFallbackAdapter === true || info.architecture === 'software' || info.vendor === 'mesa'
    || SOFTWARE_NAMES.test([info.vendor, info.architecture, info.device, info.description].join(' '));
}

/** One line for logs and summaries, e.g. "llvmpipe: Mesa 25.0.7 (LLVM 15.0.6) 0.0.1, software". */
export function describeAdapter(a: GpuAdapterInfo): string {
  const name = a.description || [a.vendor, a.architecture, a.device].filter((s) => s !== '').join(' ') || 'an unnamed adapter';
  return a.software ? `${name}, software` : name;
}

// The few parts of WebGPU (as Dawn's binding and tfjs-backend-webgpu use it) touched here.
interface RawAdapterInfo { vendor?: string; architecture?: string; device?: string; description?: string; isFallbackAdapter?: boolean }
interface Gpu { requestAdapter(o?: { powerPreference?: string }): Promise<{ info?: RawAdapterInfo; isFallbackAdapter?: boolean } | null> }
interface Dawn { create(flags: string[]): Gpu; globals: Record<string, unknown> }
interface GpuBuffer {
  readonly size: number;
  readonly mapState: 'unmapped' | 'pending' | 'mapped';
  mapAsync(mode: number): Promise<void>;
  getMappedRange(): ArrayBuffer;
  unmap(): void;
}
interface TensorData { values: unknown; dtype: tf.DataType; resource?: GpuBuffer | null }
interface WebGpuBackendInternals {
  tensorMap: { get(dataId: object): TensorData | undefined };
  bufferManager: { acquireBuffer(size: number, usage: number): GpuBuffer; releaseBuffer(b: GpuBuffer): void };
  commandEncoder: { copyBufferToBuffer(src: GpuBuffer, so: number, dst: GpuBuffer, o: number, size: number): void } | null;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  convertAndCacheOnCPU(dataId: object, values: tf.backend_util.BackendValues): tf.backend_util.BackendValues;
  readSync(dataId: object): tf.backend_util.BackendValues;
}

// WebGPU constants (the spec's values; Dawn's globals hold the same).
const MAP_READ = 0x1;
const COPY_DST = 0x8;
const MAP_MODE_READ = 0x1;

/**
 * Dawn's binding advances its events (buffer maps included) in callbacks it
 * queues with the global setImmediate: an anonymous native function, no
 * arguments. They are recorded here, so that a synchronous read can run them on
 * the spot instead of waiting for an event loop turn it would never give back.
 */
const dawnTicks = new Set<() => void>();
const NATIVE = /\{\s*\[native code\]\s*\}\s*$/;
let ticksHooked = false;

function hookDawnTicks(): void {
  if (ticksHooked) return;
  ticksHooked = true;
  const original = globalThis.setImmediate;
  const hooked = (fn: (...args: unknown[]) => void, ...args: unknown[]): NodeJS.Immediate => {
    const dawn = typeof fn === 'function' && args.length === 0 && fn.name === '' && NATIVE.test(Function.prototype.toString.call(fn));
    if (!dawn) return original(fn, ...args);
    let pending = true;
    const tick = (): void => {
      if (!pending) return;
      pending = false;
      dawnTicks.delete(tick);
      fn();
    };
    dawnTicks.add(tick);
    return original(tick);
  };
  globalThis.setImmediate = Object.assign(hooked, original) as typeof setImmediate;
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/** Runs Dawn's event ticks until `done()`, pausing between them so the GPU driver's threads get the CPU. */
function runDawnUntil(done: () => boolean): void {
  let wait = 0.02;
  while (!done()) {
    if (dawnTicks.size === 0) throw new Error('webgpu: a synchronous read is waiting, but Dawn has no event queued to run');
    for (const tick of [...dawnTicks]) tick();
    if (done()) return;
    Atomics.wait(pause, 0, 0, wait);
    wait = Math.min(wait * 2, 1);
  }
}

/**
 * tfjs-backend-webgpu reads synchronously through an OffscreenCanvas, which
 * Node lacks, so every dataSync() would throw. This reads the way its async
 * read does (copy to a mappable buffer, map, copy out), waiting for the map by
 * running Dawn's ticks (above).
 */
function patchReadSync(proto: WebGpuBackendInternals): void {
  const original = proto.readSync;
  proto.readSync = function readSync(this: WebGpuBackendInternals, dataId: object) {
    const data = this.tensorMap.get(dataId);
    const gpuOnly = data != null && data.values == null && data.resource != null && data.dtype !== 'string' && data.dtype !== 'complex64';
    if (!gpuOnly) return original.call(this, dataId);
    const buffer = data.resource!;
    const staging = this.bufferManager.acquireBuffer(buffer.size, MAP_READ | COPY_DST);
    this.ensureCommandEncoderReady();
    this.endComputePassEncoder();
    this.commandEncoder!.copyBufferToBuffer(buffer, 0, staging, 0, buffer.size);
    this.submitQueue();
    staging.mapAsync(MAP_MODE_READ).catch(() => undefined); // the outcome is read from mapState below
    runDawnUntil(() => staging.mapState !== 'pending');
    const bytes = staging.mapState === 'mapped' ? staging.getMappedRange().slice(0) : null;
    if (bytes != null) staging.unmap();
    this.bufferManager.releaseBuffer(staging);
    if (bytes == null) throw new Error('webgpu: reading a tensor back from the GPU failed (was the device lost?)');
    return this.convertAndCacheOnCPU(dataId, tf.util.convertBackendValuesAndArrayBuffer(bytes, data.dtype));
  };
}

/** Vulkan's window-system code warns without a runtime dir; Dawn draws no windows, so a private temporary one does. */
function ensureRuntimeDir(): void {
  if (process.env['XDG_RUNTIME_DIR']) return;
  const dir = path.join(os.tmpdir(), `metacurate-runtime-${process.getuid?.() ?? 'user'}`);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    process.env['XDG_RUNTIME_DIR'] = dir;
  } catch {
    // Only a warning is at stake.
  }
}

/**
 * On Linux Dawn reaches the GPU through Vulkan, whose loader finds drivers by
 * their manifests in these folders (or the files named by VK_* variables).
 * Without any, Dawn's Vulkan loader prints warnings of its own on stderr.
 */
function hasVulkanDriver(): boolean {
  if (process.platform !== 'linux') return true;
  const env = process.env;
  if (env['VK_ICD_FILENAMES'] || env['VK_DRIVER_FILES'] || env['VK_ADD_DRIVER_FILES']) return true;
  const home = env['HOME'] ?? os.homedir();
  const config = (env['XDG_CONFIG_DIRS'] || '/etc/xdg').split(':');
  const data = [env['XDG_DATA_HOME'] || path.join(home, '.local/share'), ...(env['XDG_DATA_DIRS'] || '/usr/local/share:/usr/share').split(':')];
  return [...config, '/etc', ...data].some((dir) => {
    const icd = path.join(dir, 'vulkan', 'icd.d');
    return existsSync(icd) && readdirSync(icd).some((f) => f.endsWith('.json'));
  });
}

/**
 * Whether this Linux machine shows a GPU device node at all (DRM render nodes,
 * NVIDIA's device files, WSL's GPU). `auto` asks this before loading Dawn, so a
 * machine without a GPU pays nothing, and prints nothing, for probing webgpu.
 * Elsewhere (macOS, Windows) the adapter alone decides.
 */
export function gpuDevicePresent(): boolean {
  if (process.platform !== 'linux') return true;
  const has = (dir: string, pattern: RegExp) => existsSync(dir) && readdirSync(dir).some((f) => pattern.test(f));
  return has('/dev/dri', /^renderD\d+$/) || has('/dev', /^(nvidia\d+|dxg)$/);
}

function firstLine(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).split('\n')[0]!;
}

async function importOptional(spec: string): Promise<unknown> {
  try {
    return await import(spec);
  } catch (e) {
    throw new Error(`the optional package ${spec} could not be loaded (${firstLine(e)})`, { cause: e });
  }
}

let gpu: Promise<Gpu> | undefined;
let adapter: Promise<GpuAdapterInfo> | undefined;
let backendRegistered: Promise<void> | undefined;

/** Dawn's navigator.gpu and WebGPU globals, set up once per thread. */
function loadGpu(): Promise<Gpu> {
  gpu ??= (async () => {
    ensureRuntimeDir();
    hookDawnTicks();
    const dawn = (await importOptional(WEBGPU_PACKAGES[0])) as Dawn;
    const g = globalThis as { navigator?: { gpu?: Gpu } };
    for (const [name, value] of Object.entries(dawn.globals)) {
      if (!(name in globalThis)) Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
    }
    if (g.navigator?.gpu == null) {
      const created = dawn.create([]);
      // Node 20 has no navigator; later versions have one without gpu.
      if (g.navigator == null) Object.defineProperty(globalThis, 'navigator', { value: { gpu: created }, configurable: true, writable: true });
      else Object.defineProperty(g.navigator, 'gpu', { value: created, configurable: true });
    }
    return g.navigator!.gpu!;
  })();
  return gpu;
}

/**
 * The adapter tfjs-backend-webgpu will get (it asks for high performance), read
 * once per thread. Rejects, naming what is missing, without the optional
 * packages or without a Vulkan driver.
 */
export function webgpuAdapter(): Promise<GpuAdapterInfo> {
  adapter ??= (async () => {
    const gpu = await loadGpu();
    if (!hasVulkanDriver()) throw new Error('no Vulkan driver is installed (no driver manifest in any vulkan/icd.d folder)');
    const found = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (found == null) throw new Error('Dawn found no WebGPU adapter (no Vulkan driver with the features it needs)');
    const raw = found.info ?? {};
    const info = {
      vendor: raw.vendor ?? '',
      architecture: raw.architecture ?? '',
      device: raw.device ?? '',
      description: raw.description ?? '',
      isFallbackAdapter: raw.isFallbackAdapter ?? found.isFallbackAdapter,
    };
    const { isFallbackAdapter: _fallback, ...rest } = info;
    return { ...rest, software: isSoftwareAdapter(info) };
  })();
  return adapter;
}

/** Registers tfjs's 'webgpu' backend (once per thread), with synchronous reads that work in Node. */
export function registerWebgpuBackend(): Promise<void> {
  backendRegistered ??= (async () => {
    await loadGpu();
    const mod = (await importOptional(WEBGPU_PACKAGES[1])) as { WebGPUBackend?: { prototype: WebGpuBackendInternals } };
    if (mod.WebGPUBackend == null || tf.findBackendFactory('webgpu') == null) {
      throw new Error(`${WEBGPU_PACKAGES[1]} loaded but registered no 'webgpu' backend with this @tensorflow/tfjs (version mismatch?)`);
    }
    patchReadSync(mod.WebGPUBackend.prototype);
  })();
  return backendRegistered;
}
