// wasm BatchMatMul is fast (XNNPACK) only when neither input is transposed;
// with a transposed input it is 10-70x slower, and every matmul gradient has
// one. An explicit transpose (memory-bound) + the fast kernel wins by far.
import * as tf from '@tensorflow/tfjs';
import { callKernel, replaceKernel, withScratch, type KernelArgs, type TensorInfo } from './util.js';

function swapLastTwo(rank: number): number[] {
  const perm = Array.from({ length: rank }, (_, i) => i);
  perm[rank - 2] = rank - 1;
  perm[rank - 1] = rank - 2;
  return perm;
}

/** Routes transposed (batch/fused) matmuls of `backendName` through Transpose + the untransposed kernel. */
export function patchTransposedMatMul(kernelName: string, backendName: string): void {
  const original = tf.getKernel(kernelName, backendName);
  if (original == null) return;
  const stock = original.kernelFunc;
  const kernelFunc = (args: KernelArgs): TensorInfo | TensorInfo[] => {
    const { inputs, backend, attrs } = args;
    const transposeA = Boolean(attrs?.['transposeA']);
    const transposeB = Boolean(attrs?.['transposeB']);
    if (!transposeA && !transposeB) return stock(args);
    const a = inputs['a']!;
    const b = inputs['b']!;
    if (a.dtype !== 'float32' || b.dtype !== 'float32') return stock(args);
    return withScratch(backend, (keep) => {
      const at = transposeA
        ? keep(callKernel(tf.Transpose, backendName, backend, { x: a }, { perm: swapLastTwo(a.shape.length) }))
        : a;
      const bt = transposeB
        ? keep(callKernel(tf.Transpose, backendName, backend, { x: b }, { perm: swapLastTwo(b.shape.length) }))
        : b;
      return stock({ inputs: { ...inputs, a: at, b: bt }, backend, attrs: { ...attrs, transposeA: false, transposeB: false } });
    });
  };
  replaceKernel({ ...original, kernelFunc: kernelFunc as tf.KernelFunc });
}
