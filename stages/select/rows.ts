/**
 * Copying rows of a block into DatasetWriter rows, column by column, as the values
 * data/columns.ts builds columns from. Fixed-size lists come out as views into the
 * block's buffers (no copy here: the writer copies when it flushes a batch).
 */
import type { Vector } from 'apache-arrow';
import { fixedListValues } from '../../data/columns.js';
import type { ColumnSpec } from '../../data/format.js';
import type { Block } from '../../data/reader.js';

type CellReader = (i: number) => unknown;

function cellReader(spec: ColumnSpec, vec: Vector): CellReader {
  switch (spec.kind) {
    case 'uint8Vector':
    case 'float32Vector': {
      const flat = fixedListValues<Uint8Array | Float32Array>(vec);
      const len = spec.length;
      return (i) => flat.subarray(i * len, (i + 1) * len);
    }
    case 'image': {
      const bytes = vec.getChild('bytes');
      const paths = vec.getChild('path');
      return (i) => (vec.isValid(i) ? { bytes: bytes?.get(i) ?? null, path: paths?.get(i) ?? null } : null);
    }
    default:
      return (i) => vec.get(i);
  }
}

/** A function from a row of `block` (0-based within it) to a writer row of `columns`. */
export function rowReader(block: Block, columns: ColumnSpec[]): (i: number) => Record<string, unknown> {
  const readers = columns.map((c) => [c.name, cellReader(c, block.column(c.name))] as const);
  return (i) => {
    const row: Record<string, unknown> = {};
    for (const [name, read] of readers) row[name] = read(i);
    return row;
  };
}
