import type { EventEnvelope, Lane, UnsequencedEvent } from '@storelink/protocols';

/**
 * Resend dedupe index [INGEST-DEDUPE-1]: (device, mid) -> where the first copy went.
 * A device that never saw its PUBACK resends the same `mid`; the outbox answers with
 * the envelope it stored the first time and stores nothing.
 *
 * Persistence: one *record* per group commit (`d!{record16}` -> the entries of that
 * batch), written in the same LevelDB batch as the events. One sequential put per batch
 * instead of one random-key put per event keeps the ingest path near raw LevelDB speed.
 *
 * Bounded: an entry lives `windowMs` (default 24 h, by the original edge receive time)
 * and a device keeps at most `maxPerDevice` entries (default 1000, oldest evicted first).
 * A record is deleted once all of its entries are evicted; those record ids collect in
 * `garbage` and the next write batch deletes them.
 */
export interface DedupeOptions {
  windowMs: number;
  maxPerDevice: number;
}

export const DEDUPE_DEFAULTS: DedupeOptions = { windowMs: 24 * 3600_000, maxPerDevice: 1000 };

export interface DedupeEntry {
  /** `dedupeKey(device, mid)` when the planner already made it (not persisted). */
  key?: string;
  device: string;
  mid: string;
  lane: Lane;
  seq: number;
  id: string;
  rts: number;
  ts: number;
  type: string;
}

interface Slot {
  key: string;
  entry: DedupeEntry;
  record: number;
  fifo: DeviceFifo;
}

/** In-memory key of an entry. Device ids cannot contain `!`, so it is unambiguous. */
export function dedupeKey(device: string, mid: string): string {
  return `${device}!${mid}`;
}

type Row = [string, string, Lane, number, string, number, number, string];

/**
 * `JSON.stringify(entries as Row[])`, written out: this runs once per group commit on the
 * broker's thread, and building the rows as arrays first cost as much as the rest.
 */
export function encodeRecord(entries: DedupeEntry[]): string {
  const q = JSON.stringify;
  let s = '[';
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    if (i > 0) s += ',';
    s += `[${q(e.device)},${q(e.mid)},"${e.lane}",${q(e.seq)},${q(e.id)},${q(e.rts)},${q(e.ts)},${q(e.type)}]`;
  }
  return `${s}]`;
}

/** Entries of a stored record, or undefined when it is unreadable. */
export function decodeRecord(value: string): DedupeEntry[] | undefined {
  try {
    const rows = JSON.parse(value) as Row[];
    if (!Array.isArray(rows)) return undefined;
    const out: DedupeEntry[] = [];
    for (const r of rows) {
      if (!Array.isArray(r) || r.length !== 8 || typeof r[0] !== 'string' || typeof r[1] !== 'string')
        return undefined;
      if (typeof r[3] !== 'number' || typeof r[5] !== 'number') return undefined;
      out.push({ device: r[0], mid: r[1], lane: r[2], seq: r[3], id: r[4], rts: r[5], ts: r[6], type: r[7] });
    }
    return out;
  } catch {
    return undefined;
  }
}

/** The envelope the first copy was stored as, rebuilt around the resend's payload (same mid, same message). */
export function originalEnvelope(event: UnsequencedEvent, e: DedupeEntry): EventEnvelope {
  return { ...event, id: e.id, type: e.type, ts: e.ts, rts: e.rts, lane: e.lane, seq: e.seq };
}

/** Insertion-ordered slots of one device, with a moving head so eviction is O(1). */
class DeviceFifo {
  slots: Slot[] = [];
  head = 0;
  live = 0;

  peek(): Slot | undefined {
    return this.slots[this.head];
  }
  shift(): Slot | undefined {
    const s = this.slots[this.head++];
    if (this.head > 1024 && this.head * 2 > this.slots.length) {
      this.slots = this.slots.slice(this.head);
      this.head = 0;
    }
    return s;
  }
}

export class DedupeIndex {
  private readonly entries = new Map<string, Slot>();
  private readonly fifos = new Map<string, DeviceFifo>();
  private readonly recordLive = new Map<number, number>();
  /** Id the next persisted record gets. */
  nextRecord = 1;
  /** Records whose entries are all evicted; the next write deletes them. */
  garbage: number[] = [];

  constructor(readonly opts: DedupeOptions) {}

  get size(): number {
    return this.entries.size;
  }

  get(key: string): DedupeEntry | undefined {
    return this.entries.get(key)?.entry;
  }

  /** Adds the entries of one record (a newer entry for the same key replaces the older). */
  addRecord(record: number, entries: DedupeEntry[]): void {
    this.nextRecord = Math.max(this.nextRecord, record + 1);
    // Counted once for the record; each entry later evicted or replaced takes one off.
    this.recordLive.set(record, entries.length);
    for (const entry of entries) this.add(record, entry);
    if (this.recordLive.get(record) === 0) this.release(record);
  }

  /** Drops entries older than the window; returns how many. */
  prune(now: number): number {
    const cutoff = now - this.opts.windowMs;
    let n = 0;
    for (const [device, fifo] of this.fifos) {
      for (let s = fifo.peek(); s && (this.isStale(s) || s.entry.rts <= cutoff); s = fifo.peek()) {
        if (!this.isStale(s)) n++;
        this.evict(fifo);
      }
      if (fifo.live === 0) this.fifos.delete(device);
    }
    return n;
  }

  private add(record: number, entry: DedupeEntry): void {
    const key = entry.key ?? dedupeKey(entry.device, entry.mid);
    const old = this.entries.get(key);
    if (old) this.unlink(old);
    let fifo = this.fifos.get(entry.device);
    if (!fifo) {
      fifo = new DeviceFifo();
      this.fifos.set(entry.device, fifo);
    }
    const slot: Slot = { key, entry, record, fifo };
    this.entries.set(key, slot);
    fifo.slots.push(slot);
    fifo.live++;
    while (fifo.live > this.opts.maxPerDevice) this.evict(fifo);
  }

  /** A slot replaced by a newer entry of the same key stays in its FIFO until it reaches the head. */
  private isStale(s: Slot): boolean {
    return this.entries.get(s.key) !== s;
  }

  private evict(fifo: DeviceFifo): void {
    const s = fifo.shift();
    if (s && !this.isStale(s)) this.unlink(s);
  }

  private unlink(s: Slot): void {
    this.entries.delete(s.key);
    s.fifo.live--;
    const left = (this.recordLive.get(s.record) ?? 1) - 1;
    if (left <= 0) this.release(s.record);
    else this.recordLive.set(s.record, left);
  }

  private release(record: number): void {
    this.recordLive.delete(record);
    this.garbage.push(record);
  }
}
