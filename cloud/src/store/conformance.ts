import { type GatewayState, type Heartbeat, newId } from '@storelink/protocols';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  batchOf,
  commandResultEvent,
  type GatewayRef,
  laneEvent,
  presenceEvent,
  telemetryEvent,
  telemetryRun,
} from '../testing.ts';
import { SqlCloudStore } from './sql-store.ts';
import type { CloudStore, NewCommand } from './store.ts';

/**
 * The CloudStore conformance suite (house style 1: one interface, one suite, every
 * implementation passes it). `store.pglite.test.ts` runs it on PGlite; the system tests
 * run it on a real PostgreSQL:
 *
 *   runStoreSuite('postgres', async () => openStore({ kind: 'postgres', url }))
 *   runStoreSuite(async () => openStore({ kind: 'postgres', url }))   // name optional
 *
 * The factory is called once per suite; tests isolate themselves by using their own
 * gateway ids, so the suite also passes on a database that other suites use.
 */
export function runStoreSuite(factory: () => Promise<CloudStore>): void;
export function runStoreSuite(name: string, factory: () => Promise<CloudStore>): void;
export function runStoreSuite(a: string | (() => Promise<CloudStore>), b?: () => Promise<CloudStore>): void {
  const name = typeof a === 'string' ? a : 'store';
  const factory = typeof a === 'string' ? b! : a;
  describe(`CloudStore conformance: ${name}`, () => {
    let store: CloudStore;
    let n = 0;
    const run = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`;
    /** A fresh, registered gateway per test. */
    const freshGateway = async (): Promise<GatewayRef> => {
      n += 1;
      const gw = { gateway: `gw-${run}-${n}`, site: `site-${run}` };
      await store.upsertGateway({ id: gw.gateway, site: gw.site, passwordHash: 'scrypt$x' }, 1000);
      return gw;
    };
    const NOW = 1_763_900_005_000;

    beforeAll(async () => {
      store = await factory();
    });
    afterAll(async () => {
      await store?.close();
    });

    describe('gateways', () => {
      it('creates, reads, lists and refuses a second create of the same id', async () => {
        const id = `gw-${run}-create`;
        const g = await store.createGateway({ id, site: 's1', name: 'Front', passwordHash: 'scrypt$a' }, 5);
        expect(g).toMatchObject({ id, site: 's1', name: 'Front', createdAt: 5, hasPassword: true });
        expect(g.presence.state).toBe('unknown');
        await expect(store.createGateway({ id, site: 's1', passwordHash: 'x' }, 6)).rejects.toMatchObject({
          code: 'CLOUD_ERR_CONFLICT',
        });
        expect(await store.getGatewayCredentials(id)).toEqual({ id, site: 's1', passwordHash: 'scrypt$a' });
        expect((await store.listGateways()).map((x) => x.id)).toContain(id);
        expect(await store.getGateway(`${id}-missing`)).toBeUndefined();
      });

      it('upsert changes site and password (config seeding)', async () => {
        const id = `gw-${run}-upsert`;
        await store.upsertGateway({ id, site: 's1', passwordHash: 'h1' }, 1);
        await store.upsertGateway({ id, site: 's2', passwordHash: 'h2' }, 2);
        expect(await store.getGatewayCredentials(id)).toEqual({ id, site: 's2', passwordHash: 'h2' });
      });
    });

    describe('ingestBatch', () => {
      it('stores a batch once and acks the contiguous watermark per lane', async () => {
        const gw = await freshGateway();
        const epoch = newId();
        const batch = batchOf(gw, epoch, [
          laneEvent(gw, 'event', 1, 'device.alarm', { code: 'TEMP_HIGH', severity: 'warning', active: true }),
          ...telemetryRun(gw, 1, 5),
        ]);
        const r = await store.ingestBatch(batch, NOW);
        expect(r).toMatchObject({ epoch, inserted: 6, duplicates: 0, acks: { event: 1, telemetry: 5 } });
        expect(r.insertedByLane).toEqual({ event: 1, telemetry: 5 });
        expect(r.gaps).toEqual([]);
        expect(r.holes).toEqual([]);
        const ev = await store.laneEvents({
          gateway: gw.gateway,
          epoch,
          lane: 'telemetry',
          after: 0,
          limit: 100,
        });
        expect(ev.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
        expect(ev[0]).toMatchObject({ ...batch.events[1], epoch, receivedAt: NOW });
      });

      it('a resent batch takes effect exactly once [INGEST-EXACTLY-ONCE-1]', async () => {
        const gw = await freshGateway();
        const epoch = newId();
        const batch = batchOf(gw, epoch, telemetryRun(gw, 1, 10));
        await store.ingestBatch(batch, NOW);
        const again = await store.ingestBatch(batch, NOW + 1);
        expect(again).toMatchObject({ inserted: 0, duplicates: 10, acks: { telemetry: 10 } });
        expect(again.duplicatesByLane).toEqual({ telemetry: 10 });
        // an overlapping resend: 6..15
        const overlap = await store.ingestBatch(batchOf(gw, epoch, telemetryRun(gw, 6, 10)), NOW + 2);
        expect(overlap).toMatchObject({ inserted: 5, duplicates: 5, acks: { telemetry: 15 } });
        const counts = await store.laneCounts(gw.gateway);
        expect(counts).toEqual([
          { epoch, lane: 'telemetry', stored: 15, minSeq: 1, maxSeq: 15, acked: 15, gaps: 0, gapSeqs: 0 },
        ]);
      });

      it('two copies of one seq inside a batch store the first', async () => {
        const gw = await freshGateway();
        const a = telemetryEvent(gw, 1, { device: 'a' });
        const b = telemetryEvent(gw, 1, { device: 'b' });
        const r = await store.ingestBatch(batchOf(gw, newId(), [a, b]), NOW);
        expect(r).toMatchObject({ inserted: 1, duplicates: 1, acks: { telemetry: 1 } });
        const ev = await store.recentEvents({ gateway: gw.gateway, limit: 10 });
        expect(ev.map((e) => e.device)).toEqual(['a']);
      });

      it('an out-of-order batch is stored but holds the watermark at the hole', async () => {
        const gw = await freshGateway();
        const epoch = newId();
        await store.ingestBatch(batchOf(gw, epoch, telemetryRun(gw, 1, 3)), NOW);
        const ahead = await store.ingestBatch(batchOf(gw, epoch, telemetryRun(gw, 6, 3)), NOW);
        expect(ahead).toMatchObject({ inserted: 3, acks: { telemetry: 3 } });
        expect(ahead.holes).toEqual([{ lane: 'telemetry', fromSeq: 4, toSeq: 5 }]);
        expect(ahead.gaps).toEqual([]);
        const fill = await store.ingestBatch(batchOf(gw, epoch, telemetryRun(gw, 4, 2)), NOW);
        expect(fill).toMatchObject({ inserted: 2, acks: { telemetry: 8 } });
        expect(fill.holes).toEqual([]);
      });

      it('floors turn missing seqs into dropped_at_edge gaps and move the watermark [OUTBOX-ACK-3]', async () => {
        const gw = await freshGateway();
        const epoch = newId();
        await store.ingestBatch(batchOf(gw, epoch, telemetryRun(gw, 1, 3)), NOW);
        // 4..9 never arrived; 7 did (out of order); the edge now holds from 10 on.
        await store.ingestBatch(batchOf(gw, epoch, [telemetryEvent(gw, 7)]), NOW);
        const r = await store.ingestBatch(
          batchOf(gw, epoch, telemetryRun(gw, 10, 2), { telemetry: 10, tx: 1 }),
          NOW + 10,
        );
        expect(r.acks).toEqual({ telemetry: 11, tx: 0 });
        expect(r.gaps).toEqual([
          {
            gateway: gw.gateway,
            epoch,
            lane: 'telemetry',
            fromSeq: 4,
            toSeq: 6,
            reason: 'dropped_at_edge',
            at: NOW + 10,
          },
          {
            gateway: gw.gateway,
            epoch,
            lane: 'telemetry',
            fromSeq: 8,
            toSeq: 9,
            reason: 'dropped_at_edge',
            at: NOW + 10,
          },
        ]);
        expect(await store.listGaps(gw.gateway)).toEqual(r.gaps);
        // A repeat of the same floors records nothing new.
        const again = await store.ingestBatch(batchOf(gw, epoch, [], { telemetry: 12 }), NOW + 20);
        expect(again.gaps).toEqual([]);
        expect(again.acks.telemetry).toBe(11);
        const [c] = await store.laneCounts(gw.gateway).then((x) => x.filter((l) => l.lane === 'telemetry'));
        expect(c).toMatchObject({ stored: 6, acked: 11, gaps: 2, gapSeqs: 5 });
      });

      it('a floor alone (empty batch) acks a lane whose events were all dropped', async () => {
        const gw = await freshGateway();
        const epoch = newId();
        const r = await store.ingestBatch(batchOf(gw, epoch, [], { telemetry: 51 }), NOW);
        expect(r.acks).toEqual({ telemetry: 50 });
        expect(r.gaps).toMatchObject([{ fromSeq: 1, toSeq: 50 }]);
      });

      it('a floor below the watermark never moves it back', async () => {
        const gw = await freshGateway();
        const epoch = newId();
        await store.ingestBatch(batchOf(gw, epoch, telemetryRun(gw, 1, 5)), NOW);
        const r = await store.ingestBatch(batchOf(gw, epoch, telemetryRun(gw, 2, 2), { telemetry: 2 }), NOW);
        expect(r.acks.telemetry).toBe(5);
        expect(r.gaps).toEqual([]);
      });

      it('lanes have independent watermarks', async () => {
        const gw = await freshGateway();
        const epoch = newId();
        const r = await store.ingestBatch(
          batchOf(gw, epoch, [
            laneEvent(gw, 'event', 1, 'device.alarm', {}),
            laneEvent(gw, 'event', 3, 'device.alarm', {}),
            ...telemetryRun(gw, 1, 4),
          ]),
          NOW,
        );
        expect(r.acks).toEqual({ event: 1, telemetry: 4 });
        expect(r.holes).toEqual([{ lane: 'event', fromSeq: 2, toSeq: 2 }]);
      });

      it('a new epoch starts fresh watermarks and its acks carry only it [OUTBOX-EPOCH-1]', async () => {
        const gw = await freshGateway();
        const e1 = '01JD0M2V9J0C4W6Y8Z1A3B5D70';
        const e2 = '01JD0M2V9J0C4W6Y8Z1A3B5D7F';
        await store.ingestBatch(batchOf(gw, e1, telemetryRun(gw, 1, 20)), NOW);
        const r = await store.ingestBatch(batchOf(gw, e2, telemetryRun(gw, 1, 3)), NOW);
        expect(r).toMatchObject({ epoch: e2, inserted: 3, duplicates: 0, acks: { telemetry: 3 } });
        const counts = await store.laneCounts(gw.gateway);
        expect(counts.map((c) => [c.epoch, c.stored, c.acked])).toEqual([
          [e1, 20, 20],
          [e2, 3, 3],
        ]);
        // default epoch of laneEvents is the newest
        const ev = await store.laneEvents({ gateway: gw.gateway, lane: 'telemetry', after: 0, limit: 100 });
        expect(ev.map((e) => [e.epoch, e.seq])).toEqual([
          [e2, 1],
          [e2, 2],
          [e2, 3],
        ]);
      });

      it('refuses a batch for a gateway registered at another site, storing nothing', async () => {
        const gw = await freshGateway();
        const other = { gateway: gw.gateway, site: `${gw.site}-other` };
        await expect(
          store.ingestBatch(batchOf(other, newId(), telemetryRun(other, 1, 2)), NOW),
        ).rejects.toMatchObject({
          code: 'CLOUD_ERR_BATCH_REJECTED',
        });
        expect(await store.laneCounts(gw.gateway)).toEqual([]);
      });

      it('records an unregistered gateway from its traffic (external broker)', async () => {
        const gw = { gateway: `gw-${run}-unreg`, site: 'elsewhere' };
        await store.ingestBatch(batchOf(gw, newId(), telemetryRun(gw, 1, 1)), NOW);
        const g = await store.getGateway(gw.gateway);
        expect(g).toMatchObject({ id: gw.gateway, site: 'elsewhere', hasPassword: false });
        expect(g?.presence.lastSeen).toBe(NOW);
        expect(await store.getGatewayCredentials(gw.gateway)).toMatchObject({ passwordHash: null });
      });

      it('handles a 500-event batch and concurrent batches of many gateways', async () => {
        const gws = await Promise.all(Array.from({ length: 5 }, () => freshGateway()));
        const epoch = newId();
        const results = await Promise.all(
          gws.map((gw) => store.ingestBatch(batchOf(gw, epoch, telemetryRun(gw, 1, 500)), NOW)),
        );
        for (const r of results) expect(r).toMatchObject({ inserted: 500, acks: { telemetry: 500 } });
        const listed = await Promise.all(gws.map((gw) => store.laneCounts(gw.gateway)));
        for (const c of listed) expect(c[0]).toMatchObject({ stored: 500, acked: 500 });
      });
    });

    describe('devices', () => {
      it('upserts every device seen and applies presence in (epoch, seq) order', async () => {
        const gw = await freshGateway();
        const epoch = newId();
        await store.ingestBatch(
          batchOf(gw, epoch, [
            presenceEvent(gw, 1, 'vend-1', true, 100),
            presenceEvent(gw, 2, 'fridge-1', true, 101),
            telemetryEvent(gw, 1, { device: 'fridge-1', at: 150 }),
            telemetryEvent(gw, 2, { device: 'scale-1', at: 160 }),
          ]),
          NOW,
        );
        let devs = await store.listDevices({ gateway: gw.gateway });
        expect(devs.map((d) => [d.id, d.online, d.lastEventType, d.lastSeen])).toEqual([
          ['fridge-1', true, 'telemetry', 150],
          ['scale-1', null, 'telemetry', 160],
          ['vend-1', true, 'device.online', 100],
        ]);
        // seq 4 (offline) arrives before seq 3 (online): the older one must not win.
        await store.ingestBatch(batchOf(gw, epoch, [presenceEvent(gw, 4, 'vend-1', false, 300)]), NOW);
        await store.ingestBatch(batchOf(gw, epoch, [presenceEvent(gw, 3, 'vend-1', true, 200)]), NOW);
        devs = await store.listDevices({ gateway: gw.gateway, online: true });
        expect(devs.map((d) => d.id)).toEqual(['fridge-1']);
        const off = await store.listDevices({ gateway: gw.gateway, online: false });
        expect(off.map((d) => [d.id, d.online, d.presenceReason])).toEqual([
          ['scale-1', null, null],
          ['vend-1', false, 'disconnected'],
        ]);
      });

      it('a later epoch supersedes presence of an earlier one', async () => {
        const gw = await freshGateway();
        await store.ingestBatch(
          batchOf(gw, '01JD0M2V9J0C4W6Y8Z1A3B5D70', [presenceEvent(gw, 9, 'd', true)]),
          NOW,
        );
        await store.ingestBatch(
          batchOf(gw, '01JD0M2V9J0C4W6Y8Z1A3B5D7F', [presenceEvent(gw, 1, 'd', false)]),
          NOW,
        );
        const [d] = await store.listDevices({ gateway: gw.gateway });
        expect(d?.online).toBe(false);
      });
    });

    describe('commands', () => {
      const newCommand = (gw: GatewayRef, issuedAt = NOW): NewCommand => ({
        id: newId(issuedAt),
        gateway: gw.gateway,
        site: gw.site,
        device: null,
        type: 'ping',
        payload: { echo: 'hi' },
        issuedAt,
        expiresAt: issuedAt + 60_000,
        sig: 'sig',
      });

      it('stores, marks sent, completes from a command.result in the ingest transaction', async () => {
        const gw = await freshGateway();
        const cmd = await store.insertCommand(newCommand(gw));
        expect(cmd).toMatchObject({ status: 'pending', payload: { echo: 'hi' }, result: null, rttMs: null });
        await store.markCommandSent(cmd.id, NOW + 1);
        expect(await store.getCommand(cmd.id)).toMatchObject({ status: 'sent', sentAt: NOW + 1 });
        const r = await store.ingestBatch(
          batchOf(gw, newId(), [
            commandResultEvent(gw, 1, {
              commandId: cmd.id,
              status: 'ok',
              result: { echo: 'hi' },
              completedAt: 42,
            }),
          ]),
          NOW + 250,
        );
        expect(r.commandResults).toEqual([{ id: cmd.id, status: 'ok', rttMs: 250 }]);
        expect(await store.getCommand(cmd.id)).toMatchObject({
          status: 'ok',
          result: { echo: 'hi' },
          completedAt: 42,
          resultReceivedAt: NOW + 250,
          rttMs: 250,
          duplicateResult: false,
        });
        // a result racing ahead of markCommandSent keeps its status
        await store.markCommandSent(cmd.id, NOW + 300);
        expect((await store.getCommand(cmd.id))?.status).toBe('ok');
      });

      it('a duplicate report never overwrites the first result; a first result replaces a duplicate one', async () => {
        const gw = await freshGateway();
        const epoch = newId();
        const a = await store.insertCommand(newCommand(gw));
        const b = await store.insertCommand(newCommand(gw));
        await store.ingestBatch(
          batchOf(gw, epoch, [
            commandResultEvent(gw, 1, { commandId: a.id, status: 'ok', result: 1 }),
            commandResultEvent(gw, 2, { commandId: b.id, status: 'ok', result: 'dup', duplicate: true }),
          ]),
          NOW + 10,
        );
        const r = await store.ingestBatch(
          batchOf(gw, epoch, [
            commandResultEvent(gw, 3, { commandId: a.id, status: 'error', code: 'X', duplicate: true }),
            commandResultEvent(gw, 4, { commandId: b.id, status: 'error', code: 'E', message: 'jammed' }),
          ]),
          NOW + 20,
        );
        expect(r.commandResults.map((x) => x.id)).toEqual([b.id]);
        expect(await store.getCommand(a.id)).toMatchObject({
          status: 'ok',
          result: 1,
          duplicateResult: false,
        });
        expect(await store.getCommand(b.id)).toMatchObject({
          status: 'error',
          code: 'E',
          message: 'jammed',
          duplicateResult: false,
        });
      });

      it('a gateway cannot complete another gateway’s command', async () => {
        const gw = await freshGateway();
        const other = await freshGateway();
        const cmd = await store.insertCommand(newCommand(gw));
        const r = await store.ingestBatch(
          batchOf(other, newId(), [commandResultEvent(other, 1, { commandId: cmd.id, status: 'ok' })]),
          NOW,
        );
        expect(r.commandResults).toEqual([]);
        expect((await store.getCommand(cmd.id))?.status).toBe('pending');
      });

      it('lists commands of a gateway, newest first', async () => {
        const gw = await freshGateway();
        const c1 = await store.insertCommand(newCommand(gw, NOW));
        const c2 = await store.insertCommand(newCommand(gw, NOW + 5));
        const list = await store.listCommands({ gateway: gw.gateway, limit: 10 });
        expect(list.map((c) => c.id)).toEqual([c2.id, c1.id]);
        expect(await store.getCommand('01JD0QB4M3Z7Y5X2W1V0T9S8R7')).toBeUndefined();
      });
    });

    describe('gateway presence [PRESENCE-BDSEQ-1]', () => {
      const state = (gw: GatewayRef, s: 'online' | 'offline', bdSeq: number, at: number, epoch?: string) =>
        ({
          v: 1,
          state: s,
          bdSeq,
          gateway: gw.gateway,
          site: gw.site,
          at,
          ...(epoch ? { epoch } : {}),
        }) as GatewayState;

      it('a stale death never marks a live gateway offline; the current one does', async () => {
        const gw = await freshGateway();
        expect(await store.applyGatewayState(state(gw, 'online', 7, 100), 100)).toEqual({
          applied: true,
          state: 'online',
        });
        expect(await store.applyGatewayState(state(gw, 'online', 8, 200), 200)).toEqual({
          applied: true,
          state: 'online',
        });
        expect(await store.applyGatewayState(state(gw, 'offline', 7, 150), 210)).toEqual({
          applied: false,
          reason: 'stale_death',
        });
        let g = await store.getGateway(gw.gateway);
        expect(g?.presence).toMatchObject({ state: 'online', bdSeq: 8, onlineSince: 200 });
        expect(await store.applyGatewayState(state(gw, 'offline', 8, 300), 300)).toEqual({
          applied: true,
          state: 'offline',
        });
        g = await store.getGateway(gw.gateway);
        expect(g?.presence).toMatchObject({ state: 'offline', bdSeq: 8, onlineSince: null, stateAt: 300 });
      });

      it('a stale birth is ignored unless it names a new epoch; a death of a newer session applies', async () => {
        const gw = await freshGateway();
        const e1 = '01JD0M2V9J0C4W6Y8Z1A3B5D70';
        await store.applyGatewayState(state(gw, 'online', 5, 100, e1), 100);
        expect(await store.applyGatewayState(state(gw, 'online', 4, 90, e1), 110)).toEqual({
          applied: false,
          reason: 'stale_birth',
        });
        expect(await store.applyGatewayState(state(gw, 'online', 0, 120, newId()), 120)).toEqual({
          applied: true,
          state: 'online',
        });
        expect(await store.applyGatewayState(state(gw, 'offline', 3, 130), 130)).toMatchObject({
          applied: true,
        });
        expect((await store.getGateway(gw.gateway))?.presence).toMatchObject({ state: 'offline', bdSeq: 3 });
      });

      it('heartbeats update last seen and outbox figures; an older session’s heartbeat is ignored', async () => {
        const gw = await freshGateway();
        await store.applyGatewayState(state(gw, 'online', 2, 100), 100);
        const hb = (bdSeq: number, at: number): Heartbeat => ({
          v: 1,
          gateway: gw.gateway,
          site: gw.site,
          at,
          bdSeq,
          uptimeS: 5,
          devicesOnline: ['fridge-1'],
          outbox: { depth: 3, bytes: 300, oldestAgeMs: 40, lanes: {} },
        });
        expect(await store.recordHeartbeat(hb(2, 500), 510)).toBe(true);
        let g = await store.getGateway(gw.gateway);
        expect(g?.presence).toMatchObject({ state: 'online', lastSeen: 510 });
        expect(g?.presence.heartbeat).toMatchObject({ devicesOnline: ['fridge-1'], outbox: { depth: 3 } });
        expect(await store.recordHeartbeat(hb(1, 600), 610)).toBe(false);
        g = await store.getGateway(gw.gateway);
        expect(g?.presence.heartbeat?.at).toBe(500);
        expect(g?.presence.lastSeen).toBe(610);
      });
    });

    describe('queries', () => {
      it('recentEvents filters by gateway, device, type and lane, newest first', async () => {
        const gw = await freshGateway();
        const epoch = newId();
        await store.ingestBatch(batchOf(gw, epoch, telemetryRun(gw, 1, 3, 'a')), NOW);
        await store.ingestBatch(batchOf(gw, epoch, telemetryRun(gw, 4, 2, 'b')), NOW + 1);
        await store.ingestBatch(batchOf(gw, epoch, [presenceEvent(gw, 1, 'a', true)]), NOW + 2);
        const all = await store.recentEvents({ gateway: gw.gateway, limit: 100 });
        expect(all.map((e) => `${e.lane}:${e.seq}`)).toEqual([
          'event:1',
          'telemetry:5',
          'telemetry:4',
          'telemetry:3',
          'telemetry:2',
          'telemetry:1',
        ]);
        expect((await store.recentEvents({ gateway: gw.gateway, device: 'b', limit: 100 })).length).toBe(2);
        expect(
          (await store.recentEvents({ gateway: gw.gateway, type: 'device.online', limit: 100 })).length,
        ).toBe(1);
        expect((await store.recentEvents({ gateway: gw.gateway, lane: 'telemetry', limit: 2 })).length).toBe(
          2,
        );
      });

      it('laneEvents pages in seq order after a seq', async () => {
        const gw = await freshGateway();
        const epoch = newId();
        await store.ingestBatch(batchOf(gw, epoch, telemetryRun(gw, 1, 10).reverse()), NOW);
        const page = await store.laneEvents({
          gateway: gw.gateway,
          epoch,
          lane: 'telemetry',
          after: 4,
          limit: 3,
        });
        expect(page.map((e) => e.seq)).toEqual([5, 6, 7]);
        expect(
          await store.laneEvents({ gateway: `${gw.gateway}-none`, lane: 'tx', after: 0, limit: 3 }),
        ).toEqual([]);
      });
    });

    it('a failed transaction leaves nothing behind', async () => {
      if (!(store instanceof SqlCloudStore)) return;
      const gw = await freshGateway();
      await expect(
        store.sql.transaction(async (tx) => {
          await tx.query(
            `INSERT INTO events (gateway, epoch, lane, seq, id, type, device, site, ts, rts, payload, received_at)
             VALUES ($1, 'E', 'tx', 1, 'id', 't', 'd', $2, 0, 0, '{}', 0)`,
            [gw.gateway, gw.site],
          );
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      const r = await store.sql.query('SELECT 1 FROM events WHERE gateway = $1', [gw.gateway]);
      expect(r.rows).toEqual([]);
    });
  });
}
