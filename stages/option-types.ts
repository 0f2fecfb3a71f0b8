/**
 * Option types several stages share whose values can also be written as text,
 * the way the command line spells them: `size: 28x28`, `shardBytes: 256MiB`,
 * `classNames: a,b,c` in a pipeline file mean what `--size 28x28` does. The
 * text forms are parsed here, by zod, so the CLI, pipeline files and library
 * callers all go through the same parser (core/units.ts).
 */
import { z } from 'zod';
import { bytesFromText, listFromText, sizeFromText } from '../core/units.js';

const positiveInt = z.number().int().positive();

/** Parses text with `parse`, turning its Error into a zod issue. */
function fromText<T>(parse: (s: string) => T) {
  return z.string().transform((s, ctx) => {
    try {
      return parse(s);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });
}

/** [height, width], one number for a square, or `HxW` text. */
export const sizeOption = z.union([positiveInt, z.tuple([positiveInt, positiveInt]), fromText(sizeFromText)])
  .transform((v): [number, number] => (typeof v === 'number' ? [v, v] : v));

/** A byte count, as a number or text with a unit (`256MiB`). */
export const bytesOption = z.union([positiveInt, fromText(bytesFromText)]);

/** A list of names, or one comma-separated string. */
export const nameListOption = z.union([z.array(z.string().min(1)), fromText(listFromText)]);
