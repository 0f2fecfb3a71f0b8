/**
 * The index of the last of the first `count` values of ascending `sorted` that is
 * at most `value` (0 when none is): the block holding a row, given each block's
 * first row.
 */
export function lastAtMost(sorted: ArrayLike<number>, count: number, value: number): number {
  let lo = 0;
  let hi = count - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (sorted[mid] <= value) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
