/**
 * The dataset writer: rows or columns in, HF-layout Arrow stream shards out,
 * atomically (docs/architecture.md#atomic-writes). Shards are cut by row count
 * and by bytes, record batches have a fixed row count, so the same rows always
 * give the same bytes.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { RecordBatch, RecordBatchStreamWriter, Struct, makeData, type Schema } from 'apache-arrow';
import { OWNER_FILE, beginAtomicDir, pathExists, type AtomicDir } from '../core/atomic.js';
import { fingerprint as computeFingerprint } from '../core/hash.js';
import { CODE_VERSION } from '../core/version.js';
import { DataError, InternalError, OutputError, UsageError } from '../core/errors.js';
import { readCuration } from './reader.js';
import { columnData } from './columns.js';
import {
  CURATION_FILE, DATASET_INFO_FILE, FORMAT_VERSION, STATE_FILE, hfDatasetInfo, hfState, makeSchema,
  shardFileName, type ColumnSpec, type CurationInfo, type ParentRef, type PixelShape, type ShardRecord,
} from './format.js';

export interface DatasetMeta {
  /** The output's fingerprint, computed once by the stage; derived from the fields below when absent (scripts, tests). */
  fingerprint?: string;
  stage: string;
  stageVersion: string;
  options: Record<string, unknown>;
  /** The choices that do not follow from the inputs, when options also hold something that does (stages/define.ts PlanBase). */
  choices?: Record<string, unknown>;
  seed?: number;
  parents: ParentRef[];
  /** For sidecars: the fingerprint of the annotated dataset. */
  sidecarOf?: string;
  /** For sidecars: the annotated dataset's shard files, in order (so a reader can tell what they cover after rows were appended). */
  sidecarShards?: string[];
  description?: string;
  license?: string;
}

export interface WriterOptions {
  columns: ColumnSpec[];
  pixelShape?: PixelShape;
  meta: DatasetMeta;
  /** Rows per shard at most (default 100,000). */
  shardRows?: number;
  /** Bytes per shard at most, approximately (default 256 MiB). */
  shardBytes?: number;
  /** Exact rows per shard, for sidecars that must align with a parent's shards. */
  shardSizes?: number[];
  /** Rows per Arrow record batch (default 1,000, as HF writes). */
  batchRows?: number;
  overwrite?: boolean;
  /**
   * Keep the dataset already at the output and add these rows to it as new
   * shards (ingest --append). Its shards are hard-linked, never rewritten; the
   * metadata is replaced by the same atomic swap as an overwrite; a dataset that
   * changed under the append is refused at the commit.
   */
  append?: boolean;
  /** Extra files to write into the dataset directory before it is committed. */
  extraFiles?: Record<string, string | Uint8Array>;
}

export interface WriteResult {
  dir: string;
  fingerprint: string;
  numRows: number;
  shards: ShardRecord[];
  curation: CurationInfo;
}

type Row = Record<string, unknown>;

interface OpenShard {
  tmpName: string;
  writer: RecordBatchStreamWriter;
  done: Promise<void>;
  hash: ReturnType<typeof createHash>;
  bytes: { n: number };
  /** The first error writing the file (e.g. a full disk), once the drain has met it. */
  failed?: unknown;
  /** Arrow buffer bytes of the batches written so far: known at once, unlike `bytes`, which the file stream counts later. */
  dataBytes: number;
  rows: number;
}

export class DatasetWriter {
  readonly schema: Schema;
  private readonly columns: ColumnSpec[];
  private readonly shardRows: number;
  private readonly shardBytes: number;
  private readonly batchRows: number;
  private pending: Row[] = [];
  private shard: OpenShard | undefined;
  private finished: { tmpName: string; rows: number; bytes: number; sha256: string }[] = [];
  private numRows = 0;
  private closed = false;

  private constructor(
    private readonly outDir: string,
    private readonly dir: AtomicDir,
    private readonly opts: WriterOptions,
    /** With `append`: the dataset being added to, as it was when the append began. */
    private readonly base?: CurationInfo,
  ) {
    this.columns = opts.columns;
    this.schema = makeSchema(opts.columns, opts.pixelShape);
    this.shardRows = opts.shardRows ?? 100_000;
    this.shardBytes = opts.shardBytes ?? 256 * 1024 * 1024;
    this.batchRows = opts.batchRows ?? 1000;
  }

  /** Starts a dataset in a temporary sibling of `outDir`; refuses an existing output without `overwrite`. */
  static async create(outDir: string, opts: WriterOptions): Promise<DatasetWriter> {
    // Check before creating the temporary directory, which a throw here would leave behind.
    const names = new Set<string>();
    for (const c of opts.columns) {
      if (names.has(c.name)) throw new UsageError(`duplicate column "${c.name}"`);
      names.add(c.name);
    }
    if (opts.append) {
      const base = await appendBase(outDir, opts);
      if (base) {
        const dir = await beginAtomicDir(outDir, { overwrite: true });
        try {
          await copyBase(outDir, dir.tmp, base);
        } catch (err) {
          await dir.abort();
          throw err;
        }
        return new DatasetWriter(outDir, dir, opts, base);
      }
    }
    const dir = await beginAtomicDir(outDir, { overwrite: opts.overwrite });
    return new DatasetWriter(outDir, dir, opts);
  }

  /** The temporary directory being filled: files written here are committed with the dataset. */
  get tempDir(): string {
    return this.dir.tmp;
  }

  get rowsWritten(): number {
    return this.numRows + this.pending.length;
  }

  /** Appends one row: an object with a value per column. */
  async writeRow(row: Row): Promise<void> {
    this.pending.push(row);
    if (this.pending.length >= this.batchLimit()) await this.flushBatch();
  }

  /** Appends `n` rows given column-wise. */
  async writeColumns(cols: Record<string, ArrayLike<unknown>>): Promise<void> {
    const n = cols[this.columns[0].name]?.length ?? 0;
    for (const c of this.columns) {
      if (!cols[c.name] && !c.nullable) throw new UsageError(`writeColumns: missing column "${c.name}"`);
      if (cols[c.name] && cols[c.name].length !== n) throw new UsageError(`writeColumns: column "${c.name}" has ${cols[c.name].length} rows, expected ${n}`);
    }
    for (let i = 0; i < n; i++) {
      const row: Row = {};
      for (const c of this.columns) row[c.name] = cols[c.name]?.[i];
      await this.writeRow(row);
    }
  }

  /** Rows the current batch may still take: the batch size, capped by what the shard may still hold. */
  private batchLimit(): number {
    const sizes = this.opts.shardSizes;
    const inShard = this.shard?.rows ?? 0;
    // A batch never crosses a shard's row limit, so shards hold exactly shardRows rows.
    if (!sizes) return Math.max(1, Math.min(this.batchRows, this.shardRows - inShard));
    const idx = this.finished.length;
    const left = (sizes[idx] ?? Infinity) - inShard;
    return Math.max(1, Math.min(this.batchRows, left));
  }

  private async flushBatch(): Promise<void> {
    if (this.pending.length === 0) return;
    const rows = this.pending;
    this.pending = [];
    const children = this.columns.map((c) => columnData(c, rows.map((r) => r[c.name])));
    const structData = makeData({ type: new Struct(this.schema.fields), length: rows.length, children });
    const batch = new RecordBatch(this.schema, structData);
    const shard = await this.currentShard();
    // A full disk or a lost mount stops the stage at the next batch, not at the end.
    if (shard.failed) throw shard.failed;
    shard.writer.write(batch);
    shard.rows += rows.length;
    shard.dataBytes += batch.data.byteLength;
    this.numRows += rows.length;
    // Yield so the file stream drains: memory stays bounded by about one batch.
    await new Promise((r) => setImmediate(r));
    if (this.shardIsFull(shard)) await this.closeShard();
  }

  private shardIsFull(shard: OpenShard): boolean {
    const sizes = this.opts.shardSizes;
    if (sizes) return shard.rows >= (sizes[this.finished.length] ?? Infinity);
    // Cut on dataBytes, not on the stream's count: that lags behind by however far the
    // stream has drained, which would make shard boundaries depend on timing.
    return shard.rows >= this.shardRows || shard.dataBytes >= this.shardBytes;
  }

  private async currentShard(): Promise<OpenShard> {
    if (this.shard) return this.shard;
    const tmpName = `shard-${String(this.finished.length).padStart(5, '0')}.arrow.part`;
    const writer = new RecordBatchStreamWriter();
    const hash = createHash('sha256');
    const bytes = { n: 0 };
    const fh = await fsp.open(path.join(this.dir.tmp, tmpName), 'w');
    const shard: OpenShard = { tmpName, writer, done: Promise.resolve(), hash, bytes, dataBytes: 0, rows: 0 };
    // Drain Arrow's byte queue into the file by hand. Piping its node stream would,
    // on a write error, destroy that stream, and Arrow then rejects a promise no one
    // holds (an unhandled rejection that kills the process). After an error the
    // queue is still drained, so that closing the writer always settles.
    shard.done = (async () => {
      for await (const chunk of writer) {
        if (shard.failed) continue;
        try {
          let off = 0;
          while (off < chunk.length) off += (await fh.write(chunk, off, chunk.length - off)).bytesWritten;
          hash.update(chunk);
          bytes.n += chunk.length;
        } catch (err) {
          shard.failed = err;
        }
      }
      await fh.close().catch((err) => { shard.failed ??= err; });
      if (shard.failed) throw shard.failed;
    })();
    // Surfaced at the next batch and at close; never unhandled in between.
    shard.done.catch(() => undefined);
    writer.reset(undefined, this.schema);
    this.shard = shard;
    return shard;
  }

  private async closeShard(): Promise<void> {
    const shard = this.shard;
    if (!shard) return;
    this.shard = undefined;
    shard.writer.close();
    await shard.done;
    this.finished.push({ tmpName: shard.tmpName, rows: shard.rows, bytes: shard.bytes.n, sha256: shard.hash.digest('hex') });
  }

  /** Writes the metadata and renames the dataset into place. */
  async finish(summary: Record<string, unknown> = {}): Promise<WriteResult> {
    if (this.closed) throw new InternalError('DatasetWriter.finish called twice');
    this.closed = true;
    try {
      await this.flushBatch();
      await this.closeShard();
      if (this.finished.length === 0) {
        // An empty dataset still gets one (schema-only) shard so readers see the columns.
        await this.currentShard();
        await this.closeShard();
      }
      const sizes = this.opts.shardSizes;
      if (sizes && (sizes.length !== this.finished.length || sizes.some((s, i) => s !== this.finished[i].rows))) {
        throw new InternalError(`sidecar shards [${this.finished.map((s) => s.rows)}] do not match the parent's [${sizes}]`);
      }
      const count = this.finished.length;
      const m = this.opts.meta;
      // Appended shards get names of their own (the append's fingerprint), so the kept ones keep theirs.
      const shards: ShardRecord[] = [...(this.base?.shards ?? [])];
      for (let i = 0; i < count; i++) {
        const s = this.finished[i];
        const file = this.base ? shardFileName(i, count, fingerprintOfMeta(m).slice(0, 8)) : shardFileName(i, count);
        await fsp.rename(path.join(this.dir.tmp, s.tmpName), path.join(this.dir.tmp, file));
        shards.push({ file, rows: s.rows, bytes: s.bytes, sha256: s.sha256 });
      }
      const numRows = (this.base?.num_rows ?? 0) + this.numRows;
      const curation = curationRecord(m, { columns: this.columns, pixelShape: this.opts.pixelShape, shards, numRows, summary });
      if (this.base) curation.extends = [...(this.base.extends ?? []), this.base.fingerprint];
      const fp = curation.fingerprint;
      await fsp.writeFile(path.join(this.dir.tmp, STATE_FILE), json(hfState(shards.map((s) => s.file), fp)));
      await fsp.writeFile(
        path.join(this.dir.tmp, DATASET_INFO_FILE),
        json(hfDatasetInfo(this.columns, { description: m.description, license: m.license })),
      );
      for (const [name, data] of Object.entries(this.opts.extraFiles ?? {})) {
        await fsp.writeFile(path.join(this.dir.tmp, name), data);
      }
      // curation.json last: its presence marks a complete dataset even before the rename.
      await fsp.writeFile(path.join(this.dir.tmp, CURATION_FILE), json(curation));
      if (this.base && (await readCuration(this.outDir))?.fingerprint !== this.base.fingerprint) {
        throw new OutputError('the dataset changed while rows were being appended to it', { file: this.outDir, hint: 'Another run wrote it meanwhile; run the append again' });
      }
      await this.dir.commit();
      return { dir: path.resolve(this.outDir), fingerprint: fp, numRows, shards, curation };
    } catch (err) {
      await this.abort();
      throw err;
    }
  }

  /** Drops everything written so far. */
  async abort(): Promise<void> {
    this.closed = true;
    if (this.shard) {
      // close, not abort: Arrow's abort() leaves the node stream open (so `done`
      // never settles) and rejects an internal read nobody handles.
      this.shard.writer.close();
      await this.shard.done.catch(() => undefined);
      this.shard = undefined;
    }
    await this.dir.abort();
  }
}

const json = (v: unknown) => JSON.stringify(v, null, 2) + '\n';

/** The dataset an append adds to (undefined when there is none yet: the append then creates it), checked to take these rows. */
async function appendBase(outDir: string, opts: WriterOptions): Promise<CurationInfo | undefined> {
  if (!(await pathExists(outDir))) return undefined;
  const base = await readCuration(outDir);
  if (!base?.shards) {
    throw new OutputError('rows can only be appended to a dataset metacurate wrote, and this is not one', { file: outDir, hint: 'Choose another --out, or drop --append' });
  }
  const spell = (cols: ColumnSpec[]) => cols.map((c) => `${c.name}:${c.kind}${c.kind === 'classLabel' ? `[${c.names.join('|')}]` : ''}`).join(', ');
  if (spell(base.columns) !== spell(opts.columns) || JSON.stringify(base.pixel_shape) !== JSON.stringify(opts.pixelShape)) {
    throw new DataError(`the new rows do not fit the dataset: its columns are ${spell(base.columns)} (pixels ${base.pixel_shape?.join('x') ?? 'none'}), the new ones ${spell(opts.columns)} (pixels ${opts.pixelShape?.join('x') ?? 'none'})`, {
      file: outDir,
      hint: 'Append with the options and classes the dataset was made with (size, channels, keep-original, class names), or ingest into a new --out',
    });
  }
  return base;
}

/**
 * Fills an append's temporary directory with the dataset as it is: shards
 * hard-linked (the same files, not copies; copied only where the file system
 * has no links), other files copied, so the stage may add to them (e.g. the
 * rejected-items log); the metadata is written anew at the commit.
 */
async function copyBase(outDir: string, tmp: string, base: CurationInfo): Promise<void> {
  const shards = new Set(base.shards.map((s) => s.file));
  const metadata = new Set([CURATION_FILE, STATE_FILE, DATASET_INFO_FILE, OWNER_FILE]);
  for (const name of await fsp.readdir(outDir)) {
    if (metadata.has(name)) continue;
    const from = path.join(outDir, name);
    const to = path.join(tmp, name);
    if (shards.has(name)) await fsp.link(from, to).catch(() => fsp.copyFile(from, to));
    else await fsp.cp(from, to, { recursive: true });
  }
}

/** The fingerprint a meta names, or derives from its stage, options, seed and parents. */
export function fingerprintOfMeta(m: DatasetMeta): string {
  return m.fingerprint ?? computeFingerprint({
    stage: m.stage,
    stageVersion: m.stageVersion,
    options: m.options,
    seed: m.seed,
    parents: m.parents.map((p) => p.fingerprint),
  });
}

/** curation.json's content for an output: datasets list their shards, other outputs none. */
function curationRecord(
  m: DatasetMeta,
  o: { columns: ColumnSpec[]; pixelShape?: PixelShape; shards: ShardRecord[]; numRows: number; summary: Record<string, unknown> },
): CurationInfo {
  return {
    format_version: FORMAT_VERSION,
    stage: m.stage,
    stage_version: m.stageVersion,
    fingerprint: fingerprintOfMeta(m),
    options: m.options,
    ...(m.choices ? { choices: m.choices } : {}),
    seed: m.seed,
    parents: m.parents,
    sidecar_of: m.sidecarOf,
    ...(m.sidecarShards ? { sidecar_shards: m.sidecarShards } : {}),
    code_version: CODE_VERSION,
    columns: o.columns,
    pixel_shape: o.pixelShape,
    shards: o.shards,
    num_rows: o.numRows,
    summary: o.summary,
    created_at: new Date().toISOString(),
  };
}

/**
 * An output that is not a dataset (a report, a trained model): files written into
 * a temporary directory, committed with the same curation.json marker a dataset
 * gets (no shards), so the pipeline runner can tell it is complete and current.
 */
export class OutputDir {
  private closed = false;
  private constructor(private readonly outDir: string, private readonly dir: AtomicDir, private readonly meta: DatasetMeta) {}

  static async create(outDir: string, meta: DatasetMeta, opts: { overwrite?: boolean } = {}): Promise<OutputDir> {
    return new OutputDir(outDir, await beginAtomicDir(outDir, opts), meta);
  }

  get tempDir(): string {
    return this.dir.tmp;
  }

  async finish(summary: Record<string, unknown>, numRows = 0): Promise<WriteResult> {
    if (this.closed) throw new InternalError('OutputDir.finish called twice');
    this.closed = true;
    try {
      const curation = curationRecord(this.meta, { columns: [], shards: [], numRows, summary });
      await fsp.writeFile(path.join(this.dir.tmp, CURATION_FILE), json(curation));
      await this.dir.commit();
      return { dir: path.resolve(this.outDir), fingerprint: curation.fingerprint, numRows, shards: [], curation };
    } catch (err) {
      await this.dir.abort();
      throw err;
    }
  }

  async abort(): Promise<void> {
    this.closed = true;
    await this.dir.abort();
  }
}

/** Writes a whole dataset from rows (sync or async iterable) in one call. */
export async function writeDataset(
  outDir: string,
  rows: Iterable<Row> | AsyncIterable<Row>,
  opts: WriterOptions & { summary?: Record<string, unknown> },
): Promise<WriteResult> {
  const writer = await DatasetWriter.create(outDir, opts);
  try {
    for await (const row of rows as AsyncIterable<Row>) await writer.writeRow(row);
  } catch (err) {
    await writer.abort();
    throw err;
  }
  return writer.finish(opts.summary);
}
