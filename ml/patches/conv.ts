// Convolution backprop kernels for the wasm backend, built from its fast
// (XNNPACK) Conv2D and Transpose kernels. Stock wasm has no
// Conv2DBackpropFilter at all, so conv nets cannot train without it.
import * as tf from '@tensorflow/tfjs';
import { assertNHWC, callKernel, replaceKernel, withScratch, type KernelArgs, type TensorInfo } from './util.js';

type Shape4 = [number, number, number, number];
type PadAttr = 'same' | 'valid' | number | tf.backend_util.ExplicitPadding;

function shape4(t: TensorInfo | number[], what: string): Shape4 {
  const s = Array.isArray(t) ? t : t.shape;
  if (s.length !== 4) throw new Error(`metacurate: ${what} must be rank 4 (NHWC), got shape [${s.join(', ')}]`);
  return s as Shape4;
}

function assertShape(got: number[], want: number[], what: string): void {
  if (got.length !== want.length || got.some((v, i) => v !== want[i])) {
    throw new Error(`metacurate: ${what} has shape [${got.join(', ')}], expected [${want.join(', ')}]`);
  }
}

/**
 * dW[kh,kw,ci,co] = sum_{b,oh,ow} x[b, oh*s+kh-pt, ow*s+kw-pl, ci] * dy[b,oh,ow,co].
 * That is a convolution of x^T ([ci,H,W,B]) with dy^T ([oh,ow,B,co]) as the
 * filter: the forward stride becomes the dilation, and the output is [ci,kh,kw,co].
 */
export function conv2DBackpropFilterKernel(backendName: string) {
  return (args: KernelArgs): TensorInfo => {
    const { inputs, backend, attrs = {} } = args;
    const x = inputs['x']!;
    const dy = inputs['dy']!;
    assertNHWC('Conv2DBackpropFilter', attrs['dataFormat']);
    const filterShape = shape4(attrs['filterShape'] as number[], 'Conv2DBackpropFilter filterShape');
    const info = tf.backend_util.computeConv2DInfo(
      shape4(x, 'Conv2DBackpropFilter x'), filterShape, attrs['strides'] as [number, number], 1,
      attrs['pad'] as PadAttr, attrs['dimRoundingMode'] as 'floor' | 'round' | 'ceil' | undefined,
      false, 'channelsLast');
    assertShape(dy.shape, info.outShape, 'Conv2DBackpropFilter dy');
    const [fh, fw, ci, co] = filterShape;
    const { inHeight: H, inWidth: W, outHeight: oh, outWidth: ow, strideHeight: sh, strideWidth: sw } = info;
    const pt = info.padInfo.top;
    const pl = info.padInfo.left;
    // Bottom/right padding that makes the new conv's output exactly fh x fw;
    // negative means the last input rows are never touched: crop them.
    const pb = fh + (oh - 1) * sh - H - pt;
    const pr = fw + (ow - 1) * sw - W - pl;
    return withScratch(backend, (keep) => {
      let xt = keep(callKernel(tf.Transpose, backendName, backend, { x }, { perm: [3, 1, 2, 0] }));
      if (pb < 0 || pr < 0) {
        xt = keep(callKernel(tf.Slice, backendName, backend, { x: xt }, {
          begin: [0, 0, 0, 0], size: [ci, H + Math.min(pb, 0), W + Math.min(pr, 0), x.shape[0]!],
        }));
      }
      const dyt = keep(callKernel(tf.Transpose, backendName, backend, { x: dy }, { perm: [1, 2, 0, 3] }));
      const out = keep(callKernel(tf.Conv2D, backendName, backend, { x: xt, filter: dyt }, {
        strides: [1, 1],
        pad: [[0, 0], [pt, Math.max(pb, 0)], [pl, Math.max(pr, 0)], [0, 0]],
        dataFormat: 'NHWC',
        dilations: [sh, sw],
      }));
      assertShape(out.shape, [ci, fh, fw, co], 'Conv2DBackpropFilter intermediate');
      return callKernel(tf.Transpose, backendName, backend, { x: out }, { perm: [1, 2, 0, 3] });
    });
  };
}

/**
 * For stride 1, dx is a plain convolution of dy with the spatially flipped,
 * in/out-transposed filter. Other strides (and odd paddings) keep the stock kernel.
 */
export function conv2DBackpropInputKernel(backendName: string, stock: tf.KernelFunc | undefined) {
  return (args: KernelArgs): TensorInfo => {
    const { inputs, backend, attrs = {} } = args;
    const dy = inputs['dy']!;
    const filter = inputs['filter']!;
    assertNHWC('Conv2DBackpropInput', attrs['dataFormat']);
    const inShape = shape4(attrs['inputShape'] as number[], 'Conv2DBackpropInput inputShape');
    const info = tf.backend_util.computeConv2DInfo(
      inShape, shape4(filter, 'Conv2DBackpropInput filter'), attrs['strides'] as [number, number], 1,
      attrs['pad'] as PadAttr, attrs['dimRoundingMode'] as 'floor' | 'round' | 'ceil' | undefined,
      false, 'channelsLast');
    assertShape(dy.shape, info.outShape, 'Conv2DBackpropInput dy');
    const { filterHeight: fh, filterWidth: fw, inHeight: H, inWidth: W, outHeight: oh, outWidth: ow } = info;
    const top = fh - 1 - info.padInfo.top;
    const left = fw - 1 - info.padInfo.left;
    const bottom = H + info.padInfo.top - oh;
    const right = W + info.padInfo.left - ow;
    const fast = info.strideHeight === 1 && info.strideWidth === 1 && Math.min(top, left, bottom, right) >= 0;
    if (!fast) {
      if (stock == null) throw new Error('metacurate: Conv2DBackpropInput: no kernel for this configuration');
      return stock(args) as TensorInfo;
    }
    return withScratch(backend, (keep) => {
      const flipped = keep(callKernel(tf.Reverse, backendName, backend, { x: filter }, { dims: [0, 1] }));
      const wt = keep(callKernel(tf.Transpose, backendName, backend, { x: flipped }, { perm: [0, 1, 3, 2] }));
      const out = callKernel(tf.Conv2D, backendName, backend, { x: dy, filter: wt }, {
        strides: [1, 1],
        pad: [[0, 0], [top, bottom], [left, right], [0, 0]],
        dataFormat: 'NHWC',
        dilations: [1, 1],
      });
      assertShape(out.shape, inShape, 'Conv2DBackpropInput output');
      return out;
    });
  };
}

/** Scatter-add on the JS side: the wasm backend has no UnsortedSegmentSum, so gather has no gradient there. */
export function unsortedSegmentSumKernel() {
  return (args: KernelArgs): TensorInfo => {
    const { inputs, backend, attrs = {} } = args;
    const x = inputs['x']!;
    const ids = inputs['segmentIds']!;
    const numSegments = attrs['numSegments'] as number;
    if (x.dtype !== 'float32' && x.dtype !== 'int32') {
      throw new Error(`metacurate: UnsortedSegmentSum supports float32 and int32, got ${x.dtype}`);
    }
    const n = ids.shape.reduce((a, b) => a * b, 1);
    // segmentIds may cover the leading dims of x; the rest is one "row".
    const inner = x.shape.slice(ids.shape.length).reduce((a, b) => a * b, 1);
    const xv = backend.readSync(x.dataId) as Float32Array | Int32Array;
    const iv = backend.readSync(ids.dataId) as Int32Array | Float32Array;
    const out = x.dtype === 'float32' ? new Float32Array(numSegments * inner) : new Int32Array(numSegments * inner);
    for (let i = 0; i < n; i++) {
      const seg = iv[i]!;
      if (seg < 0 || seg >= numSegments) continue; // TF semantics: dropped
      const o = seg * inner;
      const s = i * inner;
      for (let j = 0; j < inner; j++) out[o + j] += xv[s + j]!;
    }
    const shape = [numSegments, ...x.shape.slice(ids.shape.length)];
    const wasm = backend as unknown as { makeOutput(s: number[], d: string, m?: number, v?: unknown): TensorInfo };
    return wasm.makeOutput(shape, x.dtype, undefined, out);
  };
}

export function patchConv2DBackpropFilter(backendName: string): void {
  replaceKernel({
    kernelName: tf.Conv2DBackpropFilter,
    backendName,
    kernelFunc: conv2DBackpropFilterKernel(backendName) as tf.KernelFunc,
  });
}

export function patchConv2DBackpropInput(backendName: string): void {
  const stockInput = tf.getKernel(tf.Conv2DBackpropInput, backendName);
  replaceKernel({
    ...(stockInput ?? {}),
    kernelName: tf.Conv2DBackpropInput,
    backendName,
    kernelFunc: conv2DBackpropInputKernel(backendName, stockInput?.kernelFunc) as tf.KernelFunc,
  });
}

/** Registers the JS UnsortedSegmentSum where the backend has none. */
export function patchUnsortedSegmentSum(backendName: string): void {
  if (tf.getKernel(tf.UnsortedSegmentSum, backendName) == null) {
    replaceKernel({ kernelName: tf.UnsortedSegmentSum, backendName, kernelFunc: unsortedSegmentSumKernel() as tf.KernelFunc });
  }
}
