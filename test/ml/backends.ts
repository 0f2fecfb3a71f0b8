// The backends the finite-difference tests run on: wasm and cpu always, and
// webgpu when Dawn finds an adapter. Mesa's software adapter is enough, since
// these tests check numbers, not speed. Without one, the webgpu suites skip and
// say what to install.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initBackend, type BackendName } from '../../ml/backend.js';
import { WEBGPU_HINT, describeAdapter, webgpuAdapter } from '../../ml/webgpu.js';

const probe = await webgpuAdapter().then(
  (adapter) => ({ adapter, reason: undefined }),
  (e: unknown) => ({ adapter: undefined, reason: e instanceof Error ? e.message : String(e) }),
);

/** Why the webgpu suites skip here, or undefined when they run. */
export const WEBGPU_SKIP = probe.reason === undefined ? undefined : `${probe.reason}. ${WEBGPU_HINT}`;
/** The adapter the webgpu suites run on, as summaries name it. */
export const WEBGPU_ADAPTER = probe.adapter && describeAdapter(probe.adapter);
if (WEBGPU_SKIP) console.warn(`webgpu finite-difference tests skipped: ${WEBGPU_SKIP}`);

export const FD_BACKENDS = ['wasm', 'cpu', 'webgpu'] as const satisfies readonly BackendName[];
export type FdBackend = (typeof FD_BACKENDS)[number];

/**
 * Error bounds scale by this. Float32 everywhere, but WGSL lets a GPU compute
 * exp, log, tanh and the like a few ULP less exactly than the CPU's libm, and
 * sum in other orders. (Mesa's software adapter measured as exact as wasm.)
 */
export const TOLERANCE_SCALE: Record<FdBackend, number> = { wasm: 1, cpu: 1, webgpu: 2 };

/**
 * A suite on `backend`: initialises it first and checks that it is the one in
 * use. On webgpu without an adapter, the suite is skipped with the reason in its name.
 */
export function describeOn(backend: FdBackend, name: string, fn: () => void): void {
  if (backend === 'webgpu' && WEBGPU_SKIP) {
    // Skipped, not failed, because there is no adapter to test on: the optional webgpu packages or
    // a Vulkan driver are missing (scripts/install-vulkan.sh installs one; .ci/run does it in CI).
    // The reason found is in the suite's name and printed above.
    describe.skip(`${name} (skipped: ${WEBGPU_SKIP})`, fn); // skipped: no webgpu adapter here (reason above)
    return;
  }
  describe(backend === 'webgpu' ? `${name} (${WEBGPU_ADAPTER})` : name, () => {
    beforeAll(async () => {
      await initBackend(backend);
    });
    it(`computes on ${backend}`, () => expect(tf.getBackend()).toBe(backend));
    fn();
  });
}
