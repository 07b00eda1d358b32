import { type CommandResult, type EventEnvelope, fleet, newId } from '@storelink/protocols';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SendCommandInput } from '../commands/service.ts';
import type { SqlCloudStore } from '../store/sql-store.ts';
import type { CommandRecord } from '../store/store.ts';
import { RolloutService } from './rollouts.ts';
import { mergeDesired, ShadowService } from './shadows.ts';

/**
 * Shadows and rollouts on one store with the command path recorded, run on PGlite in the
 * unit run (shadows-rollouts.test.ts) and on a real PostgreSQL in the system run
 * (test/system/fleet-shadows-postgres.test.ts) — one SQL dialect, both checked. The edge
 * side and the real command path are covered end to end in
 * test/e2e/fleet-shadows-rollouts.test.ts.
 */
const T0 = Date.UTC(2026, 10, 23, 8, 0, 0);
const GATEWAYS = Array.from({ length: 10 }, (_, i) => ({ id: `gw-${i}`, site: i < 5 ? 'north' : 'south' }));

export function runShadowsRolloutsSuite(name: string, open: () => Promise<SqlCloudStore>): void {
  let store: SqlCloudStore;
  let shadows: ShadowService;
  let rollouts: RolloutService;
  const now = T0;
  let seq = 0;
  const sent: Array<SendCommandInput & { id: string }> = [];
  const commands = new Map<string, Partial<CommandRecord>>();
  const instantEdge = new Set<string>();

  /** What the edge would report for a shadow version, through the ingest hook. */
  async function report(p: fleet.ShadowReported & { gateway: string }) {
    const { gateway, ...payload } = p;
    const ev: EventEnvelope = {
      id: newId(now),
      type: fleet.SHADOW_REPORTED,
      device: payload.device ?? gateway,
      gateway,
      site: 'x',
      ts: now,
      rts: now,
      lane: 'event',
      seq: ++seq,
      payload,
    };
    await store.sql.transaction((tx) => shadows.applyEvents(tx, [ev]));
  }

  async function result(
    gateway: string,
    r: Partial<CommandResult> & Pick<CommandResult, 'commandId' | 'status'>,
  ) {
    const payload: CommandResult = { type: fleet.SHADOW_DELTA, receivedAt: now, completedAt: now, ...r };
    const ev: EventEnvelope = {
      id: newId(now),
      type: 'command.result',
      device: gateway,
      gateway,
      site: 'x',
      ts: now,
      rts: now,
      lane: 'tx',
      seq: ++seq,
      payload,
    };
    await store.sql.transaction((tx) => shadows.applyEvents(tx, [ev]));
  }

  const lastDelta = (gateway: string) =>
    sent.filter((c) => c.gateway === gateway && c.type === fleet.SHADOW_DELTA).at(-1)?.payload as
      | fleet.ShadowDelta
      | undefined;

  /** Every gateway in `ids` applies its current desired (as a well-behaved edge would). */
  async function applyAll(ids: string[], status: 'applied' | 'failed' = 'applied', code?: string) {
    for (const gateway of ids) {
      const s = (await shadows.get(gateway))!;
      await report({
        gateway,
        version: s.desiredVersion,
        status,
        reported: status === 'applied' ? s.desired : s.reported,
        previous: status === 'applied' ? { labels: s.reported.labels ?? null } : {},
        applied: status === 'applied' ? Object.keys(s.desired) : [],
        ...(code ? { code, message: `${code} on ${gateway}` } : {}),
      });
    }
  }

  beforeAll(async () => {
    store = await open();
    for (const g of GATEWAYS) await store.upsertGateway({ ...g, passwordHash: 'x' }, T0);
    shadows = new ShadowService({
      sql: store.sql,
      now: () => now,
      sendCommand: async (c) => {
        const id = c.id ?? newId(now);
        sent.push({ ...c, id });
        commands.set(id, { id, status: 'sent', expiresAt: now + (c.ttlMs ?? 1000) });
        // An edge so fast its report is committed before sendCommand even returns.
        if (instantEdge.has(c.gateway)) {
          const p = c.payload as fleet.ShadowDelta;
          await report({
            gateway: c.gateway,
            version: p.version,
            status: 'applied',
            reported: p.desired,
            previous: {},
            applied: Object.keys(p.desired),
          });
        }
        return { id } as CommandRecord;
      },
      getCommand: async (id) => commands.get(id) as CommandRecord | undefined,
      commandTtlMs: 60_000,
    });
    rollouts = new RolloutService({ sql: store.sql, shadows, now: () => now });
  });
  afterAll(() => store.close());

  describe(`shadows (${name})`, () => {
    it('mergeDesired is a merge patch: null removes, other values replace whole', () => {
      expect(mergeDesired({ a: 1, b: { x: 1 } }, { b: { y: 2 }, a: null, c: 'z' })).toEqual({
        b: { y: 2 },
        c: 'z',
      });
    });

    it('a change names the version it was made against; a stale one is refused [SHADOW-VERSION-1]', async () => {
      const v1 = await shadows.change({ gateway: 'gw-0', patch: { logLevel: 'warn' }, expectedVersion: 0 });
      expect(v1).toMatchObject({ desiredVersion: 1, status: 'pending', desired: { logLevel: 'warn' } });
      expect(lastDelta('gw-0')).toEqual({ version: 1, desired: { logLevel: 'warn' } });
      expect(v1.commandId).toBe(sent.at(-1)!.id);

      await expect(
        shadows.change({ gateway: 'gw-0', patch: { logLevel: 'info' }, expectedVersion: 0 }),
      ).rejects.toMatchObject({
        code: 'CLOUD_ERR_SHADOW_VERSION',
        status: 409,
      });
      const v2 = await shadows.change({
        gateway: 'gw-0',
        patch: { labels: { zone: 'a' } },
        expectedVersion: 1,
      });
      expect(v2.desiredVersion).toBe(2);
      // The whole desired travels, so any one copy is enough.
      expect(lastDelta('gw-0')).toEqual({ version: 2, desired: { logLevel: 'warn', labels: { zone: 'a' } } });

      // The same desired again is no new version and no command.
      const before = sent.length;
      const same = await shadows.change({ gateway: 'gw-0', patch: { logLevel: 'warn' } });
      expect(same.desiredVersion).toBe(2);
      expect(sent.length).toBe(before);
    });

    it('refuses what no gateway could apply before spending a version', async () => {
      await expect(shadows.change({ gateway: 'nope', patch: { logLevel: 'warn' } })).rejects.toMatchObject({
        code: 'CLOUD_ERR_NOT_FOUND',
      });
      await expect(
        shadows.change({
          gateway: 'gw-1',
          patch: { firmware: { version: '2', url: 'http://x/', sha256: 'a'.repeat(64), size: 1 } },
        }),
      ).rejects.toMatchObject({ code: 'CLOUD_ERR_BAD_REQUEST' });
      await expect(
        shadows.change({
          gateway: 'gw-1',
          device: 'd1',
          patch: { firmware: { version: '2', url: 'ftp://x' } },
        }),
      ).rejects.toMatchObject({ code: 'CLOUD_ERR_BAD_REQUEST' });
      expect(await shadows.get('gw-1')).toBeUndefined();
    });

    it('reports: applied brings the shadow in sync; a late older report changes nothing', async () => {
      await report({
        gateway: 'gw-0',
        version: 2,
        status: 'applied',
        reported: { logLevel: 'warn', labels: { zone: 'a' } },
        previous: {},
        applied: ['logLevel', 'labels'],
      });
      expect(await shadows.get('gw-0')).toMatchObject({ status: 'in_sync', reportedVersion: 2, error: null });
      await report({
        gateway: 'gw-0',
        version: 1,
        status: 'applied',
        reported: { logLevel: 'warn' },
        previous: {},
        applied: ['logLevel'],
      });
      expect(await shadows.get('gw-0')).toMatchObject({
        reportedVersion: 2,
        reported: { labels: { zone: 'a' } },
      });
    });

    it('a device failure fails that version with the device code; a stale refusal is not a failure', async () => {
      const s = await shadows.change({ gateway: 'gw-2', device: 'fr-1', patch: { setpointC: 3 } });
      await result('gw-2', { commandId: s.commandId!, status: 'rejected', code: 'EDGE_ERR_SHADOW_STALE' });
      expect((await shadows.get('gw-2', 'fr-1'))!.status).toBe('pending');
      await report({
        gateway: 'gw-2',
        device: 'fr-1',
        version: 1,
        status: 'failed',
        reported: {},
        previous: {},
        applied: [],
        code: 'BAD_VALUE',
        message: 'no',
      });
      expect(await shadows.get('gw-2', 'fr-1')).toMatchObject({
        status: 'failed',
        error: { code: 'BAD_VALUE' },
        reportedVersion: 0,
      });
      // A key the gateway cannot take (refused before acting) fails the version too.
      const g = await shadows.change({ gateway: 'gw-2', patch: { colour: 'red' } });
      await result('gw-2', {
        commandId: g.commandId!,
        status: 'rejected',
        code: 'EDGE_ERR_SHADOW_KEY',
        message: 'colour',
      });
      expect(await shadows.get('gw-2')).toMatchObject({
        status: 'failed',
        error: { code: 'EDGE_ERR_SHADOW_KEY' },
      });
    });

    it('at birth re-issues pending shadows whose command can no longer arrive [SHADOW-REDELIVER-1]', async () => {
      const a = await shadows.change({ gateway: 'gw-3', patch: { logLevel: 'error' } });
      const b = await shadows.change({ gateway: 'gw-3', device: 'fr-9', patch: { intervalMs: 1000 } });
      // a's command expires unanswered; b's is still open (CMD-REDELIVER-1 resends that one).
      commands.get(a.commandId!)!.expiresAt = now - 1;
      const before = sent.length;
      expect(await shadows.reconcile('gw-3')).toBe(1);
      expect(sent.length).toBe(before + 1);
      expect(sent.at(-1)!.payload).toEqual({ version: 1, desired: { logLevel: 'error' } });
      expect((await shadows.get('gw-3'))!.commandId).toBe(sent.at(-1)!.id);
      // An edge restart interrupted b: pending, re-issued at the next birth.
      await result('gw-3', { commandId: b.commandId!, status: 'error', code: 'EDGE_ERR_CMD_INTERRUPTED' });
      commands.get(b.commandId!)!.status = 'error';
      expect((await shadows.get('gw-3', 'fr-9'))!.status).toBe('pending');
      expect(await shadows.reconcile('gw-3')).toBe(1);
      expect(sent.at(-1)!.payload).toEqual({ device: 'fr-9', version: 1, desired: { intervalMs: 1000 } });
    });
  });

  describe(`rollouts (${name})`, () => {
    const ids = GATEWAYS.map((g) => g.id);

    it('assigns waves by percentage in a stable order and by site', async () => {
      const r = await rollouts.create({
        kind: 'config',
        config: { labels: { ring: 'one' } },
        waves: [{ percent: 20 }, { sites: ['north'] }, {}],
        autoRollback: false,
      });
      expect(r.waveCounts.map((w) => w.total)).toEqual([2, expect.any(Number), expect.any(Number)]);
      const targets = await rollouts.targets(r.id);
      const wave1 = targets.filter((t) => t.wave === 1).map((t) => t.gateway);
      expect(wave1.every((g) => GATEWAYS.find((x) => x.id === g)!.site === 'north')).toBe(true);
      expect(targets.length).toBe(10);
      // Only the first wave was sent.
      expect(targets.filter((t) => t.state === 'sent').map((t) => t.wave)).toEqual([0, 0]);
      await rollouts.cancel(r.id);
      expect((await rollouts.get(r.id))!.state).toBe('cancelled');
      await expect(rollouts.approve(r.id)).rejects.toMatchObject({
        code: 'CLOUD_ERR_ROLLOUT_STATE',
        status: 409,
      });
    });

    it('halts at the error threshold and rolls back the targets already changed [ROLLOUT-HALT-1][ROLLOUT-BACK-1]', async () => {
      // Every gateway starts from a known reported labels value.
      for (const g of ids) await shadows.change({ gateway: g, patch: { labels: { ring: 'zero' } } });
      await applyAll(ids);
      const r = await rollouts.create({
        kind: 'config',
        config: { labels: { ring: 'canary' } },
        waves: [{ gateways: ['gw-0', 'gw-1'] }, { gateways: ['gw-2', 'gw-3', 'gw-4', 'gw-5'] }, {}],
        errorThreshold: 0.5,
      });
      expect(r.state).toBe('running');
      expect(lastDelta('gw-0')!.desired.labels).toEqual({ ring: 'canary' });
      expect(lastDelta('gw-2')!.desired.labels).toEqual({ ring: 'zero' });

      await applyAll(['gw-0', 'gw-1']);
      await rollouts.step(r.id);
      const second = (await rollouts.get(r.id))!;
      expect(second.currentWave).toBe(1);
      expect(second.waveCounts[0]!.counts.succeeded).toBe(2);
      expect(lastDelta('gw-2')!.desired.labels).toEqual({ ring: 'canary' });

      // One of four fails: below the threshold, the rollout waits.
      await applyAll(['gw-2']);
      await applyAll(['gw-3'], 'failed', 'EDGE_ERR_SHADOW_APPLY');
      await rollouts.step(r.id);
      expect((await rollouts.get(r.id))!.state).toBe('running');
      // The second failure reaches 2 of 4 = 0.5: halt, and roll back.
      await applyAll(['gw-4'], 'failed', 'EDGE_ERR_SHADOW_APPLY');
      await rollouts.step(r.id);
      const halted = (await rollouts.get(r.id))!;
      expect(halted.state).toBe('rolling_back');
      expect(halted.reason).toMatch(/wave 1: 2 of 4 target\(s\) failed/);
      // Changed targets get their previous value back; the third wave is never sent.
      for (const g of ['gw-0', 'gw-1', 'gw-2', 'gw-3', 'gw-4', 'gw-5'])
        expect(lastDelta(g)!.desired.labels).toEqual({ ring: 'zero' });
      const targets = await rollouts.targets(r.id);
      expect(targets.filter((t) => t.wave === 2).every((t) => t.state === 'cancelled')).toBe(true);
      expect(lastDelta('gw-9')!.desired.labels).toEqual({ ring: 'zero' });

      await applyAll(['gw-0', 'gw-1', 'gw-2', 'gw-3', 'gw-4', 'gw-5']);
      await rollouts.step(r.id);
      const back = (await rollouts.get(r.id))!;
      expect(back.state).toBe('rolled_back');
      expect(back.counts.rolled_back).toBe(6);
      const t3 = (await rollouts.targets(r.id)).find((t) => t.gateway === 'gw-3')!;
      expect(t3).toMatchObject({ state: 'rolled_back', code: 'EDGE_ERR_SHADOW_APPLY' });
    });

    it('a target still unanswered at the halt is rolled back to what its own answer says it had', async () => {
      const r = await rollouts.create({
        kind: 'config',
        config: { maxTempC: 5 },
        waves: [{ gateways: ['gw-6', 'gw-7'] }],
        errorThreshold: 0.5,
      });
      const v7 = (await shadows.get('gw-7'))!.desiredVersion;
      const v6 = (await shadows.get('gw-6'))!.desiredVersion;
      await report({
        gateway: 'gw-6',
        version: v6,
        status: 'failed',
        reported: {},
        previous: {},
        applied: [],
        code: 'EDGE_ERR_SHADOW_KEY',
      });
      await rollouts.step(r.id);
      // gw-6 failed: maxTempC leaves its desired. gw-7 has not answered and the cloud never
      // saw a maxTempC there: it waits for its own answer.
      expect((await shadows.get('gw-6'))!.desired).not.toHaveProperty('maxTempC');
      let t7 = (await rollouts.targets(r.id)).find((t) => t.gateway === 'gw-7')!;
      expect(t7).toMatchObject({ state: 'rolling_back', rollbackVersion: null });
      expect((await rollouts.get(r.id))!.state).toBe('rolling_back');

      await report({
        gateway: 'gw-7',
        version: v7,
        status: 'applied',
        reported: { maxTempC: 5 },
        previous: { maxTempC: 3 },
        applied: ['maxTempC'],
      });
      await rollouts.step(r.id);
      expect(lastDelta('gw-7')!.desired.maxTempC).toBe(3);
      t7 = (await rollouts.targets(r.id)).find((t) => t.gateway === 'gw-7')!;
      expect(t7).toMatchObject({ state: 'rolling_back', previous: { maxTempC: 3 }, rollbackVersion: v7 + 1 });
      await applyAll(['gw-6', 'gw-7']);
      await rollouts.step(r.id);
      expect((await rollouts.get(r.id))!).toMatchObject({ state: 'rolled_back', counts: { rolled_back: 2 } });
    });

    it('without auto rollback a halted rollout can be resumed, its failures skipped', async () => {
      const r = await rollouts.create({
        kind: 'config',
        config: { labels: { ring: 'two' } },
        waves: [{ gateways: ['gw-0', 'gw-1'] }, { gateways: ['gw-2'], approval: true }],
        errorThreshold: 0.5,
        successThreshold: 0.5,
        autoRollback: false,
      });
      await applyAll(['gw-0'], 'failed', 'X');
      await rollouts.step(r.id);
      expect((await rollouts.get(r.id))!.state).toBe('halted');
      await expect(rollouts.approve(r.id)).rejects.toMatchObject({ code: 'CLOUD_ERR_ROLLOUT_STATE' });
      await rollouts.resume(r.id);
      await applyAll(['gw-1']);
      await rollouts.step(r.id);
      const waiting = (await rollouts.get(r.id))!;
      expect(waiting).toMatchObject({ state: 'awaiting_approval', currentWave: 1 });
      expect(waiting.waveCounts[0]!.counts).toMatchObject({ skipped: 1, succeeded: 1 });
      await rollouts.approve(r.id);
      await applyAll(['gw-2']);
      await rollouts.step(r.id);
      expect((await rollouts.get(r.id))!.state).toBe('completed');
    });

    it('a report committed before the change call returns still counts (no stuck target)', async () => {
      instantEdge.add('gw-8');
      try {
        const r = await rollouts.create({
          kind: 'config',
          config: { fastKey: 1 },
          waves: [{ gateways: ['gw-8'] }],
        });
        expect(r.state).toBe('completed');
        expect((await rollouts.targets(r.id))[0]).toMatchObject({ state: 'succeeded' });
      } finally {
        instantEdge.delete('gw-8');
      }
    });

    it('a missed report is caught from the shadow itself', async () => {
      const r = await rollouts.create({
        kind: 'config',
        config: { lostKey: 1 },
        waves: [{ gateways: ['gw-9'] }],
      });
      const v = (await shadows.get('gw-9'))!.desiredVersion;
      // The shadow moved (as the ingest hook would) but the rollout was never told.
      await store.sql.query(
        `UPDATE fleet_shadows SET reported_version = $2, status = 'in_sync' WHERE gateway = $1 AND device = ''`,
        ['gw-9', v],
      );
      await rollouts.step(r.id);
      expect((await rollouts.get(r.id))!.state).toBe('completed');
    });

    it('refuses specs with nothing to do', async () => {
      await expect(rollouts.create({ kind: 'config', waves: [{}] })).rejects.toMatchObject({
        code: 'CLOUD_ERR_ROLLOUT_SPEC',
      });
      await expect(
        rollouts.create({ kind: 'config', config: { a: 1 }, waves: [{ gateways: ['none'] }] }),
      ).rejects.toMatchObject({ code: 'CLOUD_ERR_ROLLOUT_SPEC' });
      await expect(
        rollouts.create({ kind: 'firmware', firmware: { version: '9.9' }, waves: [{}] }),
      ).rejects.toMatchObject({
        code: 'CLOUD_ERR_NOT_FOUND',
      });
    });
  });
}
