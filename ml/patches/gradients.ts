// Gradient registrations that make nested tf.grad (Hessian-vector products,
// metagradients) exact. Global: they apply to every backend.
//
// Why: the engine saves an op's *output* for backprop as a clone that is put on
// the tape before the op itself, so an outer tf.grad cannot route gradient
// through it (silently dropped or "cannot compute gradient"). Gradients here
// save only inputs and recompute what they need. Ops without a gradient
// (comparisons, the conv/pool backprop kernels) get one.
import * as tf from '@tensorflow/tfjs';
import { MAX_POOL_JVP, STOP_GRADIENT } from './custom.js';
import { pair, replaceGradient } from './util.js';

type T = tf.Tensor;
type PadAttr = 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;
type Rounding = 'floor' | 'round' | 'ceil' | undefined;

const engine = () => tf.engine();
const run = (name: string, inputs: Record<string, T>, attrs: Record<string, unknown> = {}): T =>
  engine().runKernel(name, inputs as tf.NamedTensorMap, attrs as tf.NamedAttrMap) as T;

const zerosFloat = (x: T): T => tf.zeros(x.shape, 'float32');

/** Comparison / logical ops: piecewise constant, so the gradient is zero (tfjs registers none). */
const ZERO_GRAD_KERNELS: Array<[string, string[]]> = [
  [tf.Equal, ['a', 'b']],
  [tf.NotEqual, ['a', 'b']],
  [tf.Greater, ['a', 'b']],
  [tf.GreaterEqual, ['a', 'b']],
  [tf.Less, ['a', 'b']],
  [tf.LessEqual, ['a', 'b']],
  [tf.LogicalAnd, ['a', 'b']],
  [tf.LogicalOr, ['a', 'b']],
  [tf.LogicalXor, ['a', 'b']],
  [tf.LogicalNot, ['x']],
];

/**
 * Per-window count of real (unpadded) inputs as count / (fh*fw), shaped
 * [1, oh, ow, 1]; null if every window is full. tfjs's AvgPool divides by the
 * count but its AvgPoolGrad by fh*fw, so 'same' pooling had wrong border gradients.
 */
function avgPoolCoverage(xShape: number[], attrs: tf.NamedAttrMap): T | null {
  const info = tf.backend_util.computePool2DInfo(
    xShape as [number, number, number, number], attrs['filterSize'] as [number, number],
    attrs['strides'] as [number, number], 1, attrs['pad'] as PadAttr, attrs['dimRoundingMode'] as Rounding);
  const axis = (n: number, stride: number, pad: number, f: number, len: number): number[] =>
    Array.from({ length: n }, (_, o) => {
      const start = o * stride - pad;
      return Math.min(start + f, len) - Math.max(start, 0);
    });
  const ch = axis(info.outHeight, info.strideHeight, info.padInfo.top, info.filterHeight, info.inHeight);
  const cw = axis(info.outWidth, info.strideWidth, info.padInfo.left, info.filterWidth, info.inWidth);
  if (ch.every((c) => c === info.filterHeight) && cw.every((c) => c === info.filterWidth)) return null;
  const full = info.filterHeight * info.filterWidth;
  const v = new Float32Array(info.outHeight * info.outWidth);
  for (let i = 0; i < ch.length; i++) for (let j = 0; j < cw.length; j++) v[i * cw.length + j] = (ch[i]! * cw[j]!) / full;
  return tf.tensor4d(v, [1, info.outHeight, info.outWidth, 1]);
}

function assertNoDilation(kernel: string, attrs: tf.NamedAttrMap): void {
  const d = attrs['dilations'] as number | number[] | undefined;
  const [dh, dw] = pair(d, 1);
  if (dh !== 1 || dw !== 1) {
    throw new Error(`metacurate: gradient of ${kernel} with dilations [${dh}, ${dw}] is not supported (use dilation 1)`);
  }
}

const GRADIENTS: tf.GradConfig[] = [
  {
    kernelName: tf.Exp,
    inputsToSave: ['x'],
    gradFunc: (dy, [x]) => ({ x: () => tf.mul(dy as T, tf.exp(x!)) }),
  },
  {
    kernelName: tf.Tanh,
    inputsToSave: ['x'],
    gradFunc: (dy, [x]) => ({ x: () => tf.mul(dy as T, tf.sub(1, tf.square(tf.tanh(x!)))) }),
  },
  {
    kernelName: tf.Sigmoid,
    inputsToSave: ['x'],
    gradFunc: (dy, [x]) => ({
      x: () => {
        const s = tf.sigmoid(x!);
        return tf.mul(dy as T, tf.mul(s, tf.sub(1, s)));
      },
    }),
  },
  {
    kernelName: tf.Softmax,
    inputsToSave: ['logits'],
    gradFunc: (dy, [logits], attrs) => ({
      logits: () => {
        const dim = attrs['dim'] as number;
        const y = tf.softmax(logits!, dim);
        const dyy = tf.mul(dy as T, y);
        return tf.sub(dyy, tf.mul(tf.sum(dyy, [dim], true), y));
      },
    }),
  },
  {
    // min(x, 0) keeps exp finite where the branch is masked out (0 * inf = NaN at second order).
    kernelName: tf.Elu,
    inputsToSave: ['x'],
    gradFunc: (dy, [x]) => ({
      x: () => tf.where(tf.greater(x!, 0), dy as T, tf.mul(dy as T, tf.exp(tf.minimum(x!, 0)))),
    }),
  },
  {
    // EluGrad(dy, y) = dy * (y > 0 ? 1 : y + 1)
    kernelName: tf.EluGrad,
    inputsToSave: ['dy', 'y'],
    gradFunc: (ddx, [dy, y]) => {
      const pos = tf.greater(y!, 0);
      return {
        dy: () => tf.mul(ddx as T, tf.where(pos, tf.onesLike(y!), tf.add(y!, 1))),
        y: () => tf.where(pos, tf.zerosLike(y!), tf.mul(ddx as T, dy!)),
      };
    },
  },
  {
    // As tfjs, but the exponent's derivative recomputes a^b instead of reusing the output.
    kernelName: tf.Pow,
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b]) => {
      const outShape = tf.broadcast_util.assertAndGetBroadcastShape(a!.shape, b!.shape);
      const reduceTo = (t: T, shape: number[]): T => {
        const axes = tf.broadcast_util.getReductionAxes(shape, outShape);
        return tf.reshape(axes.length > 0 ? tf.sum(t, axes) : t, shape);
      };
      return {
        a: () => {
          const e = tf.cast(b!, 'float32');
          return reduceTo(tf.mul(dy as T, tf.mul(e, tf.pow(a!, tf.sub(e, 1)))), a!.shape);
        },
        b: () => {
          const logA = tf.where(tf.greater(a!, 0), tf.log(tf.maximum(a!, 1e-30)), tf.zerosLike(a!));
          return reduceTo(tf.mul(dy as T, tf.mul(tf.pow(a!, b!), logA)), b!.shape);
        },
      };
    },
  },
  {
    // Exact adjoint of AvgPool also for 'same' padding (tfjs's is wrong at borders).
    kernelName: tf.AvgPool,
    inputsToSave: ['x'],
    gradFunc: (dy, [x], attrs) => ({
      x: () => {
        const cov = avgPoolCoverage(x!.shape, attrs);
        const scaled = cov == null ? (dy as T) : tf.div(dy as T, cov);
        return run(tf.AvgPoolGrad, { dy: scaled, input: x! }, { filterSize: attrs['filterSize'], strides: attrs['strides'], pad: attrs['pad'] });
      },
    }),
  },
  {
    // AvgPoolGrad = S^T / (fh*fw) (S = window sum), so its adjoint is avgPool * count / (fh*fw).
    kernelName: tf.AvgPoolGrad,
    inputsToSave: ['dy', 'input'],
    gradFunc: (ddx, [dy, input], attrs) => ({
      dy: () => {
        const pooled = tf.avgPool(ddx as tf.Tensor4D, attrs['filterSize'] as [number, number],
          attrs['strides'] as [number, number], attrs['pad'] as 'same' | 'valid' | number);
        const cov = avgPoolCoverage(input!.shape, attrs);
        assertSameShape(pooled, dy!, 'AvgPoolGrad gradient');
        return cov == null ? pooled : tf.mul(pooled, cov);
      },
      input: () => zerosFloat(input!),
    }),
  },
  {
    // Linear in dy; its adjoint is the max-pool JVP (ddx picked at each window's argmax).
    kernelName: tf.MaxPoolGrad,
    inputsToSave: ['dy', 'input', 'output'],
    gradFunc: (ddx, [, input, output], attrs) => ({
      dy: () => run(MAX_POOL_JVP, { x: input!, v: ddx as T }, poolAttrs(attrs)),
      input: () => zerosFloat(input!),
      output: () => zerosFloat(output!),
    }),
  },
  {
    // JVP(x, v) = M(x) v with M piecewise constant in x; its adjoint in v is MaxPoolGrad.
    kernelName: MAX_POOL_JVP,
    inputsToSave: ['x'],
    gradFunc: (dy, [x], attrs) => ({
      v: () => maxPoolVjp(dy as T, x!, attrs),
      x: () => zerosFloat(x!),
    }),
  },
  {
    // tfjs registers none.
    kernelName: tf.MaxPoolWithArgmax,
    inputsToSave: ['x'],
    gradFunc: (dys, [x], attrs) => ({ x: () => maxPoolVjp((dys as T[])[0]!, x!, attrs) }),
  },
  {
    // dW = BF(x, dy) is bilinear: <ddw, BF(x,dy)> = <dy, conv(x, ddw)> = <x, BI(dy, ddw)>.
    kernelName: tf.Conv2DBackpropFilter,
    inputsToSave: ['x', 'dy'],
    gradFunc: (ddw, [x, dy], attrs) => {
      assertNoDilation(tf.Conv2DBackpropFilter, attrs);
      const common = { strides: attrs['strides'], pad: attrs['pad'], dataFormat: attrs['dataFormat'], dimRoundingMode: attrs['dimRoundingMode'] };
      return {
        x: () => run(tf.Conv2DBackpropInput, { dy: dy!, filter: ddw as T }, { ...common, inputShape: x!.shape }),
        dy: () => run(tf.Conv2D, { x: x!, filter: ddw as T }, { ...common, dilations: [1, 1] }),
      };
    },
  },
  {
    // Same as tfjs's (it saves inputs only); re-registered so the pair is defined together.
    kernelName: tf.Conv2DBackpropInput,
    inputsToSave: ['dy', 'filter'],
    gradFunc: (ddx, [dy, filter], attrs) => {
      const common = { strides: attrs['strides'], pad: attrs['pad'], dataFormat: attrs['dataFormat'], dimRoundingMode: attrs['dimRoundingMode'] };
      return {
        dy: () => run(tf.Conv2D, { x: ddx as T, filter: filter! }, { ...common, dilations: [1, 1] }),
        filter: () => run(tf.Conv2DBackpropFilter, { x: ddx as T, dy: dy! }, { ...common, filterShape: filter!.shape }),
      };
    },
  },
  {
    kernelName: STOP_GRADIENT,
    gradFunc: (dy) => ({ x: () => tf.zerosLike(dy as T) }),
  },
];

function poolAttrs(attrs: tf.NamedAttrMap): Record<string, unknown> {
  return { filterSize: attrs['filterSize'], strides: attrs['strides'], pad: attrs['pad'] };
}

/** MaxPoolGrad(dy) at x, recomputing the pooled output from x. */
function maxPoolVjp(dy: T, x: T, attrs: tf.NamedAttrMap): T {
  const y = tf.maxPool(x as tf.Tensor4D, attrs['filterSize'] as [number, number],
    attrs['strides'] as [number, number], attrs['pad'] as 'same' | 'valid' | number);
  return run(tf.MaxPoolGrad, { dy, input: x, output: y }, poolAttrs(attrs));
}

function assertSameShape(a: T, b: T, what: string): void {
  if (a.shape.join(',') !== b.shape.join(',')) {
    throw new Error(`metacurate: ${what}: shape [${a.shape.join(', ')}] vs [${b.shape.join(', ')}] (unsupported pooling configuration)`);
  }
}

let gradientsRegistered = false;

/** Registers the second-order-safe gradients (idempotent, backend independent). */
export function registerGradientPatches(): void {
  if (gradientsRegistered) return;
  for (const [kernelName, inputs] of ZERO_GRAD_KERNELS) {
    if (tf.getGradient(kernelName) != null) continue; // never replace a real gradient
    replaceGradient({
      kernelName,
      inputsToSave: inputs,
      gradFunc: (_dy, saved) => Object.fromEntries(inputs.map((name, i) => [name, () => zerosFloat(saved[i]!)])),
    });
  }
  for (const g of GRADIENTS) replaceGradient(g);
  gradientsRegistered = true;
}

/** Names of kernels whose gradient this module defines (for tests and docs). */
export const PATCHED_GRADIENTS: readonly string[] = [...ZERO_GRAD_KERNELS.map(([k]) => k), ...GRADIENTS.map((g) => g.kernelName)];
