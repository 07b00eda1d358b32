import { type EventEnvelope, type Heartbeat, type Lane, newId } from '@storelink/protocols';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { build } from '../http/app.ts';
import { createCloudMetrics } from '../metrics.ts';
import { openStore } from '../store/index.ts';
import type { SqlCloudStore } from '../store/sql-store.ts';
import { type AlertKind, DEFAULT_THRESHOLDS, offlineObservation } from './alerts.ts';
import { type Alerts, gatewayView, startAlerts } from './alerts-service.ts';
import { signWebhook, verifyWebhook } from './webhooks.ts';
import { startWebhookReceiver, type WebhookReceiver } from './webhooks-receiver.ts';

const T0 = Date.UTC(2026, 10, 23, 8, 0, 0);
const GW = 'gw-1';
const SITE = 's1';

describe('fleet alerts over the real ingest path (PGlite)', () => {
  let store: SqlCloudStore;
  let alerts: Alerts;
  let receiver: WebhookReceiver;
  const metrics = createCloudMetrics();
  let now = T0;
  const clock = () => now;
  const epoch = newId(T0);
  const seq: Record<Lane, number> = { tx: 0, event: 0, telemetry: 0 };

  /** Stores one batch through SqlCloudStore.ingestBatch, so the alert hook runs in its transaction. */
  async function ingest(events: Array<{ type: string; device: string; lane: Lane; payload: unknown }>) {
    const evs: EventEnvelope[] = events.map((e) => ({
      id: newId(now),
      type: e.type,
      device: e.device,
      gateway: GW,
      site: SITE,
      ts: now,
      rts: now,
      lane: e.lane,
      seq: ++seq[e.lane],
      payload: e.payload,
    }));
    const batch = { v: 1 as const, gateway: GW, site: SITE, epoch, sentAt: now, floors: {}, events: evs };
    await store.ingestBatch(batch, now);
    return batch;
  }
  const temp = (device: string, tempC: number, door: 'open' | 'closed' = 'closed') => ({
    type: 'telemetry',
    device,
    lane: 'telemetry' as const,
    payload: { metrics: { tempC, door, compressor: false } },
  });
  const list = (q: { state?: 'active' | 'cleared'; kind?: AlertKind }) =>
    alerts.engine.list({ limit: 100, gateway: GW, ...q });
  const metric = async (name: string, labels: Record<string, string>) => {
    const m = (await metrics.registry.getSingleMetric(name)?.get())?.values ?? [];
    return m.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))?.value ?? 0;
  };

  beforeAll(async () => {
    store = (await openStore({ kind: 'pglite' })) as SqlCloudStore;
    await store.upsertGateway({ id: GW, site: SITE, passwordHash: 'x' }, T0);
    alerts = await startAlerts({
      store,
      metrics,
      now: clock,
      config: { sweepIntervalMs: 0, deliverIntervalMs: 0, webhookMaxAttempts: 3, webhookBackoffBaseMs: 1000 },
    });
    receiver = await startWebhookReceiver({ secret: 'receiver-secret-0123456789', now: clock });
    await alerts.webhooks.create({ url: receiver.url, secret: 'receiver-secret-0123456789' });
  }, 120_000); // PGlite start + every migration: slow on a loaded 2-core machine
  afterAll(async () => {
    await alerts?.close();
    await receiver?.close();
    await store?.close();
  });
  beforeEach(() => {
    now += 60_000;
  });

  it('a warm fridge raises one temperature alert, repeats refresh it, back in range clears it [ALERT-DEDUPE-1]', async () => {
    await ingest([temp('fridge-1', 4.1)]);
    expect(await list({ kind: 'temperature' })).toEqual([]);
    await ingest([temp('fridge-1', 11.5)]);
    now += 1000;
    await ingest([temp('fridge-1', 11.8), temp('fridge-1', 11.9)]);
    const active = await list({ state: 'active', kind: 'temperature' });
    expect(active).toHaveLength(1);
    expect(active[0]).toMatchObject({
      subject: 'fridge-1',
      severity: 'warning',
      occurrences: 3,
      value: 11.9,
      lastSeenAt: now,
    });
    expect(active[0]!.message).toContain('above the 8 °C limit');
    // In the hysteresis band (above max - margin): still active.
    await ingest([temp('fridge-1', 7.8)]);
    expect(await list({ state: 'active', kind: 'temperature' })).toHaveLength(1);
    await ingest([temp('fridge-1', 5.0)]);
    expect(await list({ state: 'active', kind: 'temperature' })).toEqual([]);
    const [cleared] = await list({ state: 'cleared', kind: 'temperature' });
    expect(cleared).toMatchObject({
      id: active[0]!.id,
      clearedAt: now,
      clearReason: '5.0 °C, back in range',
    });
    expect(await metric('storelink_cloud_alerts_raised_total', { kind: 'temperature' })).toBe(1);
    expect(await metric('storelink_cloud_alerts_cleared_total', { kind: 'temperature' })).toBe(1);

    // Signed webhooks: exactly one raised and one cleared delivery for the alert [ALERT-HOOK-1].
    expect(await alerts.deliver()).toBe(2);
    expect(receiver.badSignatures).toBe(0);
    expect(receiver.received.map((r) => [r.event, r.body.alert.id, r.body.alert.state])).toEqual([
      ['alert.raised', active[0]!.id, 'active'],
      ['alert.cleared', active[0]!.id, 'cleared'],
    ]);
    expect(await alerts.deliver()).toBe(0);
  });

  it('a resent batch (duplicates) moves no alert twice', async () => {
    const b = await ingest([temp('fridge-2', 15)]);
    await store.ingestBatch(b, now);
    const [a] = await list({ state: 'active', kind: 'temperature' });
    expect(a).toMatchObject({ subject: 'fridge-2', occurrences: 1 });
    await ingest([temp('fridge-2', 4)]);
  });

  it('a door open longer than doorOpenMs raises at the sweep; closing clears [ALERT-DOOR-1]', async () => {
    await ingest([temp('fridge-3', 4, 'open')]);
    now += DEFAULT_THRESHOLDS.doorOpenMs - 1000;
    await ingest([temp('fridge-3', 4.5, 'open')]); // still open: the timer is not restarted
    await alerts.sweep();
    expect(await list({ state: 'active', kind: 'door_open' })).toEqual([]);
    now += 2000;
    await alerts.sweep();
    const [door] = await list({ state: 'active', kind: 'door_open' });
    expect(door).toMatchObject({ subject: 'fridge-3', value: DEFAULT_THRESHOLDS.doorOpenMs + 1000 });
    await alerts.sweep();
    expect(await list({ kind: 'door_open' })).toHaveLength(1);
    await ingest([temp('fridge-3', 4.5, 'closed')]);
    expect(await list({ state: 'active', kind: 'door_open' })).toEqual([]);
  });

  it('vend failures in a row raise at the threshold; a dispensed vend clears [ALERT-VEND-1]', async () => {
    const vend = (outcome: 'failed' | 'dispensed') => ({
      type: 'vend.result',
      device: 'vend-1',
      lane: 'tx' as const,
      payload: {
        orderId: `ord-${newId(now).slice(-8)}`,
        outcome,
        slot: 1,
        ...(outcome === 'failed' ? { reason: 'no_drop' } : {}),
      },
    });
    await ingest([vend('failed'), vend('failed')]);
    expect(await list({ kind: 'vend_failures' })).toEqual([]);
    await ingest([vend('failed')]);
    const [a] = await list({ state: 'active', kind: 'vend_failures' });
    expect(a).toMatchObject({ subject: 'vend-1', value: 3, severity: 'critical' });
    expect(a!.message).toContain('last: no_drop');
    await ingest([vend('dispensed')]);
    expect(await list({ state: 'active', kind: 'vend_failures' })).toEqual([]);
    await ingest([vend('failed')]); // the count restarted
    expect(await list({ state: 'active', kind: 'vend_failures' })).toEqual([]);
  });

  it('low stock per slot, tag battery per tag, machine temperature in deci-degrees', async () => {
    await ingest([
      {
        type: 'vend.telemetry',
        device: 'vend-1',
        lane: 'telemetry',
        payload: { kind: 'stock', slot: 3, count: 1 },
      },
      {
        type: 'vend.telemetry',
        device: 'vend-1',
        lane: 'telemetry',
        payload: { kind: 'stock', slot: 4, count: 9 },
      },
      {
        type: 'vend.telemetry',
        device: 'vend-1',
        lane: 'telemetry',
        payload: { kind: 'temperature', deciCelsius: 134 },
      },
      {
        type: 'esl.tag_status',
        device: 'esl-ap-1',
        lane: 'telemetry',
        payload: {
          tags: [
            {
              tag: '0000000000000A01',
              ap: 'esl-ap-1',
              batteryMv: 2300,
              temperature: 20,
              rssi: -60,
              lastCheckin: now,
            },
            {
              tag: '0000000000000A02',
              ap: 'esl-ap-1',
              batteryMv: 2900,
              temperature: 20,
              rssi: -60,
              lastCheckin: now,
            },
          ],
        },
      },
    ]);
    const active = await list({ state: 'active' });
    expect(active.map((a) => [a.kind, a.subject]).sort()).toEqual([
      ['low_stock', 'vend-1/slot-3'],
      ['tag_battery_low', '0000000000000A01'],
      ['temperature', 'vend-1'],
    ]);
    await ingest([
      {
        type: 'vend.telemetry',
        device: 'vend-1',
        lane: 'telemetry',
        payload: { kind: 'stock', slot: 3, count: 20 },
      },
      {
        type: 'vend.telemetry',
        device: 'vend-1',
        lane: 'telemetry',
        payload: { kind: 'temperature', deciCelsius: 40 },
      },
    ]);
    expect((await list({ state: 'active' })).map((a) => a.kind)).toEqual(['tag_battery_low']);
  });

  it('upload backlog from the heartbeat, aged by the cloud clock; an empty outbox clears [ALERT-BACKLOG-1]', async () => {
    const hb = (depth: number, oldestAgeMs: number): Heartbeat => ({
      v: 1,
      gateway: GW,
      site: SITE,
      at: now,
      bdSeq: 1,
      uptimeS: 100,
      devicesOnline: [],
      outbox: { depth, bytes: depth * 100, oldestAgeMs, lanes: {} },
    });
    expect(await store.recordHeartbeat(hb(500, DEFAULT_THRESHOLDS.backlogAgeMs - 60_000), now)).toBe(true);
    await alerts.sweep();
    expect(await list({ state: 'active', kind: 'upload_backlog' })).toEqual([]);
    now += 61_000; // no newer heartbeat: the oldest event is older by the time since
    await store.recordHeartbeat({ ...hb(0, 0), at: now - 61_000 }, now - 61_000); // stale order is not a concern here
    await store.recordHeartbeat(hb(500, DEFAULT_THRESHOLDS.backlogAgeMs + 1000), now);
    await alerts.sweep();
    const [a] = await list({ state: 'active', kind: 'upload_backlog' });
    expect(a!.message).toContain('500 events waiting');
    now += 5000;
    await store.recordHeartbeat(hb(0, 0), now);
    await alerts.sweep();
    expect(await list({ state: 'active', kind: 'upload_backlog' })).toEqual([]);
    expect(await metric('storelink_cloud_alerts_active', { kind: 'upload_backlog' })).toBe(0);
  });

  it('offline: a death older than offlineAfterMs, or silence; never-seen gateways are not down [ALERT-OFFLINE-1]', async () => {
    const t = DEFAULT_THRESHOLDS;
    const base = { id: GW, site: SITE, backlog: null };
    expect(
      offlineObservation({ ...base, state: 'unknown', stateAt: null, lastSeen: null }, t, now),
    ).toBeNull();
    expect(
      offlineObservation(
        { ...base, state: 'offline', stateAt: now - t.offlineAfterMs + 1, lastSeen: now - t.offlineAfterMs },
        t,
        now,
      ),
    ).toBeNull();
    expect(
      offlineObservation(
        { ...base, state: 'offline', stateAt: now - t.offlineAfterMs, lastSeen: null },
        t,
        now,
      ),
    ).toMatchObject({ op: 'raise', kind: 'gateway_offline', severity: 'critical' });
    expect(
      offlineObservation(
        { ...base, state: 'online', stateAt: null, lastSeen: now - t.offlineAfterMs },
        t,
        now,
      ),
    ).toMatchObject({ op: 'raise' });
    expect(
      offlineObservation({ ...base, state: 'online', stateAt: null, lastSeen: now }, t, now),
    ).toMatchObject({
      op: 'clear',
    });

    // Through the store: a death, then the sweep after offlineAfterMs.
    await store.applyGatewayState(
      { v: 1, gateway: GW, site: SITE, state: 'online', bdSeq: 2, at: now } as never,
      now,
    );
    await store.applyGatewayState(
      { v: 1, gateway: GW, site: SITE, state: 'offline', bdSeq: 2, at: now } as never,
      now,
    );
    const view = gatewayView((await store.getGateway(GW))!);
    expect(view.state).toBe('offline');
    now += t.offlineAfterMs + 1000;
    await alerts.sweep();
    expect(await list({ state: 'active', kind: 'gateway_offline' })).toHaveLength(1);
    await store.applyGatewayState(
      { v: 1, gateway: GW, site: SITE, state: 'online', bdSeq: 3, at: now } as never,
      now,
    );
    await alerts.sweep();
    expect(await list({ state: 'active', kind: 'gateway_offline' })).toEqual([]);
  });

  it('webhook deliveries retry with back-off until a 2xx, then give up after maxAttempts [ALERT-HOOK-3]', async () => {
    const flaky = await startWebhookReceiver({
      secret: 'flaky-secret-0123456789abc',
      failFirst: 2,
      now: clock,
    });
    const wrong = await startWebhookReceiver({ secret: 'not-the-secret-0123456789', now: clock });
    const hooks = [
      await alerts.webhooks.create({
        url: flaky.url,
        secret: 'flaky-secret-0123456789abc',
        kinds: ['temperature'],
      }),
      await alerts.webhooks.create({
        url: wrong.url,
        secret: 'the-real-secret-0123456789',
        kinds: ['temperature'],
      }),
    ];
    await ingest([temp('fridge-9', 20)]);
    for (let i = 0; i < 4; i++) {
      await alerts.deliver();
      now += 10_000;
    }
    expect(flaky.failed).toBe(2);
    expect(flaky.received.map((r) => r.body.alert.subject)).toEqual(['fridge-9']);
    expect(wrong.badSignatures).toBe(3);
    const d = await alerts.webhooks.deliveries({ webhookId: hooks[0]!.id, limit: 10 });
    expect(d).toMatchObject([{ status: 'delivered', attempts: 3, lastStatus: 204 }]);
    const w = await alerts.webhooks.deliveries({ webhookId: hooks[1]!.id, limit: 10 });
    expect(w).toMatchObject([{ status: 'failed', attempts: 3, lastStatus: 401, lastError: 'HTTP 401' }]);
    expect(await metric('storelink_cloud_webhook_deliveries_total', { outcome: 'failed' })).toBe(1);
    for (const h of hooks) await alerts.webhooks.remove(h.id);
    await flaky.close();
    await wrong.close();
  });

  it('signatures: HMAC over "t.body", tampering and old timestamps fail [ALERT-HOOK-2]', () => {
    const body = '{"type":"alert.raised"}';
    const sig = signWebhook('s3cret', T0, body);
    expect(sig).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    expect(verifyWebhook('s3cret', sig, body, T0 + 1000)).toBe(true);
    expect(verifyWebhook('s3cret', sig, `${body} `, T0)).toBe(false);
    expect(verifyWebhook('other', sig, body, T0)).toBe(false);
    expect(verifyWebhook('s3cret', sig, body, T0 + 10 * 60_000)).toBe(false);
    expect(verifyWebhook('s3cret', undefined, body, T0)).toBe(false);
  });

  it('HTTP: list with filters, thresholds change and are stored, bad input gets a code', async () => {
    const app = await build({
      context: {
        store,
        metrics,
        now: clock,
        sendCommand: async () => {
          throw new Error('unused');
        },
        hashPassword: async (p) => p,
      },
      alerts: { alerts },
      dashboard: {},
    });
    const get = async (url: string) => {
      const r = await app.inject({ method: 'GET', url });
      return { status: r.statusCode, body: r.json() };
    };
    const act = await get(`/api/v1/alerts?state=active&gateway=${GW}&kind=tag_battery_low`);
    expect(act.status).toBe(200);
    expect(act.body.items.map((a: { subject: string }) => a.subject)).toEqual(['0000000000000A01']);
    const one = await get(`/api/v1/alerts/${act.body.items[0].id}`);
    expect(one.body).toMatchObject({ kind: 'tag_battery_low', state: 'active' });
    expect((await get('/api/v1/alerts?kind=bogus')).body.code).toBe('CLOUD_ERR_BAD_REQUEST');
    expect((await get('/api/v1/alerts/nope')).body.code).toBe('CLOUD_ERR_NOT_FOUND');

    const put = await app.inject({
      method: 'PUT',
      url: '/api/v1/alerts/settings',
      payload: { tempMaxC: 10 },
    });
    expect(put.statusCode).toBe(200);
    expect(put.json()).toMatchObject({ tempMaxC: 10, tempMinC: 0 });
    const bad = await app.inject({
      method: 'PUT',
      url: '/api/v1/alerts/settings',
      payload: { tempMinC: 12 },
    });
    expect(bad.json()).toMatchObject({ code: 'CLOUD_ERR_BAD_REQUEST' });
    const typo = await app.inject({ method: 'PUT', url: '/api/v1/alerts/settings', payload: { tempMax: 1 } });
    expect(typo.statusCode).toBe(400);
    // The new limit is in force for ingest: 9.5 °C is no longer out of range.
    await ingest([temp('fridge-10', 9.5)]);
    expect(await list({ state: 'active', kind: 'temperature' })).toHaveLength(1); // fridge-9 only
    // ... and survives a restart (stored).
    const again = await startAlerts({
      store,
      metrics,
      now: clock,
      config: { sweepIntervalMs: 0, deliverIntervalMs: 0 },
    });
    expect(again.engine.currentThresholds.tempMaxC).toBe(10);
    await again.close();

    const ftp = await app.inject({
      method: 'POST',
      url: '/api/v1/alerts/webhooks',
      payload: { url: 'ftp://x/' },
    });
    expect(ftp.json()).toMatchObject({ code: 'CLOUD_ERR_BAD_REQUEST' });
    const dash = await app.inject({ method: 'GET', url: '/dashboard' });
    expect(dash.statusCode).toBe(200);
    expect(dash.headers['content-security-policy']).toBe("default-src 'self'");
    expect(dash.body).toContain('<script src="/dashboard/app.js">');
    expect((await app.inject({ method: 'GET', url: '/dashboard/app.js' })).statusCode).toBe(200);
    await app.close();
  });
});
