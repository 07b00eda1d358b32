import { type GatewayState, gatewayTopic, newId } from '@storelink/protocols';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CloudApp, startCloud } from '../index.ts';
import { connectGateway, type FakeGateway, silentLogger, tempDir, waitFor } from '../test-support.ts';
import { batchOf, presenceEvent, telemetryEvent } from '../testing.ts';
import { derivePresence, type FleetPresence, type PresencePolicy } from './presence.ts';
import type { PresenceRow } from './provisioning.ts';

const POLICY: PresencePolicy = { heartbeatTimeoutMs: 35_000, stallAfterMs: 60_000 };
const T0 = 1_763_900_000_000;

const row = (over: Partial<PresenceRow> = {}): PresenceRow => ({
  id: 'gw',
  site: 's',
  name: null,
  state: 'online',
  bdSeq: 3,
  onlineSince: T0,
  lastHeardAt: T0,
  lastSeen: T0,
  heartbeat: { at: T0, devicesOnline: ['d1'], outbox: { depth: 0, oldestAgeMs: 0 } },
  lastProgressAt: T0,
  revokedAt: null,
  ...over,
});
const hb = (depth: number) => ({
  at: T0,
  devicesOnline: [],
  outbox: { depth, oldestAgeMs: depth ? 5000 : 0 },
});

describe('derivePresence [PRESENCE-STATE-1] [PRESENCE-STALL-1]', () => {
  const cases: [string, PresenceRow, number, Pick<FleetPresence, 'state' | 'reason'>][] = [
    ['fresh heartbeat, nothing waiting', row(), T0 + 10_000, { state: 'online', reason: null }],
    ['no heartbeat within the timeout', row(), T0 + 35_001, { state: 'stalled', reason: 'no_heartbeat' }],
    [
      'backlog and no watermark progress for stallAfterMs',
      row({ lastHeardAt: T0 + 60_000, heartbeat: hb(10) }),
      T0 + 60_001,
      { state: 'stalled', reason: 'backlog_not_draining' },
    ],
    [
      'backlog but the watermark moved recently',
      row({ lastHeardAt: T0 + 60_000, lastProgressAt: T0 + 59_000, heartbeat: hb(10) }),
      T0 + 60_001,
      { state: 'online', reason: null },
    ],
    [
      'backlog right after a new birth (grace from onlineSince)',
      row({
        lastHeardAt: T0 + 90_000,
        lastProgressAt: T0 - 86_400_000,
        onlineSince: T0 + 80_000,
        heartbeat: hb(10),
      }),
      T0 + 90_001,
      { state: 'online', reason: null },
    ],
    ['offline stays offline', row({ state: 'offline' }), T0, { state: 'offline', reason: null }],
    ['never born', row({ state: 'unknown', heartbeat: null }), T0, { state: 'unknown', reason: null }],
    ['revoked beats online', row({ revokedAt: T0 }), T0, { state: 'revoked', reason: null }],
  ];
  it.each(cases)('%s', (_name, r, now, want) => {
    expect(derivePresence(r, POLICY, now)).toMatchObject(want);
  });

  it('never calls a gateway online that is not online in the store, nor revoked one anything else', () => {
    fc.assert(
      fc.property(
        fc.constantFrom<PresenceRow['state']>('unknown', 'online', 'offline'),
        fc.option(fc.integer({ min: 0, max: 10 ** 6 })),
        fc.option(fc.integer({ min: 0, max: 10 ** 6 })),
        fc.integer({ min: 0, max: 1000 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 10 ** 6 }),
        (state, heard, progress, depth, revoked, dt) => {
          const r = row({
            state,
            lastHeardAt: heard === null ? null : T0 + heard,
            lastProgressAt: progress === null ? null : T0 + progress,
            heartbeat: hb(depth),
            revokedAt: revoked ? T0 : null,
          });
          const p = derivePresence(r, POLICY, T0 + dt);
          if (revoked) return p.state === 'revoked';
          if (state !== 'online') return p.state === state && p.devicesOnline.length === 0;
          return p.state === 'online' || p.state === 'stalled';
        },
      ),
    );
  });
});

describe('presence over the real broker', () => {
  let cloud: CloudApp;
  const tmp = tempDir();
  /** The cloud's clock: real time plus a skew the test moves forward. */
  let skew = 0;
  const GW = { gateway: 'gw-s', site: 's1' };
  let password = '';

  beforeAll(async () => {
    cloud = await startCloud(
      {
        dataDir: tmp.dir,
        http: { host: '127.0.0.1', port: 0 },
        broker: { mode: 'embedded', host: '127.0.0.1', port: 0 },
      },
      { logger: silentLogger(), now: () => Date.now() + skew },
    );
    const r = await fetch(`${cloud.httpUrl}/api/v1/gateways/gw-s/provision`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ site: 's1', devices: [{ id: 'fridge-1' }, { id: 'door-1' }] }),
    });
    expect(r.status).toBe(201);
    password = ((await r.json()) as { password: string }).password;
  });

  afterAll(async () => {
    await cloud?.close();
    tmp.remove();
  });

  const state = (s: 'online' | 'offline', bdSeq: number): GatewayState => ({
    v: 1,
    state: s,
    bdSeq,
    ...GW,
    at: Date.now(),
  });
  const connect = (bdSeq: number) =>
    connectGateway(cloud.brokerUrl, {
      username: GW.gateway,
      password,
      clientId: GW.gateway,
      will: {
        topic: gatewayTopic(GW, 'state'),
        payload: Buffer.from(JSON.stringify(state('offline', bdSeq))),
        qos: 1,
        retain: true,
      },
    });
  const presence = async () => {
    const r = await fetch(`${cloud.httpUrl}/api/v1/gateways/gw-s/presence`);
    return (await r.json()) as FleetPresence & {
      devices: { id: string; registered: boolean; online: boolean | null }[];
    };
  };
  const heartbeat = (g: FakeGateway, bdSeq: number, depth: number) =>
    g.client.publishAsync(
      gatewayTopic(GW, 'hb'),
      JSON.stringify({
        v: 1,
        ...GW,
        at: Date.now(),
        bdSeq,
        uptimeS: 1,
        devicesOnline: ['fridge-1'],
        outbox: { depth, bytes: depth * 100, oldestAgeMs: depth ? 70_000 : 0, lanes: {} },
      }),
      { qos: 0 },
    );
  const metric = async (name: string, labels: Record<string, string>) => {
    const m = (await cloud.metrics.registry.getSingleMetric(name)?.get())?.values ?? [];
    return m
      .filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))
      .reduce((a, v) => a + v.value, 0);
  };

  it('a stale death after a reconnect never marks the live gateway offline [PRESENCE-BDSEQ-1]', async () => {
    const a = await connect(1);
    await a.client.publishAsync(gatewayTopic(GW, 'state'), JSON.stringify(state('online', 1)), {
      qos: 1,
      retain: true,
    });
    await waitFor(async () => (await presence()).state === 'online', 'online 1');
    const stale = await metric('storelink_cloud_gateway_states_total', {
      state: 'offline',
      applied: 'false',
    });
    // Session 2 takes the client id over: session 1's will (bdSeq 1) goes out around it.
    const b = await connect(2);
    await b.client.publishAsync(gatewayTopic(GW, 'state'), JSON.stringify(state('online', 2)), {
      qos: 1,
      retain: true,
    });
    await waitFor(async () => (await presence()).bdSeq === 2, 'online 2');
    // And a late copy of session 1's death after the birth of 2.
    await b.client.publishAsync(gatewayTopic(GW, 'state'), JSON.stringify(state('offline', 1)), { qos: 1 });
    await waitFor(
      async () =>
        (await metric('storelink_cloud_gateway_states_total', { state: 'offline', applied: 'false' })) >
        stale,
      'the stale death to be judged',
    );
    await cloud.idle();
    expect(await presence()).toMatchObject({ state: 'online', bdSeq: 2 });

    // Heartbeats: outbox depth and oldest age are shown; a backlog that does not drain is `stalled`.
    await heartbeat(b, 2, 5);
    await waitFor(async () => (await presence()).outboxDepth === 5, 'the heartbeat');
    expect(await presence()).toMatchObject({
      state: 'online',
      oldestEventAgeMs: 70_000,
      devicesOnline: ['fridge-1'],
    });
    skew += 61_000;
    await heartbeat(b, 2, 5);
    await waitFor(async () => (await presence()).reason === 'backlog_not_draining', 'stalled (backlog)');
    expect((await presence()).state).toBe('stalled');

    // The backlog moves: a committed batch advances the watermark; online again. The batch
    // also carries a device's presence, reported by the edge.
    const epoch = newId();
    await b.client.publishAsync(
      gatewayTopic(GW, 'up'),
      JSON.stringify(
        batchOf(GW, epoch, [presenceEvent(GW, 1, 'fridge-1', true), presenceEvent(GW, 2, 'cam-9', false)]),
      ),
      { qos: 1 },
    );
    await b.client.publishAsync(
      gatewayTopic(GW, 'up'),
      JSON.stringify(batchOf(GW, epoch, [telemetryEvent(GW, 1)])),
      { qos: 1 },
    );
    await waitFor(async () => (await presence()).state === 'online', 'online after progress');
    expect((await presence()).devices).toEqual([
      expect.objectContaining({ id: 'cam-9', registered: false, online: false }),
      expect.objectContaining({ id: 'door-1', registered: true, online: null }),
      expect.objectContaining({ id: 'fridge-1', registered: true, online: true }),
    ]);

    // Silence past the heartbeat timeout: stalled, not online, although no death came.
    skew += 36_000;
    expect(await presence()).toMatchObject({ state: 'stalled', reason: 'no_heartbeat' });
    // The scrape-time gauge counts the fleet the same way.
    expect(await metric('storelink_cloud_fleet_gateways', { state: 'stalled' })).toBe(1);
    expect(await metric('storelink_cloud_fleet_gateways', { state: 'online' })).toBe(0);
    const listed = await fetch(`${cloud.httpUrl}/api/v1/fleet/presence?state=stalled`);
    expect(((await listed.json()) as { items: { gateway: string }[] }).items.map((g) => g.gateway)).toEqual([
      'gw-s',
    ]);

    // Session 2 dies without DISCONNECT: its will is the current death.
    b.client.stream.destroy();
    await waitFor(async () => (await presence()).state === 'offline', 'offline');
    expect(await presence()).toMatchObject({ state: 'offline', bdSeq: 2, devicesOnline: [] });
    await a.close();
    await b.close();
  });
});
