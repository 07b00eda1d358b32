/**
 * Measures what presence history costs (docs/fleet-provisioning.md "Presence history"):
 *   npx tsx cloud/src/fleet/presence-history-measure.ts [gateways] [rowsPerGateway]
 * prints JSON, against one PGlite store in this thread: a birth (state + history row in one
 * transaction) vs an ordinary heartbeat (no history row) per call; the heartbeat as it is
 * now (its UPDATE also tells whether it started a session) vs the statement it replaced
 * (same transaction shape, same run: the baseline); one presence sweep over
 * every gateway when nothing changed and when every gateway turns stalled; pruning a
 * history of `gateways × rowsPerGateway` rows down to the default 200 per gateway; one
 * history page of 50 rows.
 */
import type { GatewayState, Heartbeat } from '@storelink/protocols';
import { openStore } from '../store/index.ts';
import type { SqlCloudStore } from '../store/sql-store.ts';
import {
  DEFAULT_HISTORY_KEEP,
  presenceHistory,
  prunePresenceHistory,
  sweepPresenceHistory,
} from './presence-history.ts';

const N = Number(process.argv[2] ?? 500);
const ROWS = Number(process.argv[3] ?? 250);
const SITE = 'site-m';
const POLICY = { heartbeatTimeoutMs: 35_000, stallAfterMs: 60_000 };
const T0 = 1_763_900_000_000;

const store = (await openStore({ kind: 'pglite', worker: false })) as SqlCloudStore;
const gw = (i: number) => `gw-${String(i).padStart(5, '0')}`;
const birth = (id: string, bdSeq: number, at: number): GatewayState => ({
  v: 1,
  state: 'online',
  bdSeq,
  gateway: id,
  site: SITE,
  at,
});
const hb = (id: string, bdSeq: number, at: number) =>
  ({
    v: 1,
    gateway: id,
    site: SITE,
    bdSeq,
    at,
    uptimeS: 1,
    devicesOnline: [],
    outbox: { depth: 0, bytes: 0, oldestAgeMs: 0, lanes: {} },
  }) as unknown as Heartbeat;
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return Number(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!.toFixed(3));
};
const time = async <T>(fn: () => Promise<T>): Promise<[number, T]> => {
  const t = performance.now();
  const r = await fn();
  return [performance.now() - t, r];
};

for (let i = 0; i < N; i++) await store.upsertGateway({ id: gw(i), site: SITE, passwordHash: 'x' }, T0);
const births: number[] = [];
const beats: number[] = [];
for (let i = 0; i < N; i++) {
  births.push((await time(() => store.applyGatewayState(birth(gw(i), 1, T0), T0)))[0]);
  beats.push((await time(() => store.recordHeartbeat(hb(gw(i), 1, T0 + 1000), T0 + 1000)))[0]);
}
// Baseline: the heartbeat statement before presence history (no `old` CTE, no RETURNING).
const OLD_HEARTBEAT = `UPDATE gateway_presence SET last_heartbeat = $2::jsonb,
     last_seen = GREATEST(COALESCE(last_seen, 0), $3),
     state = CASE WHEN bd_seq IS NULL OR $4 > bd_seq THEN 'online' ELSE state END,
     online_since = CASE WHEN bd_seq IS NULL OR $4 > bd_seq THEN $5 ELSE online_since END,
     bd_seq = GREATEST(COALESCE(bd_seq, $4), $4),
     updated_at = $3
   WHERE gateway = $1 AND (bd_seq IS NULL OR bd_seq <= $4)`;
const beatsNow: number[] = [];
const beatsBefore: number[] = [];
for (let round = 0; round < 2; round++) {
  for (let i = 0; i < N; i++) {
    const at = T0 + 1500 + round;
    const h = hb(gw(i), 1, at);
    const now = async () => beatsNow.push((await time(() => store.recordHeartbeat(h, at)))[0]);
    const before = async () =>
      beatsBefore.push(
        (
          await time(() =>
            store.sql.transaction(async (tx) => {
              await tx.query('SELECT site FROM gateways WHERE id = $1', [h.gateway]);
              await tx.query(OLD_HEARTBEAT, [h.gateway, JSON.stringify(h), at, h.bdSeq, h.at]);
            }),
          )
        )[0],
      );
    // Alternate which goes first (a warm cache must not favour one side).
    if ((i + round) % 2) {
      await now();
      await before();
    } else {
      await before();
      await now();
    }
  }
}
const [sweepQuietMs, quiet] = await time(() => sweepPresenceHistory(store.sql, POLICY, T0 + 2000));
const [sweepStallMs, stalled] = await time(() => sweepPresenceHistory(store.sql, POLICY, T0 + 100_000));
// Fill each gateway's history to ROWS rows (one INSERT per gateway), then prune.
await store.sql.query(
  `INSERT INTO gateway_presence_history (gateway, at, state, reason, bd_seq, source)
   SELECT g.id, $1::bigint + s, 'online', 'birth', s, 'birth' FROM gateways g, generate_series(1, $2::int) s`,
  [T0, Math.max(0, ROWS - 2)],
);
const [pruneMs, pruned] = await time(() => prunePresenceHistory(store.sql, DEFAULT_HISTORY_KEEP));
const [pageMs, page] = await time(() => presenceHistory(store.sql, gw(0), 50));
console.log(
  JSON.stringify({
    gateways: N,
    birth_ms: { p50: pct(births, 50), p99: pct(births, 99) },
    heartbeat_ms: { p50: pct(beats, 50), p99: pct(beats, 99) },
    ratio_birth_to_heartbeat_p50: Number((pct(births, 50) / pct(beats, 50)).toFixed(2)),
    heartbeat_now_ms: { p50: pct(beatsNow, 50), p99: pct(beatsNow, 99) },
    heartbeat_before_ms: { p50: pct(beatsBefore, 50), p99: pct(beatsBefore, 99) },
    ratio_heartbeat_now_to_before_p50: Number((pct(beatsNow, 50) / pct(beatsBefore, 50)).toFixed(2)),
    sweep_no_change_ms: Number(sweepQuietMs.toFixed(1)),
    sweep_no_change_recorded: quiet.length,
    sweep_all_stalled_ms: Number(sweepStallMs.toFixed(1)),
    sweep_all_stalled_recorded: stalled.length,
    prune_rows: N * ROWS,
    prune_ms: Number(pruneMs.toFixed(1)),
    pruned,
    history_page_ms: Number(pageMs.toFixed(2)),
    history_page_rows: page.length,
  }),
);
await store.close();
