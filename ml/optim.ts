/**
 * Optimizers as pure tensor functions: (params, grads, slots, lr, t) → new params
 * and slots. Nothing is updated in place and only differentiable ops are used, so
 * the metagradient engine can differentiate through an update (tf.train.*
 * optimizers mutate variables and cannot be differentiated).
 *
 * Slot layout: slot k of parameter i is at index k·P + i (P parameters), so SGD
 * with momentum has P slots (velocities) and Adam 2P (first moments, then second).
 */
import * as tf from '@tensorflow/tfjs';
import { z } from 'zod';

export const sgdSpecSchema = z.object({
  kind: z.literal('sgd'),
  lr: z.number().positive(),
  momentum: z.number().min(0).lt(1).default(0),
  weightDecay: z.number().min(0).default(0),
  nesterov: z.boolean().default(false),
}).strict();

const adamFields = {
  lr: z.number().positive(),
  beta1: z.number().min(0).lt(1).default(0.9),
  beta2: z.number().min(0).lt(1).default(0.999),
  eps: z.number().positive().default(1e-8),
};
/** Adam; `weightDecay` is an L2 term added to the gradient (PyTorch's Adam). */
export const adamSpecSchema = z.object({ kind: z.literal('adam'), ...adamFields, weightDecay: z.number().min(0).default(0) }).strict();
/** AdamW: decoupled weight decay, θ ← θ − lr·wd·θ before the Adam update. */
export const adamwSpecSchema = z.object({ kind: z.literal('adamw'), ...adamFields, weightDecay: z.number().min(0).default(0.01) }).strict();

export const optimizerSpecSchema = z.discriminatedUnion('kind', [sgdSpecSchema, adamSpecSchema, adamwSpecSchema]);
export type OptimizerSpec = z.input<typeof optimizerSpecSchema>;
export type ParsedOptimizerSpec = z.output<typeof optimizerSpecSchema>;

/**
 * Added under Adam's square root. d√v/dv is infinite at v = 0 (a parameter whose
 * gradient is exactly zero), which turns a metagradient into NaN; this keeps it
 * finite and changes values only where v < 1e-28.
 */
const SQRT_FLOOR = 1e-30;

export interface Optimizer {
  readonly spec: ParsedOptimizerSpec;
  readonly slotsPerParam: number;
  /** The slots at t = 0 (zeros), in the layout above. */
  initSlots(params: readonly tf.Tensor[]): tf.Tensor[];
  /** One update at 0-based step t with learning rate lr. Pure and twice differentiable. */
  update(
    params: readonly tf.Tensor[],
    grads: readonly tf.Tensor[],
    slots: readonly tf.Tensor[],
    lr: number,
    t: number,
  ): { params: tf.Tensor[]; slots: tf.Tensor[] };
}

export function makeOptimizer(spec: OptimizerSpec): Optimizer {
  const s = optimizerSpecSchema.parse(spec);
  return s.kind === 'sgd' ? sgd(s) : adam(s);
}

/** SGD as PyTorch does it: g' = g + wd·θ; v ← μv + g'; θ ← θ − lr·v (Nesterov: θ ← θ − lr·(g' + μv)). */
function sgd(s: z.output<typeof sgdSpecSchema>): Optimizer {
  const useMomentum = s.momentum > 0;
  return {
    spec: s,
    slotsPerParam: useMomentum ? 1 : 0,
    initSlots: (params) => (useMomentum ? params.map((p) => tf.zerosLike(p)) : []),
    update(params, grads, slots, lr) {
      const newParams: tf.Tensor[] = [];
      const newSlots: tf.Tensor[] = [];
      params.forEach((p, i) => {
        const g = s.weightDecay > 0 ? tf.add(grads[i], tf.mul(p, s.weightDecay)) : grads[i];
        let direction = g;
        if (useMomentum) {
          const v = tf.add(tf.mul(slots[i], s.momentum), g);
          newSlots.push(v);
          direction = s.nesterov ? tf.add(g, tf.mul(v, s.momentum)) : v;
        }
        newParams.push(tf.sub(p, tf.mul(direction, lr)));
      });
      return { params: newParams, slots: newSlots };
    },
  };
}

/** Adam with bias correction, written as PyTorch does: θ ← θ − (lr/b1)·m / (√v/√b2 + eps). */
function adam(s: z.output<typeof adamSpecSchema> | z.output<typeof adamwSpecSchema>): Optimizer {
  return {
    spec: s,
    slotsPerParam: 2,
    initSlots: (params) => [...params.map((p) => tf.zerosLike(p)), ...params.map((p) => tf.zerosLike(p))],
    update(params, grads, slots, lr, t) {
      const P = params.length;
      const step = t + 1;
      const bias1 = 1 - s.beta1 ** step;
      const bias2 = 1 - s.beta2 ** step;
      const newParams: tf.Tensor[] = [];
      const ms: tf.Tensor[] = [];
      const vs: tf.Tensor[] = [];
      params.forEach((p0, i) => {
        let p = p0;
        let g = grads[i];
        if (s.weightDecay > 0) {
          if (s.kind === 'adamw') p = tf.mul(p, 1 - lr * s.weightDecay);
          else g = tf.add(g, tf.mul(p, s.weightDecay));
        }
        const m = tf.add(tf.mul(slots[i], s.beta1), tf.mul(g, 1 - s.beta1));
        const v = tf.add(tf.mul(slots[P + i], s.beta2), tf.mul(tf.square(g), 1 - s.beta2));
        const denom = tf.add(tf.div(tf.sqrt(tf.add(v, SQRT_FLOOR)), Math.sqrt(bias2)), s.eps);
        newParams.push(tf.sub(p, tf.mul(tf.div(m, denom), lr / bias1)));
        ms.push(m);
        vs.push(v);
      });
      return { params: newParams, slots: [...ms, ...vs] };
    },
  };
}
