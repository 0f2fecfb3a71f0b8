/**
 * Pixel transforms that move an image away from its domain while keeping what
 * it shows (for planting off-domain rows): functions of uint8 H×W×C pixels,
 * deterministic given their random stream.
 */
import type { Rng } from '../core/rng.js';
import type { PixelShape } from './format.js';

export const PERTURBATIONS = ['invert', 'flip', 'blur', 'noise'] as const;
export type Perturbation = (typeof PERTURBATIONS)[number];

/** 255 − x: light backgrounds, dark objects. */
function invert(px: Uint8Array): Uint8Array {
  return px.map((v) => 255 - v);
}

/** Rotated by 180°: upside down and mirrored. */
function flip([h, w, c]: PixelShape, px: Uint8Array): Uint8Array {
  const out = new Uint8Array(px.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const from = (y * w + x) * c;
      const to = ((h - 1 - y) * w + (w - 1 - x)) * c;
      for (let k = 0; k < c; k++) out[to + k] = px[from + k];
    }
  }
  return out;
}

/** A 5×5 box blur (edges clamped): fine detail gone, shapes kept. */
function blur([h, w, c]: PixelShape, px: Uint8Array): Uint8Array {
  const out = new Uint8Array(px.length);
  const r = 2;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let k = 0; k < c; k++) {
        let s = 0;
        for (let dy = -r; dy <= r; dy++) {
          const yy = Math.min(h - 1, Math.max(0, y + dy));
          for (let dx = -r; dx <= r; dx++) s += px[(yy * w + Math.min(w - 1, Math.max(0, x + dx))) * c + k];
        }
        out[(y * w + x) * c + k] = Math.round(s / (2 * r + 1) ** 2);
      }
    }
  }
  return out;
}

/** Additive Gaussian noise, σ = 64 grey levels, clamped. */
function noise(px: Uint8Array, rng: Rng): Uint8Array {
  return px.map((v) => Math.max(0, Math.min(255, Math.round(v + 64 * rng.normal()))));
}

export function perturb(kind: Perturbation, shape: PixelShape, px: Uint8Array, rng: Rng): Uint8Array {
  switch (kind) {
    case 'invert': return invert(px);
    case 'flip': return flip(shape, px);
    case 'blur': return blur(shape, px);
    case 'noise': return noise(px, rng);
  }
}
