/**
 * Building Arrow column data from plain JS values, and reading plain values back.
 * Builders write straight into typed buffers (no per-value Arrow builder), which
 * keeps ingest and sidecar writes fast and byte-deterministic.
 */
import { makeData, type Data, type DataType, type Vector, Field, Binary, Utf8 } from 'apache-arrow';
import { arrowType, type ColumnSpec } from './format.js';

const encoder = new TextEncoder();

/** A value per row for an `image` column: the encoded original and/or its path. */
export interface ImageValue {
  bytes?: Uint8Array | null;
  path?: string | null;
}

function validityBitmap(length: number, isValid: (i: number) => boolean): { bitmap: Uint8Array | undefined; nullCount: number } {
  let nullCount = 0;
  const bitmap = new Uint8Array(Math.ceil(length / 8));
  for (let i = 0; i < length; i++) {
    if (isValid(i)) bitmap[i >> 3] |= 1 << (i & 7);
    else nullCount++;
  }
  return nullCount === 0 ? { bitmap: undefined, nullCount: 0 } : { bitmap, nullCount };
}

function varBinaryData(type: DataType, values: ArrayLike<Uint8Array | null | undefined>): Data {
  const n = values.length;
  const offsets = new Int32Array(n + 1);
  let total = 0;
  for (let i = 0; i < n; i++) {
    total += values[i]?.byteLength ?? 0;
    offsets[i + 1] = total;
  }
  const bytes = new Uint8Array(total);
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (v) bytes.set(v, offsets[i]);
  }
  const { bitmap, nullCount } = validityBitmap(n, (i) => values[i] != null);
  return makeData({ type: type as any, length: n, nullCount, nullBitmap: bitmap, valueOffsets: offsets, data: bytes });
}

function stringData(values: ArrayLike<string | null | undefined>): Data {
  const encoded = Array.from({ length: values.length }, (_, i) => {
    const v = values[i];
    return v == null ? null : encoder.encode(v);
  });
  return varBinaryData(new Utf8(), encoded);
}

/** Arrow data for `values` (one per row) of a column. */
export function columnData(spec: ColumnSpec, values: ArrayLike<unknown>): Data {
  const type = arrowType(spec);
  const n = values.length;
  switch (spec.kind) {
    case 'string':
      return stringData(values as ArrayLike<string | null>);
    case 'int64':
    case 'classLabel': {
      const out = new BigInt64Array(n);
      for (let i = 0; i < n; i++) out[i] = BigInt(values[i] as number | bigint);
      return makeData({ type: type as any, length: n, data: out });
    }
    case 'int32':
      return makeData({ type: type as any, length: n, data: Int32Array.from(values as ArrayLike<number>) });
    case 'float32':
      return makeData({ type: type as any, length: n, data: Float32Array.from(values as ArrayLike<number>) });
    case 'float64':
      return makeData({ type: type as any, length: n, data: Float64Array.from(values as ArrayLike<number>) });
    case 'bool': {
      const bits = new Uint8Array(Math.ceil(n / 8));
      for (let i = 0; i < n; i++) if (values[i]) bits[i >> 3] |= 1 << (i & 7);
      return makeData({ type: type as any, length: n, data: bits });
    }
    case 'image': {
      const imgs = values as ArrayLike<ImageValue | null | undefined>;
      const bytes = varBinaryData(new Binary(), Array.from({ length: n }, (_, i) => imgs[i]?.bytes ?? null));
      const paths = stringData(Array.from({ length: n }, (_, i) => imgs[i]?.path ?? null));
      const { bitmap, nullCount } = validityBitmap(n, (i) => imgs[i] != null);
      return makeData({ type: type as any, length: n, nullCount, nullBitmap: bitmap, children: [bytes, paths] });
    }
    case 'uint8Vector':
    case 'float32Vector': {
      const len = spec.length;
      const flat = spec.kind === 'uint8Vector' ? new Uint8Array(n * len) : new Float32Array(n * len);
      for (let i = 0; i < n; i++) {
        const v = values[i] as ArrayLike<number>;
        if (!v || v.length !== len) {
          throw new RangeError(`column ${spec.name}: row ${i} has ${v?.length ?? 0} values, expected ${len}`);
        }
        flat.set(v, i * len);
      }
      const childType = (type as any).children[0].type as DataType;
      const child = makeData({ type: childType as any, length: n * len, data: flat as any });
      return makeData({ type: type as any, length: n, child });
    }
  }
}

// Arrow JS slices a primitive's `values` buffer to the logical start (the offset only
// matters for the validity bitmap), so a chunk's values begin at index 0.

/** The flat typed array under a fixed-size-list vector (no copy when it is one chunk). */
export function fixedListValues<T extends Uint8Array | Float32Array>(vec: Vector): T {
  const parts: T[] = [];
  let total = 0;
  for (const d of vec.data) {
    const size = (d.type as any).listSize as number;
    const arr = (d.children[0].values as T).subarray(0, d.length * size) as T;
    parts.push(arr);
    total += arr.length;
  }
  if (parts.length === 1) return parts[0];
  const out = new (parts[0].constructor as any)(total) as T;
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Plain numbers from an int64/int32/float column. */
export function numericValues(vec: Vector): Float64Array {
  const out = new Float64Array(vec.length);
  let o = 0;
  for (const d of vec.data) {
    const vals = d.values as ArrayLike<number | bigint>;
    for (let i = 0; i < d.length; i++) out[o++] = Number(vals[i]);
  }
  return out;
}
