/**
 * Seeded parameter initialisation. Values are drawn in JS from core/rng.ts and only
 * then turned into tensors, so a seed gives bit-identical parameters on every
 * backend. Each parameter draws from its own stream (seed, parameter name), so
 * adding a layer does not change the others' initial values.
 */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../core/rng.js';

export type InitKind =
  /** PyTorch's default for Linear/Conv weights and biases: U(−1/√fanIn, 1/√fanIn). */
  | { kind: 'uniformFanIn'; fanIn: number }
  /** He (Kaiming) normal: N(0, 2/fanIn), for ReLU layers. */
  | { kind: 'heNormal'; fanIn: number }
  | { kind: 'zeros' }
  | { kind: 'ones' };

export interface ParamSpec {
  name: string;
  shape: number[];
  init: InitKind;
}

export function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The initial values of one parameter, as a Float32Array (backend independent). */
export function initValues(spec: ParamSpec, seed: number): Float32Array {
  const n = sizeOf(spec.shape);
  const out = new Float32Array(n);
  const init = spec.init;
  switch (init.kind) {
    case 'zeros':
      return out;
    case 'ones':
      return out.fill(1);
    case 'uniformFanIn': {
      const rng = Rng.derive(seed, `init/${spec.name}`);
      const bound = 1 / Math.sqrt(init.fanIn);
      for (let i = 0; i < n; i++) out[i] = (2 * rng.next() - 1) * bound;
      return out;
    }
    case 'heNormal': {
      const rng = Rng.derive(seed, `init/${spec.name}`);
      const std = Math.sqrt(2 / init.fanIn);
      for (let i = 0; i < n; i++) out[i] = rng.normal() * std;
      return out;
    }
  }
}

/** Initial parameter tensors for `specs`, in order. */
export function initParams(specs: readonly ParamSpec[], seed: number): tf.Tensor[] {
  return specs.map((s) => tf.tensor(initValues(s, seed), s.shape, 'float32'));
}
