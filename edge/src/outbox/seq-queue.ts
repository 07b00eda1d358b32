/**
 * The in-memory index of one lane: (seq, bytes, rts) of every held event in ascending
 * seq order, as a growable ring of typed arrays. Appends push at the tail; acks, drops
 * and expiry only ever remove from the head, so every operation is O(1) amortised and
 * a million held events cost 24 MB, not a million objects.
 *
 * Seqs are ascending but not necessarily contiguous: events lost to corruption leave
 * holes [OUTBOX-RECOVER-1].
 */
export class SeqQueue {
  private seqs: Float64Array;
  private bytes: Float64Array;
  private rtss: Float64Array;
  private head = 0;
  private count = 0;

  constructor(capacity = 1024) {
    this.seqs = new Float64Array(capacity);
    this.bytes = new Float64Array(capacity);
    this.rtss = new Float64Array(capacity);
  }

  get length(): number {
    return this.count;
  }

  push(seq: number, bytes: number, rts: number): void {
    if (this.count === this.seqs.length) this.grow();
    const i = (this.head + this.count) % this.seqs.length;
    this.seqs[i] = seq;
    this.bytes[i] = bytes;
    this.rtss[i] = rts;
    this.count++;
  }

  /** Removes `n` entries from the head. */
  shift(n: number): void {
    if (n > this.count) throw new RangeError(`cannot shift ${n} of ${this.count}`);
    this.head = (this.head + n) % this.seqs.length;
    this.count -= n;
    if (this.count === 0) this.head = 0;
  }

  /** The i-th entry from the head (0 = oldest). */
  seqAt(i: number): number {
    return this.seqs[this.slot(i)]!;
  }
  bytesAt(i: number): number {
    return this.bytes[this.slot(i)]!;
  }
  rtsAt(i: number): number {
    return this.rtss[this.slot(i)]!;
  }

  /** Index of the first entry with seq > afterSeq (binary search), or `length`. */
  indexAfter(afterSeq: number): number {
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.seqAt(mid) <= afterSeq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private slot(i: number): number {
    if (i < 0 || i >= this.count) throw new RangeError(`index ${i} outside 0..${this.count - 1}`);
    return (this.head + i) % this.seqs.length;
  }

  private grow(): void {
    const cap = this.seqs.length * 2;
    this.seqs = this.unroll(this.seqs, cap);
    this.bytes = this.unroll(this.bytes, cap);
    this.rtss = this.unroll(this.rtss, cap);
    this.head = 0;
  }

  private unroll(src: Float64Array, cap: number): Float64Array {
    const out = new Float64Array(cap);
    const tail = Math.min(this.count, src.length - this.head);
    out.set(src.subarray(this.head, this.head + tail), 0);
    out.set(src.subarray(0, this.count - tail), tail);
    return out;
  }
}
