import type { EventEnvelope, Lane, LaneStats, UnsequencedEvent } from '@storelink/protocols';

/**
 * The edge outbox: every accepted event lives here until the cloud has *committed* it
 * (the `ack` watermark), never merely until a broker said PUBACK [OUTBOX-ACK-1].
 * Implementations: LevelDB (production) and memory (tests); both pass the conformance
 * suite in `conformance.ts` (house style 1).
 */

export type Durability = 'process' | 'power';

export interface LaneBudget {
  /** Byte budget of the lane; 0 = only the global budget applies. */
  maxBytes: number;
  /** Events older than this are expired (only honoured for `telemetry`) [OUTBOX-TTL-1]. */
  ttlMs?: number;
}

export interface OutboxOptions {
  durability: Durability;
  /** Budget for the whole outbox in bytes of stored event JSON. */
  maxBytes: number;
  lanes: Record<Lane, LaneBudget>;
  /** Injected clock (house style 6). */
  now: () => number;
  /** Resend dedupe bounds [INGEST-DEDUPE-1]; defaults: 24 h window, 1000 ids per device. */
  dedupe?: { windowMs?: number; maxPerDevice?: number };
  /**
   * Append write batches allowed in flight at once (pipelined group commit, default 3;
   * 1 = one write at a time). Appends still resolve strictly in order [OUTBOX-WRITE-1].
   */
  writesInFlight?: number;
  /** How often the store runs `expire()` on its own (unref'd) timer; default 5000 ms, 0 = never. */
  expireIntervalMs?: number;
}

/** An event as stored: its seq and its envelope already serialised as JSON. */
export interface StoredEvent {
  seq: number;
  /** `JSON.stringify(envelope)` exactly as it will travel in the uplink batch. */
  json: string;
  /** Edge receive time, for age and TTL. */
  rts: number;
}

export type DropReason = 'ttl' | 'budget' | 'corruption';

export interface OutboxStats {
  epoch: string;
  depth: number;
  bytes: number;
  oldestAgeMs: number;
  lanes: Record<
    Lane,
    LaneStats & {
      /** `disk`: telemetry refused below the disk reserve since start [OUTBOX-DISK-1] (no seq, not persisted). */
      dropReasons: Record<DropReason, number> & { disk?: number };
    }
  >;
}

/** Called when an append is durable (`err` null, the stored envelope) or refused (`err`). */
export type AppendDone = (err: Error | null, envelope?: EventEnvelope) => void;

export interface Outbox {
  /** Outbox incarnation, a ULID made when the store was first created [OUTBOX-EPOCH-1]. */
  readonly epoch: string;
  /**
   * Assigns the next gap-free seq of the event's lane and stores it; resolves only when
   * the write is durable at the configured level (group commit: concurrent appends share
   * one write batch) [OUTBOX-WRITE-1]. Rejects with EDGE_ERR_OUTBOX_FULL when the event
   * cannot be stored; a `tx` event is never made room for by dropping another `tx` [LANE-1].
   */
  append(event: UnsequencedEvent): Promise<EventEnvelope>;
  /**
   * `append` for the broker's hot path: the same contract, but `done` is called (once, in
   * append order within a batch) instead of a promise being made per event [OUTBOX-WRITE-2].
   * `payloadJson`: the device's own JSON text of `event.payload`, stored as it is instead of
   * serialising the parsed value again (see `envelopeJson`).
   */
  appendWith(event: UnsequencedEvent, done: AppendDone, payloadJson?: string): void;
  /** Events of `lane` with seq > afterSeq, ascending, at most `limit` and about `maxBytes`. */
  read(lane: Lane, afterSeq: number, limit: number, maxBytes?: number): Promise<StoredEvent[]>;
  /** Forgets every event of `lane` with seq <= upTo. Idempotent; a lower upTo is a no-op. */
  ack(lane: Lane, upTo: number): Promise<void>;
  /** Lowest seq still held in `lane`, or the next seq when the lane is empty [OUTBOX-ACK-3]. */
  floor(lane: Lane): number;
  /** Highest seq acknowledged by the cloud for `lane` (0 when none). */
  acked(lane: Lane): number;
  stats(): OutboxStats;
  /** Called after each committed append batch (the uplink wakes up on it). */
  onAppend(listener: () => void): () => void;
  /** Applies TTL expiry now (the store also runs it on its own timer). */
  expire(): Promise<number>;
}

/** Small durable key-value space beside the outbox: bdSeq, executed command ids, shadows. */
export interface KvStore {
  get(key: string): Promise<string | undefined>;
  /** `sync: true` forces an fsync regardless of the durability level. */
  put(key: string, value: string, opts?: { sync?: boolean }): Promise<void>;
  del(key: string): Promise<void>;
  /** Keys with `prefix`, ascending. */
  keys(prefix: string, limit?: number): Promise<string[]>;
}

/** What start-up verification found [OUTBOX-RECOVER-1]. */
export interface RecoveryReport {
  repaired: boolean;
  /** Per lane, the seq ranges that could not be read back and are lost. */
  lost: Partial<Record<Lane, Array<[from: number, to: number]>>>;
  lostCount: number;
  message: string;
}

export interface EdgeStore {
  outbox: Outbox;
  kv: KvStore;
  recovery: RecoveryReport;
  close(): Promise<void>;
}
