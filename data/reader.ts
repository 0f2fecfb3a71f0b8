/**
 * The dataset reader: opens a dataset directory (ours or one written by Python
 * `datasets.save_to_disk`) with its sidecars as one logical table, and streams
 * record batches with bounded memory.
 */
import { createReadStream, promises as fsp, type ReadStream } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { RecordBatchReader, type RecordBatch, type Schema, type Vector } from 'apache-arrow';
import { DataError, MissingInputError } from '../core/errors.js';
import { sha256Hex } from '../core/hash.js';
import { fileNamedIn } from '../core/paths.js';
import {
  CURATION_FILE, DATASET_INFO_FILE, PIXEL_SHAPE_KEY, STATE_FILE, columnFromHfFeature,
  type ColumnSpec, type CurationInfo, type PixelShape,
} from './format.js';

export interface ShardInfo {
  file: string;
  path: string;
  bytes: number;
  /** Known when curation.json records it. */
  rows?: number;
  sha256?: string;
}

export interface OpenOptions {
  /** Verify every shard's sha256 now (default: only sizes are checked on open). */
  verify?: boolean;
  /** Sidecar dataset directories to join (row-aligned with this dataset). */
  sidecars?: string[];
}

/** A run of consecutive rows across the dataset and its sidecars. */
export interface Block {
  /** Index of the first row in the whole dataset. */
  offset: number;
  length: number;
  /** The column's values for these rows; throws for an unknown column. */
  column(name: string): Vector;
  has(name: string): boolean;
}

async function readJson(file: string): Promise<any> {
  try {
    return JSON.parse(await fsp.readFile(file, 'utf8'));
  } catch (err: any) {
    if (err?.code === 'ENOENT') return undefined;
    throw new DataError(`cannot parse ${path.basename(file)}: ${err?.message ?? err}`, { file, hint: 'The dataset metadata is corrupt; re-create the dataset' });
  }
}

/** A metadata field that must be a list of objects: anything else is a corrupt file, not a crash. */
function listOf(v: unknown, metaFile: string, field: string): any[] {
  if (!Array.isArray(v) || v.some((f) => typeof f !== 'object' || f === null)) {
    throw new DataError(`${path.basename(metaFile)}: "${field}" is not a list of files`, { file: metaFile, hint: 'The dataset metadata is corrupt; re-create the dataset' });
  }
  return v;
}

export class Dataset {
  private constructor(
    readonly dir: string,
    readonly curation: CurationInfo | undefined,
    readonly info: any,
    readonly shards: ShardInfo[],
    readonly schema: Schema,
    readonly ownColumns: ColumnSpec[],
    readonly sidecars: Dataset[],
    /** `_fingerprint` from HF's state.json (datasets written by Python `datasets`). */
    private readonly hfFingerprint?: string,
  ) {}

  /** Opens a dataset directory; checks shard sizes (and sha256 with `verify`). */
  static async open(dir: string, opts: OpenOptions = {}): Promise<Dataset> {
    const stat = await fsp.stat(dir).catch(() => undefined);
    if (!stat?.isDirectory()) {
      throw new MissingInputError('no dataset directory here', { file: dir, hint: 'Pass a directory written by metacurate or datasets.save_to_disk' });
    }
    const curation: CurationInfo | undefined = await readJson(path.join(dir, CURATION_FILE));
    const state = await readJson(path.join(dir, STATE_FILE));
    const info = (await readJson(path.join(dir, DATASET_INFO_FILE))) ?? {};
    let files: { file: string; rows?: number; sha256?: string; bytes?: number }[];
    const metaFile = path.join(dir, curation ? CURATION_FILE : STATE_FILE);
    if (curation) files = listOf(curation.shards, metaFile, 'shards');
    else if (state?._data_files) files = listOf(state._data_files, metaFile, '_data_files').map((f: { filename: string }) => ({ file: f.filename }));
    else {
      throw new MissingInputError(`no ${CURATION_FILE} or ${STATE_FILE}: not a dataset`, { file: dir, hint: 'Ingest the source first: metacurate ingest <source> --out <dir>' });
    }
    const shards: ShardInfo[] = [];
    for (const f of files) {
      const p = fileNamedIn(dir, f.file, metaFile, 'shard');
      const st = await fsp.stat(p).catch(() => undefined);
      if (!st) throw new DataError('shard is missing', { file: p, hint: 'The dataset is incomplete; re-create it' });
      if (f.bytes !== undefined && st.size !== f.bytes) {
        throw new DataError(`shard has ${st.size} bytes but ${CURATION_FILE} records ${f.bytes}: it was truncated or edited after writing`, { file: p, hint: 'Re-create the dataset (rerun the stage that wrote it)' });
      }
      shards.push({ file: f.file, path: p, bytes: st.size, rows: f.rows, sha256: f.sha256 });
    }
    if (shards.length === 0) throw new DataError('dataset lists no shards', { file: dir });
    const schema = await readSchema(shards[0].path);
    const features = info.features ?? {};
    const ownColumns: ColumnSpec[] = curation?.columns
      ?? schema.fields.map((f) => columnFromHfFeature(f.name, features[f.name], f.type));
    const sidecars = await Promise.all((opts.sidecars ?? []).map((s) => Dataset.open(s, { verify: opts.verify })));
    const hfFingerprint = typeof state?._fingerprint === 'string' ? state._fingerprint : undefined;
    const ds = new Dataset(path.resolve(dir), curation, info, shards, schema, ownColumns, [], hfFingerprint);
    for (const sc of sidecars) ds.attach(sc);
    if (opts.verify) await ds.verify();
    return ds;
  }

  /** The fingerprint: ours from curation.json, else HF's, else a hash of the shard list. */
  get fingerprint(): string {
    return this.curation?.fingerprint
      ?? this.hfFingerprint
      ?? sha256Hex(this.shards.map((s) => `${s.file}:${s.bytes}`).join(',')).slice(0, 16);
  }

  /** Rows, when the metadata records them (else undefined; see countRows). */
  get numRows(): number | undefined {
    if (this.curation) return this.curation.num_rows;
    if (this.shards.every((s) => s.rows !== undefined)) return this.shards.reduce((a, s) => a + (s.rows ?? 0), 0);
    return undefined;
  }

  /** Counts rows, reading shards when the metadata does not record them. */
  async countRows(): Promise<number> {
    const known = this.numRows;
    if (known !== undefined) return known;
    let n = 0;
    for (const s of this.shards) {
      for await (const b of readShard(s)) n += b.numRows;
    }
    return n;
  }

  /** All columns: own first, then each sidecar's new ones. */
  get columns(): ColumnSpec[] {
    const out = [...this.ownColumns];
    const seen = new Set(out.map((c) => c.name));
    for (const sc of this.sidecars) for (const c of sc.columns) if (!seen.has(c.name)) { out.push(c); seen.add(c.name); }
    return out;
  }

  column(name: string): ColumnSpec | undefined {
    return this.columns.find((c) => c.name === name);
  }

  /** Class names from the ClassLabel feature of `label`, if any. */
  get classNames(): string[] | undefined {
    const c = this.column('label');
    return c?.kind === 'classLabel' ? c.names : undefined;
  }

  get pixelShape(): PixelShape | undefined {
    if (this.curation?.pixel_shape) return this.curation.pixel_shape;
    const meta = this.schema.metadata.get(PIXEL_SHAPE_KEY);
    if (meta) return JSON.parse(meta) as PixelShape;
    for (const sc of this.sidecars) if (sc.pixelShape) return sc.pixelShape;
    return undefined;
  }

  /** Joins a row-aligned sidecar; refuses one whose shards do not line up. */
  attach(sidecar: Dataset): void {
    const covers = sidecar.curation?.sidecar_shards;
    const files = this.shards.map((s) => s.file);
    if (covers && covers.join('\n') !== files.join('\n')) {
      const prefix = covers.length < files.length && covers.every((f, i) => f === files[i]);
      throw new DataError(prefix
        ? `the sidecar covers the dataset's first ${covers.length} of ${files.length} shards: rows were appended after it was written`
        : `the sidecar was written for shards [${covers.join(', ')}], not this dataset's [${files.join(', ')}]`, {
        file: sidecar.dir,
        hint: `Rerun the stage that wrote it on ${this.dir}${prefix ? ' (a pipeline run does this for you)' : ''}`,
      });
    }
    const mine = this.shards.map((s) => s.rows);
    const theirs = sidecar.shards.map((s) => s.rows);
    const known = mine.every((r) => r !== undefined) && theirs.every((r) => r !== undefined);
    if (mine.length !== theirs.length || (known && mine.some((r, i) => r !== theirs[i]))) {
      throw new DataError(`sidecar shards [${theirs.join(', ')}] do not line up with the dataset's [${mine.join(', ')}]`, {
        file: sidecar.dir,
        hint: `It was written for another dataset${sidecar.curation?.sidecar_of ? ` (${sidecar.curation.sidecar_of})` : ''}; rerun the stage that wrote it on ${this.dir}`,
      });
    }
    this.sidecars.push(sidecar);
  }

  /** Checks every shard's sha256 against curation.json (its own and its sidecars'). */
  async verify(): Promise<void> {
    for (const s of this.shards) {
      if (!s.sha256) continue;
      const h = createHash('sha256');
      for await (const chunk of createReadStream(s.path)) h.update(chunk as Buffer);
      const got = h.digest('hex');
      if (got !== s.sha256) {
        throw new DataError(`shard checksum mismatch (sha256 ${got.slice(0, 12)}…, expected ${s.sha256.slice(0, 12)}…): it was edited or corrupted after writing`, { file: s.path, hint: 'Re-create the dataset (rerun the stage that wrote it)' });
      }
    }
    for (const sc of this.sidecars) await sc.verify();
  }

  /**
   * Streams the rows as blocks, joining sidecars row by row. Memory is bounded by
   * about one record batch per joined dataset. Ids are checked to match wherever a
   * sidecar repeats the `id` column.
   */
  async *blocks(): AsyncGenerator<Block> {
    const sources = [this as Dataset, ...this.sidecars];
    const iters = sources.map((d) => d.recordBatches()[Symbol.asyncIterator]());
    // Close every shard reader even when the consumer stops early or throws.
    try {
      const cur: { batch: RecordBatch; pos: number }[] = [];
      for (let i = 0; i < sources.length; i++) {
        const r = await iters[i].next();
        cur.push(r.done ? { batch: undefined as unknown as RecordBatch, pos: 0 } : { batch: r.value, pos: 0 });
      }
      let offset = 0;
      for (;;) {
        // Skip empty batches and advance exhausted ones.
        for (let i = 0; i < sources.length; i++) {
          while (cur[i].batch && cur[i].pos >= cur[i].batch.numRows) {
            const r = await iters[i].next();
            cur[i] = r.done ? { batch: undefined as unknown as RecordBatch, pos: 0 } : { batch: r.value, pos: 0 };
          }
        }
        const live = cur.map((c) => c.batch !== undefined);
        if (!live[0]) {
          const extra = live.findIndex((l) => l);
          if (extra > 0) throw new DataError(`sidecar has more rows than the dataset (${offset})`, { file: sources[extra].dir });
          return;
        }
        const dead = live.findIndex((l) => !l);
        if (dead > 0) throw new DataError(`sidecar has fewer rows (${offset}) than the dataset`, { file: sources[dead].dir });
        const length = Math.min(...cur.map((c) => c.batch.numRows - c.pos));
        const parts = cur.map((c) => (c.pos === 0 && length === c.batch.numRows ? c.batch : c.batch.slice(c.pos, c.pos + length)));
        for (const c of cur) c.pos += length;
        const owner = new Map<string, Vector>();
        for (let i = parts.length - 1; i >= 0; i--) {
          for (const f of parts[i].schema.fields) owner.set(f.name, parts[i].getChild(f.name)!);
        }
        if (parts.length > 1) checkIdsAligned(parts, sources, offset);
        const block: Block = {
          offset,
          length,
          column(name: string) {
            const v = owner.get(name);
            if (!v) throw new DataError(`no column "${name}"; columns are: ${[...owner.keys()].join(', ')}`);
            return v;
          },
          has: (name: string) => owner.has(name),
        };
        yield block;
        offset += length;
      }
    } finally {
      await Promise.all(iters.map((it) => it.return?.(undefined)));
    }
  }

  /** This dataset's own record batches, shard by shard. */
  async *recordBatches(): AsyncGenerator<RecordBatch> {
    for (const s of this.shards) yield* readShard(s);
  }
}

function checkIdsAligned(parts: RecordBatch[], sources: Dataset[], offset: number): void {
  const base = parts[0].getChild('id');
  if (!base) return;
  for (let i = 1; i < parts.length; i++) {
    const other = parts[i].getChild('id');
    if (!other) continue;
    for (let r = 0; r < base.length; r++) {
      if (base.get(r) !== other.get(r)) {
        throw new DataError(`rows do not align: row ${offset + r} has id "${other.get(r)}" in the sidecar but "${base.get(r)}" in the dataset`, {
          file: sources[i].dir,
          hint: `Rerun the stage that wrote the sidecar on ${sources[0].dir}`,
        });
      }
    }
  }
}

/**
 * A shard's bytes as a read stream. Not a FileHandle: apache-arrow's file-handle
 * source loops forever on a corrupt (negative) message length, where the stream
 * source throws. Memory stays bounded either way (stream format).
 */
function shardStream(file: string): ReadStream {
  return createReadStream(file, { highWaterMark: 1 << 20 });
}

async function readSchema(file: string): Promise<Schema> {
  const stream = shardStream(file);
  try {
    const reader = await RecordBatchReader.from(stream);
    await reader.open();
    if (!reader.schema) throw new Error('no schema message at the start of the stream');
    return reader.schema;
  } catch (err: any) {
    throw new DataError(`cannot read the Arrow schema: ${err?.message ?? err}`, { file, hint: 'The shard is corrupt or not Arrow IPC; re-create the dataset' });
  } finally {
    stream.destroy();
  }
}

/** Streams one shard's record batches with bounded memory; errors name the shard. */
export async function* readShard(shard: ShardInfo): AsyncGenerator<RecordBatch> {
  const stream = shardStream(shard.path);
  let rows = 0;
  try {
    const reader = await RecordBatchReader.from(stream);
    for await (const batch of reader) {
      rows += batch.numRows;
      yield batch;
    }
  } catch (err: any) {
    if (err instanceof DataError) throw err;
    throw new DataError(`cannot read shard after row ${rows}: ${err?.message ?? err}`, { file: shard.path, hint: 'The shard is truncated or corrupt; re-create the dataset' });
  } finally {
    stream.destroy();
  }
  if (shard.rows !== undefined && rows !== shard.rows) {
    throw new DataError(`shard has ${rows} rows but ${CURATION_FILE} records ${shard.rows}: it was truncated or edited after writing`, { file: shard.path, hint: 'Re-create the dataset' });
  }
}

/** A directory's curation.json, or undefined when it has none (DataError when it is corrupt). */
export async function readCuration(dir: string): Promise<CurationInfo | undefined> {
  return readJson(path.join(dir, CURATION_FILE));
}

/** Opens a dataset (see Dataset.open). */
export function openDataset(dir: string, opts?: OpenOptions): Promise<Dataset> {
  return Dataset.open(dir, opts);
}


/** One column of every row as strings (ids, the planted kind): small per row, so whole. */
export async function readStrings(ds: Dataset, column: string): Promise<string[]> {
  const out: string[] = new Array(await ds.countRows());
  for await (const b of ds.blocks()) {
    const v = b.column(column);
    for (let i = 0; i < b.length; i++) out[b.offset + i] = String(v.get(i));
  }
  return out;
}

/** Column kinds that hold numeric scores. */
const NUMERIC_KINDS: ReadonlySet<string> = new Set(['int32', 'int64', 'float32', 'float64']);

/** The dataset (own or sidecar) a column comes from: the first that has it, as the reader joins them. */
export function ownerOf(ds: Dataset, column: string): Dataset {
  return [ds, ...ds.sidecars].find((d) => d.ownColumns.some((c) => c.name === column)) ?? ds;
}

/**
 * Refuses a missing or non-numeric score column (select --by, inspect --sort-by,
 * export --by), naming the columns there are. `how` says how the caller attaches
 * a sidecar and picks a column, e.g. `{ attach: '--scores <dir>', pick: '--by' }`.
 */
export function checkScoreColumn(ds: Dataset, name: string, how: { attach: string; pick: string }): void {
  const spec = ds.column(name);
  if (!spec) {
    throw new DataError(`no column "${name}"; the columns are: ${ds.columns.map((c) => c.name).join(', ')}`, {
      file: ds.dir,
      hint: ds.sidecars.length === 0
        ? `Scores live in sidecar datasets: attach one with ${how.attach}, or pick one of these with ${how.pick}`
        : `Pick one of these with ${how.pick}, or attach the sidecar that holds it with ${how.attach}`,
    });
  }
  if (!NUMERIC_KINDS.has(spec.kind)) {
    throw new DataError(`column "${name}" holds ${spec.kind} values, not numeric scores`, { file: ownerOf(ds, name).dir, hint: `Pick a score column with ${how.pick}` });
  }
}
