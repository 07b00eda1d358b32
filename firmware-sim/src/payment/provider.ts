import { createHmac, type KeyObject, randomBytes, sign } from 'node:crypto';
import { TimeQueue } from './heap.ts';

/**
 * A simulated mobile-payment provider in the style of WeChat Pay v3
 * (shared/reference/02-mdb.md "Mobile payment"):
 * - a paid order is notified to the merchant's notify URL, signed over
 *   `timestamp\nnonce\nbody\n` (Ed25519 or HMAC-SHA256 instead of WeChat's RSA, see
 *   docs/vending.md), each delivery re-signed with a fresh timestamp and nonce;
 * - until a 2xx answer, it retries on WeChat's schedule 15s/15s/30s/3m/10m/20m/30m/30m/
 *   30m/60m/3h/3h/3h/6h/6h (24h4m), with an injected clock: `tick(now)` delivers what
 *   is due, so the whole schedule runs in milliseconds;
 * - faults: a delivery lost on the way, delivered twice, or delayed; a whole
 *   notification never sent (the merchant must query); query/refund API errors;
 * - query-order, close-order and refund APIs. Refund is idempotent on out_refund_no and
 *   [ORDER-REFUND-NO-1] REJECTS a retry for the same order with a different
 *   out_refund_no ("payment order number is inconsistent"), counted in
 *   `stats.refundIdChanged`. A refund of more than was paid, or of an unpaid order, is
 *   refused as well.
 *
 * The client side (`queryOrder`, `closeOrder`, `refund`) has the shape of
 * cloud/src/payments/provider.ts `PaymentProviderClient` (structurally: a simulator does
 * not import the cloud).
 */
export const WECHAT_RETRY_SCHEDULE_MS: readonly number[] = [
  15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10_800, 10_800, 10_800, 21_600, 21_600,
].map((s) => s * 1000);

export interface NotifyRequest {
  headers: Record<string, string>;
  body: string;
}

export interface PaymentFaults {
  /** A delivery attempt is lost (the provider sees no answer and retries). */
  lose?: number;
  /** A delivery attempt is sent twice (both copies reach the merchant). */
  duplicate?: number;
  /** A delivery attempt is delayed by up to `delayMaxMs`. */
  delay?: number;
  delayMaxMs?: number;
  /** The notification is never sent at all (only query-order finds the payment). */
  neverNotify?: number;
  /** query / refund / close calls fail with a provider error. */
  apiError?: number;
}

export interface SimProviderOptions {
  name?: string;
  algorithm: 'hmac-sha256' | 'ed25519';
  /** HMAC secret, or the provider's Ed25519 private key. */
  key: string | KeyObject;
  serial?: string;
  now: () => number;
  rng?: () => number;
  /** POSTs one notification to the merchant; resolves with the HTTP status (throw = no answer). */
  deliver: (req: NotifyRequest) => Promise<number>;
  faults?: PaymentFaults;
  schedule?: readonly number[];
}

export interface Trade {
  outTradeNo: string;
  transactionId: string;
  amountCents: number;
  currency: string;
  state: 'SUCCESS' | 'CLOSED' | 'REFUND';
  successTime: number;
  /** Deliveries attempted, whether the merchant acknowledged, whether we gave up. */
  attempts: number;
  acknowledged: boolean;
  gaveUp: boolean;
  refundNo?: string;
  refundedCents: number;
  /** The payer's id in the provider (WeChat `payer.openid`), sent in the notification. */
  payer?: string;
}

export interface ProviderStats {
  paid: number;
  deliveries: number;
  acknowledged: number;
  lost: number;
  duplicated: number;
  gaveUp: number;
  neverNotified: number;
  refundCalls: number;
  refundsSucceeded: number;
  /** Refund calls that reused an out_refund_no already refunded (idempotent success). */
  refundReplays: number;
  /** [ORDER-REFUND-NO-1] refund retries with a different out_refund_no: must stay 0. */
  refundIdChanged: number;
  refundRefused: number;
  apiErrors: number;
}

export class SimPaymentProvider {
  readonly name: string;
  readonly trades = new Map<string, Trade>();
  private readonly closed = new Set<string>();
  private readonly queue = new TimeQueue<{ outTradeNo: string; attempt: number; copy: boolean }>();
  private readonly rng: () => number;
  private readonly schedule: readonly number[];
  readonly faults: Required<PaymentFaults>;
  private txSeq = 0;
  readonly stats: ProviderStats = {
    paid: 0,
    deliveries: 0,
    acknowledged: 0,
    lost: 0,
    duplicated: 0,
    gaveUp: 0,
    neverNotified: 0,
    refundCalls: 0,
    refundsSucceeded: 0,
    refundReplays: 0,
    refundIdChanged: 0,
    refundRefused: 0,
    apiErrors: 0,
  };

  constructor(private readonly opts: SimProviderOptions) {
    this.name = opts.name ?? 'wechat';
    this.rng = opts.rng ?? Math.random;
    this.schedule = opts.schedule ?? WECHAT_RETRY_SCHEDULE_MS;
    this.faults = {
      lose: 0,
      duplicate: 0,
      delay: 0,
      delayMaxMs: 60_000,
      neverNotify: 0,
      apiError: 0,
      ...opts.faults,
    };
  }

  /** The buyer pays `outTradeNo`; refused if the order was closed or is paid already. */
  pay(
    outTradeNo: string,
    amountCents: number,
    currency = 'CNY',
    payer?: string,
  ): { ok: true; transactionId: string } | { ok: false; reason: string } {
    if (this.closed.has(outTradeNo)) return { ok: false, reason: 'ORDER_CLOSED' };
    if (this.trades.has(outTradeNo)) return { ok: false, reason: 'ORDERPAID' };
    const now = this.opts.now();
    this.txSeq += 1;
    const t: Trade = {
      outTradeNo,
      transactionId: `42000${String(this.txSeq).padStart(12, '0')}`,
      amountCents,
      currency,
      state: 'SUCCESS',
      successTime: now,
      attempts: 0,
      acknowledged: false,
      gaveUp: false,
      refundedCents: 0,
      ...(payer !== undefined ? { payer } : {}),
    };
    this.trades.set(outTradeNo, t);
    this.stats.paid++;
    if (this.rng() < this.faults.neverNotify) {
      this.stats.neverNotified++;
      t.gaveUp = true;
    } else this.queue.push(now, { outTradeNo, attempt: 0, copy: false });
    return { ok: true, transactionId: t.transactionId };
  }

  /** Earliest pending delivery time (for a simulated-time driver). */
  nextAt(): number | undefined {
    return this.queue.peekAt();
  }

  get pending(): number {
    return this.queue.size;
  }

  /** Delivers every notification due at `now`; retries follow the schedule. */
  async tick(now: number): Promise<void> {
    for (;;) {
      const job = this.queue.popDue(now);
      if (!job) return;
      await this.attempt(job, now);
    }
  }

  private async attempt(
    job: { outTradeNo: string; attempt: number; copy: boolean },
    now: number,
  ): Promise<void> {
    const t = this.trades.get(job.outTradeNo);
    if (!t || (t.acknowledged && !job.copy)) return;
    const f = this.faults;
    if (!job.copy && this.rng() < f.delay) {
      // Late: the same attempt, later (the merchant sees it out of order).
      this.queue.push(now + 1 + Math.floor(this.rng() * f.delayMaxMs), { ...job, copy: true });
      return;
    }
    if (!job.copy) {
      t.attempts++;
      if (this.rng() < f.duplicate) {
        this.stats.duplicated++;
        this.queue.push(now + Math.floor(this.rng() * 5000), { ...job, copy: true });
      }
    }
    let status = 0;
    if (this.rng() < f.lose) this.stats.lost++;
    else {
      this.stats.deliveries++;
      try {
        status = await this.opts.deliver(this.notification(t, now));
      } catch {
        status = 0;
      }
    }
    if (status >= 200 && status < 300) {
      if (!t.acknowledged) this.stats.acknowledged++;
      t.acknowledged = true;
      return;
    }
    if (job.copy) return;
    const wait = this.schedule[job.attempt];
    if (wait === undefined) {
      // [PAY-QUERY-1] the schedule is over: the merchant has to query.
      t.gaveUp = true;
      this.stats.gaveUp++;
      return;
    }
    this.queue.push(now + wait, { outTradeNo: t.outTradeNo, attempt: job.attempt + 1, copy: false });
  }

  /** One signed TRANSACTION.SUCCESS notification, as it would be POSTed. */
  notification(t: Trade, now: number): NotifyRequest {
    const body = JSON.stringify({
      id: `EV-${t.transactionId}-${t.attempts}`,
      create_time: new Date(now).toISOString(),
      event_type: 'TRANSACTION.SUCCESS',
      resource_type: 'plaintext-resource',
      summary: 'payment succeeded',
      resource: {
        out_trade_no: t.outTradeNo,
        transaction_id: t.transactionId,
        trade_state: 'SUCCESS',
        success_time: new Date(t.successTime).toISOString(),
        amount: { total: t.amountCents, currency: t.currency },
        ...(t.payer !== undefined ? { payer: { openid: t.payer } } : {}),
      },
    });
    return this.signed(body, now);
  }

  /** Signs any body (tests use it to forge a wrong-amount or unknown-order notification). */
  signed(body: string, now: number): NotifyRequest {
    const timestamp = String(Math.floor(now / 1000));
    const nonce = randomBytes(12).toString('hex');
    return {
      headers: {
        'content-type': 'application/json',
        'wechatpay-timestamp': timestamp,
        'wechatpay-nonce': nonce,
        'wechatpay-serial': this.opts.serial ?? 'SIM-1',
        'wechatpay-signature': signMessage(
          this.opts.algorithm,
          this.opts.key,
          `${timestamp}\n${nonce}\n${body}\n`,
        ),
      },
      body,
    };
  }

  // ---------- merchant-facing API (PaymentProviderClient shape) ----------

  private apiFault(what: string): void {
    if (this.rng() < this.faults.apiError) {
      this.stats.apiErrors++;
      throw new Error(`SYSTEM_ERROR: provider ${what} unavailable`);
    }
  }

  async queryOrder(outTradeNo: string): Promise<{
    outTradeNo: string;
    tradeState: 'SUCCESS' | 'NOTPAY' | 'CLOSED' | 'REFUND';
    transactionId?: string;
    amountCents?: number;
    currency?: string;
    successTime?: number;
  }> {
    this.apiFault('query');
    const t = this.trades.get(outTradeNo);
    if (!t) return { outTradeNo, tradeState: this.closed.has(outTradeNo) ? 'CLOSED' : 'NOTPAY' };
    return {
      outTradeNo,
      tradeState: t.state === 'REFUND' ? 'REFUND' : 'SUCCESS',
      transactionId: t.transactionId,
      amountCents: t.amountCents,
      currency: t.currency,
      successTime: t.successTime,
    };
  }

  async closeOrder(outTradeNo: string): Promise<{ ok: true } | { ok: false; reason: 'ORDERPAID' }> {
    this.apiFault('close');
    if (this.trades.has(outTradeNo)) return { ok: false, reason: 'ORDERPAID' };
    this.closed.add(outTradeNo);
    return { ok: true };
  }

  async refund(req: {
    outTradeNo: string;
    outRefundNo: string;
    amountCents: number;
    totalCents: number;
    currency: string;
  }): Promise<{ status: 'SUCCESS' | 'PROCESSING' }> {
    this.stats.refundCalls++;
    const t = this.trades.get(req.outTradeNo);
    if (t?.refundNo !== undefined && t.refundNo !== req.outRefundNo) {
      // WeChat refunds FAQ: a retry for the same order must reuse the first out_refund_no.
      this.stats.refundIdChanged++;
      throw new Error(`INVALID_REQUEST: out_refund_no ${req.outRefundNo} is inconsistent with ${t.refundNo}`);
    }
    this.apiFault('refund');
    if (
      !t ||
      req.amountCents >
        t.amountCents - t.refundedCents + (t.refundNo === req.outRefundNo ? req.amountCents : 0)
    ) {
      this.stats.refundRefused++;
      throw new Error(`INVALID_REQUEST: nothing to refund for ${req.outTradeNo}`);
    }
    if (t.refundNo === req.outRefundNo) {
      this.stats.refundReplays++;
      return { status: 'SUCCESS' };
    }
    t.refundNo = req.outRefundNo;
    t.refundedCents += req.amountCents;
    t.state = 'REFUND';
    this.stats.refundsSucceeded++;
    // Done here, but the answer is lost: the merchant must retry with the same number.
    if (this.rng() < this.faults.apiError) {
      this.stats.apiErrors++;
      throw new Error('SYSTEM_ERROR: response lost');
    }
    return { status: 'SUCCESS' };
  }
}

export function signMessage(
  algorithm: 'hmac-sha256' | 'ed25519',
  key: string | KeyObject,
  message: string,
): string {
  if (algorithm === 'hmac-sha256') return createHmac('sha256', key).update(message).digest('base64');
  return sign(null, Buffer.from(message), key as KeyObject).toString('base64');
}
