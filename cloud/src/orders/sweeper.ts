import type { Logger } from 'pino';
import * as m from './machine.ts';
import type { Order } from './machine.ts';
import type { OrdersService } from './service.ts';

/**
 * The settlement sweeper: `tick(now)` looks at every non-terminal order whose `dueAt`
 * has come (time injected; the cloud calls it on an interval, tests and the torture run
 * call it in simulated time). [ORDER-SETTLE-1] every paid order ends dispensed or
 * refunded:
 * - created, past its expiry: query-order fallback (no notification came). SUCCESS →
 *   the payment is applied as if notified; NOTPAY → close the order at the provider,
 *   then expired (a close refused with ORDERPAID → query again); query error → retry.
 * - paid (not expected to persist: pay and dispatch share a transaction) → failed → refund.
 * - dispensing past the command's expiry + margin: the edge refuses an expired command,
 *   so it will never run → failed (expired) → refunding.
 * - failed → refunding; refunding → provider refund with the order's refund number,
 *   retried with backoff until the provider says SUCCESS.
 */
export interface SweepReport {
  looked: number;
  queriedPaid: number;
  expired: number;
  dispenseExpired: number;
  refunded: number;
  retries: number;
}

export class SettlementSweeper {
  private running: Promise<SweepReport> | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly svc: OrdersService,
    private readonly opts: { batch?: number; logger?: Logger } = {},
  ) {}

  /** One pass; concurrent calls share the pass in progress. */
  tick(now: number): Promise<SweepReport> {
    this.running ??= this.pass(now).finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  start(intervalMs: number, now: () => number): void {
    this.timer = setInterval(() => {
      this.tick(now()).catch((e) => this.opts.logger?.warn({ err: e }, 'settlement sweep failed'));
    }, intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
  }

  private async pass(now: number): Promise<SweepReport> {
    const rep: SweepReport = {
      looked: 0,
      queriedPaid: 0,
      expired: 0,
      dispenseExpired: 0,
      refunded: 0,
      retries: 0,
    };
    const batch = this.opts.batch ?? 500;
    const seen = new Set<string>();
    for (;;) {
      const due = (await this.svc.repo.due(now, batch)).filter((o) => !seen.has(o.id));
      if (due.length === 0) break;
      for (const o of due) {
        seen.add(o.id);
        rep.looked++;
        try {
          await this.one(o, now, rep);
        } catch (e) {
          rep.retries++;
          this.opts.logger?.warn({ err: e, orderId: o.id, state: o.state }, 'sweeping an order failed');
          await this.reschedule(o.id, now);
        }
      }
      if (due.length < batch) break;
    }
    return rep;
  }

  private async one(o: Order, now: number, rep: SweepReport): Promise<void> {
    const svc = this.svc;
    switch (o.state) {
      case 'created': {
        const client = o.provider ? svc.providerClient(o.provider) : undefined;
        if (!client) {
          await this.step(o.id, 'created', (x) => m.expire(x, now));
          rep.expired++;
          return;
        }
        // [PAY-QUERY-1] no notification: ask the provider before deciding.
        const q = await client.queryOrder(o.id);
        if (q.tradeState === 'SUCCESS' && q.transactionId !== undefined) {
          await svc.applyPayment(
            o.provider!,
            {
              notificationId: `query:${q.transactionId}`,
              outTradeNo: o.id,
              transactionId: q.transactionId,
              tradeState: 'SUCCESS',
              amountCents: q.amountCents ?? -1,
              currency: q.currency ?? o.currency,
              successTime: q.successTime ?? now,
            },
            'query',
          );
          rep.queriedPaid++;
          return;
        }
        if (q.tradeState === 'NOTPAY') {
          const c = await client.closeOrder(o.id);
          if (!c.ok) {
            // Paid between the query and the close: query again on the next pass.
            await this.reschedule(o.id, now, 0);
            return;
          }
        }
        // NOTPAY and closed, or CLOSED already: never paid.
        if (await this.step(o.id, 'created', (x) => m.expire(x, now))) rep.expired++;
        return;
      }
      case 'paid':
        await this.step(o.id, 'paid', (x) =>
          m.andThen(m.fail(x, 'command_error', now), (f) => m.startRefund(f, now)),
        );
        break;
      case 'dispensing':
        if (o.dueAt !== null && o.dueAt > now) return;
        if (
          await this.step(o.id, 'dispensing', (x) =>
            m.andThen(m.fail(x, 'expired', now), (f) => m.startRefund(f, now)),
          )
        )
          rep.dispenseExpired++;
        break;
      case 'failed':
        await this.step(o.id, 'failed', (x) => m.startRefund(x, now));
        break;
      case 'refunding':
        break;
      default:
        return;
    }
    const r = await svc.tryRefund(o.id);
    if (r === 'refunded') rep.refunded++;
    else if (r === 'retry') rep.retries++;
  }

  /** Applies a step if the order is still in `from` (it may have moved since `due()`). */
  private async step(id: string, from: m.OrderState, f: (o: Order) => m.Step): Promise<boolean> {
    let to: m.OrderState | undefined;
    const moved = await this.svc.repo.transaction(async (tx) => {
      const cur = await tx.lock(id);
      if (!cur || cur.state !== from) return false;
      const s = f(cur);
      if (!s.ok) throw s.error;
      await tx.save(s.order);
      if (s.order.state === 'refunding')
        await tx.ensureRefund({
          refundNo: s.order.refundNo,
          orderId: s.order.id,
          amountCents: s.order.amountCents,
          at: s.order.updatedAt,
        });
      this.svc.metrics.orders.inc({ state: s.order.state });
      to = s.order.state;
      return true;
    });
    // [COUPON-REDEEM-2] an order that will never be paid, or is paid back, gives its coupon back.
    if (moved && (to === 'expired' || to === 'refunding')) await this.svc.releaseCoupon(id);
    return moved;
  }

  private async reschedule(id: string, now: number, delayMs?: number): Promise<void> {
    await this.svc.repo
      .transaction(async (tx) => {
        const cur = await tx.lock(id);
        if (!cur || cur.dueAt === null) return;
        await tx.save(m.recheckAt(cur, now, now + (delayMs ?? this.svc.timing.retryMs)));
      })
      .catch(() => undefined);
  }
}
