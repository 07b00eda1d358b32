import { connect as tcpConnect } from 'node:net';
import { registerEventType } from '@storelink/protocols';
import { Type } from '@sinclair/typebox';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EdgeAgent } from '../agent.ts';
import { createFakeStore } from '../test-support/fake-store.ts';
import { device, FakeCloud, sleep, startTestEdge, until } from '../test-support/harness.ts';

// A device-sourced tx-lane type, as a payment capability would register [LANE-1].
registerEventType('test.payment', {
  lane: 'tx',
  source: 'device',
  payload: Type.Object(
    { id: Type.Optional(Type.String()), amount: Type.Integer() },
    { additionalProperties: false },
  ),
  description: 'test-only tx event',
});

let cloud: FakeCloud;
let agent: EdgeAgent | undefined;
let store: ReturnType<typeof createFakeStore>;
const clients: MqttClient[] = [];

beforeEach(async () => {
  cloud = new FakeCloud();
  await cloud.start();
  store = createFakeStore();
});
afterEach(async () => {
  expect(cloud.invalid).toEqual([]);
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true).catch(() => undefined)));
  await agent?.close();
  agent = undefined;
  await cloud.close();
});

async function dev(id: string, opts: Parameters<typeof device>[2] = {}): Promise<MqttClient> {
  const c = await device(agent!, id, opts);
  clients.push(c);
  return c;
}

async function metric(name: string): Promise<string> {
  const text = await agent!.metrics.registry.metrics();
  return text
    .split('\n')
    .filter((l) => l.startsWith(name))
    .join('\n');
}

function errors(c: MqttClient, id: string): Promise<Array<Record<string, string>>> {
  const got: Array<Record<string, string>> = [];
  c.on('message', (topic, payload) => {
    if (topic === `dev/${id}/err`) got.push(JSON.parse(payload.toString()));
  });
  return c.subscribeAsync(`dev/${id}/err`, { qos: 1 }).then(() => got);
}

const telemetry = (id: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ id, metrics: { tempC: 4.2 }, ...extra });

describe('device authentication', () => {
  beforeEach(async () => {
    agent = await startTestEdge(cloud, {}, { store });
  });

  it('refuses a wrong password with return code 4 and counts it', async () => {
    const err = await device(agent!, 'fridge-1', { password: 'wrong' }).catch(
      (e: Error & { code?: number }) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect((err as { code?: number }).code).toBe(4);
    const unknown = await mqtt
      .connectAsync(`mqtt://127.0.0.1:${agent!.brokerPort}`, {
        username: 'nobody',
        password: 'x',
        reconnectPeriod: 0,
      })
      .catch((e: Error & { code?: number }) => e);
    expect((unknown as { code?: number }).code).toBe(4);
    expect(await metric('storelink_edge_auth_failures_total')).toMatch(/reason="bad_password"} 1/);
    expect(await metric('storelink_edge_auth_failures_total')).toMatch(/reason="unknown_device"} 1/);
  });

  it('accepts a scrypt password hash', async () => {
    await agent!.close();
    const { hashDevicePassword } = await import('./auth.ts');
    agent = await startTestEdge(
      cloud,
      { devices: [{ id: 'fridge-1', passwordHash: hashDevicePassword('s3cret', 1024) }] },
      { store: createFakeStore() },
    );
    const ok = await dev('fridge-1', { password: 's3cret' });
    expect(ok.connected).toBe(true);
    const bad = await device(agent, 'fridge-1', { password: 'nope', clientId: 'other' }).catch(
      (e: Error) => e,
    );
    expect(bad).toBeInstanceOf(Error);
  });
});

describe('device ACL', () => {
  beforeEach(async () => {
    agent = await startTestEdge(cloud, {}, { store });
  });

  it('closes a device publishing outside its subtree, counts it, and others keep flowing', async () => {
    const bad = await dev('fridge-1');
    const good = await dev('fridge-2');
    const closed = new Promise<void>((r) => bad.once('close', () => r()));
    bad.publish('dev/fridge-2/evt/telemetry', telemetry('x1'), { qos: 1 });
    await closed;
    await good.publishAsync('dev/fridge-2/evt/telemetry', telemetry('g1'), { qos: 1 });
    expect(store.controls.appended.filter((e) => e.type === 'telemetry').map((e) => e.device)).toEqual([
      'fridge-2',
    ]);
    expect(await metric('storelink_edge_acl_denied_total')).toMatch(/kind="publish"} 1/);
  });

  it('refuses commands-to-self and error topics as publish targets', async () => {
    const c = await dev('fridge-1');
    const closed = new Promise<void>((r) => c.once('close', () => r()));
    c.publish('dev/fridge-1/cmd/ping', '{}', { qos: 1 });
    await closed;
    expect(await metric('storelink_edge_acl_denied_total')).toMatch(/kind="publish"} 1/);
  });

  it('answers a foreign subscription with SUBACK 0x80 and keeps the connection', async () => {
    const c = await dev('fridge-1');
    const refused = await c.subscribeAsync('dev/fridge-2/#', { qos: 1 }).catch((e: Error) => e);
    expect(refused).toBeInstanceOf(Error); // MQTT.js reports the SUBACK 0x80 as an error
    expect((refused as Error & { packet?: { granted: number[] } }).packet?.granted).toEqual([128]);
    await c.subscribeAsync('#', { qos: 1 }).catch(() => undefined);
    const granted = await c.subscribeAsync('dev/fridge-1/cmd/#', { qos: 1 });
    expect(granted.map((g) => g.qos)).toEqual([1]);
    expect(c.connected).toBe(true);
    await c.publishAsync('dev/fridge-1/evt/telemetry', telemetry('s1'), { qos: 1 });
    expect(await metric('storelink_edge_acl_denied_total')).toMatch(/kind="subscribe"} 2/);
  });
});

describe('device input errors', () => {
  beforeEach(async () => {
    agent = await startTestEdge(cloud, {}, { store });
  });

  it('PUBACKs bad input, stores nothing, publishes a coded error, stays connected', async () => {
    const c = await dev('fridge-1');
    const got = await errors(c, 'fridge-1');
    await c.publishAsync('dev/fridge-1/evt/telemetry', '{not json', { qos: 1 });
    await c.publishAsync('dev/fridge-1/evt/no.such_type', telemetry('u1'), { qos: 1 });
    await c.publishAsync('dev/fridge-1/evt/telemetry', JSON.stringify({ metrics: { tempC: [1] } }), {
      qos: 1,
    });
    await c.publishAsync('dev/fridge-1/evt/telemetry', 'x'.repeat(17 * 1024), { qos: 1 });
    await c.publishAsync('dev/fridge-1/evt/device.online', JSON.stringify({ reason: 'connected' }), {
      qos: 1,
    });
    await until(() => got.length === 5, 3000, 'five coded errors');
    expect(got.map((e) => e.code)).toEqual([
      'PROTO_ERR_MALFORMED_JSON',
      'PROTO_ERR_UNKNOWN_TYPE',
      'PROTO_ERR_SCHEMA',
      'PROTO_ERR_OVERSIZE',
      'PROTO_ERR_UNKNOWN_TYPE',
    ]);
    expect(got[2]).toMatchObject({ topic: 'dev/fridge-1/evt/telemetry' });
    expect(got[2]!.message).toContain('/metrics/tempC');
    expect(got[0]!.fix).toBeTruthy();
    expect(c.connected).toBe(true);
    // Nothing was stored from the device (only the agent's own presence event).
    expect(
      store.controls.appended.filter((e) => e.device === 'fridge-1' && e.type !== 'device.online'),
    ).toEqual([]);
    await c.publishAsync('dev/fridge-1/evt/telemetry', telemetry('ok1'), { qos: 1 });
    expect(store.controls.appended.some((e) => e.mid === 'ok1')).toBe(true);
    expect(await metric('storelink_edge_rejected_total')).toMatch(/code="PROTO_ERR_SCHEMA"} 1/);
  });

  it('retains a device state document but refuses an oversize one', async () => {
    const c = await dev('fridge-1');
    const got = await errors(c, 'fridge-1');
    await c.publishAsync('dev/fridge-1/state', JSON.stringify({ fw: '1.2' }), { qos: 1, retain: true });
    await c.publishAsync('dev/fridge-1/state', 'x'.repeat(17 * 1024), { qos: 1, retain: true });
    await until(() => got.length === 1, 2000, 'oversize error');
    expect(got[0]).toMatchObject({ code: 'PROTO_ERR_OVERSIZE', topic: 'dev/fridge-1/state' });
    const c2 = await dev('fridge-1', { clientId: 'fridge-1-state' });
    const docs: string[] = [];
    c2.on('message', (_t, p) => docs.push(p.toString()));
    await c2.subscribeAsync('dev/fridge-1/state', { qos: 1 });
    await until(() => docs.length === 1, 2000, 'retained state');
    expect(JSON.parse(docs[0]!)).toEqual({ fw: '1.2' });
  });

  it('does not forward a device event (valid or not) to subscribers of the topic', async () => {
    const c = await dev('fridge-1');
    const seen: string[] = [];
    c.on('message', (t) => seen.push(t));
    await c.subscribeAsync('dev/fridge-1/evt/#', { qos: 1 });
    await c.publishAsync('dev/fridge-1/evt/telemetry', '{bad', { qos: 1, retain: true });
    await c.publishAsync('dev/fridge-1/evt/telemetry', telemetry('f1'), { qos: 1 });
    await sleep(100);
    expect(seen).toEqual([]);
    // Nor is anything retained for a later subscriber.
    const c2 = await dev('fridge-1', { clientId: 'fridge-1-b' });
    const seen2: string[] = [];
    c2.on('message', (t) => seen2.push(t));
    await c2.subscribeAsync('dev/fridge-1/evt/#', { qos: 1 });
    await sleep(100);
    expect(seen2).toEqual([]);
  });
});

describe('PUBACK means stored [OUTBOX-WRITE-1]', () => {
  beforeEach(async () => {
    agent = await startTestEdge(cloud, {}, { store });
  });

  it('withholds PUBACK while the outbox append is pending', async () => {
    const c = await dev('fridge-1');
    await until(() => store.controls.appended.some((e) => e.type === 'device.online'), 2000, 'online');
    store.controls.hold = true;
    let acked = false;
    const p = c.publishAsync('dev/fridge-1/evt/telemetry', telemetry('h1'), { qos: 1 }).then(() => {
      acked = true;
    });
    await sleep(150);
    expect(acked).toBe(false);
    expect(store.controls.appended.some((e) => e.mid === 'h1')).toBe(false);
    store.controls.release();
    await p;
    expect(acked).toBe(true);
    expect(store.controls.appended.some((e) => e.mid === 'h1')).toBe(true);
  });

  it('closes the connection without PUBACK when a tx event cannot be stored', async () => {
    store.controls.capacity.tx = 0;
    const c = await dev('fridge-1', { reconnectPeriod: 0 });
    let acked = false;
    const closed = new Promise<void>((r) => c.once('close', () => r()));
    c.publish(
      'dev/fridge-1/evt/test.payment',
      JSON.stringify({ id: 'p1', amount: 150 }),
      { qos: 1 },
      (err) => {
        if (!err) acked = true;
      },
    );
    await closed;
    await sleep(50);
    expect(acked).toBe(false);
    expect(await metric('storelink_edge_rejected_total')).toMatch(/code="EDGE_ERR_OUTBOX_FULL"} 1/);
    // Other devices are unaffected.
    const other = await dev('fridge-2');
    await other.publishAsync('dev/fridge-2/evt/telemetry', telemetry('o1'), { qos: 1 });
  });

  it('acknowledges and counts a telemetry event the full outbox had to drop', async () => {
    store.controls.capacity.telemetry = 0;
    const c = await dev('fridge-1');
    const got = await errors(c, 'fridge-1');
    await c.publishAsync('dev/fridge-1/evt/telemetry', telemetry('t1'), { qos: 1 });
    await until(() => got.length === 1, 2000, 'error');
    expect(got[0]!.code).toBe('EDGE_ERR_OUTBOX_FULL');
    expect(c.connected).toBe(true);
  });
});

describe('presence and transports', () => {
  beforeEach(async () => {
    agent = await startTestEdge(cloud, { broker: { host: '127.0.0.1', port: 0, wsPort: 0 } }, { store });
  });

  const presence = () =>
    store.controls.appended
      .filter((e) => e.type.startsWith('device.o'))
      .map((e) => `${e.device}:${e.type}:${(e.payload as { reason: string }).reason}`);

  it('records online and offline, and a take-over makes no offline after the new online', async () => {
    const a = await dev('fridge-1');
    await until(() => presence().length === 1, 2000, 'online');
    const b = await dev('fridge-1'); // same client id: takes over
    await until(() => !a.connected, 2000, 'old connection closed');
    await sleep(100);
    const p = presence();
    expect(p[0]).toBe('fridge-1:device.online:connected');
    expect(p.at(-1)).toBe('fridge-1:device.online:connected');
    if (p.length > 2) expect(p[1]).toBe('fridge-1:device.offline:taken_over');
    await b.endAsync();
    await until(() => presence().at(-1) === 'fridge-1:device.offline:disconnected', 2000, 'offline');
    expect(agent!.status().devices.find((d) => d.id === 'fridge-1')!.online).toBe(false);
  });

  it('reports keepalive_timeout for a device that goes silent', async () => {
    // A hand-built MQTT 3.1.1 CONNECT with keepalive 1 s, then silence (no PINGREQ).
    const str = (v: string) => {
      const b = Buffer.from(v);
      return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
    };
    const body = Buffer.concat([
      str('MQTT'),
      Buffer.from([4, 0xc2, 0, 1]), // level 4; flags: username, password, clean; keepalive 1
      str('silent-1'),
      str('fridge-2'),
      str('pw-fridge-2'),
    ]);
    const sock = tcpConnect(agent!.brokerPort, '127.0.0.1');
    sock.on('error', () => undefined);
    sock.write(Buffer.concat([Buffer.from([0x10, body.length]), body]));
    await until(() => presence().includes('fridge-2:device.online:connected'), 2000, 'online');
    await until(() => presence().includes('fridge-2:device.offline:keepalive_timeout'), 4000, 'timeout');
    sock.destroy();
  });

  it('accepts a device over WebSocket', async () => {
    expect(agent!.wsPort).toBeGreaterThan(0);
    const c = await dev('display-1', { ws: true });
    await c.publishAsync('dev/display-1/evt/telemetry', telemetry('w1'), { qos: 1 });
    expect(store.controls.appended.some((e) => e.mid === 'w1' && e.device === 'display-1')).toBe(true);
    const bad = await device(agent!, 'display-1', { ws: true, password: 'wrong', clientId: 'x' }).catch(
      (e: Error) => e,
    );
    expect(bad).toBeInstanceOf(Error);
  });

  it('reports agent_restart for devices online when the agent stops', async () => {
    await dev('fridge-2');
    await until(() => presence().length === 1, 2000, 'online');
    await agent!.close();
    agent = undefined;
    expect(presence().at(-1)).toBe('fridge-2:device.offline:agent_restart');
  });
});
