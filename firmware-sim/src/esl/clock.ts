/**
 * A discrete-event scheduler: a binary heap of (time, seq) → callback. Nothing sleeps;
 * `runUntil(t)` executes every event due up to `t` in time order (ties in insertion
 * order) and leaves `now()` at `t`. A day of tag wake-ups takes as long as the
 * callbacks take, which is what lets tests and benchmarks run hours in seconds.
 */
export class SimClock {
  private t: number;
  private seq = 0;
  private heap: Array<{ at: number; seq: number; fn: () => void }> = [];

  constructor(start = 0) {
    this.t = start;
  }

  now = (): number => this.t;

  get size(): number {
    return this.heap.length;
  }

  at(when: number, fn: () => void): void {
    const h = this.heap;
    // whole milliseconds: times travel as integer Millis on the wire
    h.push({ at: Math.max(Math.ceil(when), this.t), seq: this.seq++, fn });
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (less(h[p]!, h[i]!)) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
  }

  after(ms: number, fn: () => void): void {
    this.at(this.t + ms, fn);
  }

  /** Time of the next event, or Infinity. */
  next(): number {
    return this.heap[0]?.at ?? Number.POSITIVE_INFINITY;
  }

  runUntil(until: number): number {
    let n = 0;
    while (this.heap.length > 0 && this.heap[0]!.at <= until) {
      const e = this.pop();
      this.t = e.at;
      e.fn();
      n++;
    }
    if (until > this.t) this.t = Math.floor(until);
    return n;
  }

  private pop() {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && less(h[l]!, h[m]!)) m = l;
        if (r < h.length && less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i]!, h[m]!];
        i = m;
      }
    }
    return top;
  }
}

function less(a: { at: number; seq: number }, b: { at: number; seq: number }): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
