import type { EventEnvelope, Lane, UnsequencedEvent } from '@storelink/protocols';

/**
 * Resend dedupe index [INGEST-DEDUPE-1]: (device, mid) -> where the first copy went.
 * A device that never saw its PUBACK resends the same `mid`; the outbox answers with
 * the envelope it stored the first time and stores nothing.
 *
 * Bounded: an entry lives `windowMs` (default 24 h, by the original edge receive time)
 * and a device keeps at most `maxPerDevice` entries (default 1000, oldest evicted first).
 * Evicted keys are collected in `garbage` and deleted by the next write batch; a crash
 * before that only means the bound is re-applied when the index is loaded again.
 */
export interface DedupeOptions {
  windowMs: number;
  maxPerDevice: number;
}

export const DEDUPE_DEFAULTS: DedupeOptions = { windowMs: 24 * 3600_000, maxPerDevice: 1000 };

export interface DedupeEntry {
  lane: Lane;
  seq: number;
  id: string;
  rts: number;
  ts: number;
  type: string;
}

/** `{device}!{mid}`: the storage key suffix after `d!`, also the in-memory key. */
export function dedupeKey(device: string, mid: string): string {
  return `${device}!${mid}`;
}

export function encodeDedupe(e: DedupeEntry): string {
  return JSON.stringify({ l: e.lane, s: e.seq, i: e.id, r: e.rts, t: e.ts, y: e.type });
}

export function decodeDedupe(value: string): DedupeEntry | undefined {
  try {
    const v = JSON.parse(value) as Record<string, unknown>;
    if (typeof v.s !== 'number' || typeof v.l !== 'string' || typeof v.i !== 'string') return undefined;
    if (typeof v.r !== 'number' || typeof v.t !== 'number' || typeof v.y !== 'string') return undefined;
    return { lane: v.l as Lane, seq: v.s, id: v.i, rts: v.r, ts: v.t, type: v.y };
  } catch {
    return undefined;
  }
}

/** The envelope the first copy was stored as, rebuilt around the resend's payload (same mid, same message). */
export function originalEnvelope(event: UnsequencedEvent, e: DedupeEntry): EventEnvelope {
  return { ...event, id: e.id, type: e.type, ts: e.ts, rts: e.rts, lane: e.lane, seq: e.seq };
}

/** Insertion-ordered keys of one device, with a moving head so eviction is O(1). */
class DeviceFifo {
  keys: string[] = [];
  head = 0;

  get size(): number {
    return this.keys.length - this.head;
  }
  peek(): string | undefined {
    return this.keys[this.head];
  }
  shift(): string | undefined {
    const k = this.keys[this.head++];
    if (this.head > 1024 && this.head * 2 > this.keys.length) {
      this.keys = this.keys.slice(this.head);
      this.head = 0;
    }
    return k;
  }
}

export class DedupeIndex {
  private readonly entries = new Map<string, DedupeEntry>();
  private readonly fifos = new Map<string, DeviceFifo>();
  /** Keys evicted from memory whose stored copy still has to be deleted. */
  garbage: string[] = [];

  constructor(readonly opts: DedupeOptions) {}

  get size(): number {
    return this.entries.size;
  }

  get(key: string): DedupeEntry | undefined {
    return this.entries.get(key);
  }

  add(device: string, key: string, entry: DedupeEntry): void {
    if (this.entries.has(key)) return;
    this.entries.set(key, entry);
    let fifo = this.fifos.get(device);
    if (!fifo) {
      fifo = new DeviceFifo();
      this.fifos.set(device, fifo);
    }
    fifo.keys.push(key);
    while (fifo.size > this.opts.maxPerDevice) this.evict(fifo);
  }

  /** Drops entries older than the window; returns how many. */
  prune(now: number): number {
    const cutoff = now - this.opts.windowMs;
    let n = 0;
    for (const [device, fifo] of this.fifos) {
      while (fifo.size > 0 && (this.entries.get(fifo.peek()!)?.rts ?? cutoff) <= cutoff) {
        this.evict(fifo);
        n++;
      }
      if (fifo.size === 0) this.fifos.delete(device);
    }
    return n;
  }

  /** Loads stored entries (any order) so each device's FIFO is oldest-first. */
  load(stored: Array<{ device: string; key: string; entry: DedupeEntry }>): void {
    stored.sort((a, b) => a.entry.rts - b.entry.rts);
    for (const s of stored) this.add(s.device, s.key, s.entry);
  }

  private evict(fifo: DeviceFifo): void {
    const key = fifo.shift();
    if (key === undefined) return;
    this.entries.delete(key);
    this.garbage.push(key);
  }
}
