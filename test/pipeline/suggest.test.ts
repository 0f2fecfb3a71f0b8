import { expect, test } from 'vitest';
import { closest, didYouMean } from '../../pipeline/suggest.js';

test('suggestions only for near misses', () => {
  expect(closest('splt', ['split', 'size', 'seed'])).toBe('split');
  // Case, '-' and '_' are ignored: the CLI's spelling and snake_case find the option.
  expect(closest('max_file_bytes', ['maxFileBytes', 'maxInputPixels'])).toBe('maxFileBytes');
  expect(closest('max-file-bytes', ['maxFileBytes'])).toBe('maxFileBytes');
  expect(closest('zzzz', ['split', 'size'])).toBe(undefined);
  expect(closest('size', ['size', 'seed'])).toBe(undefined); // known already: refused for another reason
  expect(didYouMean('ingst', ['ingest', 'score'])).toBe(' (did you mean "ingest"?)');
  expect(didYouMean('nope', ['ingest'])).toBe('');
});
