/**
 * One source item to the working pixels: read its file (through the source's
 * safety checks), decode and resize, or take its pixels as they are. The one
 * home of this step, used by ingest in its own process and by decode jobs on
 * `metacurate worker`s (ml/worker.ts) when ingest runs through a queue, so an
 * item gives the same bytes wherever it is decoded.
 */
import type { ImageValue } from './columns.js';
import { ItemRejected, decodeImage, encodePng, resizePixels, type DecodeOptions } from './decode.js';
import type { PixelShape } from './format.js';
import { FileRefused, readSourceFile } from './sources/files.js';
import type { SourceItem } from './sources/types.js';

/** An item ingest decodes (the source's own refusals are not). */
export type DecodableItem = Exclude<SourceItem, { kind: 'rejected' }>;

export interface ItemDecoding {
  decode: DecodeOptions;
  /** Keep the encoded original (PNG for raw-pixel items). */
  keepOriginal: boolean;
  /** The source's folder files must lie in, unless allowed outside; files larger than maxBytes are refused unread. */
  read: { root?: string; allowOutsideRoot: boolean; maxBytes: number };
}

export type DecodedItem =
  | { pixels: Uint8Array; original?: ImageValue }
  | { rejected: string; detail?: string };

/** Runs the costly calls (sharp) through `limit`, so a caller bounds how many decode at once. */
type Limit = <T>(fn: () => Promise<T>) => Promise<T>;
const unlimited: Limit = (fn) => fn();

/** The item's working pixels (and original), or why it is refused; other errors are thrown. */
export async function decodeItem(item: DecodableItem, o: ItemDecoding, limit: Limit = unlimited): Promise<DecodedItem> {
  const [h, w] = o.decode.size;
  const sameShape = (s: PixelShape) => s[0] === h && s[1] === w && s[2] === o.decode.channels;
  try {
    if (item.kind === 'pixels') {
      const pixels = sameShape(item.shape) ? item.pixels : await limit(() => resizePixels(item.pixels, item.shape, o.decode));
      const original = o.keepOriginal ? item.original ?? { bytes: await limit(() => encodePng(item.pixels, item.shape)), path: null } : undefined;
      return { pixels, original };
    }
    let bytes: Uint8Array;
    if (item.kind === 'file') {
      try {
        bytes = await readSourceFile(item.file, { root: o.read.root, allowOutsideRoot: o.read.allowOutsideRoot, maxBytes: o.read.maxBytes });
      } catch (err) {
        if (err instanceof FileRefused) throw new ItemRejected(err.reason);
        throw err;
      }
    } else bytes = item.bytes;
    const pixels = await limit(() => decodeImage(bytes, o.decode));
    return { pixels, original: o.keepOriginal ? { bytes, path: item.path ?? null } : undefined };
  } catch (err) {
    if (err instanceof ItemRejected) return { rejected: err.reason, detail: err.detail };
    throw err;
  }
}
