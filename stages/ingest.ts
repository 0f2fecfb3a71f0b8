/**
 * The ingest stage: decode, validate, resize, hash and shard raw inputs. Items stream from the source, are decoded with bounded
 * concurrency and written in source order, so the shards are byte-identical
 * whatever the concurrency. A bad item becomes a line of rejected.jsonl and the
 * run goes on; every input item ends up as a row or as such a line.
 *
 * Working resolution: `size`/`channels` when given, else the source's own for
 * fixed-size sources (IDX 28×28×1, CIFAR 32×32×3, a dataset's pixels), else
 * 32×32×3 for decoded images (folders, manifests, image columns).
 */
import { createWriteStream, promises as fsp, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import pLimit from 'p-limit';
import { z } from 'zod';
import { DataError, InternalError, UsageError } from '../core/errors.js';
import { sha256Hex } from '../core/hash.js';
import { REJECTED_FILE, type ColumnSpec, type PixelShape } from '../data/format.js';
import { DEFAULT_MAX_INPUT_PIXELS, type DecodeOptions } from '../data/decode.js';
import { decodeItem, type DecodableItem, type DecodedItem, type ItemDecoding } from '../data/items.js';
import { runJobsInGroups, type DecodeJob } from '../ml/pool.js';
import { DEFAULT_MAX_FILE_BYTES, PRESETS, SOURCE_FORMATS, openSource, type Source, type SourceItem, type SourceOptions } from '../data/sources/index.js';
import type { StageContext, StageResult } from './context.js';
import { openDataset, readCuration, readStrings } from '../data/reader.js';
import { defineStage, type Output } from './define.js';
import { bytesOption, nameListOption, sizeOption } from './option-types.js';

export const INGEST_VERSION = '1';
/** Working size for decoded images when `size` is not given. */
export const DEFAULT_DECODED_SIZE: [number, number] = [32, 32];

const positiveInt = z.number().int().positive();

export const ingestOptions = z.object({
  out: z.string().min(1).describe('output dataset directory (must not exist, unless --overwrite)'),
  format: z.enum(['auto', ...SOURCE_FORMATS]).default('auto').describe('source format (auto: detected)'),
  split: z.string().min(1).optional().describe('IDX/CIFAR split: train (default) or test; folders: the sub-folder to ingest (refused when missing); Parquet folders: the split\'s files (train-00000-of-00002.parquet, train/0000.parquet)'),
  preset: z.enum(PRESETS).optional().describe('class names of a known IDX dataset'),
  size: sizeOption.optional()
    .describe('working resolution: HxW (28x28), [height, width], or one number for a square (default: the source\'s native size)'),
  channels: z.union([z.literal(1), z.literal(3)]).optional().describe('channels of the working pixels: 1 or 3'),
  fit: z.enum(['cover', 'contain', 'fill']).default('cover').describe('how images are resized to the working size'),
  background: z.enum(['black', 'white']).default('black').describe('colour that transparency is flattened onto and contain pads with'),
  keepOriginal: z.boolean().default(false).describe('keep each encoded original in an image column (PNG for raw-pixel sources)'),
  dedupe: z.boolean().default(false).describe('drop rows whose decoded pixels repeat an earlier row\'s (recorded in rejected.jsonl)'),
  allowOutsideRoot: z.boolean().default(false).describe('read files that lie outside the source\'s folder, by a manifest path, an HF image path or a symbolic link'),
  overwrite: z.boolean().default(false).describe('replace the output if it exists'),
  append: z.boolean().default(false)
    .describe('add the source\'s new items to the dataset at --out as new shards (items whose id or whose pixels it holds already are skipped; the old shards stay as they are); it is created when missing'),
  concurrency: z.number().int().min(1).max(256).default(4).describe('images decoded at once; does not change the output'),
  shardRows: positiveInt.optional().describe('rows per shard at most'),
  shardBytes: bytesOption.optional().describe('bytes per shard at most, e.g. 256MiB'),
  classNames: nameListOption.pipe(z.array(z.string().min(1)).min(1))
    .refine((names) => new Set(names).size === names.length, 'class names must be distinct')
    .optional()
    .describe('a fixed class list, in label order'),
  cifarLabels: z.enum(['fine', 'coarse']).default('fine').describe('CIFAR-100: which label becomes `label`'),
  maxInputPixels: positiveInt.default(DEFAULT_MAX_INPUT_PIXELS).describe('refuse larger images unread (decompression bombs)'),
  maxFileBytes: bytesOption.default(DEFAULT_MAX_FILE_BYTES).describe('refuse larger image files unread'),
  limit: positiveInt.optional().describe('ingest only the first n items'),
  seed: z.number().int().default(0).describe('recorded for provenance; ingest draws no random numbers'),
}).strict();

export type IngestOptions = z.infer<typeof ingestOptions>;
export type IngestInput = z.input<typeof ingestOptions>;

export interface IngestSummary extends Record<string, unknown> {
  format: string;
  /** Input items seen (with --append, those whose id was new): rows + rejected + duplicates + copies of rows already there. */
  items: number;
  rows: number;
  rejected: number;
  duplicates: number;
  per_class: Record<string, number>;
  pixel_shape: PixelShape;
  seconds: number;
  /** Items per second. */
  throughput: number;
  /** With --append: the dataset added to, its rows before, and the source items it held already (by id or by pixels). */
  append?: { to: string; rows_before: number; already_present: number };
}

export interface IngestResult extends StageResult {
  summary: IngestSummary;
}

export interface RejectedLine {
  id?: string;
  path?: string;
  row?: number;
  reason: string;
}

/** Options that change the output (the fingerprint's): not where it goes, whether it replaces, how fast. */
function canonicalOptions(o: IngestOptions): Record<string, unknown> {
  const { out: _out, overwrite: _ow, concurrency: _c, seed: _s, maxFileBytes, append, ...rest } = o;
  // The cap and append join the fingerprint only when set, so outputs made before they existed stay current.
  return { ...rest, ...(maxFileBytes === DEFAULT_MAX_FILE_BYTES ? {} : { maxFileBytes }), ...(append ? { append } : {}) };
}

/** What an append adds to: the rows already there, by id and by pixel hash. */
interface AppendBase {
  fingerprint: string;
  rows: number;
  ids: Set<string>;
  idOfHash: Map<string, string>;
}

async function readAppendBase(dir: string): Promise<AppendBase> {
  const ds = await openDataset(dir);
  const ids = await readStrings(ds, 'id');
  const hashes = ds.column('sha256') ? await readStrings(ds, 'sha256') : [];
  const idOfHash = new Map<string, string>();
  hashes.forEach((h, i) => idOfHash.has(h) || idOfHash.set(h, ids[i]));
  return { fingerprint: ds.fingerprint, rows: ids.length, ids: new Set(ids), idOfHash };
}

/** The source's items whose id the base lacks; `skipped` counts the others (not decoded, not logged one by one). */
async function* newItems(items: AsyncIterable<SourceItem>, base: AppendBase | undefined, skipped: { n: number }): AsyncGenerator<SourceItem> {
  for await (const item of items) {
    if (base && item.kind !== 'rejected' && base.ids.has(item.id)) skipped.n++;
    else yield item;
  }
}

function sourceOptions(o: IngestOptions): SourceOptions {
  return {
    format: o.format,
    split: o.split,
    classNames: o.classNames,
    preset: o.preset,
    allowOutsideRoot: o.allowOutsideRoot,
    cifarLabels: o.cifarLabels,
  };
}

function workingShape(source: Source, o: IngestOptions): PixelShape {
  const native = source.nativeShape;
  const [h, w] = o.size ?? (native ? [native[0], native[1]] : DEFAULT_DECODED_SIZE);
  const channels = o.channels ?? (native && (native[2] === 1 || native[2] === 3) ? native[2] : 3);
  return [h, w, channels];
}

type Prepared = { row: Record<string, unknown>; label: number; item: SourceItem } | { rejected: RejectedLine };

/** Maps with up to `window` items in flight and yields results in input order. */
async function* mapOrdered<T, R>(src: AsyncIterable<T>, window: number, take: number, fn: (t: T) => R | Promise<R>): AsyncGenerator<R> {
  const it = src[Symbol.asyncIterator]();
  const queue: Promise<R>[] = [];
  let pulled = 0;
  let done = false;
  try {
    for (;;) {
      while (!done && queue.length < window) {
        if (pulled >= take) { done = true; break; }
        const r = await it.next();
        if (r.done) { done = true; break; }
        pulled++;
        const p = Promise.resolve().then(() => fn(r.value));
        p.catch(() => undefined); // surfaced in order below
        queue.push(p);
      }
      const head = queue.shift();
      if (!head) return;
      yield await head;
    }
  } finally {
    await Promise.allSettled(queue);
    await it.return?.();
  }
}

/** Items a decode job carries: a few hundred files' paths, or their bytes (tens of MB at most). */
export const DECODE_BATCH = 256;
/** Decode jobs sent at once (one group): enough to keep remote workers busy; memory holds this many batches. */
const DECODE_JOBS_IN_FLIGHT = 16;

/**
 * The items' decoded rows in order, decoded by jobs through the run's job runner:
 * batches of DECODE_BATCH items (the source's own refusals stay here), sent
 * DECODE_JOBS_IN_FLIGHT at a time. Each item decodes as it would here (data/items.ts).
 */
async function* decodedRemotely(
  items: AsyncIterable<SourceItem>,
  take: number,
  decoding: ItemDecoding,
  ctx: StageContext,
  toPrepared: (item: SourceItem, d: DecodedItem | undefined) => Prepared,
): AsyncGenerator<Prepared> {
  async function* batches(): AsyncGenerator<SourceItem[]> {
    let batch: SourceItem[] = [];
    let n = 0;
    for await (const item of items) {
      if (n++ >= take) break;
      batch.push(item);
      if (batch.length === DECODE_BATCH) {
        yield batch;
        batch = [];
      }
    }
    if (batch.length) yield batch;
  }
  // The batches whose jobs are out, oldest first: each result is matched with its batch in order.
  const sent: SourceItem[][] = [];
  async function* jobs(): AsyncGenerator<DecodeJob> {
    for await (const batch of batches()) {
      sent.push(batch);
      yield { kind: 'decode', items: batch.filter((it): it is DecodableItem => it.kind !== 'rejected'), decoding };
    }
  }
  for await (const result of runJobsInGroups(jobs(), DECODE_JOBS_IN_FLIGHT, { runner: ctx.jobRunner, signal: ctx.signal, backend: 'cpu' })) {
    let j = 0;
    for (const it of sent.shift()!) yield toPrepared(it, it.kind === 'rejected' ? undefined : result.items[j++]);
  }
}

class RejectedLog {
  private readonly stream: WriteStream;
  count = 0;
  /** The first few, for an error message when nothing was accepted. */
  readonly first: RejectedLine[] = [];

  /**
   * `known`: the lines an earlier append logged already. Their items are counted
   * again (they are in the source again) but not written twice.
   */
  private constructor(file: string, append: boolean, private readonly known: ReadonlySet<string>) {
    this.stream = createWriteStream(file, { flags: append ? 'a' : 'w' });
  }

  /** A new log, or with `append` one that goes on from the lines `file` holds. */
  static async open(file: string, append: boolean): Promise<RejectedLog> {
    const before = append ? await fsp.readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? '' : Promise.reject(err))) : '';
    return new RejectedLog(file, append, new Set(before.split('\n').filter((l) => l !== '')));
  }

  async add(line: RejectedLine): Promise<void> {
    this.count++;
    if (this.first.length < 3) this.first.push(line);
    const text = JSON.stringify({ id: line.id, path: line.path, row: line.row, reason: line.reason });
    if (this.known.has(text)) return;
    if (!this.stream.write(text + '\n')) await once(this.stream, 'drain');
  }

  async close(): Promise<void> {
    if (this.stream.closed) return;
    await new Promise<void>((resolve, reject) => {
      this.stream.once('error', reject);
      this.stream.end(() => resolve());
    });
  }
}

async function runIngest(ctx: StageContext, input: string, source: Source, o: IngestOptions, output: Output, base?: AppendBase): Promise<IngestSummary & { unchanged?: boolean }> {
  const started = performance.now();
  const present = { n: 0 };
  const shape = workingShape(source, o);
  const [height, width, channels] = shape;
  const decode: DecodeOptions = {
    size: [height, width], channels: channels as 1 | 3, fit: o.fit, background: o.background, maxInputPixels: o.maxInputPixels,
  };
  const total = Math.min(source.count, o.limit ?? Infinity);
  ctx.log.info({ source: input, format: source.format, items: total, classes: source.classNames.length, shape }, 'ingest: reading');

  const columns: ColumnSpec[] = [
    { name: 'id', kind: 'string' },
    { name: 'label', kind: 'classLabel', names: source.classNames },
    ...(source.hasCaptions ? [{ name: 'caption', kind: 'string', nullable: true } as ColumnSpec] : []),
    ...(o.keepOriginal ? [{ name: 'image', kind: 'image', nullable: true } as ColumnSpec] : []),
    { name: 'pixels', kind: 'uint8Vector', length: height * width * channels },
    { name: 'sha256', kind: 'string' },
  ];
  const writer = await output.dataset({
    columns,
    pixelShape: shape,
    description: `Ingested by metacurate from a ${source.format} source`,
    shardRows: o.shardRows,
    shardBytes: o.shardBytes,
    // Encoded originals can be large: smaller record batches keep memory flat (HF does the same for images).
    batchRows: o.keepOriginal ? 100 : undefined,
  });
  // An append adds to the dataset's log of rejected items (copied into the writer's directory).
  const rejected = await RejectedLog.open(path.join(writer.tempDir, REJECTED_FILE), base !== undefined);
  const limit = pLimit(o.concurrency);

  const decoding: ItemDecoding = {
    decode, keepOriginal: o.keepOriginal, read: { root: source.fileRoot, allowOutsideRoot: o.allowOutsideRoot, maxBytes: o.maxFileBytes },
  };
  /** A decoded item as the row ingest writes, or the line it logs. */
  const toPrepared = (item: SourceItem, decoded: DecodedItem | undefined): Prepared => {
    if (item.kind === 'rejected') return { rejected: { id: item.id, path: item.path, row: item.row, reason: item.reason } };
    if (decoded === undefined) throw new InternalError(`item ${item.id} came back undecoded`);
    const d = decoded;
    if ('rejected' in d) {
      if (d.detail) ctx.log.debug({ id: item.id, reason: d.rejected, detail: d.detail }, 'ingest: rejected');
      return { rejected: { id: item.id, path: item.kind === 'pixels' ? undefined : item.path, row: item.row, reason: d.rejected } };
    }
    const row: Record<string, unknown> = { id: item.id, label: item.label, pixels: d.pixels, sha256: sha256Hex(d.pixels) };
    if (source.hasCaptions) row.caption = item.caption ?? null;
    if (o.keepOriginal) row.image = d.original ?? null;
    return { row, label: item.label, item };
  };
  const prepare = async (item: SourceItem): Promise<Prepared> =>
    toPrepared(item, item.kind === 'rejected' ? undefined : await decodeItem(item, decoding, limit));
  // Through a job runner (other machines), items are decoded in batches as jobs; else here, a few at once.
  const prepared = ctx.jobRunner
    ? decodedRemotely(newItems(source.items(), base, present), total, decoding, ctx, toPrepared)
    : mapOrdered(newItems(source.items(), base, present), o.concurrency * 4, total, prepare);

  const progress = ctx.progress('ingest', total);
  const perClass = new Array<number>(source.classNames.length).fill(0);
  const firstIdOfHash = new Map<string, string>();
  let items = 0;
  let duplicates = 0;
  /** Appends: new names for pixels already in the dataset. */
  let copies = 0;
  try {
    for await (const r of prepared) {
      ctx.signal?.throwIfAborted();
      items++;
      if ('rejected' in r) {
        await rejected.add(r.rejected);
      } else if (base?.idOfHash.has(r.row.sha256 as string)) {
        // A new name for pixels the dataset holds already: present, and said so in the log.
        copies++;
        const it = r.item as Exclude<SourceItem, { kind: 'rejected' }>;
        await rejected.add({ id: it.id, path: it.kind === 'pixels' ? undefined : it.path, row: it.row, reason: `already present as ${base.idOfHash.get(r.row.sha256 as string)}` });
      } else {
        const hash = r.row.sha256 as string;
        const first = o.dedupe ? firstIdOfHash.get(hash) : undefined;
        if (first !== undefined) {
          duplicates++;
          const it = r.item as Exclude<SourceItem, { kind: 'rejected' }>;
          await rejected.add({ id: it.id, path: it.kind === 'pixels' ? undefined : it.path, row: it.row, reason: `duplicate of ${first}` });
        } else {
          if (o.dedupe) firstIdOfHash.set(hash, r.row.id as string);
          perClass[r.label]++;
          await writer.writeRow(r.row);
        }
      }
      progress.tick();
    }
    await rejected.close();
  } catch (err) {
    progress.done();
    await rejected.close().catch(() => undefined);
    throw err;
  }
  progress.done();

  const rows = items - rejected.count;
  const seconds = (performance.now() - started) / 1000;
  const summary: IngestSummary = {
    format: source.format,
    items,
    rows,
    rejected: rejected.count - duplicates - copies,
    duplicates,
    per_class: Object.fromEntries(source.classNames.map((n, i) => [n, perClass[i]])),
    pixel_shape: shape,
    seconds: Math.round(seconds * 1000) / 1000,
    throughput: Math.round(items / Math.max(seconds, 1e-6)),
    ...(base ? { append: { to: base.fingerprint, rows_before: base.rows, already_present: present.n + copies } } : {}),
  };
  if (base && rows === 0) {
    // Nothing new after all (no new item, or only copies and rejects): the dataset stays exactly as it was.
    ctx.log.info({ out: o.out, present: present.n, items }, 'ingest: nothing new to append');
    return { ...summary, unchanged: true };
  }
  if (rows === 0) {
    // An empty dataset is never what was meant (e.g. a --size no image can be decoded to): fail, with the first reasons.
    const first = rejected.first.map((r) => `${r.path ?? r.id ?? `row ${r.row}`}: ${r.reason}`).join('; ');
    throw new DataError(items === 0 ? 'the source has no items' : `every one of the ${items} items was rejected (${first})`, { file: input, hint: 'Fix the source or the options; nothing was written' });
  }
  if (rejected.count > 0) ctx.log.warn({ rejected: summary.rejected, duplicates }, `ingest: ${rejected.count} items not written; see ${REJECTED_FILE}`);
  ctx.log.info({ out: o.out, rows, seconds: summary.seconds, throughput: summary.throughput }, 'ingest: done');
  return summary;
}

export const ingestStage = defineStage({
  name: 'ingest',
  version: INGEST_VERSION,
  description: 'Decode, validate, resize, hash and shard a source (IDX, CIFAR, image folder, manifest, dataset, Parquet) into a dataset',
  options: ingestOptions,
  inputs: [{ name: 'source', description: 'a folder, an IDX/CIFAR file or folder, a CSV/JSONL manifest, a dataset directory, or a Parquet file or folder' }],
  async plan(inputs, o) {
    const input = inputs.source[0];
    const source = await openSource(input, sourceOptions(o));
    const appendedTo = o.append ? await readCuration(o.out) : undefined;
    return {
      input, source,
      options: canonicalOptions(o),
      seed: o.seed,
      parents: [
        { fingerprint: await source.fingerprint(), path: path.resolve(input), role: 'source' },
        // An append's output follows from the dataset it added to as well.
        ...(appendedTo ? [{ fingerprint: appendedTo.fingerprint, path: path.resolve(o.out), role: 'appended-to' }] : []),
      ],
    };
  },
  appends: (o) => o.append,
  async run(ctx, plan, o, out) {
    if (plan.source.count === 0) {
      throw new DataError('the source has no items', { file: plan.input, hint: 'Point ingest at a folder, manifest or file that holds images' });
    }
    const base = o.append && (await readCuration(o.out)) ? await readAppendBase(o.out) : undefined;
    const { unchanged, ...summary } = await runIngest(ctx, plan.input, plan.source, o, out, base);
    return { summary, unchanged };
  },
});

/** Ingests one source into a dataset at `options.out` (the library form of `metacurate ingest`). */
export async function ingest(source: string, options: IngestInput, ctx?: StageContext): Promise<IngestResult> {
  return (await ingestStage.run(ctx, { source }, options)) as IngestResult;
}
