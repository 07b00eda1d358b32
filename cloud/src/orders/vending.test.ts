import { generateKeyPairSync } from 'node:crypto';
import { type CommandEnvelope, gatewayTopic, newId, verifyCommand } from '@storelink/protocols';
// A simulator is a device: tests may drive the cloud with it, runtime code never imports it.
import { SimPaymentProvider } from '../../../firmware-sim/src/payment/provider.ts';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CommandService } from '../commands/service.ts';
import { build } from '../http/app.ts';
import { createCloudMetrics } from '../metrics.ts';
import { openPglite } from '../store/pglite.ts';
import type { Sql } from '../store/sql.ts';
import { SqlCloudStore } from '../store/sql-store.ts';
import { silentLogger } from '../test-support.ts';
import { batchOf, commandResultEvent, laneEvent } from '../testing.ts';
import { startVending, type Vending } from './index.ts';
import { dispenseCommandIdFor } from './service.ts';

const T0 = 1_763_900_000_000;
const GW = { gateway: 'gw-1', site: 's1' };
const SECRET = 'test-hmac-secret-0123456789';

interface Env {
  t: { now: number };
  store: SqlCloudStore;
  app: FastifyInstance;
  vending: Vending;
  provider: SimPaymentProvider;
  published: { topic: string; cmd: CommandEnvelope }[];
  publicKey: import('node:crypto').KeyObject;
  metrics: ReturnType<typeof createCloudMetrics>;
  seq: { n: number };
  epoch: string;
}

let shared: Promise<Sql> | undefined;
let schemas = 0;
afterAll(async () => {
  await (await shared)?.close();
});

async function setup(opts: { ed25519?: boolean } = {}): Promise<Env> {
  const t = { now: T0 };
  const now = () => t.now;
  // One PGlite for the file (its start is the slow part), one schema per test.
  shared ??= openPglite();
  const sql = await shared;
  schemas += 1;
  await sql.exec(`CREATE SCHEMA t${schemas}; SET search_path TO t${schemas}`);
  const store = await SqlCloudStore.open(sql);
  await store.createGateway({ id: GW.gateway, site: GW.site, passwordHash: 'x' }, now());
  const metrics = createCloudMetrics();
  const logger = silentLogger();
  const keys = generateKeyPairSync('ed25519');
  const published: Env['published'] = [];
  const commands = new CommandService(
    {
      connected: true,
      publish: async (topic, payload) => {
        published.push({ topic, cmd: JSON.parse(payload) as CommandEnvelope });
      },
      close: async () => undefined,
    },
    { store, privateKey: keys.privateKey, defaultTtlMs: 60_000, metrics, logger, now },
  );
  const provKeys = generateKeyPairSync('ed25519');
  let app: FastifyInstance | undefined;
  const provider = new SimPaymentProvider({
    algorithm: opts.ed25519 ? 'ed25519' : 'hmac-sha256',
    key: opts.ed25519 ? provKeys.privateKey : SECRET,
    now,
    deliver: async (req) =>
      (
        await app!.inject({
          method: 'POST',
          url: '/api/v1/payments/notify/wechat',
          headers: req.headers,
          payload: req.body,
        })
      ).statusCode,
  });
  const vending = startVending({
    store,
    config: {
      providers: {
        wechat: opts.ed25519
          ? {
              algorithm: 'ed25519',
              key: provKeys.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
            }
          : { algorithm: 'hmac-sha256', key: SECRET },
      },
      orderTtlMs: 120_000,
      dispenseTtlMs: 60_000,
      settleMarginMs: 30_000,
      lateGraceMs: 60_000,
      retryMs: 10_000,
      sweepIntervalMs: 0,
    },
    sendCommand: (c) => commands.send(c),
    clients: { wechat: provider },
    registry: metrics.registry,
    now,
  });
  app = await build({
    context: { store, sendCommand: (c) => commands.send(c), metrics, hashPassword: async (p) => p, now },
    vending: { orders: vending.service, siteOf: async (id) => (await store.getGateway(id))?.site },
  });
  return {
    t,
    store,
    app,
    vending,
    provider,
    published,
    publicKey: keys.publicKey,
    metrics,
    seq: { n: 0 },
    epoch: newId(T0),
  };
}

let env: Env;
beforeEach(async () => {
  env = await setup();
});
afterEach(async () => {
  await env.app.close();
  await env.vending.close();
});

async function createOrder(e: Env, slot = 3, amountCents = 350) {
  const r = await e.app.inject({
    method: 'POST',
    url: '/api/v1/orders',
    payload: { gateway: GW.gateway, slot, amountCents },
  });
  expect(r.statusCode).toBe(201);
  return r.json() as { id: string; state: string; refundNo: string; amountCents: number; currency: string };
}

const getOrder = async (e: Env, id: string) =>
  (await e.app.inject({ method: 'GET', url: `/api/v1/orders/${id}` })).json() as Record<string, unknown>;

const notify = (e: Env, req: { headers: Record<string, string>; body: string }) =>
  e.app.inject({
    method: 'POST',
    url: '/api/v1/payments/notify/wechat',
    headers: req.headers,
    payload: req.body,
  });

async function counter(e: Env, outcome: string): Promise<number> {
  const m = await e.metrics.registry.getSingleMetric('storelink_cloud_payment_notifications_total')!.get();
  return m.values.filter((v) => v.labels.outcome === outcome).reduce((a, v) => a + v.value, 0);
}

/** A signed notification for any order/amount (to forge bad input with a valid signature). */
function forged(e: Env, outTradeNo: string, total: number, txId = 'TX-FORGED-1') {
  return e.provider.signed(
    JSON.stringify({
      id: `EV-${txId}`,
      event_type: 'TRANSACTION.SUCCESS',
      resource: {
        out_trade_no: outTradeNo,
        transaction_id: txId,
        trade_state: 'SUCCESS',
        success_time: new Date(e.t.now).toISOString(),
        amount: { total, currency: 'CNY' },
      },
    }),
    e.t.now,
  );
}

async function ingest(e: Env, type: string, payload: unknown) {
  e.seq.n += 1;
  const ev =
    type === 'command.result'
      ? commandResultEvent(GW, e.seq.n, payload as never)
      : laneEvent(GW, 'tx', e.seq.n, type, payload, { device: GW.gateway });
  await e.store.ingestBatch(batchOf(GW, e.epoch, [ev]), e.t.now);
}

describe('orders API and payment notifications', () => {
  it('creates, pays (signed notification), issues one signed vend.dispense keyed by the order, settles on vend.result', async () => {
    const o = await createOrder(env);
    expect(o).toMatchObject({ state: 'created', refundNo: `R-${o.id}` });
    expect(env.provider.pay(o.id, o.amountCents).ok).toBe(true);
    await env.provider.tick(env.t.now);
    expect(env.provider.trades.get(o.id)!.acknowledged).toBe(true);
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'dispensing', paymentTxId: expect.any(String) });

    expect(env.published).toHaveLength(1);
    const { topic, cmd } = env.published[0]!;
    expect(topic).toBe(gatewayTopic(GW, 'cmd'));
    expect(cmd.type).toBe('vend.dispense');
    expect(cmd.id).toBe(dispenseCommandIdFor(o.id, env.t.now));
    expect(cmd.payload).toEqual({ orderId: o.id, slot: 3, priceCents: 350 });
    expect(cmd.expiresAt).toBe(env.t.now + 60_000);
    expect(verifyCommand(env.publicKey, topic, cmd, env.t.now).ok).toBe(true);

    await ingest(env, 'vend.result', { orderId: o.id, outcome: 'dispensed', slot: 3 });
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'dispensed', settledAt: env.t.now });
    const list = (await env.app.inject({ method: 'GET', url: '/api/v1/orders?gateway=gw-1' })).json() as {
      items: { id: string }[];
    };
    expect(list.items.map((x) => x.id)).toEqual([o.id]);
  });

  it('refuses a wrong signature with 401 CLOUD_ERR_PAY_SIGNATURE, counted, order unpaid', async () => {
    const o = await createOrder(env);
    const good = forged(env, o.id, 350);
    const r = await notify(env, {
      ...good,
      headers: { ...good.headers, 'wechatpay-signature': Buffer.alloc(32, 7).toString('base64') },
    });
    expect(r.statusCode).toBe(401);
    expect(r.json()).toMatchObject({ code: 'CLOUD_ERR_PAY_SIGNATURE' });
    // the body tampered after signing
    const tampered = await notify(env, { headers: good.headers, body: good.body.replace('350', '351') });
    expect(tampered.statusCode).toBe(401);
    const missing = await notify(env, { headers: { 'content-type': 'application/json' }, body: good.body });
    expect(missing.statusCode).toBe(401);
    expect(await counter(env, 'bad_signature')).toBe(3);
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'created', paymentTxId: null });
    expect(env.published).toHaveLength(0);
  });

  it('refuses a wrong amount with 400 CLOUD_ERR_PAY_AMOUNT, counted, order NOT paid; the right one then pays', async () => {
    const o = await createOrder(env);
    const r = await notify(env, forged(env, o.id, 1));
    expect(r.statusCode).toBe(400);
    expect(r.json()).toMatchObject({ code: 'CLOUD_ERR_PAY_AMOUNT' });
    expect(await counter(env, 'wrong_amount')).toBe(1);
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'created' });
    expect(env.published).toHaveLength(0);
    const ok = await notify(env, forged(env, o.id, 350, 'TX-GOOD'));
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({ code: 'SUCCESS', message: 'OK' });
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'dispensing', paymentTxId: 'TX-GOOD' });
  });

  it('refuses an unknown order with 404 CLOUD_ERR_ORDER_UNKNOWN, counted', async () => {
    const r = await notify(env, forged(env, 'NO-SUCH-ORDER', 350));
    expect(r.statusCode).toBe(404);
    expect(r.json()).toMatchObject({ code: 'CLOUD_ERR_ORDER_UNKNOWN' });
    expect(await counter(env, 'unknown_order')).toBe(1);
    const p = await env.app.inject({
      method: 'POST',
      url: '/api/v1/payments/notify/alipay',
      payload: '{}',
      headers: { 'content-type': 'application/json' },
    });
    expect(p.statusCode).toBe(404);
    expect(p.json()).toMatchObject({ code: 'CLOUD_ERR_PAY_PROVIDER' });
    const malformed = await notify(
      env,
      env.provider.signed('{"id":"x","event_type":"TRANSACTION.SUCCESS"}', env.t.now),
    );
    expect(malformed.statusCode).toBe(400);
    expect(malformed.json()).toMatchObject({ code: 'CLOUD_ERR_PAY_NOTIFICATION' });
  });

  it('acknowledges duplicates with success and no effect; concurrent copies issue exactly one dispense', async () => {
    const o = await createOrder(env);
    const n = forged(env, o.id, 350, 'TX-DUP');
    const rs = await Promise.all(Array.from({ length: 12 }, () => notify(env, n)));
    expect(rs.map((r) => r.statusCode)).toEqual(Array(12).fill(200));
    expect(env.published).toHaveLength(1);
    expect(await counter(env, 'paid')).toBe(1);
    expect(await counter(env, 'duplicate')).toBe(11);
    // a re-signed copy later (the provider's retry) is also just acknowledged
    env.t.now += 15_000;
    expect((await notify(env, forged(env, o.id, 350, 'TX-DUP'))).statusCode).toBe(200);
    expect(env.published).toHaveLength(1);
    const cmds = await env.store.listCommands({ gateway: GW.gateway, limit: 10 });
    expect(cmds.filter((c) => c.type === 'vend.dispense')).toHaveLength(1);
  });

  it('refuses a stale timestamp (a replay, not a retry)', async () => {
    const o = await createOrder(env);
    const old = forged(env, o.id, 350);
    env.t.now += 10 * 60_000;
    const r = await notify(env, old);
    expect(r.statusCode).toBe(401);
    expect(r.json().message).toMatch(/too far/);
  });

  it('a late notification for an order too old to dispense is acknowledged and refunded', async () => {
    const o = await createOrder(env);
    env.provider.faults.neverNotify = 1; // delivered by hand below
    env.provider.pay(o.id, 350);
    env.t.now += 120_000 + 60_001; // past expiry + lateGrace
    const late = env.provider.notification(env.provider.trades.get(o.id)!, env.t.now);
    const r = await notify(env, late);
    expect(r.statusCode).toBe(200);
    expect(await counter(env, 'late')).toBe(1);
    expect(env.published).toHaveLength(0);
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'refunded', failureReason: 'late_payment' });
    expect(env.provider.trades.get(o.id)!.refundNo).toBe(`R-${o.id}`);
  });

  it('a notification after the order expired (closed) is acknowledged and refunded', async () => {
    const o = await createOrder(env);
    env.t.now += 120_001;
    const rep = await env.vending.sweeper.tick(env.t.now);
    expect(rep.expired).toBe(1);
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'expired' });
    // The provider closed it; a buggy/late delivery still arrives for a payment it took.
    env.provider.trades.set(o.id, {
      outTradeNo: o.id,
      transactionId: 'TX-LATE',
      amountCents: 350,
      currency: 'CNY',
      state: 'SUCCESS',
      successTime: env.t.now,
      attempts: 0,
      acknowledged: false,
      gaveUp: false,
      refundedCents: 0,
    });
    const r = await notify(env, forged(env, o.id, 350, 'TX-LATE'));
    expect(r.statusCode).toBe(200);
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'refunded', paymentTxId: 'TX-LATE' });
  });
});

describe('results, refunds and the sweeper', () => {
  async function dispensing(e: Env) {
    const o = await createOrder(e);
    e.provider.pay(o.id, 350);
    await e.provider.tick(e.t.now);
    return o;
  }

  it('failed vend.result → refunding in the ingest transaction; the sweeper refunds with R-<id>', async () => {
    const o = await dispensing(env);
    await ingest(env, 'vend.result', { orderId: o.id, outcome: 'failed', reason: 'no_drop', slot: 3 });
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'refunding', failureReason: 'no_drop' });
    await env.vending.sweeper.tick(env.t.now);
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'refunded' });
    expect(env.provider.stats.refundsSucceeded).toBe(1);
    // a duplicate result changes nothing
    await ingest(env, 'vend.result', { orderId: o.id, outcome: 'failed', reason: 'no_drop', slot: 3 });
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'refunded' });
  });

  it('a rejected command.result of the vend.dispense command fails the order', async () => {
    const o = await dispensing(env);
    const cmdId = env.published[0]!.cmd.id;
    await ingest(env, 'command.result', {
      commandId: cmdId,
      type: 'vend.dispense',
      status: 'rejected',
      code: 'PROTO_ERR_EXPIRED',
    });
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'refunding', failureReason: 'rejected' });
  });

  it('a command.result ok with outcome dispensed settles; a result from another gateway is ignored', async () => {
    const o = await dispensing(env);
    await env.store.createGateway({ id: 'gw-2', site: 's1', passwordHash: 'x' }, env.t.now);
    await env.store.ingestBatch(
      batchOf({ gateway: 'gw-2', site: 's1' }, newId(T0), [
        laneEvent(
          { gateway: 'gw-2', site: 's1' },
          'tx',
          1,
          'vend.result',
          { orderId: o.id, outcome: 'dispensed', slot: 3 },
          { device: 'gw-2' },
        ),
      ]),
      env.t.now,
    );
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'dispensing' });
    const cmdId = env.published[0]!.cmd.id;
    await ingest(env, 'command.result', {
      commandId: cmdId,
      type: 'vend.dispense',
      status: 'ok',
      result: { orderId: o.id, outcome: 'dispensed', slot: 3 },
    });
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'dispensed' });
  });

  it('the refund number is stable across failed attempts; the provider sees one out_refund_no', async () => {
    const o = await dispensing(env);
    env.provider.faults.apiError = 1;
    await ingest(env, 'vend.result', { orderId: o.id, outcome: 'failed', reason: 'vend_failed', slot: 3 });
    for (let i = 0; i < 4; i++) {
      await env.vending.sweeper.tick(env.t.now);
      env.t.now += 3600_000;
    }
    const mid = await getOrder(env, o.id);
    expect(mid).toMatchObject({ state: 'refunding', refundNo: `R-${o.id}` });
    expect(mid.refundAttempts).toBeGreaterThanOrEqual(3);
    env.provider.faults.apiError = 0;
    await env.vending.sweeper.tick(env.t.now);
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'refunded', refundNo: `R-${o.id}` });
    const refund = await env.vending.service.repo.getRefund(o.id);
    expect(refund).toMatchObject({ refundNo: `R-${o.id}`, status: 'succeeded' });
    expect(env.provider.stats.refundIdChanged).toBe(0);
    // a refund retry with a different number is what the provider refuses
    await expect(
      env.provider.refund({
        outTradeNo: o.id,
        outRefundNo: 'R-OTHER',
        amountCents: 350,
        totalCents: 350,
        currency: 'CNY',
      }),
    ).rejects.toThrow(/inconsistent/);
    expect(env.provider.stats.refundIdChanged).toBe(1);
  });

  it('sweeper: dispensing past command expiry + margin → failed (expired) → refunded', async () => {
    const o = await dispensing(env);
    env.t.now += 60_000 + 29_000;
    await env.vending.sweeper.tick(env.t.now);
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'dispensing' });
    env.t.now += 2_000;
    const rep = await env.vending.sweeper.tick(env.t.now);
    expect(rep.dispenseExpired).toBe(1);
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'refunded', failureReason: 'expired' });
    // the edge's result arriving after that is only logged and counted
    await ingest(env, 'vend.result', { orderId: o.id, outcome: 'failed', reason: 'expired', slot: 3 });
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'refunded' });
  });

  it('sweeper: no notification ever → query-order finds the payment and dispenses', async () => {
    const o = await createOrder(env);
    env.provider.faults.neverNotify = 1;
    env.provider.pay(o.id, 350);
    await env.provider.tick(env.t.now);
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'created' });
    env.t.now += 120_001;
    const rep = await env.vending.sweeper.tick(env.t.now);
    expect(rep.queriedPaid).toBe(1);
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'dispensing' });
    expect(env.published).toHaveLength(1);
    const notes = await env.vending.service.repo.notifications(o.id);
    expect(notes.map((n) => n.source)).toEqual(['query']);
  });

  it('sweeper: unpaid → closed at the provider → expired; a query error is retried later', async () => {
    const o = await createOrder(env);
    env.t.now += 120_001;
    env.provider.faults.apiError = 1;
    await env.vending.sweeper.tick(env.t.now);
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'created' });
    env.provider.faults.apiError = 0;
    env.t.now += 10_000;
    await env.vending.sweeper.tick(env.t.now);
    expect(await getOrder(env, o.id)).toMatchObject({ state: 'expired' });
    expect(env.provider.pay(o.id, 350)).toEqual({ ok: false, reason: 'ORDER_CLOSED' });
  });
});

describe('Ed25519 provider signatures', () => {
  it('accepts an Ed25519-signed notification and refuses one signed by another key', async () => {
    const e = await setup({ ed25519: true });
    try {
      const o = await createOrder(e);
      e.provider.pay(o.id, 350);
      await e.provider.tick(e.t.now);
      expect(await getOrder(e, o.id)).toMatchObject({ state: 'dispensing' });
      const other = new SimPaymentProvider({
        algorithm: 'ed25519',
        key: generateKeyPairSync('ed25519').privateKey,
        now: () => e.t.now,
        deliver: async () => 0,
      });
      const o2 = await createOrder(e);
      const r = await notify(e, other.signed(forged(e, o2.id, 350).body, e.t.now));
      expect(r.statusCode).toBe(401);
    } finally {
      await e.app.close();
      await e.vending.close();
    }
  });
});
