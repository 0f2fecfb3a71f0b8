// Central finite differences for gradient and Hessian-vector-product checks.
// Everything runs in float32: steps ~1e-3..1e-2, tolerances ~1e-2 relative.
import * as tf from '@tensorflow/tfjs';
import { addAll } from '../../ml/ops.js';

export type Fn = (...xs: tf.Tensor[]) => tf.Scalar;

export interface Arg {
  values: Float32Array;
  shape: number[];
}

/** Deterministic N(0,1) samples (mulberry32 + Box-Muller). */
export function randn(shape: number[], seed: number, scale = 1): Arg {
  const n = shape.reduce((a, b) => a * b, 1);
  let s = seed >>> 0;
  const u = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const r = Math.sqrt(-2 * Math.log(u() + 1e-12));
    values[i] = scale * r * Math.cos(2 * Math.PI * u());
  }
  return { values, shape };
}

const toTensors = (args: Arg[]) => args.map((a) => tf.tensor(a.values, a.shape, 'float32'));

function shifted(args: Arg[], dirs: Arg[], h: number): Arg[] {
  return args.map((a, i) => ({
    shape: a.shape,
    values: a.values.map((v, j) => v + h * dirs[i]!.values[j]!),
  }));
}

function evalScalar(f: Fn, args: Arg[]): number {
  return tf.tidy(() => f(...toTensors(args)).dataSync()[0]!);
}

/** Concatenated gradient of f at args. */
export function gradient(f: Fn, args: Arg[]): Float32Array {
  return tf.tidy(() => concat(tf.grads(f)(toTensors(args)).map((g) => g.dataSync())));
}

/** Hessian-vector product by nested reverse mode: d/dx <grad f(x), v>. */
export function hvp(f: Fn, args: Arg[], dirs: Arg[]): Float32Array {
  return tf.tidy(() => {
    const vs = toTensors(dirs);
    const xs = toTensors(args);
    const gv = () => {
      const gs = tf.grads(f)(xs);
      return addAll(gs.map((g, i) => tf.sum(tf.mul(g, vs[i]!)))) as tf.Scalar;
    };
    // allowNoGradients: a parameter whose gradient is constant (a bias) has no Hessian path.
    const { grads } = tf.engine().gradients(gv, xs, undefined, true);
    return concat(grads.map((g, i) => (g == null ? new Float32Array(args[i]!.values.length) : g.dataSync())));
  });
}

export function concat(parts: ArrayLike<number>[]): Float32Array {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Float32Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

export function norm(a: ArrayLike<number>): number {
  return Math.sqrt(dot(a, a));
}

export interface Comparison {
  relErr: number;
  cosine: number;
  normRef: number;
}

/** Relative L2 error of `got` against `ref`, and their cosine. */
export function compare(got: ArrayLike<number>, ref: ArrayLike<number>): Comparison {
  if (got.length !== ref.length) throw new Error(`length ${got.length} vs ${ref.length}`);
  let d = 0;
  for (let i = 0; i < got.length; i++) d += (got[i]! - ref[i]!) ** 2;
  const nr = norm(ref);
  const ng = norm(got);
  return {
    relErr: Math.sqrt(d) / Math.max(nr, 1e-12),
    cosine: nr === 0 || ng === 0 ? (nr === ng ? 1 : 0) : dot(got, ref) / (nr * ng),
    normRef: nr,
  };
}

/**
 * Directional derivatives <grad f, v_k> (analytic) against
 * (f(x + h v_k) - f(x - h v_k)) / 2h for `nDirs` random directions.
 */
export function checkGradient(f: Fn, args: Arg[], opts: { h?: number; nDirs?: number; seed?: number } = {}): Comparison {
  const { h = 1e-3, nDirs = 3, seed = 1234 } = opts;
  const g = gradient(f, args);
  const analytic: number[] = [];
  const numeric: number[] = [];
  for (let k = 0; k < nDirs; k++) {
    const dirs = args.map((a, i) => randn(a.shape, seed + 97 * k + i));
    analytic.push(dot(g, concat(dirs.map((d) => d.values))));
    numeric.push((evalScalar(f, shifted(args, dirs, h)) - evalScalar(f, shifted(args, dirs, -h))) / (2 * h));
  }
  return compare(analytic, numeric);
}

/** Nested-grad Hessian-vector product against (grad f(x + h v) - grad f(x - h v)) / 2h. */
export function checkHvp(f: Fn, args: Arg[], opts: { h?: number; seed?: number } = {}): Comparison {
  const { h = 1e-3, seed = 4321 } = opts;
  const dirs = args.map((a, i) => randn(a.shape, seed + i));
  const analytic = hvp(f, args, dirs);
  const gp = gradient(f, shifted(args, dirs, h));
  const gm = gradient(f, shifted(args, dirs, -h));
  const numeric = gp.map((v, i) => (v - gm[i]!) / (2 * h));
  return compare(analytic, numeric);
}

/** Full central-difference gradient, coordinate by coordinate (small inputs only). */
export function numericGradient(f: Fn, args: Arg[], h = 1e-2): Float32Array {
  const parts: Float32Array[] = [];
  args.forEach((a, i) => {
    const g = new Float32Array(a.values.length);
    for (let j = 0; j < a.values.length; j++) {
      const at = (delta: number) => {
        const moved = args.map((b, k) => (k === i ? { shape: b.shape, values: b.values.slice() } : b));
        moved[i]!.values[j] += delta;
        return evalScalar(f, moved);
      };
      g[j] = (at(h) - at(-h)) / (2 * h);
    }
    parts.push(g);
  });
  return concat(parts);
}
