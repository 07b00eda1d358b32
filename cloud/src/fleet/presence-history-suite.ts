import type { GatewayState, Heartbeat } from '@storelink/protocols';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../http/app.ts';
import { createCloudMetrics } from '../metrics.ts';
import type { SqlCloudStore } from '../store/sql-store.ts';
import type { PresencePolicy } from './presence.ts';
import {
  type PresenceHistory,
  presenceHistory,
  prunePresenceHistory,
  recordPresenceTransition,
  startPresenceHistory,
} from './presence-history.ts';
import { SqlProvisioning } from './provisioning.ts';

const SITE = 'site-h';
const T0 = 1_763_900_000_000;
const POLICY: PresencePolicy = { heartbeatTimeoutMs: 35_000, stallAfterMs: 60_000 };

const state = (gateway: string, s: 'online' | 'offline', bdSeq: number, at: number): GatewayState => ({
  v: 1,
  state: s,
  bdSeq,
  gateway,
  site: SITE,
  at,
});
const heartbeat = (gateway: string, bdSeq: number, at: number, depth = 0): Heartbeat =>
  ({
    v: 1,
    gateway,
    site: SITE,
    bdSeq,
    at,
    uptimeS: 1,
    devicesOnline: [],
    outbox: { depth, bytes: 0, oldestAgeMs: depth ? 1000 : 0, lanes: {} },
  }) as unknown as Heartbeat;

/**
 * The presence history tests against any SQL store (PGlite in the unit run,
 * test/system/presence-history-postgres.test.ts on PostgreSQL 15).
 */
export function runPresenceHistorySuite(name: string, open: () => Promise<SqlCloudStore>): void {
  describe(`presence history (${name}) [PRESENCE-HIST-1] [PRESENCE-HIST-2] [PRESENCE-HIST-3]`, () => {
    let store: SqlCloudStore;
    let now = T0;
    let history: PresenceHistory;
    const rows = (gw: string) => presenceHistory(store.sql, gw, 100);
    const newGateway = async (id: string) => {
      await store.upsertGateway({ id, site: SITE, passwordHash: 'x' }, now);
      return id;
    };

    beforeAll(async () => {
      store = await open();
      history = startPresenceHistory({
        sql: store.sql,
        policy: POLICY,
        now: () => now,
        config: { sweepIntervalMs: 0, pruneIntervalMs: 0, keep: 5 },
      });
    }, 120_000); // PGlite start + every migration: slow on a loaded 2-core machine
    afterAll(async () => {
      await history?.close();
      await store?.close();
    });

    it('an applied birth is an online row with its bdSeq, time and source', async () => {
      const gw = await newGateway('gw-birth');
      expect(await store.applyGatewayState(state(gw, 'online', 4, T0 - 5), T0 + 10)).toMatchObject({
        applied: true,
      });
      expect(await rows(gw)).toMatchObject([
        { gateway: gw, at: T0 + 10, state: 'online', reason: 'birth', bdSeq: 4, source: 'birth' },
      ]);
    });

    it('a stale death records nothing; the current death is an offline row [PRESENCE-BDSEQ-1]', async () => {
      const gw = await newGateway('gw-death');
      await store.applyGatewayState(state(gw, 'online', 8, T0), T0);
      // The will of session 7 arrives after session 8 was born: ignored, and no history.
      expect(await store.applyGatewayState(state(gw, 'offline', 7, T0 + 1), T0 + 1)).toEqual({
        applied: false,
        reason: 'stale_death',
      });
      expect((await rows(gw)).map((r) => r.state)).toEqual(['online']);
      expect(await store.applyGatewayState(state(gw, 'offline', 8, T0 + 2), T0 + 2)).toMatchObject({
        applied: true,
      });
      // The same death again (a retained will redelivered) is not a second transition.
      expect(await store.applyGatewayState(state(gw, 'offline', 8, T0 + 3), T0 + 3)).toMatchObject({
        applied: false,
      });
      expect(await rows(gw)).toMatchObject([
        { state: 'offline', reason: 'death', bdSeq: 8, source: 'death', at: T0 + 2 },
        { state: 'online', reason: 'birth', bdSeq: 8 },
      ]);
    });

    it('a heartbeat of a newer session (birth missed) is an online row; ordinary heartbeats are not', async () => {
      const gw = await newGateway('gw-hb');
      await store.applyGatewayState(state(gw, 'online', 1, T0), T0);
      expect(await store.recordHeartbeat(heartbeat(gw, 1, T0 + 10), T0 + 10)).toBe(true);
      expect(await rows(gw)).toHaveLength(1);
      expect(await store.recordHeartbeat(heartbeat(gw, 2, T0 + 20), T0 + 20)).toBe(true);
      expect(await store.recordHeartbeat(heartbeat(gw, 2, T0 + 30), T0 + 30)).toBe(true);
      // An older session's heartbeat is not applied.
      expect(await store.recordHeartbeat(heartbeat(gw, 1, T0 + 40), T0 + 40)).toBe(false);
      expect(await rows(gw)).toMatchObject([
        { state: 'online', reason: 'missed_birth', bdSeq: 2, source: 'heartbeat', at: T0 + 20 },
        { state: 'online', reason: 'birth', bdSeq: 1 },
      ]);
    });

    it('a revocation is a row with the operator reason, once', async () => {
      const gw = await newGateway('gw-revoke');
      await store.applyGatewayState(state(gw, 'online', 3, T0), T0);
      const repo = new SqlProvisioning(store.sql);
      await repo.revoke(gw, 'stolen box', T0 + 100);
      await repo.revoke(gw, 'again', T0 + 200);
      expect(await rows(gw)).toMatchObject([
        { state: 'revoked', reason: 'stolen box', bdSeq: 3, source: 'revoke', at: T0 + 100 },
        { state: 'online', source: 'birth' },
      ]);
    });

    it('the sweep records stalled when the judgement changes, once, and recovered after it', async () => {
      now = T0 + 1_000_000;
      // Settle every gateway of the earlier tests (their judgement is recorded once).
      await history.sweep();
      const gw = await newGateway('gw-stall');
      await store.applyGatewayState(state(gw, 'online', 1, now), now);
      now += 10_000;
      expect((await history.sweep()).filter((t) => t.gateway === gw)).toEqual([]);
      now += 30_000; // 40 s without a heartbeat > heartbeatTimeoutMs
      expect(await history.sweep()).toEqual([
        { gateway: gw, at: now, state: 'stalled', reason: 'no_heartbeat', bdSeq: 1, source: 'sweep' },
      ]);
      now += 5_000;
      expect(await history.sweep()).toEqual([]);
      await store.recordHeartbeat(heartbeat(gw, 1, now), now);
      now += 1_000;
      expect(await history.sweep()).toMatchObject([{ gateway: gw, state: 'online', reason: 'recovered' }]);
      expect((await rows(gw)).map((r) => `${r.state}/${r.reason}/${r.source}`)).toEqual([
        'online/recovered/sweep',
        'stalled/no_heartbeat/sweep',
        'online/birth/birth',
      ]);
    });

    it('the sweep does not repeat what birth, death and revoke recorded', async () => {
      now += 100_000;
      await history.sweep(); // every earlier gateway is now judged stalled or as recorded
      const gw = await newGateway('gw-quiet');
      await store.applyGatewayState(state(gw, 'online', 1, now), now);
      await store.applyGatewayState(state(gw, 'offline', 1, now + 1), now + 1);
      now += 100_000;
      expect((await history.sweep()).filter((t) => t.gateway === gw)).toEqual([]);
      expect((await rows('gw-revoke')).filter((r) => r.source === 'sweep')).toEqual([]);
      // A gateway never born has no history.
      await newGateway('gw-never');
      expect((await history.sweep()).filter((t) => t.gateway === 'gw-never')).toEqual([]);
      expect(await rows('gw-never')).toEqual([]);
    });

    it('prune keeps the newest rows of each gateway and leaves the others alone', async () => {
      const gw = await newGateway('gw-prune');
      for (let i = 0; i < 12; i++) {
        await recordPresenceTransition(store.sql, {
          gateway: gw,
          at: T0 + i,
          state: i % 2 ? 'offline' : 'online',
          reason: `r${i}`,
          bdSeq: i,
          source: i % 2 ? 'death' : 'birth',
        });
      }
      const before = new Map<string, number>();
      for (const g of ['gw-birth', 'gw-death', 'gw-stall']) before.set(g, (await rows(g)).length);
      expect(await history.prune()).toBeGreaterThanOrEqual(7);
      expect((await rows(gw)).map((r) => r.reason)).toEqual(['r11', 'r10', 'r9', 'r8', 'r7']);
      for (const [g, n] of before) expect((await rows(g)).length).toBe(Math.min(n, 5));
      expect(await prunePresenceHistory(store.sql, 5)).toBe(0);
    });

    it('HTTP: GET /gateways/:id/presence/history lists newest first, limit, unknown gateway 404', async () => {
      const app = await build({
        context: {
          store,
          metrics: createCloudMetrics(),
          now: () => now,
          sendCommand: async () => {
            throw new Error('unused');
          },
          hashPassword: async (p) => p,
        },
        presenceHistory: { sql: store.sql },
      });
      try {
        const r = await app.inject({
          method: 'GET',
          url: '/api/v1/gateways/gw-death/presence/history?limit=1',
        });
        expect(r.statusCode).toBe(200);
        expect(r.json()).toEqual({
          items: [expect.objectContaining({ state: 'offline', reason: 'death', bdSeq: 8, source: 'death' })],
        });
        const all = await app.inject({ method: 'GET', url: '/api/v1/gateways/gw-death/presence/history' });
        expect(all.json().items).toHaveLength(2);
        const none = await app.inject({ method: 'GET', url: '/api/v1/gateways/nope/presence/history' });
        expect(none.statusCode).toBe(404);
        expect(none.json().code).toBe('CLOUD_ERR_NOT_FOUND');
        const bad = await app.inject({
          method: 'GET',
          url: '/api/v1/gateways/gw-death/presence/history?limit=0',
        });
        expect(bad.statusCode).toBe(400);
      } finally {
        await app.close();
      }
    });
  });
}
