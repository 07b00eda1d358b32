/**
 * Vending end to end (issue 4: pay, then dispense exactly once): the real cloud
 * (embedded broker, PGlite, orders/payments), the real edge agent with its VMC driver on a
 * serial port, and the simulated vending board on the other end of the cable
 * (@serialport/binding-mock ports wired back to back). The buyer pays at the simulated
 * provider, which signs and POSTs the notification to the cloud; the cloud sends the
 * signed `vend.dispense` over MQTT; the edge runs it on the serial line; the board runs
 * the motor and reports the drop over the link (`vending.dropGpio: 'serial'`).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CloudApp, startCloud } from '@storelink/cloud';
import { type EdgeAgent, startEdge } from '@storelink/edge';
import {
  type CommandEnvelope,
  gatewayTopic,
  newId,
  signCommand,
  type UnsignedCommand,
} from '@storelink/protocols';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { waitFor } from '../helpers/wait.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockLink } from '../../edge/src/vending/mock-link.ts';
import { httpNotify, httpOrderApi, SimBuyer } from '../../firmware-sim/src/payment/buyer.ts';
import { SimPaymentProvider } from '../../firmware-sim/src/payment/provider.ts';
import { VmcBoard } from '../../firmware-sim/src/vmc/index.ts';

const SITE = 'vend-store';
const GW = 'gw-vend';
const SECRET = 'e2e-vending-hmac-secret';
const SLOT = 3;
const PRICE = 250;
const silent = pino({ level: 'silent' });
const service = { username: 'svc', password: 'svc-secret' };

let dir: string;
let cloud: CloudApp;
let edge: EdgeAgent;
let board: VmcBoard;
let provider: SimPaymentProvider;
let buyer: SimBuyer;
let client: mqtt.MqttClient;
const topic = gatewayTopic({ site: SITE, gateway: GW }, 'cmd');

const until = <T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 10_000) =>
  waitFor(probe, ms, what, 20);

async function api<T>(path: string): Promise<T> {
  return (await (await fetch(`${cloud.httpUrl}/api/v1${path}`)).json()) as T;
}

interface ResultEvent {
  payload: {
    commandId: string;
    status: string;
    code?: string;
    duplicate?: boolean;
    result?: { orderId?: string; outcome?: string; reason?: string; slot?: number; durationMs?: number };
  };
}

async function commandResults(commandId: string, count = 1): Promise<ResultEvent[]> {
  return until(`${count} command.result for ${commandId}`, async () => {
    const { items } = await api<{ items: ResultEvent[] }>(
      `/events?gateway=${GW}&type=command.result&limit=500`,
    );
    const mine = items.filter((e) => e.payload.commandId === commandId);
    return mine.length >= count ? mine : undefined;
  });
}

async function vendResults(orderId: string): Promise<Array<{ payload: Record<string, unknown> }>> {
  const { items } = await api<{ items: Array<{ payload: Record<string, unknown> }> }>(
    `/events?gateway=${GW}&type=vend.result&limit=500`,
  );
  return items.filter((e) => e.payload.orderId === orderId);
}

async function orderState(id: string): Promise<string> {
  return (await api<{ state: string }>(`/orders/${id}`)).state;
}

/** The cloud's own dispense command for an order (issued after the payment notification). */
async function dispenseCommandOf(orderId: string): Promise<string> {
  return until(`vend.dispense of ${orderId}`, async () => {
    const { items } = await api<{
      items: Array<{ id: string; type: string; payload?: { orderId?: string } }>;
    }>(`/commands?gateway=${GW}&limit=200`);
    return items.find((c) => c.type === 'vend.dispense' && c.payload?.orderId === orderId)?.id;
  });
}

function signedDispense(orderId: string, over: Partial<UnsignedCommand> = {}): CommandEnvelope {
  const now = Date.now();
  const unsigned: UnsignedCommand = {
    v: 1,
    id: newId(),
    type: 'vend.dispense',
    target: {},
    issuedAt: now,
    expiresAt: now + 30_000,
    payload: { orderId, slot: SLOT, priceCents: PRICE },
    ...over,
  };
  return signCommand(readFileSync(join(dir, 'cloud', 'key.pem'), 'utf8'), topic, unsigned);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'storelink-e2e-vend-'));
  cloud = await startCloud(
    {
      dataDir: join(dir, 'cloud'),
      http: { host: '127.0.0.1', port: 0 },
      broker: { mode: 'embedded', host: '127.0.0.1', port: 0 },
      store: { kind: 'pglite', dir: join(dir, 'cloud', 'pg') },
      signing: { privateKeyFile: join(dir, 'cloud', 'key.pem') },
      service,
      gateways: [{ id: GW, site: SITE, password: 'gw-secret' }],
      log: { level: 'silent' },
      payments: { providers: { wechat: { algorithm: 'hmac-sha256', key: SECRET } }, sweepIntervalMs: 0 },
    },
    { logger: silent },
  );
  const link = createMockLink('/dev/e2e-vmc-edge', '/dev/e2e-vmc-board');
  board = new VmcBoard({
    path: '/dev/e2e-vmc-board',
    binding: link.binding,
    slots: [{ item: SLOT, priceCents: PRICE, stock: 10 }],
    dropOverSerial: true,
    seed: 7,
    pollMs: 5,
    responseTimeoutMs: 60,
    motorMs: 20,
  });
  edge = await startEdge(
    {
      site: SITE,
      gateway: GW,
      dataDir: join(dir, 'edge'),
      broker: { host: '127.0.0.1', port: 0, wsPort: null },
      http: { host: '127.0.0.1', port: 0 },
      cloud: { url: cloud.brokerUrl, username: GW, password: 'gw-secret', publicKeyPem: cloud.publicKeyPem },
      heartbeatMs: 200,
      log: { level: 'silent' },
      vending: {
        serialPath: '/dev/e2e-vmc-edge',
        slots: [SLOT],
        dropGpio: 'serial',
        dropWindowMs: 300,
        linkTimeoutMs: 1500,
        reopenMinMs: 20,
        reopenMaxMs: 100,
      },
    },
    { logger: silent, binding: link.binding },
  );
  await board.start();
  await until('the board polls the edge', () => edge.status().vending?.link.up);
  // A command published before the edge subscribed is not queued for it.
  await until('the edge reaches the cloud', () => edge.status().uplink.connected);
  provider = new SimPaymentProvider({
    algorithm: 'hmac-sha256',
    key: SECRET,
    now: Date.now,
    deliver: httpNotify(cloud.httpUrl),
  });
  buyer = new SimBuyer(httpOrderApi(cloud.httpUrl), provider);
  client = await mqtt.connectAsync(cloud.brokerUrl, {
    ...service,
    clientId: 'e2e-vend-svc',
    reconnectPeriod: 0,
  });
}, 60_000);

afterAll(async () => {
  await client?.endAsync();
  await board?.stop();
  await edge?.close();
  await cloud?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function pay(): Promise<string> {
  const { order, payment } = await buyer.buy({ gateway: GW, slot: SLOT, amountCents: PRICE });
  expect(payment?.ok).toBe(true);
  await provider.tick(Date.now());
  expect(provider.trades.get(order.id)!.acknowledged).toBe(true);
  return order.id;
}

describe('vending end to end: pay, then dispense exactly once', () => {
  it('a paid order drops the item once; the command ends ok with outcome dispensed', async () => {
    const vendsBefore = board.counters.vends;
    const orderId = await pay();
    await until('order dispensed', async () => (await orderState(orderId)) === 'dispensed');
    const commandId = await dispenseCommandOf(orderId);
    const [r] = await commandResults(commandId);
    expect(r!.payload).toMatchObject({
      status: 'ok',
      result: { orderId, outcome: 'dispensed', slot: SLOT },
    });
    expect(r!.payload.result!.durationMs).toBeGreaterThanOrEqual(0);
    expect(r!.payload.duplicate).toBeUndefined();
    const vr = await until('vend.result in the cloud', async () => (await vendResults(orderId))[0]);
    expect(vr.payload).toMatchObject({
      orderId,
      commandId,
      outcome: 'dispensed',
      slot: SLOT,
      dropSeen: true,
    });
    expect(board.counters.vends - vendsBefore).toBe(1);
    expect(board.counters.drops).toBe(1);
    expect(board.slots.get(SLOT)!.stock).toBe(9);
    const st = edge.status().vending!;
    expect(st.lastVend).toMatchObject({ orderId, commandId, outcome: 'dispensed' });
    expect(st.counters.vendsDispensed).toBeGreaterThanOrEqual(1);
    const metrics = await (await fetch(`${edge.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/storelink_edge_vmc_vends_total\{outcome="dispensed",reason=""\} [1-9]/);
    expect(metrics).toMatch(/storelink_edge_vmc_link_up 1/);
  });

  it('a jam (motor turned, nothing dropped) ends failed no_drop and the order is refunded', async () => {
    const vendsBefore = board.counters.vends;
    const dropsBefore = board.counters.drops;
    board.fault('jam');
    const orderId = await pay();
    const commandId = await dispenseCommandOf(orderId);
    const [r] = await commandResults(commandId);
    expect(r!.payload).toMatchObject({
      status: 'ok',
      result: { orderId, outcome: 'failed', reason: 'no_drop', slot: SLOT },
    });
    await until('order refunding', async () => ['refunding', 'refunded'].includes(await orderState(orderId)));
    expect(board.counters.vends - vendsBefore).toBe(1);
    expect(board.counters.drops).toBe(dropsBefore); // the item hung on the coil
    // The EVA-DTS "failed to drop" code went up in the event lane.
    await until('EJL alarm in the cloud', async () => {
      const { items } = await api<{
        items: Array<{ lane: string; payload: { code?: string; orderId?: string } }>;
      }>(`/events?gateway=${GW}&type=vend.alarm&limit=500`);
      return items.find(
        (e) => e.payload.code === 'EJL' && e.payload.orderId === orderId && e.lane === 'event',
      );
    });
  });

  it('a replayed dispense command runs the motor once and answers the copy as a duplicate', async () => {
    const vendsBefore = board.counters.vends;
    const orderId = `replay${Date.now()}`;
    const cmd = signedDispense(orderId);
    await client.publishAsync(topic, JSON.stringify(cmd), { qos: 1 });
    await commandResults(cmd.id, 1);
    await client.publishAsync(topic, JSON.stringify(cmd), { qos: 1 });
    const results = await commandResults(cmd.id, 2);
    const first = results.filter((e) => !e.payload.duplicate);
    const dup = results.filter((e) => e.payload.duplicate);
    expect(first).toHaveLength(1);
    expect(dup).toHaveLength(1);
    expect(first[0]!.payload).toMatchObject({ status: 'ok', result: { orderId, outcome: 'dispensed' } });
    expect(dup[0]!.payload).toMatchObject({ status: 'ok', result: { orderId, outcome: 'dispensed' } });
    expect(board.counters.vends - vendsBefore).toBe(1);
    expect(await vendResults(orderId)).toHaveLength(1);
  });

  it('an expired dispense command is rejected PROTO_ERR_EXPIRED and the motor never runs', async () => {
    const vendsBefore = board.counters.vends;
    const orderId = `expired${Date.now()}`;
    const now = Date.now();
    const cmd = signedDispense(orderId, { issuedAt: now - 60_000, expiresAt: now - 1000 });
    await client.publishAsync(topic, JSON.stringify(cmd), { qos: 1 });
    const [r] = await commandResults(cmd.id);
    expect(r!.payload).toMatchObject({ status: 'rejected', code: 'PROTO_ERR_EXPIRED' });
    expect(board.counters.vends).toBe(vendsBefore);
    expect(await edge.store.kv.get(`vmc/vend/${orderId}`)).toBeUndefined(); // never reached the driver
  });

  it('a dispense for a slot the machine does not have is rejected, not vended', async () => {
    const vendsBefore = board.counters.vends;
    const cmd = signedDispense(`badslot${Date.now()}`, {
      payload: { orderId: `badslot${Date.now()}`, slot: SLOT + 1, priceCents: PRICE },
    });
    await client.publishAsync(topic, JSON.stringify(cmd), { qos: 1 });
    const [r] = await commandResults(cmd.id);
    expect(r!.payload).toMatchObject({ status: 'rejected', code: 'EDGE_ERR_VMC_SLOT' });
    expect(board.counters.vends).toBe(vendsBefore);
  });
});
