import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../store/migrations.ts';
import { openPglite } from '../store/pglite.ts';
import type { Sql } from '../store/sql.ts';
import { SimAgreementProvider } from '../../../firmware-sim/src/payment/agreement.ts';
import type { CouponRedeemer, CouponRedemption } from '../members/coupons.ts';
import { type CabinetRepo, MemoryCabinetRepo, SqlCabinetRepo } from './repo.ts';
import { CabinetService, type UnlockCommand } from './service.ts';

const closed = (sessionId: string, taken: Array<{ sku: string; qty: number }>) => ({
  sessionId,
  at: 1,
  taken,
  returned: [],
  unresolved: [],
  sources: ['rfid'],
});

/** A coupon redeemer with one 100-cent coupon per member, idempotent per order [COUPON-REDEEM-1]. */
function fakeCoupons(): CouponRedeemer & { redeemed: Map<string, CouponRedemption> } {
  const redeemed = new Map<string, CouponRedemption>();
  return {
    redeemed,
    async quote() {
      return undefined;
    },
    async redeem({ member, orderId, draft }) {
      const prior = redeemed.get(orderId);
      if (prior) return prior;
      const subtotal = draft.items.reduce((s, i) => s + i.priceCents * i.qty, 0);
      const r: CouponRedemption = {
        couponId: `cp-${'memberId' in member ? member.memberId : member.value}`,
        templateId: 't1',
        memberId: 'memberId' in member ? member.memberId : member.value,
        subtotalCents: subtotal,
        discountCents: 100,
        totalCents: subtotal - 100,
        orderId,
        redeemedAt: 0,
      };
      redeemed.set(orderId, r);
      return r;
    },
    async redemptionFor(orderId) {
      return redeemed.get(orderId);
    },
    async release() {},
  };
}

let makeRepo: () => CabinetRepo = () => new MemoryCabinetRepo();
/** Session ids unique across tests: the PGlite run shares one database. */
let n = 0;

async function setup(
  o: { coupons?: CouponRedeemer; faults?: { apiError?: number; lostResponse?: number } } = {},
) {
  let now = 1_000;
  const repo = makeRepo();
  const provider = new SimAgreementProvider({ now: () => now, rng: () => 0.5, faults: o.faults ?? {} });
  const sent: UnlockCommand[] = [];
  const svc = new CabinetService({
    repo,
    payments: { wechat: provider },
    sendUnlock: async (c) => {
      sent.push(c);
    },
    siteOf: async (gw) => (gw === 'gw-1' ? 'site-1' : undefined),
    now: () => now,
    newSessionId: () => `CS${String(++n).padStart(6, '0')}`,
    ...(o.coupons ? { coupons: o.coupons } : {}),
  });
  await repo.setPrices('site-1', [
    { sku: 'cola', priceCents: 300 },
    { sku: 'chips', priceCents: 550 },
  ]);
  await repo.setAgreement(
    {
      memberId: 'm1',
      provider: 'wechat',
      agreementId: provider.sign('m1'),
      active: true,
    },
    now,
  );
  const ingest = (type: string, payload: unknown, gw = 'gw-1') =>
    repo.transaction((tx) => svc.applyEvent(tx, gw, type, payload, now));
  return { repo, provider, svc, sent, ingest, advance: (ms: number) => (now += ms) };
}

// The same tests on both repos (house style 1): the torture's memory repo must keep the SQL semantics.
describe.each(['memory', 'pglite'] as const)('CabinetService (%s repo)', (kind) => {
  let sql: Sql | undefined;
  beforeAll(async () => {
    if (kind === 'memory') {
      makeRepo = () => new MemoryCabinetRepo();
      return;
    }
    sql = await openPglite();
    await migrate(sql);
    const repo = new SqlCabinetRepo(sql);
    makeRepo = () => repo;
  }, 60_000);
  afterAll(async () => {
    await sql?.close();
  });

  it('scan: an unlock command derived from the session, for a member with an agreement [CAB-AUTH-1]', async () => {
    const { svc, sent } = await setup();
    const s = await svc.scan({ gateway: 'gw-1', memberId: 'm1' });
    expect(sent).toEqual([
      { id: s.commandId, gateway: 'gw-1', payload: { sessionId: s.id, memberId: 'm1' }, ttlMs: 30_000 },
    ]);
    await expect(svc.scan({ gateway: 'gw-1', memberId: 'm2' })).rejects.toMatchObject({
      code: 'CLOUD_ERR_CAB_NO_AGREEMENT',
    });
    await expect(svc.scan({ gateway: 'gw-x', memberId: 'm1' })).rejects.toMatchObject({
      code: 'CLOUD_ERR_NOT_FOUND',
    });
    expect(sent).toHaveLength(1);
  });

  it('a closed event applied twice (re-sent after a restart) charges once [CAB-CHARGE-1]', async () => {
    const { svc, provider, ingest } = await setup();
    const s = await svc.scan({ gateway: 'gw-1', memberId: 'm1' });
    expect(await ingest('cabinet.session.opened', { sessionId: s.id, at: 1 })).toBe('applied');
    const ev = closed(s.id, [{ sku: 'cola', qty: 2 }]);
    expect(await ingest('cabinet.session.closed', ev)).toBe('applied');
    expect(await ingest('cabinet.session.closed', ev)).toBe('duplicate');
    expect(await svc.tryCharge(s.id)).toBe('charged');
    expect(await svc.tryCharge(s.id)).toBe('not_charging');
    expect(await ingest('cabinet.session.closed', ev)).toBe('duplicate');
    const after = await svc.repo.get(s.id);
    expect(after).toMatchObject({
      state: 'charged',
      totalCents: 600,
      items: [{ sku: 'cola', qty: 2, priceCents: 300 }],
    });
    expect(provider.chargesFor(s.orderId)).toBe(1);
  });

  it('a lost charge response is retried with the same out_trade_no: money moves once [CAB-CHARGE-2]', async () => {
    const { svc, provider, ingest, advance } = await setup({ faults: { lostResponse: 1 } });
    const s = await svc.scan({ gateway: 'gw-1', memberId: 'm1' });
    await ingest('cabinet.session.closed', closed(s.id, [{ sku: 'chips', qty: 1 }]));
    expect(await svc.tryCharge(s.id)).toBe('retry');
    advance(60_000);
    expect(await svc.sweep()).toBe(1);
    expect(provider.stats.replays).toBeGreaterThan(0);
    expect((await svc.repo.get(s.id))?.state).toBe('charged');
    expect(provider.charges.filter((c) => c.outTradeNo === s.orderId)).toHaveLength(1);
  });

  it("applies the member's coupon once, keyed by the order id [CAB-COUPON-1]", async () => {
    const coupons = fakeCoupons();
    const { svc, provider, ingest } = await setup({ coupons, faults: { apiError: 1 } });
    const s = await svc.scan({ gateway: 'gw-1', memberId: 'm1' });
    await ingest('cabinet.session.closed', closed(s.id, [{ sku: 'cola', qty: 1 }]));
    expect(await svc.tryCharge(s.id)).toBe('retry'); // provider down: priced, not charged
    provider.faults.apiError = 0;
    expect(await svc.tryCharge(s.id)).toBe('charged');
    const after = await svc.repo.get(s.id);
    expect(after).toMatchObject({
      subtotalCents: 300,
      discountCents: 100,
      totalCents: 200,
      couponId: 'cp-m1',
    });
    expect(coupons.redeemed.size).toBe(1);
    expect(provider.charges.find((c) => c.outTradeNo === s.orderId)?.amountCents).toBe(200);
  });

  it('nothing taken → closed, no charge; a taken SKU without a price → review, never charged [CAB-PRICE-1]', async () => {
    const { svc, provider, ingest } = await setup();
    const a = await svc.scan({ gateway: 'gw-1', memberId: 'm1' });
    await ingest('cabinet.session.closed', closed(a.id, []));
    expect((await svc.repo.get(a.id))?.state).toBe('closed');
    const b = await svc.scan({ gateway: 'gw-1', memberId: 'm1' });
    await ingest('cabinet.session.closed', closed(b.id, [{ sku: 'caviar', qty: 1 }]));
    expect(await svc.repo.get(b.id)).toMatchObject({ state: 'review', failure: 'no price for caviar' });
    expect(await svc.tryCharge(b.id)).toBe('not_charging');
    expect(provider.charges).toHaveLength(0);
  });

  it('events from another gateway, for unknown sessions, or after relock change nothing', async () => {
    const { svc, ingest } = await setup();
    const s = await svc.scan({ gateway: 'gw-1', memberId: 'm1' });
    expect(await ingest('cabinet.session.closed', closed(s.id, [{ sku: 'cola', qty: 1 }]), 'gw-2')).toBe(
      'wrong_gateway',
    );
    expect(await ingest('cabinet.session.closed', closed('CSNONE99', []))).toBe('unknown_session');
    expect(await ingest('cabinet.session.relocked', { sessionId: s.id, at: 1, reason: 'not_opened' })).toBe(
      'applied',
    );
    expect(await ingest('cabinet.session.closed', closed(s.id, [{ sku: 'cola', qty: 1 }]))).toBe('duplicate');
    expect((await svc.repo.get(s.id))?.state).toBe('relocked');
  });

  it('an unlock refused by the edge rejects the session; a later closed from the same session still charges', async () => {
    const { svc, ingest } = await setup();
    const s = await svc.scan({ gateway: 'gw-1', memberId: 'm1' });
    const r = {
      commandId: s.commandId,
      type: 'cabinet.unlock',
      status: 'error',
      code: 'EDGE_ERR_CMD_INTERRUPTED',
    };
    expect(await ingest('command.result', r)).toBe('applied');
    expect((await svc.repo.get(s.id))?.state).toBe('rejected');
    // the agent resumed the session from its ledger and reports it
    expect(await ingest('cabinet.session.closed', closed(s.id, [{ sku: 'cola', qty: 1 }]))).toBe('applied');
    expect(await svc.tryCharge(s.id)).toBe('charged');
  });
});
