/**
 * Members and coupons end to end (issue 7): the real cloud (embedded broker, PGlite,
 * orders/payments, members), the real edge agent with its VMC driver and ESL manager,
 * the simulated vending board, a simulated recognition camera and signage display as
 * MQTT devices on the edge broker, the simulated payment provider, and the simulated
 * mini-program backend that receives coupons.
 *
 * A member pays at the machine (the notification carries their openid → a purchase in
 * their profile); later the camera recognises them (several times, one a resend); the
 * rule "recognised within 30 days of a purchase" issues exactly one coupon, shown on the
 * store display and delivered to the mini-program once; the member's next order costs
 * less, and the machine still vends it at its list price.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CloudApp, startCloud } from '@storelink/cloud';
import { type EdgeAgent, startEdge } from '@storelink/edge';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createMockLink } from '../../edge/src/vending/mock-link.ts';
import { SimDisplay } from '../../firmware-sim/src/esl/display.ts';
import { MiniProgramReceiver, SimRecognitionCamera } from '../../firmware-sim/src/members/index.ts';
import { httpNotify, httpOrderApi, SimBuyer } from '../../firmware-sim/src/payment/buyer.ts';
import { SimPaymentProvider } from '../../firmware-sim/src/payment/provider.ts';
import { VmcBoard } from '../../firmware-sim/src/vmc/index.ts';
import { waitFor } from '../helpers/wait.ts';

const SITE = 'mbr-store';
const GW = 'gw-mbr';
const SECRET = 'e2e-members-hmac-secret';
const HOOK_SECRET = 'e2e-miniprogram-secret';
const SLOT = 4;
const PRICE = 250;
const OPENID = 'oE2E-member-0001';
const silent = pino({ level: 'silent' });

let dir: string;
let cloud: CloudApp;
let edge: EdgeAgent;
let board: VmcBoard;
let provider: SimPaymentProvider;
let buyer: SimBuyer;
let camera: SimRecognitionCamera;
let display: SimDisplay;
let receiver: MiniProgramReceiver;

const until = <T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 30_000) =>
  waitFor(probe, ms, what, 50);

async function api<T>(
  path: string,
  init?: { method?: string; body?: unknown },
): Promise<{ status: number; body: T }> {
  const r = await fetch(`${cloud.httpUrl}/api/v1${path}`, {
    method: init?.method ?? 'GET',
    ...(init?.body !== undefined
      ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(init.body) }
      : {}),
  });
  return { status: r.status, body: (await r.json()) as T };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'storelink-e2e-members-'));
  receiver = new MiniProgramReceiver(HOOK_SECRET);
  await receiver.start();
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
      payments: { providers: { wechat: { algorithm: 'hmac-sha256', key: SECRET } }, sweepIntervalMs: 0 },
    },
    {
      logger: silent,
      members: {
        webhook: { url: receiver.url, secret: HOOK_SECRET },
        displays: { [GW]: 'display-1' },
        sweepMs: 200,
        retryMs: 100,
      },
    },
  );
  const link = createMockLink('/dev/e2e-mbr-edge', '/dev/e2e-mbr-board');
  board = new VmcBoard({
    path: '/dev/e2e-mbr-board',
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
      broker: { host: '127.0.0.1', port: 0, wsPort: 0 },
      http: { host: '127.0.0.1', port: 0 },
      cloud: { url: cloud.brokerUrl, username: GW, password: 'gw-secret', publicKeyPem: cloud.publicKeyPem },
      heartbeatMs: 200,
      log: { level: 'silent' },
      devices: [
        { id: 'cam-1', password: 'pw-cam-1', kind: 'camera' },
        { id: 'display-1', password: 'pw-display-1', kind: 'display' },
      ],
      vending: {
        serialPath: '/dev/e2e-mbr-edge',
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
  camera = new SimRecognitionCamera('cam-1', 'pw-cam-1');
  await camera.connect(`mqtt://127.0.0.1:${edge.brokerPort}`);
  display = new SimDisplay('display-1', 'pw-display-1');
  await display.connect(`ws://127.0.0.1:${edge.wsPort}`);
  provider = new SimPaymentProvider({
    algorithm: 'hmac-sha256',
    key: SECRET,
    now: Date.now,
    deliver: httpNotify(cloud.httpUrl),
  });
  buyer = new SimBuyer(httpOrderApi(cloud.httpUrl), provider);
}, 120_000);

afterAll(async () => {
  await camera?.close();
  await display?.close();
  await board?.stop();
  await edge?.close();
  await cloud?.close();
  await receiver?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function payAndDispense(): Promise<{ id: string; amountCents: number }> {
  const vends = board.counters.vends;
  const { order, payment } = await buyer.buy({ gateway: GW, slot: SLOT, amountCents: PRICE, openid: OPENID });
  expect(payment?.ok).toBe(true);
  await provider.tick(Date.now());
  expect(provider.trades.get(order.id)!.acknowledged).toBe(true);
  await until(
    `order ${order.id} dispensed`,
    async () => (await api<{ state: string }>(`/orders/${order.id}`)).body.state === 'dispensed',
  );
  expect(board.counters.vends).toBe(vends + 1);
  return order;
}

describe('members and coupons end to end', () => {
  it('pay, be recognised, get exactly one coupon on the display and in the mini-program, pay less next time', async () => {
    // Operations set up a template and a rule through the API.
    const t = await api('/coupon-templates/welcome-back', {
      method: 'PUT',
      body: {
        name: '1 yuan off, welcome back',
        kind: 'amount_off',
        amountOffCents: 100,
        validDays: 7,
        perMember: { max: 1, windowDays: 30 },
        budget: 100,
      },
    });
    expect(t.status).toBe(200);
    const bad = await api<{ code: string; message: string }>('/rules/recognised-buyer', {
      method: 'PUT',
      body: {
        name: 'x',
        on: ['recognized'],
        conditions: [],
        actions: [{ type: 'issue_coupon', template: 'nope' }],
      },
    });
    expect(bad.status).toBe(400);
    expect(bad.body).toMatchObject({
      code: 'CLOUD_ERR_RULE_INVALID',
      message: expect.stringContaining('/actions/0/template "nope"'),
    });
    const saved = await api<{ version: number }>('/rules/recognised-buyer', {
      method: 'PUT',
      body: {
        name: 'recognised at the store within 30 days of a purchase',
        on: ['recognized'],
        conditions: [{ type: 'count', kind: 'purchase', withinDays: 30, op: 'gte', value: 1 }],
        actions: [{ type: 'issue_coupon', template: 'welcome-back', display: true }],
      },
    });
    expect(saved).toMatchObject({ status: 201, body: { version: 1 } });

    // 1. The member pays at the machine: the payer's openid makes the purchase theirs.
    const first = await payAndDispense();
    expect(first.amountCents).toBe(PRICE);
    const found = await until('the payer is a member', async () => {
      const r = await api<{ items: { id: string }[] }>(`/members?idType=wechat_openid&value=${OPENID}`);
      return r.body.items[0];
    });
    const memberId = found.id;
    const profile = await api<{ profile: { purchases: number; spendCents: number } }>(`/members/${memberId}`);
    expect(profile.body.profile).toMatchObject({ purchases: 1, spendCents: PRICE });

    // 2. Later the shelf camera recognises them: twice the same recognition (a resend), then again.
    // The mini-program backend is down for the first delivery attempt (retried).
    receiver.failNext(1);
    const rid = await camera.recognise(memberId, { similarity: 0.93 });
    await camera.recognise(memberId, { similarity: 0.93, id: rid });
    await camera.recognise(memberId, { similarity: 0.9 });
    const coupon = await until('one coupon issued', async () => {
      const r = await api<{ items: { id: string; state: string }[] }>(`/coupons?memberId=${memberId}`);
      return r.body.items.length > 0 ? r.body.items : undefined;
    });
    await until('the mini-program got it', () => (receiver.coupons.size > 0 ? true : undefined));
    await until('the display shows it', () =>
      display.shown?.content.barcode === coupon[0]!.id ? true : undefined,
    );
    // 3 recognitions recorded in the profile, exactly one coupon anywhere.
    await until('three recognitions in the profile', async () => {
      const p = await api<{ profile: { recognitions: number } }>(`/members/${memberId}`);
      return p.body.profile.recognitions === 2 ? true : undefined;
    });
    await camera.recognise(memberId, { similarity: 0.95 });
    await until('the fourth recognition recorded', async () => {
      const p = await api<{ profile: { recognitions: number } }>(`/members/${memberId}`);
      return p.body.profile.recognitions === 3 ? true : undefined;
    });
    await cloud.members!.service.deliverDue();
    expect((await api<{ items: unknown[] }>(`/coupons?memberId=${memberId}`)).body.items).toHaveLength(1);
    expect([...receiver.coupons.values()]).toEqual([
      expect.objectContaining({
        couponId: coupon[0]!.id,
        memberId,
        channelIds: { wechat_openid: [OPENID] },
        template: expect.objectContaining({ id: 'welcome-back', amountOffCents: 100 }),
      }),
    ]);
    expect(receiver.deliveries).toBeGreaterThanOrEqual(2);
    expect(receiver.badSignatures).toBe(0);
    expect(display.shown?.content).toMatchObject({
      sku: 'COUPON',
      name: '1 yuan off, welcome back',
      priceCents: 100,
    });
    expect(new Set(display.history).size).toBe(1);

    // 3. The next order costs less; the machine vends it at its list price (the coupon paid the rest).
    const second = await payAndDispense();
    expect(second.amountCents).toBe(PRICE - 100);
    const used = await api<{ items: { state: string; orderId: string; discountCents: number }[] }>(
      `/coupons?memberId=${memberId}`,
    );
    expect(used.body.items[0]).toMatchObject({ state: 'redeemed', orderId: second.id, discountCents: 100 });
    // and the one after that is full price again
    const third = await payAndDispense();
    expect(third.amountCents).toBe(PRICE);
    const end = await api<{ profile: { purchases: number; spendCents: number } }>(`/members/${memberId}`);
    expect(end.body.profile).toMatchObject({ purchases: 3, spendCents: PRICE * 3 - 100 });

    // The API is in the OpenAPI document; erasure on request removes the member everywhere.
    const doc = (await (await fetch(`${cloud.httpUrl}/docs/json`)).json()) as {
      paths: Record<string, unknown>;
    };
    for (const path of [
      '/api/v1/members/{id}',
      '/api/v1/members/{id}/merges',
      '/api/v1/rules/dry-run',
      '/api/v1/coupons',
    ])
      expect(Object.keys(doc.paths)).toContain(path);
    const erased = await api<{ memberId: string; idCount: number }>(`/members/${memberId}`, {
      method: 'DELETE',
    });
    expect(erased).toMatchObject({ status: 200, body: { memberId } });
    expect((await api<{ code: string }>(`/members/${memberId}`)).body.code).toBe('CLOUD_ERR_MEMBER_UNKNOWN');
    expect(
      (await api<{ items: unknown[] }>(`/members?idType=wechat_openid&value=${OPENID}`)).body.items,
    ).toEqual([]);
    expect((await api<{ items: unknown[] }>(`/coupons?memberId=${memberId}`)).body.items).toEqual([]);
  }, 180_000);
});
