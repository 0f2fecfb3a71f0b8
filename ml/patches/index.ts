// Entry point for all tfjs patches. Kernel patches are per backend; gradient
// patches are global. Both are idempotent.
import { patchWasmConv } from './conv.js';
import { registerCustomKernels } from './custom.js';
import { registerGradientPatches } from './gradients.js';
import { patchTransposedMatMul } from './matmul.js';
import { patchWasmPool } from './pool.js';

export { registerGradientPatches, PATCHED_GRADIENTS } from './gradients.js';
export { registerCustomKernels, STOP_GRADIENT, MAX_POOL_JVP } from './custom.js';

const patchedBackends = new Set<string>();

/** Kernel patches that `backendName` receives (empty for backends that need none). */
export function kernelPatchesFor(backendName: string): string[] {
  return backendName === 'wasm'
    ? ['BatchMatMul', '_FusedMatMul', 'Conv2DBackpropFilter', 'Conv2DBackpropInput', 'AvgPoolGrad', 'MaxPoolGrad', 'MaxPoolWithArgmax', 'UnsortedSegmentSum']
    : [];
}

/** Registers kernel patches for `backendName` (once) and the global gradient patches. */
export function registerPatches(backendName: string): void {
  registerGradientPatches();
  if (patchedBackends.has(backendName)) return;
  if (backendName === 'wasm') {
    patchTransposedMatMul('BatchMatMul', backendName);
    patchTransposedMatMul('_FusedMatMul', backendName);
    patchWasmConv(backendName);
    patchWasmPool(backendName);
  }
  registerCustomKernels(backendName);
  patchedBackends.add(backendName);
}

export function patchedBackendNames(): string[] {
  return [...patchedBackends];
}
