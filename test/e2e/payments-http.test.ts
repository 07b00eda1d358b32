/**
 * Payments through the provider's HTTP API end to end (docs/vending.md "Provider adapter"):
 * the real cloud configured with `payments.provider` (so `startCloud` builds the WeChat
 * Pay v3 HTTP adapter), the simulated provider serving its merchant API on 127.0.0.1
 * (firmware-sim/src/payment/provider-http.ts) and sending signed notifications over HTTP,
 * the real edge agent with its VMC driver and the simulated board on a mock serial link.
 * Nothing is called in process between cloud and provider: the sweeper reaches the
 * provider over HTTP only.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CloudApp, startCloud } from '@storelink/cloud';
import { type EdgeAgent, startEdge } from '@storelink/edge';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockLink } from '../../edge/src/vending/mock-link.ts';
import { httpNotify, httpOrderApi, SimBuyer } from '../../firmware-sim/src/payment/buyer.ts';
import { SimPaymentProvider } from '../../firmware-sim/src/payment/provider.ts';
import { type ProviderHttp, startProviderHttp } from '../../firmware-sim/src/payment/provider-http.ts';
import { VmcBoard } from '../../firmware-sim/src/vmc/index.ts';
import { waitFor } from '../helpers/wait.ts';

const SITE = 'pay-store';
const GW = 'gw-pay';
const PROVIDER_SECRET = 'e2e-provider-platform-secret';
const MERCHANT_SECRET = 'e2e-merchant-api-secret';
const MCHID = '1900000109';
const SLOT = 4;
const PRICE = 300;
const ORDER_TTL_MS = 1_500;
const silent = pino({ level: 'silent' });

let dir: string;
let cloud: CloudApp;
let edge: EdgeAgent;
let board: VmcBoard;
let provider: SimPaymentProvider;
let providerHttp: ProviderHttp;
let buyer: SimBuyer;

const until = <T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 20_000) =>
  waitFor(probe, ms, what, 25);

interface OrderRow {
  id: string;
  state: string;
  refundNo: string;
  refundAttempts: number;
  failureReason?: string | null;
}

async function order(id: string): Promise<OrderRow> {
  return (await (await fetch(`${cloud.httpUrl}/api/v1/orders/${id}`)).json()) as OrderRow;
}

async function providerCalls(op: string, outcome: string): Promise<number> {
  const m = await cloud.metrics.paymentProviderRequests.get();
  return m.values.find((v) => v.labels.op === op && v.labels.outcome === outcome)?.value ?? 0;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'storelink-e2e-payhttp-'));
  let notifyUrl = '';
  provider = new SimPaymentProvider({
    algorithm: 'hmac-sha256',
    key: PROVIDER_SECRET,
    now: Date.now,
    deliver: (req) => httpNotify(notifyUrl)(req),
  });
  providerHttp = await startProviderHttp({
    provider,
    mchid: MCHID,
    merchant: { algorithm: 'hmac-sha256', key: MERCHANT_SECRET },
    now: Date.now,
  });
  cloud = await startCloud(
    {
      dataDir: join(dir, 'cloud'),
      http: { host: '127.0.0.1', port: 0 },
      broker: { mode: 'embedded', host: '127.0.0.1', port: 0 },
      store: { kind: 'pglite', dir: join(dir, 'cloud', 'pg') },
      signing: { privateKeyFile: join(dir, 'cloud', 'key.pem') },
      service: { username: 'svc', password: 'svc-secret' },
      gateways: [{ id: GW, site: SITE, password: 'gw-secret' }],
      log: { level: 'silent' },
      payments: {
        providers: { wechat: { algorithm: 'hmac-sha256', key: PROVIDER_SECRET } },
        provider: { baseUrl: providerHttp.url, mchid: MCHID, merchantKey: MERCHANT_SECRET, timeoutMs: 5_000 },
        orderTtlMs: ORDER_TTL_MS,
        retryMs: 150,
        sweepIntervalMs: 100,
      },
    },
    { logger: silent },
  );
  notifyUrl = cloud.httpUrl;
  const link = createMockLink('/dev/e2e-payhttp-edge', '/dev/e2e-payhttp-board');
  board = new VmcBoard({
    path: '/dev/e2e-payhttp-board',
    binding: link.binding,
    slots: [{ item: SLOT, priceCents: PRICE, stock: 10 }],
    dropOverSerial: true,
    seed: 11,
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
        serialPath: '/dev/e2e-payhttp-edge',
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
  await until('the edge reaches the cloud', () => edge.status().uplink.connected);
  buyer = new SimBuyer(httpOrderApi(cloud.httpUrl), provider);
}, 60_000);

afterAll(async () => {
  await board?.stop();
  await edge?.close();
  await cloud?.close();
  await providerHttp?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('payments through the provider HTTP API', () => {
  it('a jammed vend ends refunded: provider 5xx, then PROCESSING, then SUCCESS, one refund number', async () => {
    const before = { ...provider.stats };
    // The provider is down for the first refund call and answers PROCESSING to the next.
    providerHttp.faults.processingRefundsFirst = true;
    board.fault('jam');
    const { order: o, payment } = await buyer.buy({ gateway: GW, slot: SLOT, amountCents: PRICE });
    expect(payment?.ok).toBe(true);
    await provider.tick(Date.now());
    expect(provider.trades.get(o.id)!.acknowledged).toBe(true);
    // Set after the payment committed (the vend needs its 300 ms drop window before it can
    // fail), so the outage meets the first refund call and nothing else.
    providerHttp.faults.serverErrors = 1;
    const done = await until('order refunded', async () => {
      const cur = await order(o.id);
      return cur.state === 'refunded' ? cur : undefined;
    });
    expect(done.failureReason).toBe('no_drop');
    // Three attempts: 500 (not made), PROCESSING (made), SUCCESS (the same number replayed).
    expect(done.refundAttempts).toBe(3);
    const trade = provider.trades.get(o.id)!;
    expect(trade.refundNo).toBe(done.refundNo);
    expect(trade.refundedCents).toBe(PRICE);
    expect(provider.stats.refundsSucceeded - before.refundsSucceeded).toBe(1);
    expect(provider.stats.refundReplays - before.refundReplays).toBe(1);
    expect(provider.stats.refundIdChanged).toBe(0);
    expect(await providerCalls('refund', 'unavailable')).toBeGreaterThanOrEqual(1);
    expect(await providerCalls('refund', 'processing')).toBe(1);
    expect(await providerCalls('refund', 'ok')).toBe(1);
    expect(providerHttp.stats.authRefused).toBe(0);
    providerHttp.faults.processingRefundsFirst = false;
  });

  it('a payment whose notification never comes is found by query-order and dispensed', async () => {
    const vendsBefore = board.counters.vends;
    const queriesBefore = await providerCalls('query', 'ok');
    provider.faults.neverNotify = 1;
    try {
      const { order: o, payment } = await buyer.buy({ gateway: GW, slot: SLOT, amountCents: PRICE });
      expect(payment?.ok).toBe(true);
      await provider.tick(Date.now());
      expect(provider.trades.get(o.id)!.acknowledged).toBe(false);
      expect((await order(o.id)).state).toBe('created');
      await until('order dispensed via query-order', async () => (await order(o.id)).state === 'dispensed');
      expect(board.counters.vends - vendsBefore).toBe(1);
      expect(await providerCalls('query', 'ok')).toBeGreaterThan(queriesBefore);
    } finally {
      provider.faults.neverNotify = 0;
    }
  });

  it('an order never paid is queried, closed at the provider and expired; a late payment is refused', async () => {
    const { order: o } = await buyer.buy({ gateway: GW, slot: SLOT, amountCents: PRICE, pay: false });
    await until('order expired', async () => (await order(o.id)).state === 'expired');
    expect(await providerCalls('close', 'ok')).toBeGreaterThanOrEqual(1);
    expect(provider.pay(o.id, PRICE)).toEqual({ ok: false, reason: 'ORDER_CLOSED' });
  });
});
