/**
 * File helpers shared by the source readers: gzip-transparent streams, exact
 * reads of fixed-size records, and source fingerprints.
 */
import { createReadStream, promises as fsp } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { DataError, MissingInputError } from '../../core/errors.js';

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
