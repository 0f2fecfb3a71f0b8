// IdList: the compact id store select keeps for a whole pool gives back every id
// as it was pushed, across blocks of any size (empty ones too) and any characters.
import { describe, expect, it } from 'vitest';
import { IdList } from '../../data/id-list.js';

describe('IdList', () => {
  it('returns each row\'s id across blocks of different sizes, including empty and non-ASCII ids', () => {
    const ids = Array.from({ length: 2500 }, (_, i) => (i % 7 === 0 ? `图像-${i}` : i % 11 === 0 ? '' : `r${i}`));
    const list = new IdList(ids.length);
    // Blocks of 1, 0, 999, 1000 and the rest; more blocks than the initial index holds.
    const sizes = [1, 0, 999, 1000, ...Array.from({ length: 100 }, () => 5)];
    let at = 0;
    for (const size of sizes) {
      list.push(ids.slice(at, at + size));
      at += size;
    }
    list.push(ids.slice(at));
    expect(list.length).toBe(ids.length);
    for (let i = 0; i < ids.length; i++) expect(list.get(i)).toBe(ids[i]);
  });

  it('refuses rows it was not given and more ids than its length', () => {
    const list = new IdList(3);
    list.push(['a', 'b']);
    expect(list.get(1)).toBe('b');
    expect(() => list.get(2)).toThrow(RangeError);
    expect(() => list.get(-1)).toThrow(RangeError);
    expect(() => list.push(['c', 'd'])).toThrow(RangeError);
  });
});
