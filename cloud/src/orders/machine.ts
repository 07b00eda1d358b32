import type { StorelinkError } from '@storelink/protocols';
import { cloudError } from '../errors.ts';

/**
 * The order state machine as pure functions (docs/vending.md "Order states"):
 *
 *   created ──pay──▶ paid ──dispatch──▶ dispensing ──dispensed──▶ dispensed
 *      │               │                     └──fail──▶ failed ──startRefund──▶ refunding ──refunded──▶ refunded
 *      │               └──payLate (too late to dispense)──────────▶ refunding
 *      └──expire──▶ expired ──payLate (late notification)─────────▶ refunding
 *
 * Every step checks its preconditions and returns a new order or a coded error
 * (CLOUD_ERR_ORDER_STATE); nothing here does I/O, so the same rules run in the HTTP
 * service, the ingest hook, the sweeper and the torture model.
 *
 * Invariants these steps enforce:
 * - [ORDER-ONCE-1] `dispatch` only from `paid`: one payment, at most one dispense command.
 * - [ORDER-SETTLE-1] a paid order leaves every non-terminal state only towards
 *   `dispensed` or `refunded`; `expired` is terminal only for an order never paid.
 * - [ORDER-REFUND-NO-1] `refundNo` is fixed at creation (`R-${id}`) and no step changes
 *   it, so a retried refund reuses its out_refund_no (WeChat refunds FAQ).
 */
export const ORDER_STATES = [
  'created',
  'paid',
  'dispensing',
  'dispensed',
  'failed',
  'refunding',
  'refunded',
  'expired',
] as const;
export type OrderState = (typeof ORDER_STATES)[number];

export const TERMINAL_STATES: ReadonlySet<OrderState> = new Set(['dispensed', 'refunded', 'expired']);

export type FailureReason =
  // from the edge (edge/src/vending VendFailReason)
  | 'no_drop'
  | 'vend_failed'
  | 'vmc_reset'
  | 'denied'
  | 'cancelled'
  | 'timeout'
  | 'interrupted'
  | 'expired'
  | 'stopped'
  // cloud side
  | 'rejected'
  | 'command_error'
  | 'late_payment';

export interface Order {
  /** out_trade_no: what the buyer pays and what the edge ledger is keyed by. */
  id: string;
  gateway: string;
  site: string;
  slot: number;
  sku: string | null;
  amountCents: number;
  currency: string;
  state: OrderState;
  provider: string | null;
  paymentTxId: string | null;
  /** [ORDER-REFUND-NO-1] */
  refundNo: string;
  dispenseCommandId: string | null;
  dispenseExpiresAt: number | null;
  createdAt: number;
  /** Pay before this or the order is closed (and a later payment refunded). */
  expiresAt: number;
  paidAt: number | null;
  settledAt: number | null;
  failureReason: string | null;
  refundAttempts: number;
  /** When the sweeper must look at the order next (null: terminal). */
  dueAt: number | null;
  updatedAt: number;
}

export type Step<T = Order> = { ok: true; order: T } | { ok: false; error: StorelinkError };

/** [ORDER-REFUND-NO-1] derived, never random: the same order always gets the same number. */
export function refundNoFor(orderId: string): string {
  return `R-${orderId}`;
}

export interface NewOrderInput {
  id: string;
  gateway: string;
  site: string;
  slot: number;
  sku?: string | null;
  amountCents: number;
  currency?: string;
  now: number;
  ttlMs: number;
}

export function newOrder(i: NewOrderInput): Order {
  return {
    id: i.id,
    gateway: i.gateway,
    site: i.site,
    slot: i.slot,
    sku: i.sku ?? null,
    amountCents: i.amountCents,
    currency: i.currency ?? 'CNY',
    state: 'created',
    provider: null,
    paymentTxId: null,
    refundNo: refundNoFor(i.id),
    dispenseCommandId: null,
    dispenseExpiresAt: null,
    createdAt: i.now,
    expiresAt: i.now + i.ttlMs,
    paidAt: null,
    settledAt: null,
    failureReason: null,
    refundAttempts: 0,
    // The sweeper looks at an unpaid order when it expires (query-order fallback).
    dueAt: i.now + i.ttlMs,
    updatedAt: i.now,
  };
}

function refuse(o: Order, step: string): Step {
  return { ok: false, error: cloudError('CLOUD_ERR_ORDER_STATE', { orderId: o.id, step, state: o.state }) };
}

export interface Payment {
  provider: string;
  txId: string;
  amountCents: number;
  currency: string;
  at: number;
}

/** created → paid. The amount must equal the order's ("false notification" check). */
export function pay(o: Order, p: Payment): Step {
  if (o.state !== 'created') return refuse(o, 'pay');
  if (p.amountCents !== o.amountCents || p.currency !== o.currency) {
    return {
      ok: false,
      error: cloudError('CLOUD_ERR_PAY_AMOUNT', {
        orderId: o.id,
        got: p.amountCents,
        currency: p.currency,
        expected: `${o.amountCents} ${o.currency}`,
      }),
    };
  }
  return {
    ok: true,
    order: {
      ...o,
      state: 'paid',
      provider: p.provider,
      paymentTxId: p.txId,
      paidAt: p.at,
      dueAt: p.at,
      updatedAt: p.at,
    },
  };
}

/**
 * created | expired → refunding: paid, but it will not dispense (the order was closed or
 * the buyer is long gone). [ORDER-SETTLE-1] the money goes back.
 */
export function payLate(o: Order, p: Payment): Step {
  if (o.state !== 'created' && o.state !== 'expired') return refuse(o, 'payLate');
  if (p.amountCents !== o.amountCents || p.currency !== o.currency) {
    return pay({ ...o, state: 'created' }, p);
  }
  return {
    ok: true,
    order: {
      ...o,
      state: 'refunding',
      provider: p.provider,
      paymentTxId: p.txId,
      paidAt: p.at,
      failureReason: 'late_payment',
      settledAt: null,
      dueAt: p.at,
      updatedAt: p.at,
    },
  };
}

/** paid → dispensing with the one dispense command of this order [ORDER-ONCE-1]. */
export function dispatch(
  o: Order,
  cmd: { commandId: string; expiresAt: number; marginMs: number; at: number },
): Step {
  if (o.state !== 'paid') return refuse(o, 'dispatch');
  if (o.dispenseCommandId !== null) return refuse(o, 'dispatch');
  return {
    ok: true,
    order: {
      ...o,
      state: 'dispensing',
      dispenseCommandId: cmd.commandId,
      dispenseExpiresAt: cmd.expiresAt,
      // Past the command's expiry (+ margin for a result in transit) the edge can no
      // longer run it: the sweeper fails the order then.
      dueAt: cmd.expiresAt + cmd.marginMs,
      updatedAt: cmd.at,
    },
  };
}

/** dispensing → dispensed (terminal). */
export function dispensed(o: Order, at: number): Step {
  if (o.state !== 'dispensing') return refuse(o, 'dispensed');
  return { ok: true, order: { ...o, state: 'dispensed', settledAt: at, dueAt: null, updatedAt: at } };
}

/** paid | dispensing → failed. */
export function fail(o: Order, reason: FailureReason | string, at: number): Step {
  if (o.state !== 'dispensing' && o.state !== 'paid') return refuse(o, 'fail');
  return { ok: true, order: { ...o, state: 'failed', failureReason: reason, dueAt: at, updatedAt: at } };
}

/** failed → refunding. The refund number is the one fixed at creation. */
export function startRefund(o: Order, at: number): Step {
  if (o.state !== 'failed') return refuse(o, 'startRefund');
  return { ok: true, order: { ...o, state: 'refunding', dueAt: at, updatedAt: at } };
}

/** A refund attempt that did not succeed: stay refunding, try again later. */
export function refundAttemptFailed(o: Order, at: number, retryAt: number): Step {
  if (o.state !== 'refunding') return refuse(o, 'refundAttemptFailed');
  return { ok: true, order: { ...o, refundAttempts: o.refundAttempts + 1, dueAt: retryAt, updatedAt: at } };
}

/** refunding → refunded (terminal). */
export function refunded(o: Order, at: number): Step {
  if (o.state !== 'refunding') return refuse(o, 'refunded');
  return {
    ok: true,
    order: {
      ...o,
      state: 'refunded',
      refundAttempts: o.refundAttempts + 1,
      settledAt: at,
      dueAt: null,
      updatedAt: at,
    },
  };
}

/** created → expired: never paid (the provider said so and the order is closed there). */
export function expire(o: Order, at: number): Step {
  if (o.state !== 'created') return refuse(o, 'expire');
  return { ok: true, order: { ...o, state: 'expired', settledAt: at, dueAt: null, updatedAt: at } };
}

/** Reschedules the sweeper's next look without a state change (query failed, etc.). */
export function recheckAt(o: Order, at: number, dueAt: number): Order {
  return { ...o, dueAt, updatedAt: at };
}

/** Chains steps: the first error wins. (Not `then`: a module exporting `then` is a thenable and `await import()` of it never settles.) */
export function andThen(s: Step, f: (o: Order) => Step): Step {
  return s.ok ? f(s.order) : s;
}

/** Allowed transitions, for docs and tests. */
export const TRANSITIONS: Readonly<Record<OrderState, readonly OrderState[]>> = {
  created: ['paid', 'expired', 'refunding'],
  paid: ['dispensing', 'failed'],
  dispensing: ['dispensed', 'failed'],
  failed: ['refunding'],
  refunding: ['refunded'],
  dispensed: [],
  refunded: [],
  expired: ['refunding'],
};
