import type { Client } from 'aedes';
import mqtt from 'mqtt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EdgeAgent } from '../agent.ts';
import { createFakeStore } from '../test-support/fake-store.ts';
import { device, FakeCloud, sleep, startTestEdge, until } from '../test-support/harness.ts';
import { backoffDelay } from './backoff.ts';
import { BDSEQ_KEY } from './index.ts';

let cloud: FakeCloud;
let agent: EdgeAgent | undefined;

beforeEach(async () => {
  cloud = new FakeCloud();
  await cloud.start();
});
afterEach(async () => {
  // Everything the edge sent matched the protocol schemas.
  expect(cloud.invalid).toEqual([]);
  await agent?.close();
  agent = undefined;
  await cloud.close();
});

const telemetry = (id: string) => JSON.stringify({ id, metrics: { n: 1 } });
const alarm = (id: string) => JSON.stringify({ id, code: 'TEMP_HIGH', severity: 'warning', active: true });

/** Cuts the agent's cloud connection from the broker side (as a network fault would). */
function dropGatewayLink(): void {
  const c = (cloud.broker as unknown as { clients: Record<string, Client> }).clients['gw-1'];
  (c?.conn as { destroy(): void } | undefined)?.destroy();
}

describe('uplink', () => {
  it('keeps events until the cloud acks, and replays from the ack after a reconnect [OUTBOX-ACK-2]', async () => {
    cloud.autoAck = false;
    const store = createFakeStore();
    agent = await startTestEdge(cloud, {}, { store });
    await until(() => agent!.status().uplink.connected, 3000, 'uplink');
    const d = await device(agent, 'fridge-1');
    for (let i = 0; i < 5; i++)
      await d.publishAsync('dev/fridge-1/evt/telemetry', telemetry(`k${i}`), { qos: 1 });
    await until(() => cloud.events('telemetry').length === 5, 3000, 'five events in cloud');
    // Broker PUBACKs came back; no ack: nothing is forgotten.
    await sleep(100);
    expect(store.outbox.stats().lanes.telemetry.depth).toBe(5);
    expect(store.outbox.acked('telemetry')).toBe(0);

    // The cloud committed the first 3 only, then the link drops.
    const batchesBefore = cloud.batches.length;
    for (const s of [4, 5]) cloud.stored.telemetry!.delete(s);
    cloud.ack('sl/v1/store-1/gw-1', store.outbox.epoch);
    await until(() => store.outbox.acked('telemetry') === 3, 3000, 'ack 3');
    expect(store.outbox.stats().lanes.telemetry.depth).toBe(2);
    dropGatewayLink();
    await until(
      () => agent!.status().uplink.reconnects >= 1 && agent!.status().uplink.connected,
      5000,
      'reconnect',
    );
    // Replay starts right after the ack: seq 4 and 5 again, nothing at or below 3.
    await until(() => cloud.events('telemetry').length === 5, 3000, 'replayed');
    const resent = cloud.batches
      .slice(batchesBefore)
      .flatMap((b) => b.events.filter((e) => e.lane === 'telemetry'));
    expect(resent.map((e) => e.seq).filter((s) => s <= 3)).toEqual([]);
    expect(resent.map((e) => e.seq)).toContain(4);
    await d.endAsync();
  });

  it('drains tx before event before telemetry [UPLINK-ORDER-1]', async () => {
    const store = createFakeStore();
    agent = await startTestEdge(cloud, { cloud: { url: 'mqtt://127.0.0.1:1', username: 'gw-1' } }, { store });
    // Offline: build a backlog in all lanes.
    const d = await device(agent, 'fridge-1');
    for (let i = 0; i < 3; i++)
      await d.publishAsync('dev/fridge-1/evt/telemetry', telemetry(`t${i}`), { qos: 1 });
    for (let i = 0; i < 2; i++)
      await d.publishAsync('dev/fridge-1/evt/device.alarm', alarm(`a${i}`), { qos: 1 });
    await store.outbox.append({
      id: '01JD0QB4M3Z7Y5X2W1V0T9S8R7',
      type: 'command.result',
      device: 'gw-1',
      gateway: 'gw-1',
      site: 'store-1',
      ts: 1,
      rts: 1,
      lane: 'tx',
      payload: {
        commandId: '01JD0QB4M3Z7Y5X2W1V0T9S8R7',
        type: 'ping',
        status: 'ok',
        receivedAt: 1,
        completedAt: 1,
      },
    });
    await d.endAsync();
    await agent.close();
    agent = await startTestEdge(cloud, {}, { store });
    await until(() => cloud.events().length >= 7, 5000, 'backlog delivered');
    const order = cloud.batches.flatMap((b) => b.events.map((e) => e.lane));
    const firstTelemetry = order.indexOf('telemetry');
    expect(order[0]).toBe('tx');
    expect(order.lastIndexOf('event')).toBeLessThan(firstTelemetry);
    // Batches carry floors for every lane.
    expect(Object.keys(cloud.batches[0]!.floors).sort()).toEqual(['event', 'telemetry', 'tx']);
  });

  it('bounds batches by batchMaxEvents and window by inflightBatches (ack, not PUBACK)', async () => {
    cloud.autoAck = false;
    const store = createFakeStore();
    agent = await startTestEdge(
      cloud,
      {
        cloud: {
          url: cloud.url,
          username: 'gw-1',
          batchMaxEvents: 2,
          inflightBatches: 2,
          retransmitMs: 60_000,
        },
      },
      { store },
    );
    await until(() => agent!.status().uplink.connected, 3000, 'uplink');
    const d = await device(agent, 'fridge-1');
    for (let i = 0; i < 10; i++)
      await d.publishAsync('dev/fridge-1/evt/telemetry', telemetry(`b${i}`), { qos: 1 });
    await sleep(200);
    // 2 batches of at most 2 events each, then the window is full until an ack.
    expect(cloud.batches.length).toBe(2);
    expect(cloud.batches.every((b) => b.events.length <= 2)).toBe(true);
    cloud.ack('sl/v1/store-1/gw-1', store.outbox.epoch);
    await until(() => cloud.batches.length >= 3, 3000, 'window reopened by ack');
    await d.endAsync();
  });

  it('keeps batches under batchMaxBytes', async () => {
    const store = createFakeStore();
    agent = await startTestEdge(
      cloud,
      { cloud: { url: 'mqtt://127.0.0.1:1', username: 'gw-1', batchMaxBytes: 2048, batchMaxEvents: 500 } },
      { store },
    );
    const d = await device(agent, 'fridge-1');
    const big = (i: number) => JSON.stringify({ id: `big${i}`, metrics: { pad: 'x'.repeat(200) } });
    for (let i = 0; i < 20; i++) await d.publishAsync('dev/fridge-1/evt/telemetry', big(i), { qos: 1 });
    await d.endAsync();
    await agent.close();
    agent = await startTestEdge(
      cloud,
      { cloud: { url: cloud.url, username: 'gw-1', batchMaxBytes: 2048, batchMaxEvents: 500 } },
      { store },
    );
    await until(() => cloud.events('telemetry').length === 20, 5000, 'all delivered');
    expect(cloud.batches.length).toBeGreaterThan(3);
    expect(Math.max(...cloud.batchBytes)).toBeLessThanOrEqual(2048);
    expect(cloud.events('telemetry').map((e) => e.seq)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  });

  it('resends from the ack when an ack is lost [OUTBOX-ACK-2]', async () => {
    cloud.dropAcks = 1;
    const store = createFakeStore();
    agent = await startTestEdge(
      cloud,
      { cloud: { url: cloud.url, username: 'gw-1', retransmitMs: 300 } },
      { store },
    );
    await until(() => agent!.status().uplink.connected, 3000, 'uplink');
    // The online event is the first batch; its ack is lost.
    const d = await device(agent, 'fridge-1');
    await until(() => cloud.batches.length >= 1, 3000, 'first batch');
    await until(() => store.outbox.acked('event') >= 1, 3000, 'acked after resend');
    expect(agent.status().uplink.retransmits).toBeGreaterThanOrEqual(1);
    const sentOnline = cloud.batches.flatMap((b) => b.events).filter((e) => e.type === 'device.online');
    expect(sentOnline.length).toBeGreaterThanOrEqual(2);
    expect(new Set(sentOnline.map((e) => e.seq)).size).toBe(1);
    await d.endAsync();
  });

  it('ignores acks for another outbox epoch [OUTBOX-EPOCH-1]', async () => {
    cloud.autoAck = false;
    const store = createFakeStore();
    agent = await startTestEdge(cloud, {}, { store });
    const d = await device(agent, 'fridge-1');
    await until(() => cloud.events('event').length === 1, 3000, 'online sent');
    cloud.ack('sl/v1/store-1/gw-1', '01JD0M2V9J0C4W6Y8Z1A3B5D7F');
    await sleep(150);
    expect(store.outbox.acked('event')).toBe(0);
    await d.endAsync();
  });

  it('increments and persists bdSeq before every connect; birth and will carry it [PRESENCE-BDSEQ-1]', async () => {
    const kv = new Map<string, string>();
    const store1 = createFakeStore(Date.now, kv);
    agent = await startTestEdge(cloud, {}, { store: store1 });
    await until(() => cloud.states.some((s) => s.payload.state === 'online'), 3000, 'birth');
    const birth1 = cloud.states.find((s) => s.payload.state === 'online')!;
    // Retained: a subscriber arriving later still learns the gateway is online.
    const late = await mqtt.connectAsync(cloud.url, { clientId: 'late' });
    const retained = await new Promise<{ retain: boolean; body: Record<string, unknown> }>((r) => {
      late.on('message', (_t, p, pk) => r({ retain: pk.retain, body: JSON.parse(p.toString()) }));
      void late.subscribeAsync('sl/v1/store-1/gw-1/state', { qos: 1 });
    });
    await late.endAsync();
    expect(retained).toMatchObject({ retain: true, body: { state: 'online', bdSeq: 1 } });
    expect(birth1.payload).toMatchObject({
      v: 1,
      bdSeq: 1,
      gateway: 'gw-1',
      site: 'store-1',
      epoch: store1.outbox.epoch,
    });
    expect(kv.get(BDSEQ_KEY)).toBe('1');

    // A network fault: the cloud broker publishes the will, with the session's bdSeq.
    dropGatewayLink();
    await until(() => cloud.states.some((s) => s.payload.state === 'offline'), 3000, 'will');
    expect(cloud.states.find((s) => s.payload.state === 'offline')!.payload.bdSeq).toBe(1);
    await until(() => cloud.states.filter((s) => s.payload.state === 'online').length === 2, 5000, 'rebirth');
    expect(cloud.states.filter((s) => s.payload.state === 'online')[1]!.payload.bdSeq).toBe(2);

    // A graceful stop publishes offline explicitly with the current bdSeq.
    await agent.close();
    await until(() => cloud.states.at(-1)?.payload.state === 'offline', 3000, 'graceful offline');
    expect(cloud.states.at(-1)!.payload.bdSeq).toBe(2);

    // Restart with the same KV: bdSeq continues.
    agent = await startTestEdge(cloud, {}, { store: createFakeStore(Date.now, kv) });
    await until(() => cloud.states.at(-1)?.payload.state === 'online', 3000, 'third birth');
    expect(cloud.states.at(-1)!.payload.bdSeq).toBe(3);
    expect(kv.get(BDSEQ_KEY)).toBe('3');
  });

  it('a bdSeq that cannot be persisted is retried with backoff and never used unpersisted [UPLINK-BDSEQ-2]', async () => {
    const kv = new Map<string, string>();
    const store = createFakeStore(Date.now, kv);
    const put = store.kv.put.bind(store.kv);
    let failures = 3;
    store.kv.put = async (key, value, opts) => {
      if (key === BDSEQ_KEY && failures > 0) {
        failures--;
        throw new Error('IO error: 000012.log: No space left on device');
      }
      return put(key, value, opts);
    };
    // Starting does not throw although the first persist fails.
    agent = await startTestEdge(cloud, {}, { store });
    expect(agent.status().uplink).toMatchObject({ connected: false });
    expect(agent.status().uplink.bdSeqPersistFailures).toBeGreaterThanOrEqual(1);
    expect(agent.status().uplink.bdSeqPersistError).toMatch(/No space/);
    await until(() => agent!.status().uplink.connected, 8000, 'connected once the persist works');
    expect(agent.status().uplink).toMatchObject({
      bdSeq: 1,
      bdSeqPersistFailures: 3,
      bdSeqPersistError: null,
    });
    // No session ran with an unpersisted number: the first birth carries the persisted 1.
    expect(cloud.states.map((s) => s.payload.bdSeq)).toEqual([1]);
    expect(kv.get(BDSEQ_KEY)).toBe('1');
  });

  it('reconnects with backoff while the cloud refuses, and publishes heartbeats', async () => {
    cloud.gate(() => false);
    const store = createFakeStore();
    agent = await startTestEdge(cloud, {}, { store });
    await until(() => agent!.status().uplink.reconnects >= 2, 5000, 'retries');
    expect(agent.status().uplink.connected).toBe(false);
    cloud.gate(null);
    await until(() => agent!.status().uplink.connected, 5000, 'connected');
    await until(() => cloud.heartbeats.length >= 1, 3000, 'heartbeat');
    expect(cloud.heartbeats[0]).toMatchObject({ v: 1, gateway: 'gw-1', bdSeq: agent.status().uplink.bdSeq });
  });
});

describe('backoffDelay', () => {
  it('grows exponentially within [min, max] with full jitter', () => {
    expect(backoffDelay(0, 100, 10_000, () => 0)).toBe(100);
    expect(backoffDelay(3, 100, 10_000, () => 1)).toBe(800);
    expect(backoffDelay(20, 100, 10_000, () => 1)).toBe(10_000);
    expect(backoffDelay(20, 100, 10_000, () => 0)).toBe(100);
    for (let i = 0; i < 50; i++) {
      const v = backoffDelay(5, 100, 1000);
      expect(v).toBeGreaterThanOrEqual(100);
      expect(v).toBeLessThanOrEqual(1000);
    }
  });
});
