/**
 * A running top-k over a stream of rows: the k best values seen so far, best
 * first, so memory does not grow with the rows. A value equal to one already
 * kept goes behind it, so rows fed in dataset order keep that order on ties.
 */
export class TopK<T> {
  private readonly kept: { value: number; item: T }[] = [];

  /** `lowestFirst`: the lowest values are the best (for scores, the rows most worth dropping). */
  constructor(private readonly k: number, private readonly lowestFirst: boolean) {}

  /** Offers a row; `make` builds its item only when it is kept. NaN is never kept. */
  offer(value: number, make: () => T): void {
    if (Number.isNaN(value)) return;
    const ahead = (v: number) => (this.lowestFirst ? value < v : value > v);
    let at = this.kept.length;
    while (at > 0 && ahead(this.kept[at - 1].value)) at--;
    if (at >= this.k) return;
    this.kept.splice(at, 0, { value, item: make() });
    if (this.kept.length > this.k) this.kept.pop();
  }

  /** The kept items, best first. */
  get items(): T[] {
    return this.kept.map((e) => e.item);
  }
}
