/**
 * Decoding images to the working resolution with sharp: raw uint8, H×W×C,
 * channels last. Anything wrong with one image (corrupt, truncated, empty, not
 * an image, a decompression bomb) throws ItemRejected, which ingest records in
 * rejected.jsonl before going on.
 */
import sharp, { type OutputInfo, type Sharp } from 'sharp';
import type { PixelShape } from './format.js';

export type Fit = 'cover' | 'contain' | 'fill';
export type Background = 'black' | 'white';

/** Refuse images above this many pixels (width × height) before decoding: 100 MP. */
export const DEFAULT_MAX_INPUT_PIXELS = 100_000_000;

export interface DecodeOptions {
  /** [height, width] of the output. */
  size: [number, number];
  channels: 1 | 3;
  /** cover: crop to fill, contain: letterbox on the background, fill: stretch. */
  fit: Fit;
  /** Transparent pixels are flattened onto this colour, and letterboxing uses it (default black). */
  background?: Background;
  maxInputPixels?: number;
}

/** One image refused, with the reason recorded in rejected.jsonl. */
export class ItemRejected extends Error {
  /** `detail`: the decoder's own message, for logs only (see reasonFor). */
  constructor(readonly reason: string, readonly detail?: string) {
    super(detail ? `${reason}: ${detail}` : reason);
    this.name = 'ItemRejected';
  }
}

const COLOURS: Record<Background, { r: number; g: number; b: number }> = {
  black: { r: 0, g: 0, b: 0 },
  white: { r: 255, g: 255, b: 255 },
};

/**
 * The rejection for a sharp failure. Reasons are fixed strings so rejected.jsonl
 * is deterministic: sharp's own checks (format, pixel limit) have stable
 * messages, but libvips' decoder messages share a process-wide error buffer
 * and come out garbled ("Unknown error") when images decode in parallel.
 */
function rejectionFor(err: unknown, maxPixels: number): ItemRejected {
  const msg = String((err as Error)?.message ?? err).split('\n')[0].trim();
  if (/exceeds pixel limit/i.test(msg)) {
    return new ItemRejected(`image is larger than ${maxPixels.toLocaleString('en-US')} pixels: refused as a possible decompression bomb`);
  }
  if (/unsupported image format/i.test(msg)) return new ItemRejected('not an image (unrecognised or unsupported format)');
  if (/buffer is empty/i.test(msg)) return new ItemRejected('empty file (0 bytes)');
  return new ItemRejected('corrupt or truncated image', msg);
}

function pipeline(img: Sharp, opts: DecodeOptions): Sharp {
  const background = COLOURS[opts.background ?? 'black'];
  const [height, width] = opts.size;
  img = img.flatten({ background }).resize({ width, height, fit: opts.fit, position: 'centre', background });
  img = opts.channels === 1 ? img.toColourspace('b-w') : img.toColourspace('srgb');
  return img.raw({ depth: 'uchar' });
}

async function run(img: Sharp, opts: DecodeOptions, maxPixels: number): Promise<Uint8Array> {
  let out: { data: Buffer; info: OutputInfo };
  try {
    out = await pipeline(img, opts).toBuffer({ resolveWithObject: true });
  } catch (err) {
    throw rejectionFor(err, maxPixels);
  }
  const [h, w] = opts.size;
  const expected = h * w * opts.channels;
  if (out.info.channels !== opts.channels || out.data.length !== expected) {
    // sharp should never do this; refuse the item rather than write a wrong row.
    throw new ItemRejected(`decoded to ${out.info.width}×${out.info.height}×${out.info.channels}, expected ${w}×${h}×${opts.channels}`);
  }
  return new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.length);
}

/**
 * Decodes an encoded image (jpg, png, webp, gif: first frame, tiff, avif, ...),
 * applies its EXIF orientation, flattens alpha onto the background, converts to
 * grey or sRGB and resizes. Throws ItemRejected for a bad image.
 */
export async function decodeImage(input: Uint8Array, opts: DecodeOptions): Promise<Uint8Array> {
  if (input.length === 0) throw new ItemRejected('empty file (0 bytes)');
  const maxPixels = opts.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS;
  const img = sharp(input, { limitInputPixels: maxPixels, failOn: 'error', autoOrient: true });
  return run(img, opts, maxPixels);
}

/** Resizes and/or converts raw HWC uint8 pixels (e.g. IDX 28×28×1 to 32×32×3). */
export async function resizePixels(pixels: Uint8Array, shape: PixelShape, opts: DecodeOptions): Promise<Uint8Array> {
  const [height, width, channels] = shape;
  const img = sharp(pixels, { raw: { width, height, channels: channels as 1 | 3 | 4 } });
  return run(img, opts, opts.maxInputPixels ?? DEFAULT_MAX_INPUT_PIXELS);
}

/** Lossless PNG of raw HWC pixels: the `image` column for sources without an encoded original. */
export async function encodePng(pixels: Uint8Array, shape: PixelShape): Promise<Uint8Array> {
  const [height, width, channels] = shape;
  let img = sharp(pixels, { raw: { width, height, channels: channels as 1 | 3 | 4 } });
  // Without this sharp writes one-channel input as RGB.
  if (channels === 1) img = img.toColourspace('b-w');
  const buf = await img.png({ compressionLevel: 9 }).toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}
