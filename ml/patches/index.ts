// Entry point for all tfjs patches. Kernel patches are per backend; gradient
// patches are global. Both are idempotent.
import { patchConv2DBackpropFilter, patchConv2DBackpropInput, patchUnsortedSegmentSum } from './conv.js';
import { registerCustomKernels } from './custom.js';
import { registerGradientPatches } from './gradients.js';
import { patchTransposedMatMul } from './matmul.js';
import { patchAvgPoolGrad, patchMaxPoolGrad, patchMaxPoolWithArgmax } from './pool.js';

export { registerGradientPatches, PATCHED_GRADIENTS } from './gradients.js';
export { registerCustomKernels, STOP_GRADIENT, MAX_POOL_JVP } from './custom.js';

/** A kernel that one backend gets replaced (or added), and the function that does it. */
interface KernelPatch {
  kernel: string;
  backend: string;
  register(backendName: string): void;
}

/** Every kernel patch, in registration order: the one list both functions below read. */
const KERNEL_PATCHES: readonly KernelPatch[] = [
  { kernel: 'BatchMatMul', backend: 'wasm', register: (b) => patchTransposedMatMul('BatchMatMul', b) },
  { kernel: '_FusedMatMul', backend: 'wasm', register: (b) => patchTransposedMatMul('_FusedMatMul', b) },
  { kernel: 'Conv2DBackpropFilter', backend: 'wasm', register: patchConv2DBackpropFilter },
  { kernel: 'Conv2DBackpropInput', backend: 'wasm', register: patchConv2DBackpropInput },
  { kernel: 'AvgPoolGrad', backend: 'wasm', register: patchAvgPoolGrad },
  { kernel: 'MaxPoolGrad', backend: 'wasm', register: patchMaxPoolGrad },
  { kernel: 'MaxPoolWithArgmax', backend: 'wasm', register: patchMaxPoolWithArgmax },
  { kernel: 'UnsortedSegmentSum', backend: 'wasm', register: patchUnsortedSegmentSum },
];

const patchedBackends = new Set<string>();

/** Kernel patches that `backendName` receives (empty for backends that need none). */
export function kernelPatchesFor(backendName: string): string[] {
  return KERNEL_PATCHES.filter((p) => p.backend === backendName).map((p) => p.kernel);
}

/** Registers kernel patches for `backendName` (once) and the global gradient patches. */
export function registerPatches(backendName: string): void {
  registerGradientPatches();
  if (patchedBackends.has(backendName)) return;
  for (const p of KERNEL_PATCHES) if (p.backend === backendName) p.register(backendName);
  registerCustomKernels(backendName);
  patchedBackends.add(backendName);
}

export function patchedBackendNames(): string[] {
  return [...patchedBackends];
}
