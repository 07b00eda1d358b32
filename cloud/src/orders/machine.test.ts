import { describe, expect, it } from 'vitest';
import * as m from './machine.ts';

const base = () =>
  m.newOrder({
    id: 'ORD-000001',
    gateway: 'gw-1',
    site: 's1',
    slot: 3,
    amountCents: 350,
    now: 1000,
    ttlMs: 60_000,
  });
const pay = (o: m.Order, amountCents = 350) =>
  m.pay(o, { provider: 'wechat', txId: 'T1', amountCents, currency: 'CNY', at: 2000 });
const ok = (s: m.Step): m.Order => {
  if (!s.ok) throw s.error;
  return s.order;
};

describe('order state machine', () => {
  it('walks created → paid → dispensing → dispensed', () => {
    const o = base();
    expect(o).toMatchObject({ state: 'created', refundNo: 'R-ORD-000001', dueAt: 61_000 });
    const p = ok(pay(o));
    expect(p).toMatchObject({ state: 'paid', paymentTxId: 'T1', paidAt: 2000 });
    const d = ok(m.dispatch(p, { commandId: 'C1', expiresAt: 62_000, marginMs: 5000, at: 2000 }));
    expect(d).toMatchObject({ state: 'dispensing', dispenseCommandId: 'C1', dueAt: 67_000 });
    const done = ok(m.dispensed(d, 3000));
    expect(done).toMatchObject({ state: 'dispensed', settledAt: 3000, dueAt: null });
  });

  it('walks dispensing → failed → refunding → refunded keeping the refund number', () => {
    const d = ok(
      m.andThen(pay(base()), (p) => m.dispatch(p, { commandId: 'C1', expiresAt: 9, marginMs: 0, at: 2 })),
    );
    const f = ok(m.fail(d, 'no_drop', 3));
    expect(f).toMatchObject({ state: 'failed', failureReason: 'no_drop' });
    const r = ok(m.startRefund(f, 4));
    const r2 = ok(m.refundAttemptFailed(r, 5, 100));
    expect(r2).toMatchObject({ state: 'refunding', refundAttempts: 1, dueAt: 100, refundNo: 'R-ORD-000001' });
    const done = ok(m.refunded(r2, 101));
    expect(done).toMatchObject({
      state: 'refunded',
      refundAttempts: 2,
      refundNo: 'R-ORD-000001',
      dueAt: null,
    });
  });

  it('refuses illegal transitions with CLOUD_ERR_ORDER_STATE', () => {
    const o = base();
    for (const s of [
      m.dispatch(o, { commandId: 'C', expiresAt: 1, marginMs: 0, at: 1 }),
      m.dispensed(o, 1),
      m.startRefund(o, 1),
      m.refunded(o, 1),
      m.fail(o, 'x', 1),
    ]) {
      expect(s.ok).toBe(false);
      if (!s.ok) expect(s.error.code).toBe('CLOUD_ERR_ORDER_STATE');
    }
    const p = ok(pay(o));
    // [ORDER-ONCE-1] a paid order cannot be paid again, a dispensing one cannot dispatch again
    expect(pay(p).ok).toBe(false);
    const d = ok(m.dispatch(p, { commandId: 'C', expiresAt: 1, marginMs: 0, at: 1 }));
    const again = m.dispatch(d, { commandId: 'C2', expiresAt: 1, marginMs: 0, at: 1 });
    expect(again.ok).toBe(false);
    expect(m.expire(d, 1).ok).toBe(false);
    const done = ok(m.dispensed(d, 2));
    expect(m.fail(done, 'no_drop', 3).ok).toBe(false);
    expect(m.startRefund(done, 3).ok).toBe(false);
  });

  it('refuses a wrong amount with CLOUD_ERR_PAY_AMOUNT and leaves the order unpaid', () => {
    const s = pay(base(), 1);
    expect(s.ok).toBe(false);
    if (!s.ok) expect(s.error.code).toBe('CLOUD_ERR_PAY_AMOUNT');
  });

  it('a late payment on an expired order goes straight to refunding', () => {
    const e = ok(m.expire(base(), 70_000));
    expect(e).toMatchObject({ state: 'expired', dueAt: null });
    const late = ok(
      m.payLate(e, { provider: 'wechat', txId: 'T9', amountCents: 350, currency: 'CNY', at: 80_000 }),
    );
    expect(late).toMatchObject({
      state: 'refunding',
      failureReason: 'late_payment',
      paymentTxId: 'T9',
      dueAt: 80_000,
    });
    expect(
      m.payLate(late, { provider: 'wechat', txId: 'T9', amountCents: 350, currency: 'CNY', at: 1 }).ok,
    ).toBe(false);
  });

  it('every step lands in a state TRANSITIONS allows', () => {
    const o = base();
    const p = ok(pay(o));
    const pairs: [m.Order, m.Order][] = [
      [o, p],
      [o, ok(m.expire(o, 1))],
      [p, ok(m.fail(p, 'x', 1))],
    ];
    for (const [a, b] of pairs) expect(m.TRANSITIONS[a.state]).toContain(b.state);
    expect(m.refundNoFor('X')).toBe(m.refundNoFor('X'));
  });
});
