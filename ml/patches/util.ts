// Helpers for writing kernels out of other kernels of the same backend.
// Kernels receive and return TensorInfos (no engine, no tape); every
// intermediate must be released with backend.disposeData or it leaks.
import * as tf from '@tensorflow/tfjs';

export type TensorInfo = tf.TensorInfo;
export type Backend = tf.KernelBackend;
/** tf.KernelFunc's argument, with the backend typed. */
export interface KernelArgs {
  inputs: tf.NamedTensorInfoMap;
  backend: Backend;
  attrs?: tf.NamedAttrMap;
}
type Attrs = tf.NamedAttrMap;

/** Calls kernel `name` of `backendName` directly (bypassing the engine). */
export function callKernel(
  name: string,
  backendName: string,
  backend: Backend,
  inputs: Record<string, TensorInfo>,
  attrs: Attrs = {},
): TensorInfo {
  const k = tf.getKernel(name, backendName);
  if (k == null) throw new Error(`metacurate: kernel '${name}' is not registered for backend '${backendName}'`);
  const out = k.kernelFunc({ inputs, backend, attrs });
  if (Array.isArray(out)) throw new Error(`metacurate: kernel '${name}' returned several outputs`);
  return out;
}

/** Wraps a kernel implementation with a scratch list that is freed on exit. */
export function withScratch<T>(backend: Backend, fn: (keep: (t: TensorInfo) => TensorInfo) => T): T {
  const scratch: TensorInfo[] = [];
  try {
    return fn((t) => {
      scratch.push(t);
      return t;
    });
  } finally {
    for (const t of scratch) backend.disposeData(t.dataId);
  }
}

/** Registers `config`, replacing any existing registration without tfjs's warning. */
export function replaceKernel(config: tf.KernelConfig): void {
  if (tf.getKernel(config.kernelName, config.backendName) != null) {
    tf.unregisterKernel(config.kernelName, config.backendName);
  }
  tf.registerKernel(config);
}

/** Registers `config`, replacing any existing gradient without tfjs's warning. */
export function replaceGradient(config: tf.GradConfig): void {
  if (tf.getGradient(config.kernelName) != null) tf.unregisterGradient(config.kernelName);
  tf.registerGradient(config);
}

export function pair(v: number | number[] | undefined, dflt: number): [number, number] {
  if (v == null) return [dflt, dflt];
  if (typeof v === 'number') return [v, v];
  if (v.length === 1) return [v[0]!, v[0]!];
  return [v[0]!, v[1]!];
}

export function assertNHWC(kernel: string, dataFormat: unknown): void {
  if (dataFormat != null && dataFormat !== 'NHWC' && dataFormat !== 'channelsLast') {
    throw new Error(`metacurate: ${kernel} supports only NHWC (channels-last) data, got dataFormat '${String(dataFormat)}'`);
  }
}
