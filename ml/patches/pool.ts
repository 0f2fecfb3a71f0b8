// Pooling backprop kernels for wasm.
// - AvgPoolGrad runs a scalar loop (~3x slower than needed). For
//   non-overlapping, unpadded windows (the 2x2 stride 2 'valid' pooling the
//   models use) dx is dy spread evenly over each window: one broadcast multiply.
// - MaxPoolGrad and MaxPoolWithArgmax start their running max at FLT_MIN
//   (the smallest *positive* float) instead of -inf: windows whose max is <= 0
//   get no gradient / a wrong argmax. Replaced by a JS loop with the cpu
//   backend's semantics (first strict maximum wins).
import * as tf from '@tensorflow/tfjs';
import { callKernel, replaceKernel, withScratch, type KernelArgs, type TensorInfo } from './util.js';

type PadAttr = 'same' | 'valid' | number;

export function avgPoolGradKernel(backendName: string, stock: tf.KernelFunc) {
  return (args: KernelArgs): TensorInfo => {
    const { inputs, backend, attrs = {} } = args;
    const dy = inputs['dy']!;
    const input = inputs['input']!;
    if (input.shape.length !== 4 || dy.dtype !== 'float32') return stock(args) as TensorInfo;
    const info = tf.backend_util.computePool2DInfo(
      input.shape as [number, number, number, number], attrs['filterSize'] as [number, number],
      attrs['strides'] as [number, number], 1, attrs['pad'] as PadAttr);
    const { filterHeight: fh, filterWidth: fw, strideHeight: sh, strideWidth: sw, padInfo: p } = info;
    const tiled = fh === sh && fw === sw && p.top === 0 && p.left === 0 && p.bottom === 0 && p.right === 0;
    if (!tiled) return stock(args) as TensorInfo;
    const { batchSize: B, outHeight: oh, outWidth: ow, inChannels: C, inHeight: H, inWidth: W } = info;
    return withScratch(backend, (keep) => {
      const dy6 = keep(callKernel(tf.Reshape, backendName, backend, { x: dy }, { shape: [B, oh, 1, ow, 1, C] }));
      const k = keep(callKernel(tf.Fill, backendName, backend, {}, { shape: [1, 1, fh, 1, fw, 1], value: 1 / (fh * fw), dtype: 'float32' }));
      const spread = keep(callKernel(tf.Multiply, backendName, backend, { a: dy6, b: k }));
      const covered = [B, oh * fh, ow * fw, C];
      if (covered[1] === H && covered[2] === W) {
        return callKernel(tf.Reshape, backendName, backend, { x: spread }, { shape: covered });
      }
      // Rows/cols past the last full window get no gradient.
      const dx4 = keep(callKernel(tf.Reshape, backendName, backend, { x: spread }, { shape: covered }));
      return callKernel(tf.PadV2, backendName, backend, { x: dx4 }, {
        paddings: [[0, 0], [0, H - oh * fh], [0, W - ow * fw], [0, 0]],
        constantValue: 0,
      });
    });
  };
}

type Rounding = 'floor' | 'round' | 'ceil' | undefined;
type WasmOut = { makeOutput(shape: number[], dtype: string, memoryOffset?: number, values?: tf.TypedArray): TensorInfo };

/** Flat (batch-inclusive) index of each window's first maximum, -1 if none (all NaN). */
function argmaxPositions(xv: Float32Array, info: tf.backend_util.Conv2DInfo): { pos: Int32Array; val: Float32Array } {
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: oh, outWidth: ow } = info;
  const { strideHeight: sh, strideWidth: sw, filterHeight: fh, filterWidth: fw } = info;
  if (info.dilationHeight !== 1 || info.dilationWidth !== 1) throw new Error('metacurate: max pooling with dilations is not supported');
  const pos = new Int32Array(B * oh * ow * C).fill(-1);
  const val = new Float32Array(B * oh * ow * C).fill(Number.NEGATIVE_INFINITY);
  for (let b = 0; b < B; b++) {
    for (let yr = 0; yr < oh; yr++) {
      const r0 = yr * sh - info.padInfo.top;
      const rLo = Math.max(r0, 0);
      const rHi = Math.min(r0 + fh, H);
      for (let yc = 0; yc < ow; yc++) {
        const c0 = yc * sw - info.padInfo.left;
        const cLo = Math.max(c0, 0);
        const cHi = Math.min(c0 + fw, W);
        const o = ((b * oh + yr) * ow + yc) * C;
        // Row-major over the window, first strict maximum wins (as the cpu backend).
        for (let r = rLo; r < rHi; r++) {
          for (let c = cLo; c < cHi; c++) {
            const base = ((b * H + r) * W + c) * C;
            for (let d = 0; d < C; d++) {
              const v = xv[base + d]!;
              if (v > val[o + d]!) {
                val[o + d] = v;
                pos[o + d] = base + d;
              }
            }
          }
        }
      }
    }
  }
  return { pos, val };
}

function poolInfo(x: TensorInfo, attrs: tf.NamedAttrMap, what: string): tf.backend_util.Conv2DInfo {
  if (x.shape.length !== 4) throw new Error(`metacurate: ${what} expects NHWC input, got shape [${x.shape.join(', ')}]`);
  return tf.backend_util.computePool2DInfo(
    x.shape as [number, number, number, number], attrs['filterSize'] as [number, number],
    attrs['strides'] as [number, number], 1, attrs['pad'] as PadAttr, attrs['dimRoundingMode'] as Rounding);
}

export function maxPoolWithArgmaxKernel({ inputs, backend, attrs = {} }: KernelArgs): TensorInfo[] {
  const x = inputs['x']!;
  const info = poolInfo(x, attrs, 'MaxPoolWithArgmax');
  const { pos, val } = argmaxPositions(backend.readSync(x.dataId) as Float32Array, info);
  if (attrs['includeBatchInIndex'] !== true) {
    const perExample = info.inHeight * info.inWidth * info.inChannels;
    for (let i = 0; i < pos.length; i++) if (pos[i]! >= 0) pos[i] = pos[i]! % perExample;
  }
  const out = backend as unknown as WasmOut;
  return [out.makeOutput(info.outShape, x.dtype, undefined, x.dtype === 'int32' ? Int32Array.from(val) : val), out.makeOutput(info.outShape, 'int32', undefined, pos)];
}

export function maxPoolGradKernel({ inputs, backend, attrs = {} }: KernelArgs): TensorInfo {
  const dy = inputs['dy']!;
  const x = inputs['input']!;
  const info = poolInfo(x, attrs, 'MaxPoolGrad');
  const { pos } = argmaxPositions(backend.readSync(x.dataId) as Float32Array, info);
  const dyv = backend.readSync(dy.dataId) as Float32Array;
  const dx = new Float32Array(x.shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < pos.length; i++) {
    const p = pos[i]!;
    if (p >= 0) dx[p] += dyv[i]!;
  }
  return (backend as unknown as WasmOut).makeOutput(x.shape, 'float32', undefined, dx);
}

/** Wraps the stock AvgPoolGrad (kept for the windows the fast path does not cover). */
export function patchAvgPoolGrad(backendName: string): void {
  const stock = tf.getKernel(tf.AvgPoolGrad, backendName);
  if (stock != null) {
    replaceKernel({ ...stock, kernelFunc: avgPoolGradKernel(backendName, stock.kernelFunc) as tf.KernelFunc });
  }
}

export function patchMaxPoolGrad(backendName: string): void {
  replaceKernel({ kernelName: tf.MaxPoolGrad, backendName, kernelFunc: maxPoolGradKernel as tf.KernelFunc });
}

export function patchMaxPoolWithArgmax(backendName: string): void {
  replaceKernel({ kernelName: tf.MaxPoolWithArgmax, backendName, kernelFunc: maxPoolWithArgmaxKernel as tf.KernelFunc });
}
