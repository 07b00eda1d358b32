import { type Ack, gatewayTopic, type GatewayState, newId, type UplinkBatch } from '@storelink/protocols';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedBroker } from '../broker.ts';
import { type CloudApp, startCloud } from '../index.ts';
import { createCloudMetrics } from '../metrics.ts';
import { hashPassword } from '../passwords.ts';
import type { CloudStore, IngestResult } from '../store/store.ts';
import { connectGateway, type FakeGateway, silentLogger, sleep, tempDir, waitFor } from '../test-support.ts';
import { batchOf, commandResultEvent, presenceEvent, telemetryEvent, telemetryRun } from '../testing.ts';
import { IngestService } from './service.ts';

/**
 * Ingest against a real embedded broker, with raw mqtt.js clients acting as gateways:
 * the bytes on the wire are the contract.
 */

const GW1 = { gateway: 'gw-1', site: 's1' };
const GW2 = { gateway: 'gw-2', site: 's1' };
const PASSWORD = 'gw-secret';

let cloud: CloudApp;
const tmp = tempDir();
const metric = async (name: string, labels: Record<string, string> = {}) => {
  const m = (await cloud.metrics.registry.getSingleMetric(name)?.get())?.values ?? [];
  return m
    .filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))
    .reduce((a, v) => a + v.value, 0);
};

beforeAll(async () => {
  cloud = await startCloud(
    {
      dataDir: tmp.dir,
      http: { host: '127.0.0.1', port: 0 },
      broker: { mode: 'embedded', host: '127.0.0.1', port: 0 },
      gateways: [
        { id: GW1.gateway, site: GW1.site, password: PASSWORD },
        { id: GW2.gateway, site: GW2.site, password: PASSWORD },
      ],
    },
    { logger: silentLogger() },
  );
});

afterAll(async () => {
  await cloud?.close();
  tmp.remove();
});

/** A gateway subscribed to its own ack and cmd topics. */
async function gateway(gw = GW1, extra: Record<string, unknown> = {}): Promise<FakeGateway> {
  const g = await connectGateway(cloud.brokerUrl, { username: gw.gateway, password: PASSWORD, ...extra });
  await g.client.subscribeAsync([gatewayTopic(gw, 'ack'), gatewayTopic(gw, 'cmd')], { qos: 1 });
  return g;
}

async function send(g: FakeGateway, batch: UplinkBatch | string, gw = GW1) {
  await g.client.publishAsync(
    gatewayTopic(gw, 'up'),
    typeof batch === 'string' ? batch : JSON.stringify(batch),
    {
      qos: 1,
    },
  );
}

const ackOf = (g: FakeGateway, epoch: string, pred: (a: Ack) => boolean = () => true) =>
  waitFor(() => g.acks().find((a) => a.epoch === epoch && pred(a)), `an ack for ${epoch}`);

describe('ingest over MQTT', () => {
  it('acks the committed watermark; a resent batch takes effect exactly once', async () => {
    const g = await gateway();
    const epoch = newId();
    const batch = batchOf(GW1, epoch, telemetryRun(GW1, 1, 10), { telemetry: 1 });
    await send(g, batch);
    const ack = await ackOf(g, epoch, (a) => a.acks.telemetry === 10);
    expect(ack).toMatchObject({ v: 1, epoch, acks: { telemetry: 10 } });
    const dupsBefore = await metric('storelink_cloud_ingest_duplicates_total');
    await send(g, batch);
    await waitFor(() => g.acks().filter((a) => a.epoch === epoch).length >= 2, 'a second ack');
    expect(
      g
        .acks()
        .filter((a) => a.epoch === epoch)
        .map((a) => a.acks),
    ).toEqual([{ telemetry: 10 }, { telemetry: 10 }]);
    expect(await cloud.store.laneCounts(GW1.gateway)).toContainEqual(
      expect.objectContaining({ epoch, lane: 'telemetry', stored: 10, acked: 10 }),
    );
    expect((await metric('storelink_cloud_ingest_duplicates_total')) - dupsBefore).toBe(10);
    await g.close();
  });

  it('the ack is retained: a reconnecting gateway learns its watermark at once', async () => {
    const g = await gateway();
    const epoch = newId();
    await send(g, batchOf(GW1, epoch, telemetryRun(GW1, 1, 3)));
    await ackOf(g, epoch);
    await g.close();
    const again = await gateway();
    const retained = await waitFor(() => again.acks()[0], 'the retained ack');
    expect(retained).toMatchObject({ epoch, acks: { telemetry: 3 } });
    await again.close();
  });

  it('floors turn a missing range into a dropped_at_edge gap and move the watermark', async () => {
    const g = await gateway();
    const epoch = newId();
    await send(g, batchOf(GW1, epoch, telemetryRun(GW1, 1, 5)));
    await ackOf(g, epoch, (a) => a.acks.telemetry === 5);
    // 6..20 expired at the edge; it now holds 21.. and says so.
    await send(g, batchOf(GW1, epoch, telemetryRun(GW1, 21, 5), { telemetry: 21 }));
    await ackOf(g, epoch, (a) => a.acks.telemetry === 25);
    expect(await cloud.store.listGaps(GW1.gateway, { epoch })).toMatchObject([
      { lane: 'telemetry', fromSeq: 6, toSeq: 20, reason: 'dropped_at_edge' },
    ]);
    expect(
      await metric('storelink_cloud_ingest_gap_seqs_total', { lane: 'telemetry' }),
    ).toBeGreaterThanOrEqual(15);
    await g.close();
  });

  it('an out-of-order batch is stored but the watermark waits at the hole until the replay', async () => {
    const g = await gateway();
    const epoch = newId();
    const holesBefore = await metric('storelink_cloud_ingest_in_transit_holes_total');
    await send(g, batchOf(GW1, epoch, [telemetryEvent(GW1, 1), telemetryEvent(GW1, 2)]));
    await send(g, batchOf(GW1, epoch, [telemetryEvent(GW1, 5), telemetryEvent(GW1, 6)]));
    await waitFor(() => g.acks().filter((a) => a.epoch === epoch).length >= 2, 'two acks');
    expect(
      g
        .acks()
        .filter((a) => a.epoch === epoch)
        .map((a) => a.acks.telemetry),
    ).toEqual([2, 2]);
    expect((await metric('storelink_cloud_ingest_in_transit_holes_total')) - holesBefore).toBe(1);
    // The edge replays from the watermark: 3..6.
    await send(g, batchOf(GW1, epoch, telemetryRun(GW1, 3, 4)));
    await ackOf(g, epoch, (a) => a.acks.telemetry === 6);
    const ev = await cloud.store.laneEvents({
      gateway: GW1.gateway,
      epoch,
      lane: 'telemetry',
      after: 0,
      limit: 100,
    });
    expect(ev.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    await g.close();
  });

  it('a new epoch starts fresh watermarks; its acks carry only the new epoch', async () => {
    const g = await gateway();
    const e1 = newId();
    await send(g, batchOf(GW1, e1, telemetryRun(GW1, 1, 50)));
    await ackOf(g, e1, (a) => a.acks.telemetry === 50);
    const e2 = newId();
    await send(g, batchOf(GW1, e2, telemetryRun(GW1, 1, 2), { tx: 1 }));
    const ack = await ackOf(g, e2);
    expect(ack).toMatchObject({ epoch: e2, acks: { telemetry: 2, tx: 0 } });
    await g.close();
  });

  it('refuses invalid batches without acking them, and keeps ingesting', async () => {
    const g = await gateway();
    const epoch = newId();
    const rejected = () => metric('storelink_cloud_ingest_rejected_total', { channel: 'up' });
    const before = await rejected();
    await send(g, '{ not json');
    await send(g, JSON.stringify({ v: 1, gateway: 'gw-1' }));
    // a batch naming another gateway than its topic
    await send(g, { ...batchOf(GW2, epoch, telemetryRun(GW2, 1, 1)) });
    // a device.online with a payload the cloud cannot interpret
    await send(
      g,
      batchOf(GW1, epoch, [{ ...presenceEvent(GW1, 1, 'd', true), payload: { reason: 'bored' } }]),
    );
    // two different events under one seq
    const twin = { ...telemetryEvent(GW1, 1), id: newId() };
    await send(g, batchOf(GW1, epoch, [telemetryEvent(GW1, 1), twin]));
    await waitFor(async () => (await rejected()) - before === 5, 'five rejections');
    expect(await metric('storelink_cloud_ingest_rejected_total', { code: 'PROTO_ERR_MALFORMED_JSON' })).toBe(
      1,
    );
    expect(await metric('storelink_cloud_ingest_rejected_total', { code: 'PROTO_ERR_SCHEMA' })).toBe(2);
    // and the stream carries on
    await send(g, batchOf(GW1, epoch, telemetryRun(GW1, 1, 3)));
    const ack = await ackOf(g, epoch);
    expect(ack.acks).toEqual({ telemetry: 3 });
    expect(g.acks().filter((a) => a.epoch === epoch)).toHaveLength(1);
    await g.close();
  });

  it('presence and command results apply in the ingest transaction', async () => {
    const g = await gateway();
    const epoch = newId();
    const cmd = await cloud.sendCommand({ gateway: GW1.gateway, type: 'ping', payload: { echo: 'x' } });
    expect(cmd.status).toBe('sent');
    const delivered = await waitFor(() => g.received.find((m) => m.topic.endsWith('/cmd')), 'the command');
    expect(JSON.parse(delivered.payload)).toMatchObject({ id: cmd.id, type: 'ping', payload: { echo: 'x' } });
    await send(
      g,
      batchOf(GW1, epoch, [
        presenceEvent(GW1, 1, 'vend-1', true),
        commandResultEvent(GW1, 1, { commandId: cmd.id, status: 'ok', result: { echo: 'x' } }),
      ]),
    );
    await ackOf(g, epoch, (a) => a.acks.tx === 1 && a.acks.event === 1);
    expect(await cloud.store.getCommand(cmd.id)).toMatchObject({ status: 'ok', result: { echo: 'x' } });
    expect((await cloud.store.getCommand(cmd.id))?.rttMs).toBeGreaterThanOrEqual(0);
    expect(await cloud.store.listDevices({ gateway: GW1.gateway, online: true })).toContainEqual(
      expect.objectContaining({ id: 'vend-1', online: true }),
    );
    expect(await metric('storelink_cloud_command_rtt_seconds')).toBeGreaterThan(0);
    await g.close();
  });
});

describe('broker policy', () => {
  it('refuses a wrong password and an unknown gateway', async () => {
    const before = await metric('storelink_cloud_broker_refused_total', { reason: 'auth' });
    await expect(
      connectGateway(cloud.brokerUrl, { username: GW1.gateway, password: 'nope' }),
    ).rejects.toThrow(/Bad username or Password|bad user name/i);
    await expect(
      connectGateway(cloud.brokerUrl, { username: 'gw-ghost', password: PASSWORD }),
    ).rejects.toThrow();
    expect((await metric('storelink_cloud_broker_refused_total', { reason: 'auth' })) - before).toBe(2);
  });

  it('a gateway may not publish to or read another gateway’s topics', async () => {
    const g = await gateway(GW1);
    const refusedPub = await metric('storelink_cloud_broker_refused_total', { reason: 'acl_subscribe' });
    // SUBACK 0x80 (mqtt.js turns it into a rejection); the connection stays up
    await expect(g.client.subscribeAsync(gatewayTopic(GW2, 'cmd'), { qos: 1 })).rejects.toThrow(
      /Subscribe error/,
    );
    await expect(g.client.subscribeAsync('sl/v1/+/+/ack', { qos: 1 })).rejects.toThrow(/Subscribe error/);
    expect(g.client.connected).toBe(true);
    expect(
      (await metric('storelink_cloud_broker_refused_total', { reason: 'acl_subscribe' })) - refusedPub,
    ).toBe(2);

    const epoch = newId();
    const closed = new Promise<void>((r) => g.client.once('close', () => r()));
    g.client.publish(gatewayTopic(GW2, 'up'), JSON.stringify(batchOf(GW2, epoch, telemetryRun(GW2, 1, 1))), {
      qos: 1,
    });
    await closed; // [MQTT-3.3.5-2] the broker drops a client that publishes where it may not
    expect(
      await metric('storelink_cloud_broker_refused_total', { reason: 'acl_publish' }),
    ).toBeGreaterThanOrEqual(1);
    await sleep(50);
    await cloud.idle();
    expect((await cloud.store.laneCounts(GW2.gateway)).find((c) => c.epoch === epoch)).toBeUndefined();
    await g.close();
  });

  it('a gateway cannot take over another identity’s client id', async () => {
    const g2 = await connectGateway(cloud.brokerUrl, {
      username: GW2.gateway,
      password: PASSWORD,
      clientId: 'shared-id',
    });
    await expect(
      connectGateway(cloud.brokerUrl, { username: GW1.gateway, password: PASSWORD, clientId: 'shared-id' }),
    ).rejects.toThrow(/Identifier rejected/i);
    expect(g2.client.connected).toBe(true);
    await g2.close();
  });
});

describe('gateway presence [PRESENCE-BDSEQ-1]', () => {
  const state = (s: 'online' | 'offline', bdSeq: number): GatewayState => ({
    v: 1,
    state: s,
    bdSeq,
    gateway: GW2.gateway,
    site: GW2.site,
    at: Date.now(),
  });
  const connect = (bdSeq: number) =>
    connectGateway(cloud.brokerUrl, {
      username: GW2.gateway,
      password: PASSWORD,
      clientId: 'gw-2-edge',
      will: {
        topic: gatewayTopic(GW2, 'state'),
        payload: Buffer.from(JSON.stringify(state('offline', bdSeq))),
        qos: 1,
        retain: true,
      },
    });
  const presence = async () => (await cloud.store.getGateway(GW2.gateway))!.presence;

  it('a stale death never marks a live gateway offline; the current session’s death does', async () => {
    const a = await connect(1);
    await a.client.publishAsync(gatewayTopic(GW2, 'state'), JSON.stringify(state('online', 1)), {
      qos: 1,
      retain: true,
    });
    await waitFor(
      async () => (await presence()).bdSeq === 1 && (await presence()).state === 'online',
      'online 1',
    );
    // Session 2 takes over the client id; session 1's will goes out around the birth of 2.
    const b = await connect(2);
    await b.client.publishAsync(gatewayTopic(GW2, 'state'), JSON.stringify(state('online', 2)), {
      qos: 1,
      retain: true,
    });
    await waitFor(async () => (await presence()).bdSeq === 2, 'online 2');
    // A late copy of session 1's death changes nothing.
    await b.client.publishAsync(gatewayTopic(GW2, 'state'), JSON.stringify(state('offline', 1)), { qos: 1 });
    await sleep(50);
    await cloud.idle();
    expect(await presence()).toMatchObject({ state: 'online', bdSeq: 2 });
    expect(
      await metric('storelink_cloud_gateway_states_total', { state: 'offline', applied: 'false' }),
    ).toBeGreaterThanOrEqual(1);
    // Heartbeats update the gateway's figures.
    await b.client.publishAsync(
      gatewayTopic(GW2, 'hb'),
      JSON.stringify({
        v: 1,
        gateway: GW2.gateway,
        site: GW2.site,
        at: Date.now(),
        bdSeq: 2,
        uptimeS: 1,
        devicesOnline: ['d1'],
        outbox: { depth: 4, bytes: 400, oldestAgeMs: 12, lanes: {} },
      }),
      { qos: 0 },
    );
    await waitFor(async () => (await presence()).heartbeat !== null, 'the heartbeat');
    expect((await presence()).heartbeat).toMatchObject({
      devicesOnline: ['d1'],
      outbox: { depth: 4, oldestAgeMs: 12 },
    });
    // Session 2 dies without DISCONNECT: its will is the current death.
    b.client.stream.destroy();
    await waitFor(async () => (await presence()).state === 'offline', 'offline');
    expect(await presence()).toMatchObject({ state: 'offline', bdSeq: 2 });
    await a.close();
    await b.close();
  });
});

describe('acknowledgement only after commit [OUTBOX-ACK-2]', () => {
  let store: CloudStore;
  let broker: Awaited<ReturnType<typeof startEmbeddedBroker>>;
  let ingest: IngestService;
  const gate: { release: () => void; fail: boolean } = { release: () => undefined, fail: false };

  beforeAll(async () => {
    // The cloud's store, but a broker and an ingest of their own: the cloud's ingest
    // does not hear this broker.
    store = cloud.store;
    await store.upsertGateway({ id: 'gw-c', site: 's', passwordHash: await hashPassword(PASSWORD) }, 1);
    const metrics = createCloudMetrics();
    const logger = silentLogger();
    const service = { username: 'svc', password: 'svc-secret' };
    broker = await startEmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      service,
      credentials: (id) => store.getGatewayCredentials(id),
      metrics,
      logger,
    });
    // A store whose commit we hold open, or make fail.
    const held = Object.create(store) as CloudStore;
    held.ingestBatch = async (b, at): Promise<IngestResult> => {
      await new Promise<void>((r) => {
        gate.release = r;
      });
      if (gate.fail) throw new Error('disk full');
      return store.ingestBatch(b, at);
    };
    ingest = await IngestService.start({
      broker: { url: broker.url, ...service },
      store: held,
      metrics,
      logger,
    });
  });
  afterAll(async () => {
    await ingest?.close();
    await broker?.close();
  });

  it('publishes nothing while the transaction is open or when it fails; acks after it commits', async () => {
    const gw = { gateway: 'gw-c', site: 's' };
    const g = await connectGateway(broker.url, { username: 'gw-c', password: PASSWORD });
    await g.client.subscribeAsync(gatewayTopic(gw, 'ack'), { qos: 1 });
    const epoch = newId();
    const batch = JSON.stringify(batchOf(gw, epoch, telemetryRun(gw, 1, 4)));

    gate.fail = true;
    await g.client.publishAsync(gatewayTopic(gw, 'up'), batch, { qos: 1 });
    await sleep(100);
    expect(g.acks()).toEqual([]);
    gate.release();
    await ingest.idle();
    expect(g.acks()).toEqual([]); // a failed commit is never acknowledged

    gate.fail = false;
    await g.client.publishAsync(gatewayTopic(gw, 'up'), batch, { qos: 1 });
    await sleep(100);
    expect(g.acks()).toEqual([]); // committed? not yet
    gate.release();
    const ack = await waitFor(() => g.acks()[0], 'the ack');
    expect(ack).toMatchObject({ epoch, acks: { telemetry: 4 } });
    expect(await store.laneCounts('gw-c')).toMatchObject([{ epoch, stored: 4, acked: 4 }]);
    await g.close();
  });
});

describe('bounded ingest queue (maxPendingBytes)', () => {
  let broker: Awaited<ReturnType<typeof startEmbeddedBroker>>;
  let ingest: IngestService;
  const releases: (() => void)[] = [];
  const heartbeatsRecorded: number[] = [];
  let qMetrics: ReturnType<typeof createCloudMetrics>;
  const coalesced = async () =>
    ((await qMetrics.registry.getSingleMetric('storelink_cloud_heartbeats_total')?.get())?.values ?? [])
      .filter((v) => v.labels.applied === 'coalesced')
      .reduce((a, v) => a + v.value, 0);

  beforeAll(async () => {
    const store = cloud.store;
    await store.upsertGateway({ id: 'gw-q', site: 's', passwordHash: await hashPassword(PASSWORD) }, 1);
    const metrics = createCloudMetrics();
    qMetrics = metrics;
    const logger = silentLogger();
    const service = { username: 'svc', password: 'svc-secret' };
    broker = await startEmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      service,
      credentials: (id) => store.getGatewayCredentials(id),
      metrics,
      logger,
    });
    // Every commit is held until the test lets it go.
    const held = Object.create(store) as CloudStore;
    held.ingestBatch = async (b, at): Promise<IngestResult> => {
      await new Promise<void>((r) => releases.push(r));
      return store.ingestBatch(b, at);
    };
    held.recordHeartbeat = async (hb, at) => {
      heartbeatsRecorded.push(hb.uptimeS);
      await new Promise<void>((r) => releases.push(r));
      return store.recordHeartbeat(hb, at);
    };
    ingest = await IngestService.start({
      broker: { url: broker.url, ...service },
      store: held,
      metrics,
      logger,
      maxPendingBytes: 1000,
    });
  });
  afterAll(async () => {
    await ingest?.close();
    await broker?.close();
  });

  it('stops reading (its PUBACK withheld) while received payloads exceed the byte bound', async () => {
    const gw = { gateway: 'gw-q', site: 's' };
    const g = await connectGateway(broker.url, { username: 'gw-q', password: PASSWORD });
    await g.client.subscribeAsync(gatewayTopic(gw, 'ack'), { qos: 1 });
    const epoch = newId();
    const big = (from: number) => JSON.stringify(batchOf(gw, epoch, telemetryRun(gw, from, 10)));
    expect(Buffer.byteLength(big(1))).toBeGreaterThan(1000);
    // (The gateway's own PUBACK comes from the broker; what waits is the ingest's.)
    await g.client.publishAsync(gatewayTopic(gw, 'up'), big(1), { qos: 1 });
    await g.client.publishAsync(gatewayTopic(gw, 'up'), big(11), { qos: 1 });
    await waitFor(() => releases.length === 1, 'the first batch to reach the store');
    await sleep(150);
    // One batch over the bound: its PUBACK waits and the second is not even read.
    expect(ingest.queued.messages).toBe(1);
    expect(ingest.queued.bytes).toBe(Buffer.byteLength(big(1)));
    expect(releases.length).toBe(1);
    releases.shift()!();
    await waitFor(() => releases.length === 1, 'the second batch to reach the store');
    expect(ingest.queued.messages).toBe(1);
    releases.shift()!();
    const ack = await waitFor(
      () => g.acks().find((a: Ack) => a.acks.telemetry === 20),
      'the ack of both batches',
    );
    expect(ack).toMatchObject({ epoch });
    await waitFor(() => ingest.queued.messages === 0 && ingest.queued.bytes === 0, 'an empty queue');
    await g.close();
  });

  it('[INGEST-HB-1] a heartbeat waits in the queue at most once per gateway: newer ones replace it', async () => {
    const gw = { gateway: 'gw-q', site: 's' };
    const g = await connectGateway(broker.url, { username: 'gw-q', password: PASSWORD });
    heartbeatsRecorded.length = 0;
    const before = await coalesced();
    const beat = (uptimeS: number) =>
      g.client.publishAsync(
        gatewayTopic(gw, 'hb'),
        JSON.stringify({
          v: 1,
          ...gw,
          at: Date.now(),
          bdSeq: 0,
          uptimeS,
          devicesOnline: [],
          outbox: { depth: 0, bytes: 0, oldestAgeMs: 0, lanes: {} },
        }),
        { qos: 0 },
      );
    await beat(1);
    await waitFor(() => releases.length === 1, 'the first heartbeat to reach the store (held there)');
    for (let i = 2; i <= 6; i++) await beat(i);
    // #2 waits in the queue; #3..#6 each replace it there.
    await waitFor(async () => (await coalesced()) - before === 4, 'four heartbeats coalesced');
    expect(ingest.queued.messages).toBe(2);
    releases.shift()!();
    await waitFor(() => releases.length === 1, 'the queued heartbeat to reach the store');
    expect(heartbeatsRecorded).toEqual([1, 6]);
    releases.shift()!();
    await waitFor(() => ingest.queued.messages === 0, 'an empty queue');
    await g.close();
  });
});
