/**
 * "Did you mean …?" for names a user typed: the closest known name within a few
 * edits. The edit (Levenshtein) distance comes from fastest-levenshtein, a small,
 * dependency-free and widely used package, rather than a hand-written loop.
 */
import { distance } from 'fastest-levenshtein';

/** `batch-size`, `batch_size` and `batchSize` are one name: case, `-` and `_` aside. */
export const nameForm = (s: string): string => s.toLowerCase().replace(/[-_]/g, '');

/**
 * The known name closest to `word`, when it is close enough to be a typo (at
 * most a third of its length in edits, at least 1; case and `-`/`_` ignored).
 */
export function closest(word: string, known: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const k of known) {
    // The word itself is known, so it was refused for another reason: no suggestion.
    if (k === word) return undefined;
    const d = distance(nameForm(word), nameForm(k));
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  return bestDistance <= Math.max(1, Math.floor(word.length / 3)) ? best : undefined;
}

/** ` (did you mean "x"?)`, or nothing. */
export function didYouMean(word: string, known: Iterable<string>): string {
  const k = closest(word, known);
  return k === undefined ? '' : ` (did you mean "${k}"?)`;
}
