import { type EventEnvelope, LANES, type Lane, type UnsequencedEvent } from '@storelink/protocols';
import { edgeError } from '../errors.ts';
import type { AppendOutcome, OutboxCore, Plan, Repair, WriteSet } from './core.ts';
import type { AppendDone, Outbox, OutboxStats, StoredEvent } from './types.ts';

/** What an outbox implementation has to provide: one atomic write and a range read. */
export interface OutboxStorage {
  /** Writes the whole set atomically (one LevelDB batch); `sync` = fsync before resolving. */
  write(ws: WriteSet, sync: boolean): Promise<void>;
  /** Called in commit order after a written set was applied to the state (watermark). */
  committed?(ws: WriteSet): void;
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
  done: AppendDone;
  payloadJson: string | undefined;
}

/** One append write batch of the pipeline, settled strictly in formation order. */
interface Batch {
  appends: PendingAppend[];
  outcomes: AppendOutcome[];
  plan: Plan;
  ws: WriteSet;
  /** Whether the set goes to storage at all (an all-duplicate batch writes nothing). */
  writes: boolean;
  state: 'writing' | 'ok' | 'failed';
  err?: Error;
  done: Promise<void>;
}

const noop = () => {};

/** Default number of append write batches allowed in flight at once (pipelined group commit). */
export const DEFAULT_WRITES_IN_FLIGHT = 3;

/**
 * The outbox over any `OutboxStorage`. Appends queue up and each flush takes everything
 * queued so far as one write batch (group commit) [OUTBOX-WRITE-1]. Up to
 * `writesInFlight` append batches may be in flight at once (pipelining): batch k+1 is
 * planned on top of batch k (its seqs continue k's) and submitted while k is written, but
 * is committed and its appends resolved only after k's; if k fails, every later batch is
 * undone (written keys deleted, counters restored) and its appends rejected, so a failed
 * write never leaves a gap (docs/reliability.md, "Pipelined group commit"). Acks and expiry
 * run alone: they wait for the pipeline to drain and hold new batches back meanwhile.
 */
export class EngineOutbox implements Outbox {
  private pending: PendingAppend[] = [];
  private pumpQueued = false;
  private readonly batches: Batch[] = [];
  private readonly exclusive: Array<() => Promise<void>> = [];
  private exclusiveRunning = false;
  private rollingBack = false;
  /** Undo of a rollback whose own write failed; the next write carries it. */
  private repair: Repair | undefined;
  private idleWaiters: Array<() => void> = [];
  private readonly listeners = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly maxInFlight: number;

  constructor(
    readonly epoch: string,
    private readonly core: OutboxCore,
    private readonly storage: OutboxStorage,
    private readonly log: LogFn = noop,
  ) {
    this.maxInFlight = Math.max(1, Math.floor(core.opts.writesInFlight ?? DEFAULT_WRITES_IN_FLIGHT));
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
    return appendPromise(this, event);
  }

  /** [OUTBOX-WRITE-2] one callback per event, no promise: the ingest path calls this. */
  appendWith(event: UnsequencedEvent, done: AppendDone, payloadJson?: string): void {
    if (this.closed) {
      done(edgeError('EDGE_ERR_OUTBOX_IO', { reason: 'outbox is closed' }));
      return;
    }
    this.pending.push({ event, done, payloadJson });
    // Formed on a microtask, so every append of the current tick shares the batch.
    if (!this.pumpQueued) {
      this.pumpQueued = true;
      queueMicrotask(this.pumpSoon);
    }
  }

  private readonly pumpSoon = (): void => {
    this.pumpQueued = false;
    this.pump();
  };

  async read(lane: Lane, afterSeq: number, limit: number, maxBytes = 0): Promise<StoredEvent[]> {
    const q = this.core.lanes[lane].queue;
    const first = q.indexAfter(afterSeq);
    const n = this.countReadable(lane, first, limit, maxBytes);
    if (n === 0) return [];
    // From the first *held* seq: a segment may still hold acknowledged lines below it [OUTBOX-SEG-1].
    const rows = await this.storage.readRange(lane, q.seqAt(first) - 1, q.seqAt(first + n - 1), n);
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
    while (!this.idle()) await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  // ---- scheduling ---------------------------------------------------------------------

  private idle(): boolean {
    return (
      this.pending.length === 0 &&
      this.batches.length === 0 &&
      this.exclusive.length === 0 &&
      !this.exclusiveRunning &&
      !this.rollingBack &&
      !this.pumpQueued
    );
  }

  /** Runs `fn` alone: after the in-flight batches, before any batch formed later. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.exclusive.push(() => fn().then(resolve, reject));
      this.pump();
    });
  }

  /** Starts whatever may start now: an exclusive step, or append batches up to the limit. */
  private pump(): void {
    if (!this.exclusiveRunning && !this.rollingBack) {
      if (this.exclusive.length > 0) {
        if (this.batches.length === 0) this.runExclusive(this.exclusive.shift()!);
      } else {
        // While an undo is owed, one batch at a time: it carries the undo.
        const limit = this.repair ? 1 : this.maxInFlight;
        while (this.pending.length > 0 && this.batches.length < limit && this.formBatch()) {}
      }
    }
    if (this.idleWaiters.length > 0 && this.idle()) for (const w of this.idleWaiters.splice(0)) w();
  }

  private runExclusive(step: () => Promise<void>): void {
    this.exclusiveRunning = true;
    step().finally(() => {
      this.exclusiveRunning = false;
      this.pump();
    });
  }

  /**
   * One group commit: everything queued so far becomes one write [OUTBOX-WRITE-1],
   * planned on top of the last in-flight batch. Returns false when nothing could be formed.
   */
  private formBatch(): boolean {
    const prev = this.batches[this.batches.length - 1];
    const plan = this.core.begin(prev?.plan);
    const queued = this.pending;
    const outcomes: AppendOutcome[] = [];
    // Seqs are assigned here, when the batch is formed, not when append() was called.
    let n = 0;
    for (; n < queued.length; n++) {
      const q = queued[n]!;
      const o = this.core.planAppend(plan, q.event, q.payloadJson);
      // Needs drops: wait until the pipeline has drained and plan on committed state.
      if (o.kind === 'blocked') break;
      outcomes.push(o);
    }
    if (n === 0) return false;
    const appends = n === queued.length ? queued : queued.slice(0, n);
    this.pending = n === queued.length ? [] : queued.slice(n);
    const ws = this.core.writeSet(plan);
    if (this.repair && !plan.chained) ws.repair = this.repair;
    const writes = !this.core.isEmpty(plan) || ws.repair !== undefined;
    const batch = { appends, outcomes, plan, ws, writes, state: 'writing' } as Batch;
    batch.done = writes
      ? this.storage.write(ws, this.core.opts.durability === 'power').then(
          () => {
            batch.state = 'ok';
          },
          (err: unknown) => {
            batch.state = 'failed';
            batch.err = ioError(err);
          },
        )
      : Promise.resolve().then(() => {
          batch.state = 'ok';
        });
    batch.done.then(() => this.settle());
    this.batches.push(batch);
    return true;
  }

  /** Settles finished batches from the head, strictly in formation order. */
  private settle(): void {
    while (this.batches.length > 0 && this.batches[0]!.state !== 'writing') {
      const b = this.batches.shift()!;
      if (b.state === 'failed') {
        this.failed(b);
        return;
      }
      if (b.writes) {
        this.core.commit(b.plan, b.ws);
        if (b.ws.repair) this.repair = undefined;
        this.storage.committed?.(b.ws);
      }
      // The next plan's base is committed now; drop the link so plans do not chain forever.
      if (this.batches[0]) this.batches[0].plan.base = undefined;
      this.settleBatch(b.appends, b.outcomes);
      if (b.outcomes.some((o) => o.kind === 'stored')) this.notify();
    }
    this.pump();
  }

  /**
   * Batch `b` failed: nothing of it is committed. Every later batch was planned on top of
   * it (its seqs follow b's), so each is undone: once their writes have finished, the ones
   * that were written are deleted again and the counters restored, and all their appends
   * are rejected (the devices resend; nothing was acknowledged) [OUTBOX-WRITE-1].
   */
  private failed(b: Batch): void {
    this.rejectBatch(b.appends, b.outcomes, b.err!);
    const later = this.batches.splice(0);
    if (later.length === 0) {
      this.pump();
      return;
    }
    this.rollingBack = true;
    void Promise.all(later.map((x) => x.done))
      .then(async () => {
        const why = edgeError('EDGE_ERR_OUTBOX_IO', {
          reason: `an earlier write batch failed: ${b.err!.message}`,
        });
        const written = later.filter((x) => x.state === 'ok' && x.writes);
        for (const x of later) this.rejectBatch(x.appends, x.outcomes, why);
        if (written.length > 0) await this.undo(written);
      })
      .finally(() => {
        this.rollingBack = false;
        this.pump();
      });
  }

  /** Deletes what `written` batches stored and restores the committed counters, in one write. */
  private async undo(written: Batch[]): Promise<void> {
    const r: Repair = this.repair ?? { removed: [], dedupeDel: [], next: [] };
    for (const x of written) {
      const byLane = new Map<Lane, number[]>();
      for (const e of x.ws.events) {
        const seqs = byLane.get(e.lane);
        if (seqs) seqs.push(e.seq);
        else byLane.set(e.lane, [e.seq]);
      }
      for (const [lane, seqs] of byLane) r.removed.push({ lane, seqs });
      if (x.ws.dedupeRecord) r.dedupeDel.push(x.ws.dedupeRecord.record);
    }
    r.next = LANES.map((lane) => ({ lane, value: this.core.lanes[lane].next }));
    this.repair = r;
    const plan = this.core.begin();
    try {
      await this.writePlan(plan, this.core.opts.durability === 'power');
      this.log('warn', 'outbox: pipelined batches after a failed write were undone', { n: written.length });
    } catch (err) {
      // Kept in this.repair: the next write carries it (before its own puts).
      this.log('error', 'outbox: undoing pipelined batches failed; the next write retries', {
        err: errorText(err),
      });
    }
  }

  private async writePlan(plan: Plan, sync: boolean): Promise<void> {
    const ws = this.core.writeSet(plan);
    if (this.repair) {
      // Counters as committed now; this set's own counters come after them and win.
      this.repair.next = LANES.map((lane) => ({ lane, value: this.core.lanes[lane].next }));
      ws.repair = this.repair;
    }
    try {
      await this.storage.write(ws, sync);
    } catch (err) {
      // Nothing was committed: the plan (seqs, drops, acks) is simply forgotten.
      throw ioError(err);
    }
    this.core.commit(plan, ws);
    if (ws.repair) this.repair = undefined;
    this.storage.committed?.(ws);
  }

  private settleBatch(batch: PendingAppend[], outcomes: AppendOutcome[]): void {
    for (let i = 0; i < batch.length; i++) {
      const o = outcomes[i]!;
      const p = batch[i]!;
      if (o.kind === 'stored' || o.kind === 'duplicateInBatch') p.done(null, o.event.envelope);
      else if (o.kind === 'duplicate') p.done(null, o.envelope);
      else
        p.done(
          edgeError('EDGE_ERR_OUTBOX_FULL', {
            lane: p.event.lane,
            reason: o.kind === 'full' ? o.reason : 'blocked',
          }),
        );
    }
  }

  private rejectBatch(batch: PendingAppend[], outcomes: AppendOutcome[], err: Error): void {
    for (let i = 0; i < batch.length; i++) {
      const o = outcomes[i]!;
      // A resend of an event stored by an earlier batch does not depend on this write.
      if (o.kind === 'duplicate') batch[i]!.done(null, o.envelope);
      else batch[i]!.done(err);
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

/** `append` of an outbox as a promise around its `appendWith` [OUTBOX-WRITE-2]. */
export function appendPromise(
  o: Pick<Outbox, 'appendWith'>,
  event: UnsequencedEvent,
): Promise<EventEnvelope> {
  return new Promise((resolve, reject) =>
    o.appendWith(event, (err, env) => (err ? reject(err) : resolve(env!))),
  );
}

function ioError(err: unknown): Error {
  return edgeError('EDGE_ERR_OUTBOX_IO', { reason: errorText(err) }, { cause: err });
}

export function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
