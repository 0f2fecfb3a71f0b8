/**
 * File helpers shared by the source readers: gzip-transparent streams, exact
 * reads of fixed-size records, and source fingerprints.
 */
import { constants, createReadStream, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { DataError, MissingInputError } from '../../core/errors.js';
import { isWithin } from '../../core/paths.js';

/** True when the file starts with the gzip magic bytes. */
export async function isGzip(file: string): Promise<boolean> {
  const fh = await fsp.open(file, 'r');
  try {
    const head = Buffer.alloc(2);
    const { bytesRead } = await fh.read(head, 0, 2, 0);
    return bytesRead === 2 && head[0] === 0x1f && head[1] === 0x8b;
  } finally {
    await fh.close();
  }
}

/** A byte stream of the file, gunzipped when it is gzip. */
export async function openMaybeGzip(file: string): Promise<AsyncIterable<Buffer>> {
  const raw = createReadStream(file, { highWaterMark: 1 << 20 });
  if (!(await isGzip(file))) return raw;
  const gunzip = createGunzip();
  raw.on('error', (err) => gunzip.destroy(err));
  return raw.pipe(gunzip);
}

/** stat that turns "not there" into a MissingInputError naming the file. */
export async function statInput(file: string, what = 'input'): Promise<import('node:fs').Stats> {
  try {
    return await fsp.stat(file);
  } catch (err: any) {
    if (err?.code === 'ENOENT') throw new MissingInputError(`${what} not found`, { file });
    throw err;
  }
}

/**
 * Reads exact byte counts from a stream: the header, then one record at a time,
 * holding at most one stream chunk. Stream errors (e.g. a truncated gzip) become
 * a DataError naming the file.
 */
export class ByteReader {
  private readonly it: AsyncIterator<Buffer>;
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  /** Bytes handed out so far. */
  consumed = 0;

  constructor(stream: AsyncIterable<Buffer>, private readonly file: string) {
    this.it = stream[Symbol.asyncIterator]();
  }

  private async fill(n: number): Promise<void> {
    while (this.buf.length - this.pos < n) {
      let r: IteratorResult<Buffer>;
      try {
        r = await this.it.next();
      } catch (err: any) {
        throw new DataError(`cannot read (${err?.message ?? err}): the file is truncated or corrupt`, {
          file: this.file,
          hint: 'Download or copy it again',
        });
      }
      if (r.done) return;
      this.buf = this.pos < this.buf.length ? Buffer.concat([this.buf.subarray(this.pos), r.value]) : r.value;
      this.pos = 0;
    }
  }

  /** Exactly `n` bytes as a fresh Uint8Array, or fewer at the end of the input. */
  async read(n: number): Promise<Uint8Array> {
    await this.fill(n);
    const end = Math.min(this.pos + n, this.buf.length);
    const out = new Uint8Array(this.buf.subarray(this.pos, end));
    this.pos = end;
    this.consumed += out.length;
    return out;
  }

  /** True when no bytes are left. */
  async atEnd(): Promise<boolean> {
    await this.fill(1);
    return this.buf.length - this.pos === 0;
  }

  async close(): Promise<void> {
    await this.it.return?.();
  }
}

/** Sources made of a few container files (IDX, CIFAR, manifests): hash their content. */
export async function contentFingerprint(files: string[]): Promise<string> {
  const h = createHash('sha256');
  for (const f of files) {
    h.update(`${path.basename(f)}\0`);
    for await (const chunk of createReadStream(f, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
    h.update('\0');
  }
  return h.digest('hex').slice(0, 16);
}

/**
 * Sources made of many image files (folders, manifests' images): relative name,
 * size and mtime of each file, so a fingerprint costs a stat per file, not a read.
 */
export class StatFingerprint {
  private readonly h = createHash('sha256');

  update(...parts: (string | number)[]): void {
    this.h.update(parts.join('\0') + '\n');
  }

  async addFile(rel: string, abs: string): Promise<void> {
    const st = await fsp.stat(abs).catch(() => undefined);
    this.update(rel, st ? st.size : 'missing', st ? Math.round(st.mtimeMs) : 0);
  }

  digest(): string {
    return this.h.digest('hex').slice(0, 16);
  }
}

/** Posix form of a relative path, for ids that do not depend on the OS. */
export function toPosix(p: string): string {
  return p.split(path.sep).join('/');
}

/** The largest image file ingest reads by default: far above any real image, far below memory. */
export const DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024;

/** A file a source names that is not read, and why (it becomes a line of rejected.jsonl). */
export class FileRefused extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'FileRefused';
  }
}

export interface ReadFileLimits {
  /** The folder the file must lie in once links are resolved (unless allowOutsideRoot). */
  root?: string;
  allowOutsideRoot?: boolean;
  maxBytes: number;
}

const realRoots = new Map<string, Promise<string>>();

/** The real path of a source root, resolved once per process. */
function realRoot(root: string): Promise<string> {
  let p = realRoots.get(root);
  if (!p) {
    p = fsp.realpath(root);
    realRoots.set(root, p);
  }
  return p;
}

function refusalOf(err: any): string {
  switch (err?.code) {
    case 'ENOENT': return 'file not found';
    case 'ELOOP': return 'a loop of symbolic links';
    case 'EISDIR': return 'is a directory, not an image file';
    case 'EACCES':
    case 'EPERM': return 'permission denied';
    default: return `cannot read (${err?.code ?? err?.message ?? err})`;
  }
}

/**
 * Opens one file a source names, refusing what must not be read: a file whose
 * real path (links resolved) leaves the source's folder, anything that is not a
 * regular file (a FIFO would block forever, /dev/zero never ends), and files
 * above the size cap when there is one. The open is non-blocking so that a FIFO
 * cannot hang it. The caller closes the handle.
 */
export async function openSourceFile(file: string, limits: Omit<ReadFileLimits, 'maxBytes'> & { maxBytes?: number }): Promise<{ fh: FileHandle; size: number }> {
  let real: string;
  try {
    real = await fsp.realpath(file);
  } catch (err) {
    throw new FileRefused(refusalOf(err));
  }
  if (limits.root !== undefined && !limits.allowOutsideRoot && !isWithin(real, await realRoot(limits.root))) {
    throw new FileRefused('links to a file outside the source folder (allow it with --allow-outside-root)');
  }
  let fh: FileHandle;
  try {
    fh = await fsp.open(real, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw new FileRefused(refusalOf(err));
  }
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw new FileRefused('is a directory, not an image file');
    if (!st.isFile()) throw new FileRefused('not a regular file (a FIFO, device or socket)');
    if (limits.maxBytes !== undefined && st.size > limits.maxBytes) throw new FileRefused(`the file has ${st.size} bytes, above the limit of ${limits.maxBytes} (--max-file-bytes)`);
    return { fh, size: st.size };
  } catch (err) {
    await fh.close();
    if (err instanceof FileRefused) throw err;
    throw new FileRefused(refusalOf(err));
  }
}

/** Reads `length` bytes at `position` (fewer at the end of the file). */
export async function readRange(fh: FileHandle, position: number, length: number): Promise<Uint8Array> {
  const buf = new Uint8Array(Math.max(0, length));
  let off = 0;
  while (off < buf.length) {
    const { bytesRead } = await fh.read(buf, off, buf.length - off, position + off);
    if (bytesRead === 0) break;
    off += bytesRead;
  }
  return off === buf.length ? buf : buf.subarray(0, off);
}

/** Reads one file a source names, through the refusals of openSourceFile. */
export async function readSourceFile(file: string, limits: ReadFileLimits): Promise<Uint8Array> {
  const { fh, size } = await openSourceFile(file, limits);
  try {
    // Read the size stat gave, no more: a file that grows while read cannot grow memory.
    return await readRange(fh, 0, size);
  } catch (err) {
    throw new FileRefused(refusalOf(err));
  } finally {
    await fh.close();
  }
}
