/**
 * Row ids held compactly, for stages that keep every id of a large pool while they
 * stream it (select). A JS string per id costs about 40 bytes for a short id (its
 * header, the characters padded, the array slot); here each block of rows is one
 * string of its ids back to back plus a 4-byte offset per row, so an 8-character
 * id takes about 12 bytes. Reading an id back makes a short string.
 */
import { lastAtMost } from '../core/search.js';

export class IdList {
  /** The ids of each block, concatenated. */
  private readonly blocks: string[] = [];
  /** The first row of each block. */
  private blockStarts = new Int32Array(64);
  /** Where each row's id starts within its block's string. */
  private readonly starts: Uint32Array;
  private filled = 0;

  constructor(readonly length: number) {
    this.starts = new Uint32Array(length);
  }

  /** Adds the ids of the next rows (one block), in row order. */
  push(ids: readonly string[]): void {
    if (this.filled + ids.length > this.length) throw new RangeError(`${this.filled + ids.length} ids for a list of ${this.length}`);
    if (ids.length === 0) return;
    let offset = 0;
    for (let i = 0; i < ids.length; i++) {
      this.starts[this.filled + i] = offset;
      offset += ids[i].length;
    }
    if (this.blocks.length === this.blockStarts.length) {
      const grown = new Int32Array(this.blockStarts.length * 2);
      grown.set(this.blockStarts);
      this.blockStarts = grown;
    }
    this.blockStarts[this.blocks.length] = this.filled;
    this.blocks.push(ids.join(''));
    this.filled += ids.length;
  }

  /** The id of row i. */
  get(i: number): string {
    if (!(i >= 0 && i < this.filled)) throw new RangeError(`row ${i} is outside the ${this.filled} ids read`);
    const lo = lastAtMost(this.blockStarts, this.blocks.length, i);
    const text = this.blocks[lo];
    const blockEnd = lo + 1 < this.blocks.length ? this.blockStarts[lo + 1] : this.filled;
    const end = i + 1 < blockEnd ? this.starts[i + 1] : text.length;
    return text.slice(this.starts[i], end);
  }
}
