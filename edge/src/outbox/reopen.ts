import type { EventEnvelope, Lane, UnsequencedEvent } from '@storelink/protocols';
import { LANES } from '@storelink/protocols';
import { edgeError } from '../errors.ts';
import { DiskGuard, type DiskGuardOptions, type DiskGuardStatus } from './disk-guard.ts';
import { appendPromise, errorText, type LogFn } from './engine.ts';
import { type LevelStoreOptions, openLevelStore } from './level.ts';
import type {
  AppendDone,
  EdgeStore,
  KvStore,
  Outbox,
  OutboxStats,
  RecoveryReport,
  StoredEvent,
} from './types.ts';

/**
 * The LevelDB store as the agent uses it: the outbox + KV of `openLevelStore`, plus
 *
 * - the disk reserve [OUTBOX-DISK-1] (`disk-guard.ts`): below it `telemetry` and `event`
 *   appends are refused with EDGE_ERR_OUTBOX_FULL (reason `disk`), `tx` still writes;
 * - reopen after a write error [OUTBOX-DISK-2]: LevelDB makes a failed log sync or a failed
 *   background compaction (ENOSPC, EIO) sticky — every later write fails until the
 *   database is reopened. After any failed write the store is closed and opened again
 *   (backoff until it succeeds); open replays LevelDB's log, so everything acknowledged
 *   stays, and the recovery check [OUTBOX-RECOVER-1] runs again on the reopened store.
 *   Appends meanwhile are rejected with EDGE_ERR_OUTBOX_IO (nothing was PUBACKed; devices
 *   resend); reads, acks, expiry and KV calls wait for the reopen;
 * - acks that failed are owed and retried after the reopen [OUTBOX-DISK-3].
 */

export interface ResilientStoreOptions extends LevelStoreOptions {
  /** Disk reserve; `false` switches the guard off. */
  disk?: Omit<DiskGuardOptions, 'now'> | false;
  /** Reopen backoff (default 200 ms doubling up to 5000 ms). */
  reopenMinMs?: number;
  reopenMaxMs?: number;
  /** Test seam: how the underlying store is opened (default `openLevelStore`). */
  openStore?: (dir: string, opts: LevelStoreOptions) => Promise<EdgeStore>;
}

export interface StoreHealth {
  /** The store is being reopened after a write error. */
  reopening: boolean;
  reopens: number;
  lastWriteError: string | null;
  lastWriteErrorAt: number | null;
  /** Acks that failed and will be retried (highest seq per lane). */
  owedAcks: Partial<Record<Lane, number>>;
  disk: DiskGuardStatus | null;
}

export interface ResilientStore extends EdgeStore {
  health(): StoreHealth;
}

/** A write failure of the storage itself (not our own "closed"/"reopening" refusals). */
function isStorageFailure(err: unknown): boolean {
  const e = err as { code?: string; cause?: unknown } | undefined;
  if (!e) return false;
  if (e.code === 'EDGE_ERR_OUTBOX_IO') return e.cause !== undefined;
  return !String(e.code ?? '').startsWith('EDGE_ERR_');
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

class ResilientOutbox implements Outbox {
  constructor(private readonly s: ResilientLevelStore) {}

  get epoch(): string {
    return this.s.current.outbox.epoch;
  }

  append(event: UnsequencedEvent): Promise<EventEnvelope> {
    return appendPromise(this, event);
  }

  appendWith(event: UnsequencedEvent, done: AppendDone, payloadJson?: string): void {
    const s = this.s;
    if (s.reopening) {
      done(edgeError('EDGE_ERR_OUTBOX_IO', { reason: 'the store is being reopened after a write error' }));
      return;
    }
    // [OUTBOX-DISK-1] below the reserve only tx is written.
    const refused = s.guard?.refuse(event.lane);
    if (refused) {
      done(edgeError('EDGE_ERR_OUTBOX_FULL', { lane: event.lane, reason: refused }));
      return;
    }
    s.current.outbox.appendWith(
      event,
      (err, env) => {
        if (err) s.writeFailed(err);
        done(err, env);
      },
      payloadJson,
    );
  }

  async read(lane: Lane, afterSeq: number, limit: number, maxBytes?: number): Promise<StoredEvent[]> {
    await this.s.ready();
    return this.s.current.outbox.read(lane, afterSeq, limit, maxBytes);
  }

  async ack(lane: Lane, upTo: number): Promise<void> {
    await this.s.ready();
    try {
      await this.s.current.outbox.ack(lane, upTo);
    } catch (err) {
      // [OUTBOX-DISK-3] a delete is a write too; owed, retried after the reopen.
      this.s.owe(lane, upTo);
      this.s.writeFailed(err);
      throw err;
    }
  }

  floor(lane: Lane): number {
    return this.s.current.outbox.floor(lane);
  }

  acked(lane: Lane): number {
    return this.s.current.outbox.acked(lane);
  }

  stats(): OutboxStats {
    const st = this.s.current.outbox.stats();
    const g = this.s.guard;
    if (!g) return st;
    // Telemetry refused for disk space was PUBACKed by the ingest: it is a counted drop
    // [LANE-1]. It never got a seq, so it is no seq gap. (Refused `event`/`tx` were not
    // PUBACKed: the device resends, nothing is dropped.)
    const n = g.refused.telemetry;
    if (n === 0) return st;
    const t = st.lanes.telemetry;
    st.lanes.telemetry = { ...t, dropped: t.dropped + n, dropReasons: { ...t.dropReasons, disk: n } };
    return st;
  }

  onAppend(listener: () => void): () => void {
    this.s.listeners.add(listener);
    return () => this.s.listeners.delete(listener);
  }

  async expire(): Promise<number> {
    await this.s.ready();
    return this.s.current.outbox.expire();
  }
}

class ResilientKv implements KvStore {
  constructor(private readonly s: ResilientLevelStore) {}

  async get(key: string): Promise<string | undefined> {
    await this.s.ready();
    return this.s.current.kv.get(key);
  }
  async put(key: string, value: string, opts?: { sync?: boolean }): Promise<void> {
    await this.s.ready();
    await this.s.current.kv.put(key, value, opts).catch((err: unknown) => {
      this.s.writeFailed(err);
      throw err;
    });
  }
  async del(key: string): Promise<void> {
    await this.s.ready();
    await this.s.current.kv.del(key).catch((err: unknown) => {
      this.s.writeFailed(err);
      throw err;
    });
  }
  async keys(prefix: string, limit?: number): Promise<string[]> {
    await this.s.ready();
    return this.s.current.kv.keys(prefix, limit);
  }
}

class ResilientLevelStore implements ResilientStore {
  readonly outbox: Outbox;
  readonly kv: KvStore;
  readonly listeners = new Set<() => void>();
  readonly guard: DiskGuard | undefined;
  current!: EdgeStore;
  reopening: Promise<void> | undefined;
  private offAppend: (() => void) | undefined;
  private closed = false;
  private reopens = 0;
  private lastWriteError: string | null = null;
  private lastWriteErrorAt: number | null = null;
  private readonly owed: Partial<Record<Lane, number>> = {};
  private readonly log: LogFn;

  constructor(
    private readonly dir: string,
    private readonly opts: ResilientStoreOptions,
  ) {
    this.log = opts.onLog ?? (() => {});
    this.outbox = new ResilientOutbox(this);
    this.kv = new ResilientKv(this);
    if (opts.disk !== false)
      this.guard = new DiskGuard(dir, {
        ...opts.disk,
        now: opts.now,
        onChange: (low, free, reserve) =>
          low
            ? this.log('warn', 'outbox disk space below the reserve: refusing telemetry and event appends', {
                free,
                reserve,
                code: 'EDGE_ERR_OUTBOX_FULL',
              })
            : this.log('info', 'outbox disk space above the reserve again: accepting every lane', {
                free,
                reserve,
              }),
      });
  }

  get recovery(): RecoveryReport {
    return this.current.recovery;
  }

  install(store: EdgeStore): void {
    this.offAppend?.();
    this.current = store;
    this.offAppend = store.outbox.onAppend(() => {
      for (const l of this.listeners) l();
    });
  }

  open(): Promise<EdgeStore> {
    return (this.opts.openStore ?? openLevelStore)(this.dir, this.opts);
  }

  /** Waits for a reopen in progress (reads, acks, KV calls). */
  async ready(): Promise<void> {
    while (this.reopening) await this.reopening;
    if (this.closed) throw edgeError('EDGE_ERR_OUTBOX_IO', { reason: 'outbox is closed' });
  }

  owe(lane: Lane, upTo: number): void {
    this.owed[lane] = Math.max(this.owed[lane] ?? 0, upTo);
  }

  /** A write failed: refresh the disk view and reopen the store once [OUTBOX-DISK-2]. */
  writeFailed(err: unknown): void {
    if (!isStorageFailure(err) || this.closed) return;
    this.guard?.refresh();
    this.lastWriteError = errorText((err as { cause?: unknown }).cause ?? err);
    this.lastWriteErrorAt = this.opts.now();
    if (!this.reopening) this.reopening = this.reopen().finally(() => (this.reopening = undefined));
  }

  private async reopen(): Promise<void> {
    this.reopens++;
    this.log('error', 'outbox write failed; closing and reopening the store', {
      err: this.lastWriteError,
      code: 'EDGE_ERR_OUTBOX_IO',
    });
    const old = this.current;
    const epoch = old.outbox.epoch;
    await old
      .close()
      .catch((err: unknown) => this.log('warn', 'closing the failed store', { err: errorText(err) }));
    const min = this.opts.reopenMinMs ?? 200;
    const max = this.opts.reopenMaxMs ?? 5000;
    for (let attempt = 0; !this.closed; attempt++) {
      try {
        const store = await this.open();
        if (this.closed) {
          await store.close();
          return;
        }
        if (store.outbox.epoch !== epoch)
          this.log('error', 'reopened outbox has another epoch', {
            before: epoch,
            after: store.outbox.epoch,
          });
        this.install(store);
        this.log('info', 'outbox store reopened after a write error', {
          attempt,
          recovery: store.recovery.message,
        });
        break;
      } catch (err) {
        const delay = Math.min(max, min * 2 ** Math.min(attempt, 20));
        this.log('error', 'reopening the outbox store failed; retrying', { err: errorText(err), delay });
        this.guard?.refresh();
        await sleep(delay);
      }
    }
    if (this.closed) return;
    // Owed acks first (they free space), then wake the uplink.
    void this.retryAcks();
    for (const l of this.listeners) l();
  }

  private async retryAcks(): Promise<void> {
    for (const lane of LANES) {
      const upTo = this.owed[lane];
      if (upTo === undefined) continue;
      delete this.owed[lane];
      if (upTo <= this.current.outbox.acked(lane)) continue;
      try {
        await this.outbox.ack(lane, upTo);
      } catch (err) {
        this.log('warn', 'owed ack failed again; retried after the next reopen', {
          lane,
          err: errorText(err),
        });
      }
    }
  }

  health(): StoreHealth {
    return {
      reopening: this.reopening !== undefined,
      reopens: this.reopens,
      lastWriteError: this.lastWriteError,
      lastWriteErrorAt: this.lastWriteErrorAt,
      owedAcks: { ...this.owed },
      disk: this.guard?.status() ?? null,
    };
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.reopening) await this.reopening.catch(() => {});
    this.offAppend?.();
    await this.current.close();
  }
}

/** Opens the LevelDB store with the disk reserve and reopen-after-write-error around it. */
export async function openResilientLevelStore(
  dir: string,
  opts: ResilientStoreOptions,
): Promise<ResilientStore> {
  const s = new ResilientLevelStore(dir, opts);
  s.install(await s.open());
  return s;
}
