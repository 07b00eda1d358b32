import type { Lane } from '@storelink/protocols';

/**
 * Segments [OUTBOX-SEG-1]: the LevelDB store keeps the events of one lane that one group
 * commit wrote as ONE value — their envelope JSONs joined by `\n` — under the key of the
 * first seq (`o!{lane}!{firstSeq16}`). Seqs inside a segment are contiguous (line k is
 * firstSeq + k). A segment of one line is exactly the older one-event-per-key layout, so
 * stores written before segments open unchanged.
 *
 * Why: converting every key and value of a write batch into LevelDB's native batch costs
 * ~3 µs per event on the broker's thread; one value per lane and commit costs ~0.8 µs for
 * the whole batch (docs/performance.md, "Ingest: CPU per message"). Acks and drops only
 * ever remove a prefix of a lane, so a segment is deleted once its last line is gone;
 * until then its removed lines stay on disk and are skipped by reads (which start at the
 * lane's first held seq) and by recovery (which skips lines below `m!low`).
 *
 * JSON.stringify never emits a raw newline, so `\n` cannot occur inside a line.
 */

export const SEGMENT_SEPARATOR = '\n';

export interface SegmentRun {
  lane: Lane;
  first: number;
  count: number;
  /** Index of its first event in the list it was cut from. */
  from: number;
}

/**
 * Upper bound of one segment value, in UTF-16 units. A live group commit is tens of events;
 * a bulk append (a backlog created offline, a restore) would otherwise make values of
 * megabytes, and every line read back is a slice that keeps its whole value alive until
 * the uplink lets go of it (the edge's RSS doubled while draining 1M events).
 */
export const SEGMENT_MAX_CHARS = 64 * 1024;

/** Cuts events (lane-grouped, seq-ascending, as a write set lists them) into segment runs. */
export function segmentRuns(events: ReadonlyArray<{ lane: Lane; seq: number; json: string }>): SegmentRun[] {
  const out: SegmentRun[] = [];
  let i = 0;
  while (i < events.length) {
    const head = events[i]!;
    let j = i + 1;
    let chars = head.json.length;
    while (
      j < events.length &&
      events[j]!.lane === head.lane &&
      events[j]!.seq === head.seq + (j - i) &&
      chars + events[j]!.json.length < SEGMENT_MAX_CHARS
    ) {
      chars += events[j]!.json.length + 1;
      j++;
    }
    out.push({ lane: head.lane, first: head.seq, count: j - i, from: i });
    i = j;
  }
  return out;
}

/** The stored value of one run: its events' JSON joined by SEGMENT_SEPARATOR. */
export function segmentValue(events: ReadonlyArray<{ json: string }>, run: SegmentRun): string {
  let value = events[run.from]!.json;
  for (let k = run.from + 1; k < run.from + run.count; k++) value += SEGMENT_SEPARATOR + events[k]!.json;
  return value;
}

/** Lines of a stored segment value. */
export function segmentLines(value: string): string[] {
  return value.split(SEGMENT_SEPARATOR);
}

/**
 * The stored segments of one lane, in seq order: (first seq, line count). Kept in memory
 * beside the event index so reads can seek to the segment holding a seq and acks know
 * which segments are wholly gone. Removal is only ever from the head.
 */
export class SegmentIndex {
  private firsts: number[] = [];
  private counts: number[] = [];
  private head = 0;

  get length(): number {
    return this.firsts.length - this.head;
  }

  push(first: number, count: number): void {
    this.firsts.push(first);
    this.counts.push(count);
  }

  /** First seqs of the head segments whose every line is <= upTo (the ones an ack to upTo deletes). */
  wholeThrough(upTo: number): number[] {
    const out: number[] = [];
    for (let i = this.head; i < this.firsts.length; i++) {
      if (this.firsts[i]! + this.counts[i]! - 1 > upTo) break;
      out.push(this.firsts[i]!);
    }
    return out;
  }

  /** Forgets the head segments whose every line is <= upTo (after their deletion was committed). */
  dropThrough(upTo: number): void {
    while (this.head < this.firsts.length && this.firsts[this.head]! + this.counts[this.head]! - 1 <= upTo)
      this.head++;
    if (this.head > 1024 && this.head * 2 > this.firsts.length) {
      this.firsts = this.firsts.slice(this.head);
      this.counts = this.counts.slice(this.head);
      this.head = 0;
    }
  }

  /** First seq of the segment that holds `seq` (or the first segment after it; `seq` when none). */
  startFor(seq: number): number {
    let lo = this.head;
    let hi = this.firsts.length;
    // The last segment whose first seq is <= seq.
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.firsts[mid]! <= seq) lo = mid + 1;
      else hi = mid;
    }
    return lo > this.head ? this.firsts[lo - 1]! : seq;
  }
}
