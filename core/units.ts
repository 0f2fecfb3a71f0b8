/**
 * Values as people type them, on the command line or in a pipeline file: a
 * size `28x28`, a byte count `256MiB`, a list `a,b,c`. One home, so a flag and
 * a pipeline option spelled the same way mean the same thing. Each returns the
 * value, or throws an Error whose message says what was expected.
 */

/** `28x28` (height x width; `×` or `,` also separate them) or `32` (a square). */
export function sizeFromText(value: string): [number, number] {
  const m = /^(\d+)(?:\s*[x×,]\s*(\d+))?$/i.exec(value.trim());
  if (!m) throw new Error('expected HxW, e.g. 28x28, or one number for a square');
  const h = Number(m[1]);
  const w = Number(m[2] ?? m[1]);
  if (h < 1 || w < 1) throw new Error('height and width must be positive');
  return [h, w];
}

/** A byte count with an optional binary unit: 1000000, 256MiB, 1G, 512k. */
export function bytesFromText(value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(value.trim());
  if (!m) throw new Error('expected a byte count, e.g. 268435456 or 256MiB');
  const power = ' kmgt'.indexOf(m[2].toLowerCase() || ' ');
  const n = Math.round(Number(m[1]) * 1024 ** power);
  if (n < 1) throw new Error('expected a positive size');
  return n;
}

/** `a, b,c` → ['a', 'b', 'c'] (blank entries dropped). */
export function listFromText(value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter(Boolean);
}
