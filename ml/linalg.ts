/**
 * Dense symmetric positive-definite solves, which tfjs lacks. The factorisation
 * runs on the host in float64 (the matrices here are kernel Gram matrices of at
 * most a few thousand rows: n³/3 flops is well under a second, and float64
 * accumulation is more accurate than anything float32 on the device would give).
 * `solveSpd` wraps it as a differentiable tfjs op.
 */
import * as tf from '@tensorflow/tfjs';
import { DataError } from '../core/errors.js';

/** The matrix is not (numerically) symmetric positive definite: a ridge too small, or NaN/Inf inside (65). */
export class NotPositiveDefiniteError extends DataError {
  constructor(readonly pivot: number, readonly value: number) {
    super(`matrix is not positive definite (pivot ${pivot} is ${value})`, {
      hint: 'Increase the ridge (regularisation), or check the inputs for NaN/Inf',
    });
  }
}

/**
 * Lower-triangular L with L Lᵀ = A, for A n×n row-major (only the lower triangle
 * is read). Throws NotPositiveDefiniteError on a non-positive or non-finite pivot.
 */
export function cholesky(a: ArrayLike<number>, n: number): Float64Array {
  if (a.length !== n * n) throw new RangeError(`cholesky: ${a.length} values for a ${n}×${n} matrix`);
  const L = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const rowJ = j * n;
    let d = a[rowJ + j];
    for (let k = 0; k < j; k++) d -= L[rowJ + k] * L[rowJ + k];
    if (!(d > 0) || !Number.isFinite(d)) throw new NotPositiveDefiniteError(j, d);
    const ljj = Math.sqrt(d);
    L[rowJ + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      const rowI = i * n;
      let s = a[rowI + j];
      for (let k = 0; k < j; k++) s -= L[rowI + k] * L[rowJ + k];
      L[rowI + j] = s / ljj;
    }
  }
  return L;
}

/** X with (L Lᵀ) X = B, for B n×m row-major: a forward then a backward triangular solve. */
export function choleskySolve(L: Float64Array, b: ArrayLike<number>, n: number, m: number): Float64Array {
  if (b.length !== n * m) throw new RangeError(`choleskySolve: ${b.length} values for a ${n}×${m} right-hand side`);
  const x = Float64Array.from(b as ArrayLike<number>);
  // L y = b
  for (let i = 0; i < n; i++) {
    const rowI = i * n;
    for (let k = 0; k < i; k++) {
      const l = L[rowI + k];
      if (l === 0) continue;
      for (let c = 0; c < m; c++) x[i * m + c] -= l * x[k * m + c];
    }
    const d = L[rowI + i];
    for (let c = 0; c < m; c++) x[i * m + c] /= d;
  }
  // Lᵀ x = y
  for (let i = n - 1; i >= 0; i--) {
    for (let k = i + 1; k < n; k++) {
      const l = L[k * n + i];
      if (l === 0) continue;
      for (let c = 0; c < m; c++) x[i * m + c] -= l * x[k * m + c];
    }
    const d = L[i * n + i];
    for (let c = 0; c < m; c++) x[i * m + c] /= d;
  }
  return x;
}

/** A⁻¹B on the host, for A n×n SPD and B n×m (row-major). */
export function solveSpdHost(a: ArrayLike<number>, b: ArrayLike<number>, n: number, m: number): Float64Array {
  return choleskySolve(cholesky(a, n), b, n, m);
}

const solveOp = tf.customGrad<tf.Tensor2D>(((a: tf.Tensor2D, b: tf.Tensor2D) => {
  const [n, n2] = a.shape;
  const m = b.shape[1];
  if (n !== n2 || b.shape[0] !== n) {
    throw new RangeError(`solveSpd: A is [${a.shape.join(', ')}] and B is [${b.shape.join(', ')}]`);
  }
  const L = cholesky(a.dataSync(), n);
  const y = choleskySolve(L, b.dataSync(), n, m);
  const value = tf.tensor2d(Float32Array.from(y), [n, m]);
  const gradFunc = (dy: tf.Tensor2D): tf.Tensor[] => {
    // dB = A⁻ᵀ dY = A⁻¹ dY (A symmetric); dA = −dB Yᵀ, symmetrised since A is.
    const dbHost = choleskySolve(L, dy.dataSync(), n, m);
    const db = tf.tensor2d(Float32Array.from(dbHost), [n, m]);
    const yt = tf.tensor2d(Float32Array.from(y), [n, m]);
    const outer = tf.matMul(db, yt, false, true);
    const da = tf.mul(tf.add(outer, tf.transpose(outer)), -0.5);
    return [da, db];
  };
  return { value, gradFunc };
}) as unknown as Parameters<typeof tf.customGrad<tf.Tensor2D>>[0]);

/**
 * Y = A⁻¹B for A [n, n] symmetric positive definite and B [n, m], differentiable
 * in both: dB = A⁻¹ dY and dA = −½(dB Yᵀ + Y dBᵀ). The factorisation is host-side
 * (float64) and is reused by the gradient.
 *
 * First order only: this is a tf.customGrad op, and tfjs differentiates
 * customGrad ops wrongly when the gradient itself is differentiated again (the
 * outer tape cannot see the values a custom gradient saves; docs/tfjs.md).
 * Kernel ridge regression and KIP/RCIG's direct and implicit terms only need
 * one reverse pass through a solve; never put this inside a nested tf.grad.
 */
export function solveSpd(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return solveOp(a, b);
}
