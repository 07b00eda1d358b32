/** A binary min-heap on (at, seq): equal times keep insertion order, so runs replay exactly. */
export class TimeQueue<T> {
  private readonly items: { at: number; seq: number; v: T }[] = [];
  private seq = 0;

  get size(): number {
    return this.items.length;
  }

  push(at: number, v: T): void {
    const it = { at, seq: this.seq++, v };
    const a = this.items;
    a.push(it);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (less(a[p]!, it)) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = it;
  }

  peekAt(): number | undefined {
    return this.items[0]?.at;
  }

  /** Removes and returns the earliest item if it is due at `now`. */
  popDue(now: number): T | undefined {
    const a = this.items;
    const top = a[0];
    if (!top || top.at > now) return undefined;
    const last = a.pop()!;
    if (a.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        let best = last;
        if (l < a.length && less(a[l]!, best)) {
          m = l;
          best = a[l]!;
        }
        if (r < a.length && less(a[r]!, best)) m = r;
        if (m === i) break;
        a[i] = a[m]!;
        i = m;
      }
      a[i] = last;
    }
    return top.v;
  }
}

function less(a: { at: number; seq: number }, b: { at: number; seq: number }): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
