import type { cabinet } from '@storelink/protocols';
import type { Timers } from '../gpio/debounce.ts';
import type { BinaryValue, Line } from '../gpio/line.ts';
import type { KvStore } from '../outbox/types.ts';
import { diffInventory, type Inventory, type InventoryProvider } from './inventory.ts';

/**
 * The cabinet session on the edge (docs/cabinet.md "Session"): one authorised unlock,
 * one door cycle, one closing count, one `cabinet.session.closed`.
 *
 *   idle ──unlock──▶ unlocked ──door open──▶ open ──door closed──▶ counting ──▶ closed
 *                       └──5 s, door never opened──▶ closed (relocked, nothing to charge)
 *
 * Rules:
 * - [CAB-ONCE-1] a session id unlocks at most once: a repeat (another command id for the
 *   same session, a replay after restart) answers with the session's state and does not
 *   touch the relay; another session is refused while one is running.
 * - [CAB-LEDGER-1] every state is written to the ledger (the agent's LevelDB kv, synced)
 *   *before* the relay or the outbox are touched, with the opening inventory, so a power
 *   loss or restart resumes the session and still reports it once [CAB-RESUME-1].
 * - [CAB-DOOR-1] not opened within `openTimeoutMs` (5 s) → relock; before relocking the
 *   raw door line is read, so a door opened just before the timer but not yet past the
 *   debounce window counts as opened (never a paid-less open door).
 * - [CAB-DOOR-2] open longer than `alarmAfterMs` (60 s) → `cabinet.session.alarm`
 *   door_held_open (cleared when it closes). A door that opens with no session running
 *   is a door_forced alarm.
 * - [CAB-DIFF-1] at close, lock first, then count (RFID with re-inventory of missing tags
 *   [CAB-INV-2]) and diff against the opening count; `closed` carries taken/returned/
 *   unresolved; the cloud charges it once per session [CAB-CHARGE-1].
 */
export type SessionState = 'unlocked' | 'open' | 'counting' | 'closed';

export interface SessionRecord {
  id: string;
  memberId?: string;
  state: SessionState;
  unlockedAt: number;
  openTimeoutMs: number;
  opening: Inventory;
  openedAt?: number;
  alarmRaised?: boolean;
  resumed?: boolean;
  /** closed: how it ended. */
  outcome?: 'counted' | 'not_opened';
  result?: cabinet.CabinetSessionClosed;
  /** The closing count: the next session's opening count expects it (RFID re-reads what is missing). */
  closing?: Inventory;
  /** The closing event is in the outbox. */
  reported?: boolean;
}

export interface UnlockResult {
  sessionId: string;
  state: SessionState;
  duplicate?: boolean;
  items?: number;
}

export interface CabinetSessionDeps {
  /** Relay: 1 = unlocked (energised), 0 = locked. Fail-secure: power loss locks. */
  lock: Line;
  /** Door switch, debounced: 1 = open. */
  door: Line;
  /** The same switch without debounce, read before a relock [CAB-DOOR-1]. */
  doorRaw?: Line;
  inventory: InventoryProvider;
  ledger: Pick<KvStore, 'get' | 'put'>;
  emit: (type: string, payload: unknown) => Promise<unknown>;
  now: () => number;
  timers: Timers;
  openTimeoutMs?: number;
  alarmAfterMs?: number;
  /** Retry period of a closing count that failed (reader down) [CAB-COUNT-1]. */
  countRetryMs?: number;
  log?: { info(o: object, m: string): void; warn(o: object, m: string): void };
}

export class CabinetBusyError extends Error {
  constructor(
    readonly running: string,
    readonly requested: string,
  ) {
    super(`cabinet is busy with session ${running}`);
  }
}
export class CabinetDoorOpenError extends Error {}

const CURRENT = 'cab/session/current';
const DONE = 'cab/session/done/';

export const CABINET_EVENTS = {
  unlocked: 'cabinet.session.unlocked',
  opened: 'cabinet.session.opened',
  relocked: 'cabinet.session.relocked',
  alarm: 'cabinet.session.alarm',
  closed: 'cabinet.session.closed',
} as const;

export class CabinetSession {
  private cur: SessionRecord | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private relockTimer: unknown;
  private alarmTimer: unknown;
  private stopped = false;
  private readonly openTimeoutMs: number;
  private readonly alarmAfterMs: number;
  private readonly countRetryMs: number;
  readonly counters = {
    unlocks: 0,
    duplicates: 0,
    busy: 0,
    opened: 0,
    relocked: 0,
    closed: 0,
    alarms: 0,
    forced: 0,
    resumed: 0,
    countRetries: 0,
  };

  constructor(private readonly d: CabinetSessionDeps) {
    this.openTimeoutMs = d.openTimeoutMs ?? 5_000;
    this.alarmAfterMs = d.alarmAfterMs ?? 60_000;
    this.countRetryMs = d.countRetryMs ?? 5_000;
  }

  get current(): Readonly<SessionRecord> | undefined {
    return this.cur;
  }

  /** Loads the ledger, watches the door and resumes an interrupted session [CAB-RESUME-1]. */
  async start(): Promise<void> {
    const raw = await this.d.ledger.get(CURRENT);
    const rec = raw ? (JSON.parse(raw) as SessionRecord) : undefined;
    this.d.door.watch((err, v) => {
      if (!err) void this.serial(() => this.onDoor(v));
    });
    await this.serial(() => this.resume(rec));
  }

  /** Stops timers; the ledger keeps the session for the next start. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.clearTimers();
    await this.chain.catch(() => undefined);
  }

  /** `cabinet.unlock` [CAB-ONCE-1]. */
  unlock(p: { sessionId: string; memberId?: string; openTimeoutMs?: number }): Promise<UnlockResult> {
    return this.serial(async () => {
      const done = await this.d.ledger.get(DONE + p.sessionId);
      if (done) {
        this.counters.duplicates++;
        return { sessionId: p.sessionId, state: 'closed', duplicate: true };
      }
      const cur = this.cur;
      if (cur && cur.id === p.sessionId) {
        this.counters.duplicates++;
        return { sessionId: p.sessionId, state: cur.state, duplicate: true };
      }
      if (cur && cur.state !== 'closed') {
        this.counters.busy++;
        throw new CabinetBusyError(cur.id, p.sessionId);
      }
      if ((await this.d.door.read()) === 1) throw new CabinetDoorOpenError('the cabinet door is open');
      const opening = await this.d.inventory.snapshot({ expect: cur?.closing });
      const rec: SessionRecord = {
        id: p.sessionId,
        ...(p.memberId ? { memberId: p.memberId } : {}),
        state: 'unlocked',
        unlockedAt: this.d.now(),
        openTimeoutMs: p.openTimeoutMs ?? this.openTimeoutMs,
        opening,
      };
      await this.save(rec); // [CAB-LEDGER-1] before the relay
      await this.d.lock.write(1);
      this.counters.unlocks++;
      await this.send(CABINET_EVENTS.unlocked, {
        sessionId: rec.id,
        at: rec.unlockedAt,
        ...(rec.memberId ? { memberId: rec.memberId } : {}),
        items: countItems(opening),
      });
      this.armRelock(rec.openTimeoutMs);
      return { sessionId: rec.id, state: rec.state, items: countItems(opening) };
    });
  }

  // ------------------------------------------------------------ steps

  private async resume(rec: SessionRecord | undefined): Promise<void> {
    this.cur = rec;
    if (!rec || (rec.state === 'closed' && rec.reported)) {
      await this.d.lock.write(0); // on boot: locked
      return;
    }
    this.counters.resumed++;
    this.d.log?.info({ sessionId: rec.id, state: rec.state }, 'resuming cabinet session');
    rec.resumed = true;
    const door = await this.d.door.read();
    if (rec.state === 'unlocked') {
      if (door === 1) return this.opened(true);
      const left = rec.unlockedAt + rec.openTimeoutMs - this.d.now();
      if (left <= 0) return this.relock();
      await this.save(rec);
      await this.d.lock.write(1);
      this.armRelock(left);
      return;
    }
    if (rec.state === 'open') {
      if (door === 0) return this.close();
      await this.save(rec);
      this.armAlarm(Math.max(0, (rec.openedAt ?? this.d.now()) + this.alarmAfterMs - this.d.now()));
      return;
    }
    if (rec.state === 'counting') return this.close();
    // closed, not yet reported: report (again; the cloud keys it by session) [CAB-CHARGE-1]
    await this.d.lock.write(0);
    await this.report(rec);
  }

  private async onDoor(v: BinaryValue): Promise<void> {
    if (this.stopped) return;
    const cur = this.cur;
    if (v === 1) {
      if (cur?.state === 'unlocked') return this.opened(false);
      if (!cur || cur.state === 'closed') {
        this.counters.forced++;
        this.d.log?.warn({ sessionId: cur?.id }, 'cabinet door opened with no session');
        if (cur)
          await this.send(CABINET_EVENTS.alarm, {
            sessionId: cur.id,
            at: this.d.now(),
            kind: 'door_forced',
            active: true,
          });
      }
      return;
    }
    if (cur?.state === 'open') return this.close();
  }

  private async opened(resumed: boolean): Promise<void> {
    const rec = this.cur!;
    this.clearTimers();
    rec.state = 'open';
    rec.openedAt = this.d.now();
    await this.save(rec);
    this.counters.opened++;
    await this.send(CABINET_EVENTS.opened, {
      sessionId: rec.id,
      at: rec.openedAt,
      ...(resumed ? { resumed: true } : {}),
    });
    this.armAlarm(this.alarmAfterMs);
  }

  private async relock(): Promise<void> {
    const rec = this.cur;
    if (rec?.state !== 'unlocked') return;
    // [CAB-DOOR-1] the raw switch may already show the door open (still inside the debounce window).
    if ((await (this.d.doorRaw ?? this.d.door).read()) === 1) return this.opened(false);
    await this.d.lock.write(0);
    rec.state = 'closed';
    rec.outcome = 'not_opened';
    await this.save(rec);
    await this.d.ledger.put(DONE + rec.id, JSON.stringify({ outcome: rec.outcome }), { sync: true });
    this.counters.relocked++;
    await this.report(rec);
  }

  private async close(): Promise<void> {
    const rec = this.cur!;
    this.clearTimers();
    await this.d.lock.write(0);
    rec.state = 'counting';
    await this.save(rec);
    let closing: Inventory;
    try {
      closing = await this.d.inventory.snapshot({ expect: rec.opening });
    } catch (e) {
      // [CAB-COUNT-1] the reader is down: the session stays `counting` (locked, in the
      // ledger) and the count is retried; it is never closed on a guess.
      this.counters.countRetries++;
      this.d.log?.warn({ sessionId: rec.id, err: (e as Error).message }, 'closing count failed; retrying');
      this.relockTimer = this.d.timers.setTimeout(() => {
        this.relockTimer = undefined;
        void this.serial(async () => {
          if (this.cur?.id === rec.id && this.cur.state === 'counting' && !this.stopped) await this.close();
        });
      }, this.countRetryMs);
      return;
    }
    const diff = diffInventory(rec.opening, closing);
    rec.closing = closing;
    rec.state = 'closed';
    rec.outcome = 'counted';
    rec.result = {
      sessionId: rec.id,
      at: this.d.now(),
      ...(rec.openedAt !== undefined ? { openedAt: rec.openedAt } : {}),
      taken: diff.taken,
      returned: diff.returned,
      unresolved: diff.unresolved.slice(0, 256),
      sources: [...new Set([...rec.opening.sources, ...closing.sources])],
      ...(rec.resumed ? { resumed: true } : {}),
    };
    await this.save(rec);
    await this.d.ledger.put(DONE + rec.id, JSON.stringify({ outcome: rec.outcome }), { sync: true });
    this.counters.closed++;
    if (rec.alarmRaised) {
      await this.send(CABINET_EVENTS.alarm, {
        sessionId: rec.id,
        at: this.d.now(),
        kind: 'door_held_open',
        active: false,
        openMs: Math.max(0, this.d.now() - (rec.openedAt ?? this.d.now())),
      });
    }
    await this.report(rec);
  }

  private async report(rec: SessionRecord): Promise<void> {
    const ok =
      rec.outcome === 'not_opened'
        ? await this.send(CABINET_EVENTS.relocked, {
            sessionId: rec.id,
            at: this.d.now(),
            reason: 'not_opened',
          })
        : rec.result
          ? await this.send(CABINET_EVENTS.closed, rec.result)
          : true;
    // Not stored: the ledger keeps it unreported and the next start reports it [CAB-RESUME-1].
    if (!ok) return;
    rec.reported = true;
    await this.save(rec);
  }

  /** Appends an event; a refusal is logged, never stops the door/lock logic. */
  private async send(type: string, payload: unknown): Promise<boolean> {
    try {
      await this.d.emit(type, payload);
      return true;
    } catch (e) {
      this.d.log?.warn({ type, err: (e as Error).message }, 'cabinet event not stored');
      return false;
    }
  }

  private async raiseAlarm(): Promise<void> {
    const rec = this.cur;
    if (rec?.state !== 'open' || rec.alarmRaised) return;
    rec.alarmRaised = true;
    await this.save(rec);
    this.counters.alarms++;
    this.d.log?.warn({ sessionId: rec.id }, 'cabinet door held open');
    await this.send(CABINET_EVENTS.alarm, {
      sessionId: rec.id,
      at: this.d.now(),
      kind: 'door_held_open',
      active: true,
      openMs: Math.max(0, this.d.now() - (rec.openedAt ?? this.d.now())),
    });
  }

  // ------------------------------------------------------------ plumbing

  private armRelock(ms: number): void {
    this.relockTimer = this.d.timers.setTimeout(() => {
      this.relockTimer = undefined;
      void this.serial(() => this.relock());
    }, ms);
  }

  private armAlarm(ms: number): void {
    this.alarmTimer = this.d.timers.setTimeout(() => {
      this.alarmTimer = undefined;
      void this.serial(() => this.raiseAlarm());
    }, ms);
  }

  private clearTimers(): void {
    if (this.relockTimer !== undefined) this.d.timers.clearTimeout(this.relockTimer);
    if (this.alarmTimer !== undefined) this.d.timers.clearTimeout(this.alarmTimer);
    this.relockTimer = undefined;
    this.alarmTimer = undefined;
  }

  private async save(rec: SessionRecord): Promise<void> {
    this.cur = rec;
    await this.d.ledger.put(CURRENT, JSON.stringify(rec), { sync: true });
  }

  /** Every transition runs alone, in arrival order (door events, timers, commands). */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch((e: unknown) => {
      this.d.log?.warn({ err: (e as Error).message }, 'cabinet session step failed');
    });
    return run;
  }
}

function countItems(inv: Inventory): number {
  return inv.items.reduce((s, i) => s + i.qty, 0);
}
