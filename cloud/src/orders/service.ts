import { createHash } from 'node:crypto';
import { type VendDispense, VEND_DISPENSE, type VendResult } from '@storelink/protocols';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { cloudError } from '../errors.ts';
import type { NewCommand } from '../store/store.ts';
import type { CouponRedeemer, CouponRedemption, MemberRef } from '../members/coupons.ts';
import type { PaymentProviderClient } from '../payments/provider.ts';
import { type NotificationVerifier, type PaymentNotice, parseNotification } from '../payments/wechat.ts';
import * as m from './machine.ts';
import type { Order } from './machine.ts';
import type { OrdersRepo, OrdersTx } from './repo.ts';

/**
 * Orders and payments (docs/vending.md): the QR flow creates an order, the provider's
 * notification (or the query-order fallback) pays it, payment and the one dispense
 * command are decided in one transaction, the edge's result settles it, and anything
 * that will not dispense is refunded with the order's fixed refund number.
 */
export interface PaymentsTiming {
  /** How long the buyer has to pay (then query-order, close, expire). */
  orderTtlMs: number;
  /** Lifetime of the vend.dispense command. */
  dispenseTtlMs: number;
  /** Past the command's expiry + this, an order still dispensing is failed (expired). */
  settleMarginMs: number;
  /** A payment this long past the order's expiry is refunded instead of dispensed. */
  lateGraceMs: number;
  /** First retry of a failed refund / query (doubles, up to an hour). */
  retryMs: number;
}

export const DEFAULT_TIMING: PaymentsTiming = {
  orderTtlMs: 5 * 60_000,
  dispenseTtlMs: 60_000,
  settleMarginMs: 5 * 60_000,
  lateGraceMs: 120_000,
  retryMs: 30_000,
};

export interface DispenseCommand {
  id: string;
  gateway: string;
  payload: VendDispense;
  ttlMs: number;
}

export interface ProviderBinding {
  verifier: NotificationVerifier;
  client?: PaymentProviderClient;
}

export function createOrdersMetrics(registry?: Registry) {
  const registers = registry ? [registry] : [];
  return {
    notifications: new Counter({
      name: 'storelink_cloud_payment_notifications_total',
      help: 'Payment notifications by provider and outcome (paid, duplicate, late, refused reasons)',
      labelNames: ['provider', 'outcome'] as const,
      registers,
    }),
    orders: new Counter({
      name: 'storelink_cloud_orders_transitions_total',
      help: 'Order state transitions, by the state reached',
      labelNames: ['state'] as const,
      registers,
    }),
    dispenseCommands: new Counter({
      name: 'storelink_cloud_vend_dispense_commands_total',
      help: 'vend.dispense commands issued, by outcome of the publish',
      labelNames: ['outcome'] as const,
      registers,
    }),
    vendResults: new Counter({
      name: 'storelink_cloud_vend_results_total',
      help: 'Dispense results received, by effect (applied, duplicate, after_settlement, unknown_order, wrong_gateway)',
      labelNames: ['effect'] as const,
      registers,
    }),
    refunds: new Counter({
      name: 'storelink_cloud_refund_attempts_total',
      help: 'Refund calls to the provider, by result',
      labelNames: ['result'] as const,
      registers,
    }),
  };
}
export type OrdersMetrics = ReturnType<typeof createOrdersMetrics>;

export interface OrdersServiceOptions {
  repo: OrdersRepo;
  providers: Record<string, ProviderBinding>;
  /** Sends the signed command (cloud: CommandService.send with the given id). */
  issueDispense: (c: DispenseCommand) => Promise<void>;
  /**
   * Two-phase dispense [CMD-TX-1]: `prepare` signs the command (no I/O); the payment
   * transaction stores its row with the order change, and `publish` sends it after the
   * commit. One wait for the store's connection fewer on the pay-to-vend path than
   * `issueDispense`, which is used where the transaction cannot store commands.
   */
  dispenseInTx?: {
    prepare(c: DispenseCommand, site: string): { row: NewCommand; publish(): Promise<void> };
  };
  now: () => number;
  timing?: Partial<PaymentsTiming>;
  metrics?: OrdersMetrics;
  logger?: Logger;
  /** Skip signature verification (torture model only; never configurable in the cloud). */
  trustNotifications?: boolean;
  /** Members' coupons (docs/members.md): applied to an order's price at creation. */
  coupons?: CouponRedeemer;
  /** Called after a payment committed (`paid`), with the payer's channel id if sent. */
  onPaid?: (order: Order, notice: PaymentNotice) => Promise<void> | void;
}

export interface CreateOrderInput {
  id?: string;
  gateway: string;
  site: string;
  slot: number;
  amountCents: number;
  currency?: string;
  sku?: string;
  provider?: string;
  /** The member ordering: their best valid coupon (or `couponId`) lowers the price [ORDER-COUPON-1]. */
  member?: MemberRef;
  couponId?: string;
}

export type PaymentOutcome = 'paid' | 'duplicate' | 'late' | 'ignored' | 'second_payment';

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/**
 * [ORDER-ONCE-1] the dispense command id is a ULID derived from the order alone (time
 * part: order creation; random part: a hash of the order id), so a re-issue is the same
 * command and the edge's executed-id set refuses a second run as well as its ledger.
 */
export function dispenseCommandIdFor(orderId: string, createdAt: number): string {
  let t = '';
  let ms = Math.max(0, Math.floor(createdAt));
  for (let i = 0; i < 10; i++) {
    t = CROCKFORD[ms % 32] + t;
    ms = Math.floor(ms / 32);
  }
  const h = createHash('sha256').update(`vend.dispense:${orderId}`).digest();
  let r = '';
  for (let i = 0; i < 16; i++) r += CROCKFORD[h[i]! % 32];
  return t + r;
}

let seq = 0;
function newOrderId(now: number): string {
  seq = (seq + 1) % 1_000_000;
  return `SL${now.toString(36).toUpperCase()}${seq.toString(36).toUpperCase().padStart(4, '0')}${Math.floor(
    Math.random() * 36 ** 4,
  )
    .toString(36)
    .toUpperCase()
    .padStart(4, '0')}`;
}

/** Orders whose discount is remembered in memory [ORDER-COUPON-2]. */
const DISCOUNT_MEMORY = 10_000;

export class OrdersService {
  readonly timing: PaymentsTiming;
  readonly metrics: OrdersMetrics;
  private readonly now: () => number;

  constructor(private readonly opts: OrdersServiceOptions) {
    this.timing = { ...DEFAULT_TIMING, ...opts.timing };
    this.metrics = opts.metrics ?? createOrdersMetrics();
    this.now = opts.now;
  }

  get repo(): OrdersRepo {
    return this.opts.repo;
  }

  providerClient(name: string): PaymentProviderClient | undefined {
    return this.opts.providers[name]?.client;
  }

  async createOrder(i: CreateOrderInput): Promise<Order> {
    return (await this.createOrderWithCoupon(i)).order;
  }

  /**
   * [ORDER-COUPON-1] with a member, their coupon is redeemed for this order id first
   * (idempotent per order) and the order is created at the discounted price; the
   * dispense command still carries the list price, which is what the machine asks for
   * (the coupon pays the difference). If the order cannot be created the coupon is released.
   */
  async createOrderWithCoupon(i: CreateOrderInput): Promise<{ order: Order; coupon?: CouponRedemption }> {
    const now = this.now();
    const provider = i.provider ?? Object.keys(this.opts.providers)[0];
    if (provider === undefined || !this.opts.providers[provider])
      throw cloudError('CLOUD_ERR_PAY_PROVIDER', { provider: provider ?? '(none)' });
    const id = i.id ?? newOrderId(now);
    const coupon =
      i.member && this.opts.coupons
        ? await this.opts.coupons.redeem({
            member: i.member,
            orderId: id,
            draft: {
              site: i.site,
              gateway: i.gateway,
              items: [{ sku: i.sku ?? `slot-${i.slot}`, priceCents: i.amountCents, qty: 1 }],
              ...(i.currency ? { currency: i.currency } : {}),
              minTotalCents: 1,
            },
            ...(i.couponId !== undefined ? { couponId: i.couponId } : {}),
          })
        : undefined;
    const o: Order = {
      ...m.newOrder({
        id,
        gateway: i.gateway,
        site: i.site,
        slot: i.slot,
        sku: i.sku ?? null,
        amountCents: coupon ? coupon.totalCents : i.amountCents,
        ...(i.currency ? { currency: i.currency } : {}),
        now,
        ttlMs: this.timing.orderTtlMs,
      }),
      provider,
    };
    const ok = await this.opts.repo
      .transaction((tx) => tx.insert(o))
      .catch(async (e: unknown) => {
        if (coupon) await this.opts.coupons?.release(id);
        throw e;
      });
    if (!ok) {
      // The id was taken before: that order's coupon (if any) stays with it.
      throw cloudError('CLOUD_ERR_CONFLICT', { what: 'order', id: o.id, reason: 'out_trade_no is taken' });
    }
    this.metrics.orders.inc({ state: 'created' });
    this.rememberDiscount(o.id, coupon ? i.amountCents - coupon.totalCents : 0);
    return coupon ? { order: o, coupon } : { order: o };
  }

  /**
   * [ORDER-COUPON-2] The discount of an order, remembered from its creation so that the
   * payment path (notification → dispense command, goal p99 < 50 ms) does not queue one
   * more query behind other transactions on the store; orders created before a restart
   * (or pushed out of this bounded memory) are looked up as before.
   */
  private readonly discounts = new Map<string, number>();
  private rememberDiscount(orderId: string, cents: number): void {
    this.discounts.set(orderId, cents);
    if (this.discounts.size > DISCOUNT_MEMORY) this.discounts.delete(this.discounts.keys().next().value!);
  }

  private async discountOf(orderId: string): Promise<number> {
    const known = this.discounts.get(orderId);
    if (known !== undefined) return known;
    return this.opts.coupons ? ((await this.opts.coupons.redemptionFor(orderId))?.discountCents ?? 0) : 0;
  }

  /**
   * `POST /payments/notify/:provider`: verify, parse, apply. Throws coded errors (the
   * provider retries on any non-2xx); every refusal is counted by reason.
   */
  async handleNotification(
    provider: string,
    headers: Record<string, string | string[] | undefined>,
    body: string,
  ): Promise<PaymentOutcome> {
    const p = this.opts.providers[provider];
    const count = (outcome: string) =>
      this.metrics.notifications.inc({ provider: p ? provider : 'unknown', outcome });
    if (!p) {
      count('unknown_provider');
      throw cloudError('CLOUD_ERR_PAY_PROVIDER', { provider });
    }
    let n: PaymentNotice;
    try {
      if (!this.opts.trustNotifications) p.verifier.verify(headers, body, this.now());
      n = parseNotification(provider, body);
    } catch (e) {
      count((e as { code?: string }).code === 'CLOUD_ERR_PAY_SIGNATURE' ? 'bad_signature' : 'malformed');
      throw e;
    }
    if (n.tradeState !== 'SUCCESS') {
      count('ignored');
      return 'ignored';
    }
    return this.applyPayment(provider, n, 'notify');
  }

  /**
   * [PAY-NOTIFY-ONCE-1] one transaction, order row locked: record the notification by
   * provider tx id (a duplicate has no effect and is acknowledged), check the amount,
   * then created → paid → dispensing (the one command) or, too late, → refunding.
   */
  async applyPayment(
    provider: string,
    n: PaymentNotice,
    source: 'notify' | 'query' | 'close',
  ): Promise<PaymentOutcome> {
    const now = this.now();
    const count = (outcome: string) => this.metrics.notifications.inc({ provider, outcome });
    // [ORDER-COUPON-1] the machine asks for the list price; the coupon paid the difference.
    const discount = await this.discountOf(n.outTradeNo);
    // Set when the dispense command was stored in the payment transaction [CMD-TX-1].
    let publishDispense: (() => Promise<void>) | undefined;
    const r = await this.opts.repo
      .transaction(async (tx) => {
        const o = await tx.lock(n.outTradeNo);
        if (!o) throw cloudError('CLOUD_ERR_ORDER_UNKNOWN', { orderId: n.outTradeNo });
        if (n.amountCents !== o.amountCents || n.currency !== o.currency) {
          // [PAY-AMOUNT-1] a false notification: refused, the order is NOT paid.
          throw cloudError('CLOUD_ERR_PAY_AMOUNT', {
            orderId: o.id,
            got: n.amountCents,
            currency: n.currency,
            expected: `${o.amountCents} ${o.currency}`,
          });
        }
        const payment: m.Payment = {
          provider,
          txId: n.transactionId,
          amountCents: n.amountCents,
          currency: n.currency,
          at: now,
        };
        let outcome: PaymentOutcome;
        let next: m.Step;
        let dispense: DispenseCommand | undefined;
        publishDispense = undefined;
        if (o.state === 'created' && now <= o.expiresAt + this.timing.lateGraceMs) {
          const commandId = dispenseCommandIdFor(o.id, o.createdAt);
          next = m.andThen(m.pay(o, payment), (paid) =>
            m.dispatch(paid, {
              commandId,
              expiresAt: now + this.timing.dispenseTtlMs,
              marginMs: this.timing.settleMarginMs,
              at: now,
            }),
          );
          outcome = 'paid';
          dispense = {
            id: commandId,
            gateway: o.gateway,
            payload: { orderId: o.id, slot: o.slot, priceCents: o.amountCents + discount },
            ttlMs: this.timing.dispenseTtlMs,
          };
        } else if (o.state === 'created' || o.state === 'expired') {
          // Paid, but it will not dispense: acknowledge and give the money back.
          next = m.payLate(o, payment);
          outcome = 'late';
        } else if (o.paymentTxId === n.transactionId) {
          // Same payment seen by another path (query after notify): nothing to do.
          next = { ok: true, order: o };
          outcome = 'duplicate';
        } else {
          // A second, different payment for an order already paid: acknowledged and
          // logged for an operator (the provider does not let one out_trade_no pay twice).
          next = { ok: true, order: o };
          outcome = 'second_payment';
        }
        const fresh = await tx.recordNotification({
          provider,
          txId: n.transactionId,
          orderId: o.id,
          amountCents: n.amountCents,
          currency: n.currency,
          source,
          outcome,
          receivedAt: now,
        });
        if (!fresh) return { outcome: 'duplicate' as const, order: o };
        if (!next.ok) throw next.error;
        if (dispense && this.opts.dispenseInTx && tx.insertCommand) {
          // The order turns `dispensing` and its command exists in one commit [CMD-TX-1].
          const p = this.opts.dispenseInTx.prepare(dispense, o.site);
          await tx.insertCommand(p.row);
          publishDispense = p.publish;
        }
        if (next.order !== o) await tx.save(next.order);
        if (outcome === 'late') await this.ensureRefundRow(tx, next.order, now);
        return { outcome, order: next.order, dispense: outcome === 'paid' ? dispense : undefined };
      })
      .catch((e: unknown) => {
        const code = (e as { code?: string }).code;
        if (code === 'CLOUD_ERR_ORDER_UNKNOWN') count('unknown_order');
        else if (code === 'CLOUD_ERR_PAY_AMOUNT') count('wrong_amount');
        else count('error');
        throw e;
      });
    count(r.outcome);
    if (r.outcome === 'paid') this.metrics.orders.inc({ state: 'dispensing' });
    if (r.outcome === 'late') this.metrics.orders.inc({ state: 'refunding' });
    if (r.dispense) await this.send(r.dispense, publishDispense);
    if (r.outcome === 'late') await this.tryRefund(r.order.id).catch(() => undefined);
    if (r.outcome === 'paid' && this.opts.onPaid) {
      try {
        await this.opts.onPaid(r.order, n);
      } catch (e) {
        // The payment stands; a lost profile update is logged, never a failed notification.
        this.opts.logger?.warn({ err: e, orderId: r.order.id }, 'onPaid hook failed');
      }
    }
    return r.outcome;
  }

  /** Publishing after commit: a lost publish leaves the order dispensing until it expires, then refunded. */
  private async send(c: DispenseCommand, publishStored?: () => Promise<void>): Promise<void> {
    try {
      await (publishStored ? publishStored() : this.opts.issueDispense(c));
      this.metrics.dispenseCommands.inc({ outcome: 'sent' });
    } catch (e) {
      this.metrics.dispenseCommands.inc({ outcome: 'failed' });
      this.opts.logger?.warn(
        { err: e, orderId: c.payload.orderId, commandId: c.id },
        'vend.dispense could not be sent; the order is refunded when the command expires',
      );
    }
  }

  private async ensureRefundRow(tx: OrdersTx, o: Order, at: number): Promise<void> {
    await tx.ensureRefund({ refundNo: o.refundNo, orderId: o.id, amountCents: o.amountCents, at });
  }

  /**
   * A dispense result, inside the caller's transaction (the ingest transaction, so the
   * event and its effect commit together). `dispensed` settles the order; `failed`
   * moves it to refunding (the sweeper calls the provider after commit).
   */
  async applyVendResult(
    tx: OrdersTx,
    gateway: string,
    r: { orderId?: string; commandId?: string; outcome: 'dispensed' | 'failed'; reason?: string },
    at: number,
  ): Promise<'applied' | 'duplicate' | 'after_settlement' | 'unknown_order' | 'wrong_gateway'> {
    const o =
      r.orderId !== undefined
        ? await tx.lock(r.orderId)
        : r.commandId !== undefined
          ? await tx.lockByCommand(r.commandId)
          : undefined;
    const effect = await (async () => {
      if (!o) return 'unknown_order' as const;
      // Only the machine the order was for can settle it.
      if (o.gateway !== gateway) return 'wrong_gateway' as const;
      if (o.state === 'dispensing') {
        const s =
          r.outcome === 'dispensed'
            ? m.dispensed(o, at)
            : m.andThen(m.fail(o, r.reason ?? 'vend_failed', at), (f) => m.startRefund(f, at));
        if (!s.ok) throw s.error;
        await tx.save(s.order);
        if (s.order.state === 'refunding') await this.ensureRefundRow(tx, s.order, at);
        this.metrics.orders.inc({ state: s.order.state });
        return 'applied' as const;
      }
      if (o.state === 'dispensed' && r.outcome === 'dispensed') return 'duplicate' as const;
      if ((o.state === 'refunding' || o.state === 'refunded') && r.outcome === 'failed')
        return 'duplicate' as const;
      return 'after_settlement' as const;
    })();
    this.metrics.vendResults.inc({ effect });
    if (effect === 'after_settlement' || effect === 'wrong_gateway') {
      this.opts.logger?.warn(
        { orderId: o?.id, state: o?.state, gateway, outcome: r.outcome, reason: r.reason },
        `vend result for order ${o?.id} ignored: ${effect}`,
      );
    }
    return effect;
  }

  /** Convenience: apply a vend.result / command.result in its own transaction. */
  async vendResult(gateway: string, r: Parameters<OrdersService['applyVendResult']>[2]) {
    return this.opts.repo.transaction((tx) => this.applyVendResult(tx, gateway, r, this.now()));
  }

  /**
   * [ORDER-REFUND-NO-1] calls the provider with the order's one refund number; on success
   * refunding → refunded; on failure the order stays refunding with a later `dueAt`.
   */
  async tryRefund(orderId: string): Promise<'refunded' | 'retry' | 'not_refunding'> {
    const o = await this.opts.repo.get(orderId);
    if (!o || o.state !== 'refunding') return 'not_refunding';
    const client = o.provider ? this.opts.providers[o.provider]?.client : undefined;
    let error: string | undefined;
    if (!client) error = `no provider client for ${o.provider ?? '(none)'}`;
    else {
      try {
        const r = await client.refund({
          outTradeNo: o.id,
          outRefundNo: o.refundNo,
          amountCents: o.amountCents,
          totalCents: o.amountCents,
          currency: o.currency,
        });
        if (r.status !== 'SUCCESS') error = `refund ${r.status}`;
      } catch (e) {
        error = (e as Error).message;
      }
    }
    const now = this.now();
    this.metrics.refunds.inc({ result: error ? 'retry' : 'succeeded' });
    return this.opts.repo.transaction(async (tx) => {
      const cur = await tx.lock(orderId);
      if (!cur || cur.state !== 'refunding') return 'not_refunding' as const;
      await this.ensureRefundRow(tx, cur, now);
      await tx.refundAttempt(cur.refundNo, { at: now, ok: !error, ...(error ? { error } : {}) });
      const s = error
        ? m.refundAttemptFailed(cur, now, now + this.backoff(cur.refundAttempts))
        : m.refunded(cur, now);
      if (!s.ok) throw s.error;
      await tx.save(s.order);
      if (!error) this.metrics.orders.inc({ state: 'refunded' });
      else
        this.opts.logger?.warn(
          { orderId, refundNo: cur.refundNo, attempt: cur.refundAttempts + 1, reason: error },
          cloudError('CLOUD_ERR_PAY_REFUND', { refundNo: cur.refundNo, orderId, reason: error }).message,
        );
      return error ? ('retry' as const) : ('refunded' as const);
    });
  }

  /** [COUPON-REDEEM-2] gives a member's coupon back when its order expires or is refunded (best effort). */
  async releaseCoupon(orderId: string): Promise<void> {
    try {
      await this.opts.coupons?.release(orderId);
    } catch (e) {
      this.opts.logger?.warn({ err: e, orderId }, 'coupon release failed; the coupon stays redeemed');
    }
  }

  backoff(attempts: number): number {
    return Math.min(this.timing.retryMs * 2 ** Math.min(attempts, 16), 3600_000);
  }
}

/** Maps a `vend.result` payload / `command.result` of vend.dispense to a result. */
export function vendResultFromEvent(
  type: string,
  payload: unknown,
): { orderId?: string; commandId?: string; outcome: 'dispensed' | 'failed'; reason?: string } | undefined {
  if (type === 'vend.result') {
    const p = payload as VendResult;
    return { orderId: p.orderId, outcome: p.outcome, ...(p.reason ? { reason: p.reason } : {}) };
  }
  if (type === 'command.result') {
    const p = payload as {
      commandId: string;
      type: string;
      status: string;
      code?: string;
      result?: { orderId?: string; outcome?: string; reason?: string };
    };
    if (p.type !== VEND_DISPENSE) return undefined;
    if (
      p.status === 'ok' &&
      p.result &&
      (p.result.outcome === 'dispensed' || p.result.outcome === 'failed')
    ) {
      return {
        commandId: p.commandId,
        ...(typeof p.result.orderId === 'string' ? { orderId: p.result.orderId } : {}),
        outcome: p.result.outcome,
        ...(p.result.reason ? { reason: p.result.reason } : {}),
      };
    }
    if (p.status === 'ok') return undefined;
    // rejected (expired, bad signature), error, timeout: the edge did not dispense.
    return {
      commandId: p.commandId,
      outcome: 'failed',
      reason: p.status === 'rejected' ? 'rejected' : 'command_error',
    };
  }
  return undefined;
}
