import type { Logger } from 'pino';
import type { Sql, SqlQueryable } from '../store/sql.ts';
import { derivePresence, type FleetPresence, type PresencePolicy } from './presence.ts';
import { type PresenceRow, readPresenceRows } from './provisioning.ts';

/**
 * Presence history (docs/fleet-provisioning.md "Presence history").
 *
 * [PRESENCE-HIST-1] Every presence transition of a gateway is one row
 * (`gateway_presence_history`): time (cloud clock), state, reason, bdSeq and source.
 * - What the gateway says is recorded in the transaction that applies it: an applied
 *   birth (`online`/`birth`), an applied death (`offline`/`death`), a heartbeat of a newer
 *   session whose birth was missed (`online`/`missed_birth`, source `heartbeat`). A death
 *   or birth that is not applied (stale, [PRESENCE-BDSEQ-1]) records nothing.
 * - A revocation is recorded in the revoke transaction (`revoked`, the operator's reason).
 * - What the cloud judges (`stalled` with its reason, and back to `online`) is computed at
 *   read time (presence.ts); the presence sweep compares the judgement with the newest
 *   history row and records a row when it differs [PRESENCE-HIST-2]. A judged row's time
 *   is the sweep's clock (at most one sweep period after the fact).
 * [PRESENCE-HIST-3] Retention: the newest `keep` rows per gateway; the sweep prunes.
 */

export type HistoryState = 'online' | 'offline' | 'stalled' | 'revoked';
export type HistorySource = 'birth' | 'death' | 'heartbeat' | 'sweep' | 'revoke';

export interface PresenceTransition {
  gateway: string;
  /** Cloud clock, ms. */
  at: number;
  state: HistoryState;
  reason: string | null;
  /** Session of the transition; null = the session the store knows now. */
  bdSeq: number | null;
  source: HistorySource;
}

export interface PresenceHistoryEntry extends PresenceTransition {
  id: number;
}

export const DEFAULT_HISTORY_KEEP = 200;

/** Appends one transition (inside the caller's transaction when there is one). */
export async function recordPresenceTransition(q: SqlQueryable, t: PresenceTransition): Promise<void> {
  await q.query(
    `INSERT INTO gateway_presence_history (gateway, at, state, reason, bd_seq, source)
     VALUES ($1, $2, $3, $4, COALESCE($5::bigint, (SELECT bd_seq FROM gateway_presence WHERE gateway = $1)), $6)`,
    [t.gateway, t.at, t.state, t.reason, t.bdSeq, t.source],
  );
}

/** The newest `limit` transitions of one gateway, newest first. */
export async function presenceHistory(
  q: SqlQueryable,
  gateway: string,
  limit: number,
): Promise<PresenceHistoryEntry[]> {
  const r = await q.query<{
    id: number;
    gateway: string;
    at: number;
    state: HistoryState;
    reason: string | null;
    bd_seq: number | null;
    source: HistorySource;
  }>(
    `SELECT id, gateway, at, state, reason, bd_seq, source FROM gateway_presence_history
     WHERE gateway = $1 ORDER BY id DESC LIMIT $2`,
    [gateway, limit],
  );
  return r.rows.map((x) => ({
    id: x.id,
    gateway: x.gateway,
    at: x.at,
    state: x.state,
    reason: x.reason,
    bdSeq: x.bd_seq,
    source: x.source,
  }));
}

/** [PRESENCE-HIST-3] Deletes all but the newest `keep` rows of every gateway; returns how many. */
export async function prunePresenceHistory(q: SqlQueryable, keep: number): Promise<number> {
  const r = await q.query(
    `DELETE FROM gateway_presence_history WHERE id IN (
       SELECT id FROM (
         SELECT id, row_number() OVER (PARTITION BY gateway ORDER BY id DESC) AS n
         FROM gateway_presence_history) ranked
       WHERE n > $1)`,
    [keep],
  );
  return r.affected;
}

interface JudgedRow extends PresenceRow {
  lastState: HistoryState | null;
  lastReason: string | null;
}

/** Presence rows (as provisioning.ts reads them) with the newest history row of each gateway. */
async function readJudgedRows(q: SqlQueryable, gateway?: string): Promise<JudgedRow[]> {
  return (await readPresenceRows(q, gateway, true)) as JudgedRow[];
}

/** Stalled states differ by reason; the others by state alone (an online row's reason is its cause). */
const keyOf = (state: string, reason: string | null) => (state === 'stalled' ? `stalled/${reason}` : state);

/**
 * [PRESENCE-HIST-2] The transition to record when the judgement differs from the newest
 * history row, or null. `unknown` (never born) has no row.
 */
export function judgedTransition(
  p: FleetPresence,
  last: { state: HistoryState | null; reason: string | null },
  now: number,
): PresenceTransition | null {
  if (p.state === 'unknown') return null;
  if (last.state !== null && keyOf(last.state, last.reason) === keyOf(p.state, p.reason)) return null;
  const reason =
    p.state === 'stalled'
      ? p.reason
      : p.state === 'online' && last.state === 'stalled'
        ? 'recovered'
        : 'judged';
  return { gateway: p.gateway, at: now, state: p.state, reason, bdSeq: p.bdSeq, source: 'sweep' };
}

/**
 * One judgement pass: a cheap read of every gateway, then, for each whose judgement seems
 * to have changed, a transaction that locks the gateway (the same row lock birth, death,
 * heartbeat and revoke take), judges again and records. So a birth committed in between
 * is never followed by a stale `stalled` row. Returns the rows recorded.
 */
export async function sweepPresenceHistory(
  sql: Sql,
  policy: PresencePolicy,
  now: number,
): Promise<PresenceTransition[]> {
  const recorded: PresenceTransition[] = [];
  for (const row of await readJudgedRows(sql)) {
    const seen = judgedTransition(
      derivePresence(row, policy, now),
      { state: row.lastState, reason: row.lastReason },
      now,
    );
    if (!seen) continue;
    const t = await sql.transaction(async (tx) => {
      await tx.query('SELECT 1 FROM gateways WHERE id = $1 FOR NO KEY UPDATE', [row.id]);
      await tx.query('SELECT 1 FROM gateway_presence WHERE gateway = $1 FOR UPDATE', [row.id]);
      const [fresh] = await readJudgedRows(tx, row.id);
      if (!fresh) return null;
      const next = judgedTransition(
        derivePresence(fresh, policy, now),
        { state: fresh.lastState, reason: fresh.lastReason },
        now,
      );
      if (next) await recordPresenceTransition(tx, next);
      return next;
    });
    if (t) recorded.push(t);
  }
  return recorded;
}

export interface PresenceHistoryConfig {
  /** Judge every this many ms (0 = never; tests call `sweep()`). Default 5 s. */
  sweepIntervalMs?: number;
  /** Prune every this many ms (0 = never; tests call `prune()`). Default 60 s. */
  pruneIntervalMs?: number;
  /** Rows kept per gateway [PRESENCE-HIST-3]. */
  keep?: number;
}

export interface PresenceHistory {
  sweep(): Promise<PresenceTransition[]>;
  prune(): Promise<number>;
  list(gateway: string, limit: number): Promise<PresenceHistoryEntry[]>;
  close(): Promise<void>;
}

/** The presence sweep and the pruning on timers (unref'd); `close` waits for a running pass. */
export function startPresenceHistory(opts: {
  sql: Sql;
  policy: PresencePolicy;
  now: () => number;
  logger?: Logger;
  config?: PresenceHistoryConfig;
}): PresenceHistory {
  const cfg = opts.config ?? {};
  const keep = cfg.keep ?? DEFAULT_HISTORY_KEEP;
  const logger = opts.logger?.child({ component: 'presence-history' });
  let sweeping: Promise<PresenceTransition[]> | undefined;
  // One pass at a time: a slow store never stacks sweeps.
  const sweep = () => {
    sweeping ??= sweepPresenceHistory(opts.sql, opts.policy, opts.now()).finally(() => {
      sweeping = undefined;
    });
    return sweeping;
  };
  const prune = () => prunePresenceHistory(opts.sql, keep);
  const timers: NodeJS.Timeout[] = [];
  const inflight = new Set<Promise<unknown>>();
  const every = (period: number, fn: () => Promise<unknown>, what: string) => {
    if (period <= 0) return;
    const t = setInterval(() => {
      const p = fn()
        .catch((e: unknown) => logger?.error({ err: (e as Error).message }, `${what} failed`))
        .finally(() => inflight.delete(p));
      inflight.add(p);
    }, period);
    t.unref();
    timers.push(t);
  };
  every(cfg.sweepIntervalMs ?? 5_000, sweep, 'presence history sweep');
  every(cfg.pruneIntervalMs ?? 60_000, prune, 'presence history prune');
  return {
    sweep,
    prune,
    list: (gateway, limit) => presenceHistory(opts.sql, gateway, limit),
    close: async () => {
      for (const t of timers) clearInterval(t);
      await Promise.all([...inflight]);
    },
  };
}
