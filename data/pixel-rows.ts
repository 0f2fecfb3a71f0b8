/**
 * Pixel rows read where they lie. A dataset's shards are uncompressed Arrow IPC
 * streams, so every record batch's pixel values sit contiguously at a known file
 * offset. `ShardPixels` indexes those offsets (message headers only) and reads any
 * rows with positioned reads, so training draws its batches from the shards in
 * the same seeded order as from memory, without holding the pool: it costs 20
 * bytes per record batch, not per row. The OS page cache does the buffering.
 *
 * A pixel source is either the pixels in memory (a Uint8Array, n × rowLength) or a
 * ShardPixels; the functions below take either. Layouts the index cannot address
 * (compressed bodies, the IPC file format, column types it does not know) are
 * loaded into memory instead.
 */
import fs from 'node:fs';
import { Message, MessageHeader, Type, type DataType, type Field } from 'apache-arrow';
import { DataError, UsageError } from '../core/errors.js';
import { lastAtMost } from '../core/search.js';
import { bytesFromText } from '../core/units.js';

/** Where a dataset's pixels are read from. */
export type PixelSource = Uint8Array | ShardPixels;

/** The pixel bytes a dataset may hold in memory before training reads them from its shards (default). */
export const PIXELS_IN_MEMORY_BYTES = 256 * 1024 * 1024;

/** The environment variable that changes PIXELS_IN_MEMORY_BYTES (worker threads inherit it). */
export const PIXEL_MEMORY_ENV = 'METACURATE_PIXEL_MEMORY';

/** The in-memory limit for pixels: `METACURATE_PIXEL_MEMORY` (e.g. `2GiB`, `0` for always from the shards), else the default. */
export function pixelMemoryLimit(): number {
  const text = process.env[PIXEL_MEMORY_ENV];
  if (text === undefined || text.trim() === '') return PIXELS_IN_MEMORY_BYTES;
  if (text.trim() === '0') return 0;
  try {
    return bytesFromText(text);
  } catch (err) {
    throw new UsageError(`${PIXEL_MEMORY_ENV}=${text}: ${(err as Error).message}`, { hint: `Set ${PIXEL_MEMORY_ENV} to a byte count such as 2GiB, or unset it for the default (256MiB)` });
  }
}

/**
 * Open shard files, shared by a ShardPixels and its subsets. Closed when the
 * source that indexed them is collected; a subset still in use reopens what it reads.
 */
interface ShardFiles {
  paths: string[];
  /** (dev, ino, size) per shard when indexed: a reopened file must be the same one. */
  identity: string[];
  fds: (number | undefined)[];
  open: number[];
}

/** Rows per read when statistics visit every row of a source. */
const STATS_CHUNK_ROWS = 4096;

/** Keeps few files open per source: pools can have hundreds of shards and every worker thread opens its own. */
const MAX_OPEN_FILES = 32;

const closer = new FinalizationRegistry<ShardFiles>((files) => closeAll(files));

function closeAll(files: ShardFiles): void {
  for (const i of files.open) {
    const fd = files.fds[i];
    if (fd !== undefined) fs.closeSync(fd);
    files.fds[i] = undefined;
  }
  files.open.length = 0;
}

function identityOf(st: fs.Stats): string {
  return `${st.dev}:${st.ino}:${st.size}`;
}

function fdOf(files: ShardFiles, shard: number): number {
  const have = files.fds[shard];
  if (have !== undefined) return have;
  if (files.open.length >= MAX_OPEN_FILES) {
    const old = files.open.shift()!;
    fs.closeSync(files.fds[old]!);
    files.fds[old] = undefined;
  }
  const fd = fs.openSync(files.paths[shard], 'r');
  if (identityOf(fs.fstatSync(fd)) !== files.identity[shard]) {
    fs.closeSync(fd);
    throw new DataError('the shard was replaced while its rows were being read', {
      file: files.paths[shard], hint: 'Do not rewrite a dataset while a stage reads it; rerun the stage',
    });
  }
  files.fds[shard] = fd;
  files.open.push(shard);
  return fd;
}

/** Rows of a dataset's pixel column, read from its shards on demand. */
export class ShardPixels {
  private constructor(
    private readonly files: ShardFiles,
    /** First dataset row of each record batch, ascending, with the total row count appended. */
    private readonly batchStart: Float64Array,
    /** File offset of each record batch's first pixel value. */
    private readonly batchOffset: Float64Array,
    private readonly batchShard: Int32Array,
    readonly rowLength: number,
    /** Dataset rows this source shows, in order (all rows when absent). */
    private readonly index: Int32Array | undefined,
  ) {}

  /** Rows this source shows. */
  get rows(): number {
    return this.index ? this.index.length : this.batchStart[this.batchStart.length - 1];
  }

  /**
   * Indexes the pixel values of `shards` (paths, in dataset order), or returns
   * undefined when a shard's layout cannot be addressed (then load into memory).
   */
  static index(paths: string[], column: string, rowLength: number): ShardPixels | undefined {
    const files: ShardFiles = { paths, identity: [], fds: paths.map(() => undefined), open: [] };
    const starts: number[] = [];
    const offsets: number[] = [];
    const shardOf: number[] = [];
    let row = 0;
    try {
      for (let s = 0; s < paths.length; s++) {
        const fd = fs.openSync(paths[s], 'r');
        try {
          files.identity.push(identityOf(fs.fstatSync(fd)));
          const batches = pixelBatches(fd, column, rowLength);
          if (!batches) return undefined;
          for (const b of batches) {
            starts.push(row);
            offsets.push(b.offset);
            shardOf.push(s);
            row += b.rows;
          }
        } finally {
          fs.closeSync(fd);
        }
      }
    } catch (err) {
      if (err instanceof DataError) throw err;
      return undefined; // unreadable headers: the streaming reader reports the error with its row
    }
    starts.push(row);
    const px = new ShardPixels(files, Float64Array.from(starts), Float64Array.from(offsets), Int32Array.from(shardOf), rowLength, undefined);
    closer.register(px, files);
    return px;
  }

  /** The rows `idx` of this source (indices into it), as a new source sharing the open files. */
  subset(idx: ArrayLike<number>): ShardPixels {
    const index = Int32Array.from(idx, (i) => this.datasetRow(i));
    return new ShardPixels(this.files, this.batchStart, this.batchOffset, this.batchShard, this.rowLength, index);
  }

  private datasetRow(i: number): number {
    if (!(i >= 0 && i < this.rows)) throw new RangeError(`row ${i} is outside 0..${this.rows - 1}`);
    return this.index ? this.index[i] : i;
  }

  /** The record batch holding dataset row `r` (batchStart ends with the row count, hence length − 1). */
  private batchOf(r: number): number {
    return lastAtMost(this.batchStart, this.batchStart.length - 1, r);
  }

  /** Copies rows `idx` into `out` (idx.length × rowLength), one read per run of adjacent rows. */
  read(idx: ArrayLike<number>, out = new Uint8Array(idx.length * this.rowLength)): Uint8Array {
    const len = this.rowLength;
    let k = 0;
    while (k < idx.length) {
      const r = this.datasetRow(idx[k]);
      const b = this.batchOf(r);
      const end = this.batchStart[b + 1];
      let run = 1;
      while (k + run < idx.length && run < end - r && this.datasetRow(idx[k + run]) === r + run) run++;
      const want = run * len;
      const fd = fdOf(this.files, this.batchShard[b]);
      const pos = this.batchOffset[b] + (r - this.batchStart[b]) * len;
      let got = 0;
      while (got < want) {
        const n = fs.readSync(fd, out, k * len + got, want - got, pos + got);
        if (n === 0) {
          throw new DataError('the shard ended inside its pixel values', { file: this.files.paths[this.batchShard[b]], row: r, hint: 'The shard was truncated; re-create the dataset' });
        }
        got += n;
      }
      k += run;
    }
    return out;
  }

  /** Closes the files now (they reopen on the next read). */
  close(): void {
    closeAll(this.files);
  }
}

/** How many rows a pixel source holds. */
export function pixelRowCount(src: PixelSource, rowLength: number): number {
  return src instanceof ShardPixels ? src.rows : src.length / rowLength;
}

/** Rows `idx` of a pixel source as uint8, idx.length × rowLength. */
export function readPixelRows(src: PixelSource, rowLength: number, idx: ArrayLike<number>): Uint8Array {
  if (src instanceof ShardPixels) return src.read(idx);
  const out = new Uint8Array(idx.length * rowLength);
  for (let r = 0; r < idx.length; r++) out.set(src.subarray(idx[r] * rowLength, idx[r] * rowLength + rowLength), r * rowLength);
  return out;
}

/** The rows `idx` of a pixel source: a copy in memory, or an index over the same shards. */
export function subsetPixels(src: PixelSource, rowLength: number, idx: ArrayLike<number>): PixelSource {
  return src instanceof ShardPixels ? src.subset(idx) : readPixelRows(src, rowLength, idx);
}

/**
 * Per-channel sums of the pixel values (scaled to [0, 1]) and of their squares
 * over every row, and how many values each channel has: the statistics behind
 * input normalisation, read in order, STATS_CHUNK_ROWS rows at a time.
 */
export function channelSums(src: PixelSource, shape: readonly [number, number, number]): { sum: Float64Array; sq: Float64Array; count: number } {
  const ch = shape[2];
  const rowLength = shape[0] * shape[1] * ch;
  const sum = new Float64Array(ch);
  const sq = new Float64Array(ch);
  const visit = (rows: Uint8Array) => {
    for (let j = 0; j < rows.length; j++) {
      const v = rows[j] / 255;
      sum[j % ch] += v;
      sq[j % ch] += v * v;
    }
  };
  const n = pixelRowCount(src, rowLength);
  if (!(src instanceof ShardPixels)) visit(src.subarray(0, n * rowLength));
  else {
    for (let s = 0; s < n; s += STATS_CHUNK_ROWS) {
      const m = Math.min(STATS_CHUNK_ROWS, n - s);
      visit(src.read(Int32Array.from({ length: m }, (_, i) => s + i)));
    }
  }
  return { sum, sq, count: n * rowLength / ch };
}

// ---- the Arrow IPC stream: where each record batch's pixel values start ----

interface PixelBatch { rows: number; offset: number }

function readExactly(fd: number, length: number, position: number): Buffer | undefined {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const n = fs.readSync(fd, buf, got, length - got, position + got);
    if (n === 0) return undefined;
    got += n;
  }
  return buf;
}

/**
 * Walks a shard's IPC stream messages (metadata only; bodies are skipped) and
 * returns each record batch's row count and the file offset of its pixel values;
 * undefined for a layout this cannot address.
 */
function pixelBatches(fd: number, column: string, rowLength: number): PixelBatch[] | undefined {
  const out: PixelBatch[] = [];
  let pos = 0;
  let bufferIndex = -1;
  for (;;) {
    const head = readExactly(fd, 4, pos);
    if (!head) return out; // end of file without an end-of-stream marker: the stream reader accepts it too
    let metaLength = head.readInt32LE(0);
    pos += 4;
    if (metaLength === -1) {
      const len = readExactly(fd, 4, pos);
      if (!len) return undefined;
      metaLength = len.readInt32LE(0);
      pos += 4;
    }
    if (metaLength === 0) return out; // end of stream
    if (metaLength < 0) return undefined;
    const meta = readExactly(fd, metaLength, pos);
    if (!meta) return undefined;
    pos += metaLength;
    const msg = Message.decode(meta);
    if (msg.headerType === MessageHeader.Schema) {
      bufferIndex = pixelBufferIndex((msg.header() as { fields: Field[] }).fields, column);
      if (bufferIndex < 0) return undefined;
    } else if (msg.headerType === MessageHeader.RecordBatch) {
      const rb = msg.header() as unknown as { length: number; buffers: { offset: number; length: number }[]; compression: unknown };
      if (bufferIndex < 0 || rb.compression) return undefined;
      const region = rb.buffers[bufferIndex];
      if (!region || Number(region.length) < rb.length * rowLength) return undefined;
      out.push({ rows: Number(rb.length), offset: pos + Number(region.offset) });
    } else if (msg.headerType !== MessageHeader.DictionaryBatch) {
      return undefined;
    }
    pos += Number(msg.bodyLength);
  }
}

/** How many IPC buffers a field of this type contributes (children included); -1 when unknown. */
function bufferCount(type: DataType): number {
  const children = (): number => {
    let total = 0;
    for (const c of type.children ?? []) {
      const n = bufferCount(c.type);
      if (n < 0) return -1;
      total += n;
    }
    return total;
  };
  switch (type.typeId) {
    case Type.Null: return 0;
    case Type.Int: case Type.Float: case Type.Bool: case Type.Decimal: case Type.Date: case Type.Time:
    case Type.Timestamp: case Type.Interval: case Type.Duration: case Type.FixedSizeBinary: case Type.Dictionary:
      return 2;
    case Type.Binary: case Type.Utf8: case Type.LargeBinary: case Type.LargeUtf8:
      return 3;
    case Type.List: case Type.LargeList: case Type.Map: {
      const c = children();
      return c < 0 ? -1 : 2 + c;
    }
    case Type.FixedSizeList: case Type.Struct: {
      const c = children();
      return c < 0 ? -1 : 1 + c;
    }
    default:
      return -1; // unions, views: not addressed
  }
}

/** The index of the pixel column's uint8 values among the batch's buffers; -1 when not addressable. */
function pixelBufferIndex(fields: Field[], column: string): number {
  let index = 0;
  for (const f of fields) {
    if (f.name === column) {
      const child = f.type.typeId === Type.FixedSizeList ? f.type.children?.[0]?.type : undefined;
      const isUint8 = child?.typeId === Type.Int && (child as unknown as { bitWidth: number; isSigned: boolean }).bitWidth === 8;
      // list validity, child validity, then the child's values
      return isUint8 ? index + 2 : -1;
    }
    const n = bufferCount(f.type);
    if (n < 0) return -1;
    index += n;
  }
  return -1;
}
