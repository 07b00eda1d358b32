import type { EventEnvelope, Lane, UnsequencedEvent } from '@storelink/protocols';
import { edgeError } from '../errors.ts';
import type { AppendOutcome, OutboxCore, Plan, WriteSet } from './core.ts';
import type { Outbox, OutboxStats, StoredEvent } from './types.ts';

/** What an outbox implementation has to provide: one atomic write and a range read. */
export interface OutboxStorage {
  /** Writes the whole set atomically (one LevelDB batch); `sync` = fsync before resolving. */
  write(ws: WriteSet, sync: boolean): Promise<void>;
  /** Stored JSON of `lane` with afterSeq < seq <= lastSeq, ascending, at most `limit`. */
  readRange(
    lane: Lane,
    afterSeq: number,
    lastSeq: number,
    limit: number,
  ): Promise<Array<{ seq: number; json: string }>>;
}

export type LogFn = (level: 'info' | 'warn' | 'error', msg: string, data?: Record<string, unknown>) => void;

interface PendingAppend {
  event: UnsequencedEvent;
  resolve: (env: EventEnvelope) => void;
  reject: (err: Error) => void;
}

const noop = () => {};

/**
 * The outbox over any `OutboxStorage`. Every state change (append batch, ack, expiry)
 * runs on one serial chain, so exactly one write is in flight; appends that arrive
 * meanwhile queue up and the next flush takes them all (group commit) [OUTBOX-WRITE-1].
 */
export class EngineOutbox implements Outbox {
  private pending: PendingAppend[] = [];
  private flushQueued = false;
  private chain: Promise<unknown> = Promise.resolve();
  private readonly listeners = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    readonly epoch: string,
    private readonly core: OutboxCore,
    private readonly storage: OutboxStorage,
    private readonly log: LogFn = noop,
  ) {
    const every = core.opts.expireIntervalMs ?? 5000;
    if (every > 0) {
      this.timer = setInterval(
        () => this.expire().catch((err) => this.log('warn', 'outbox expiry failed', { err })),
        every,
      );
      this.timer.unref();
    }
  }

  append(event: UnsequencedEvent): Promise<EventEnvelope> {
    if (this.closed) return Promise.reject(edgeError('EDGE_ERR_OUTBOX_IO', { reason: 'outbox is closed' }));
    return new Promise((resolve, reject) => {
      this.pending.push({ event, resolve, reject });
      this.scheduleFlush();
    });
  }

  async read(lane: Lane, afterSeq: number, limit: number, maxBytes = 0): Promise<StoredEvent[]> {
    const q = this.core.lanes[lane].queue;
    const first = q.indexAfter(afterSeq);
    const n = this.countReadable(lane, first, limit, maxBytes);
    if (n === 0) return [];
    const rows = await this.storage.readRange(lane, afterSeq, q.seqAt(first + n - 1), n);
    return this.attachRts(lane, rows);
  }

  ack(lane: Lane, upTo: number): Promise<void> {
    return this.serial(async () => {
      const plan = this.core.begin();
      if (!this.core.planAck(plan, lane, upTo)) return;
      await this.writePlan(plan, false);
    });
  }

  floor(lane: Lane): number {
    return this.core.floor(lane);
  }

  acked(lane: Lane): number {
    return this.core.lanes[lane].acked;
  }

  stats(): OutboxStats {
    return this.core.stats(this.epoch, this.core.opts.now());
  }

  onAppend(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  expire(): Promise<number> {
    return this.serial(async () => {
      const plan = this.core.begin();
      const now = this.core.opts.now();
      const n = this.core.planExpire(plan, now);
      this.core.dedupe.prune(now);
      if (n === 0 && this.core.dedupe.garbage.length === 0) return 0;
      await this.writePlan(plan, false);
      return n;
    });
  }

  /** Stops the timer and waits for every queued write. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.closed = true;
    await this.chain;
  }

  // ---- steps --------------------------------------------------------------------------

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn);
    this.chain = p.then(noop, noop);
    return p;
  }

  private scheduleFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    this.serial(() => this.flush());
  }

  /** One group commit: everything queued so far becomes one write [OUTBOX-WRITE-1]. */
  private async flush(): Promise<void> {
    this.flushQueued = false;
    const batch = this.pending;
    this.pending = [];
    const plan = this.core.begin();
    // Seqs are assigned here, when the batch is formed, not when append() was called.
    const outcomes = batch.map((p) => this.core.planAppend(plan, p.event));
    try {
      if (!this.core.isEmpty(plan)) await this.writePlan(plan, this.core.opts.durability === 'power');
    } catch (err) {
      this.rejectBatch(batch, outcomes, err);
      return;
    }
    this.settleBatch(batch, outcomes);
    if (outcomes.some((o) => o.kind === 'stored')) this.notify();
  }

  private async writePlan(plan: Plan, sync: boolean): Promise<void> {
    const ws = this.core.writeSet(plan);
    try {
      await this.storage.write(ws, sync);
    } catch (err) {
      // Nothing was committed: the plan (seqs, drops, acks) is simply forgotten.
      throw edgeError('EDGE_ERR_OUTBOX_IO', { reason: errorText(err) }, { cause: err });
    }
    this.core.commit(plan, ws);
  }

  private settleBatch(batch: PendingAppend[], outcomes: AppendOutcome[]): void {
    for (let i = 0; i < batch.length; i++) {
      const o = outcomes[i]!;
      const p = batch[i]!;
      if (o.kind === 'stored' || o.kind === 'duplicateInBatch') p.resolve(o.event.envelope);
      else if (o.kind === 'duplicate') p.resolve(o.envelope);
      else p.reject(edgeError('EDGE_ERR_OUTBOX_FULL', { lane: p.event.lane, reason: o.reason }));
    }
  }

  private rejectBatch(batch: PendingAppend[], outcomes: AppendOutcome[], err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    for (let i = 0; i < batch.length; i++) {
      const o = outcomes[i]!;
      // A resend of an event stored by an earlier batch does not depend on this write.
      if (o.kind === 'duplicate') batch[i]!.resolve(o.envelope);
      else batch[i]!.reject(error);
    }
    this.log('error', 'outbox write failed; appends of the batch rejected', {
      err: errorText(err),
      n: batch.length,
    });
  }

  private notify(): void {
    for (const l of this.listeners) {
      try {
        l();
      } catch (err) {
        this.log('warn', 'onAppend listener threw', { err: errorText(err) });
      }
    }
  }

  /** How many held events from queue index `first` fit `limit` and about `maxBytes` (at least one). */
  private countReadable(lane: Lane, first: number, limit: number, maxBytes: number): number {
    const q = this.core.lanes[lane].queue;
    let n = 0;
    let bytes = 0;
    while (first + n < q.length && n < limit) {
      const b = q.bytesAt(first + n);
      if (n > 0 && maxBytes > 0 && bytes + b > maxBytes) break;
      bytes += b;
      n++;
    }
    return n;
  }

  private attachRts(lane: Lane, rows: Array<{ seq: number; json: string }>): StoredEvent[] {
    const q = this.core.lanes[lane].queue;
    let j = rows.length > 0 ? q.indexAfter(rows[0]!.seq - 1) : 0;
    const out = new Array<StoredEvent>(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const { seq, json } = rows[i]!;
      while (j < q.length && q.seqAt(j) < seq) j++;
      // An ack may have removed the entry from the index while the read ran; it is re-read from the JSON.
      const rts = j < q.length && q.seqAt(j) === seq ? q.rtsAt(j) : (JSON.parse(json) as { rts: number }).rts;
      out[i] = { seq, json, rts };
    }
    return out;
  }
}

export function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
