import { describe, expect, it } from 'vitest';
import { MemoryOrdersRepo } from '../orders/repo.ts';
import { type DispenseCommand, OrdersService } from '../orders/service.ts';
import { SettlementSweeper } from '../orders/sweeper.ts';
import { NotificationVerifier } from '../payments/wechat.ts';
import { MemoryMembersRepo } from './memory-repo.ts';
import { MembersService } from './service.ts';

/**
 * [ORDER-COUPON-1] a member's coupon lowers the vending order's price, the dispense
 * command keeps the list price, and [COUPON-REDEEM-2] an order that expires unpaid gives
 * the coupon back (the settlement sweeper releases it).
 */
const T0 = 1_763_900_000_000;

async function setup() {
  let now = T0;
  const members = new MembersService({ repo: new MemoryMembersRepo(), now: () => now });
  const sent: DispenseCommand[] = [];
  const orders = new OrdersService({
    repo: new MemoryOrdersRepo(),
    providers: {
      wechat: {
        verifier: new NotificationVerifier('wechat', {
          algorithm: 'hmac-sha256',
          key: 'k',
          maxSkewMs: 60_000,
        }),
      },
    },
    issueDispense: async (c) => {
      sent.push(c);
    },
    now: () => now,
    coupons: members,
    trustNotifications: true,
  });
  await members.putTemplate({
    id: 'one-off',
    name: '1 off',
    kind: 'amount_off',
    amountOffCents: 100,
    validDays: 7,
    perMember: { max: 1, windowDays: 7 },
  });
  await members.saveRule({
    id: 'signup-gift',
    name: 'a coupon on signup',
    on: ['signup'],
    conditions: [],
    actions: [{ type: 'issue_coupon', template: 'one-off' }],
  });
  await members.record({
    key: 'signup-1',
    id: { type: 'wechat_openid', value: 'oCoupon' },
    kind: 'signup',
    channel: 'wechat',
    store: '',
    at: T0,
  });
  return { members, orders, sent, at: (t: number) => (now = t) };
}

const member = { idType: 'wechat_openid', value: 'oCoupon' };
const input = { gateway: 'gw-1', site: 's-1', slot: 3, amountCents: 250, member };

describe('coupons on vending orders', () => {
  it('the order is created at the discounted price; the dispense command carries the list price', async () => {
    const { orders, sent } = await setup();
    const { order, coupon } = await orders.createOrderWithCoupon({ ...input, id: 'ORDER-A1' });
    expect(order.amountCents).toBe(150);
    expect(coupon).toMatchObject({ discountCents: 100, subtotalCents: 250, totalCents: 150 });
    // the next order of the same member has no coupon left
    expect((await orders.createOrderWithCoupon({ ...input, id: 'ORDER-A2' })).order.amountCents).toBe(250);
    const outcome = await orders.applyPayment(
      'wechat',
      {
        notificationId: 'n1',
        outTradeNo: 'ORDER-A1',
        transactionId: 'tx-1',
        tradeState: 'SUCCESS',
        amountCents: 150,
        currency: 'CNY',
        successTime: T0,
      },
      'notify',
    );
    expect(outcome).toBe('paid');
    expect(sent.map((c) => c.payload)).toEqual([{ orderId: 'ORDER-A1', slot: 3, priceCents: 250 }]);
  });

  it('an order that expires unpaid gives its coupon back to the member', async () => {
    const { orders, members, at } = await setup();
    expect((await orders.createOrderWithCoupon({ ...input, id: 'ORDER-B1' })).order.amountCents).toBe(150);
    expect(
      await members.quote(member, {
        site: 's-1',
        gateway: 'gw-1',
        items: [{ sku: 'x', priceCents: 250, qty: 1 }],
      }),
    ).toBeUndefined();
    at(T0 + orders.timing.orderTtlMs + 1);
    const rep = await new SettlementSweeper(orders).tick(T0 + orders.timing.orderTtlMs + 1);
    expect(rep.expired).toBe(1);
    expect((await orders.repo.get('ORDER-B1'))?.state).toBe('expired');
    expect(await members.redemptionFor('ORDER-B1')).toBeUndefined();
    expect((await orders.createOrderWithCoupon({ ...input, id: 'ORDER-B2' })).order.amountCents).toBe(150);
  });
});
