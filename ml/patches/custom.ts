// Kernels of our own, registered for every backend and built from that
// backend's kernels. Work done inside a kernel is invisible to the gradient
// tape, which is the point of both.
import * as tf from '@tensorflow/tfjs';
import { callKernel, withScratch, type KernelArgs, type TensorInfo } from './util.js';

/** Identity forward, zero gradient. */
export const STOP_GRADIENT = 'MetacurateStopGradient';

/**
 * Max-pool JVP: v at each window's argmax of x (inputs x, v; pooling attrs).
 * It is the adjoint of MaxPoolGrad. As a kernel, the integer argmax never
 * appears on the tape (tfjs would demand a float gradient for it).
 */
export const MAX_POOL_JVP = 'MetacurateMaxPoolJvp';

function maxPoolJvpKernel(backendName: string) {
  return ({ inputs, backend, attrs = {} }: KernelArgs): TensorInfo => {
    const x = inputs['x']!;
    const v = inputs['v']!;
    const k = tf.getKernel(tf.MaxPoolWithArgmax, backendName);
    if (k == null) throw new Error(`metacurate: backend '${backendName}' has no MaxPoolWithArgmax kernel (needed for second derivatives of maxPool)`);
    return withScratch(backend, (keep) => {
      const [pooled, indexes] = k.kernelFunc({
        inputs: { x }, backend,
        attrs: { filterSize: attrs['filterSize']!, strides: attrs['strides']!, pad: attrs['pad']!, includeBatchInIndex: true },
      }) as TensorInfo[];
      keep(pooled!);
      keep(indexes!);
      const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
      const flatV = keep(callKernel(tf.Reshape, backendName, backend, { x: v }, { shape: [size(v.shape)] }));
      const flatI = keep(callKernel(tf.Reshape, backendName, backend, { x: indexes! }, { shape: [size(indexes!.shape)] }));
      const picked = keep(callKernel(tf.GatherV2, backendName, backend, { x: flatV, indices: flatI }, { axis: 0, batchDims: 0 }));
      return callKernel(tf.Reshape, backendName, backend, { x: picked }, { shape: pooled!.shape });
    });
  };
}

/** Registers the custom kernels for `backendName` (idempotent). */
export function registerCustomKernels(backendName: string): void {
  if (tf.getKernel(STOP_GRADIENT, backendName) == null) {
    const identity = tf.getKernel(tf.Identity, backendName);
    if (identity == null) throw new Error(`metacurate: backend '${backendName}' has no Identity kernel`);
    tf.registerKernel({ kernelName: STOP_GRADIENT, backendName, kernelFunc: identity.kernelFunc });
  }
  if (tf.getKernel(MAX_POOL_JVP, backendName) == null) {
    tf.registerKernel({ kernelName: MAX_POOL_JVP, backendName, kernelFunc: maxPoolJvpKernel(backendName) as tf.KernelFunc });
  }
}
