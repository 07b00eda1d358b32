import { createHmac, createPrivateKey, type KeyObject, randomBytes, sign } from 'node:crypto';
import { isStorelinkError } from '@storelink/protocols';
import { type CloudErrorCode, cloudError } from '../errors.ts';
import type { CloudMetrics } from '../metrics.ts';
import type {
  AgreementChargeClient,
  AgreementChargeRequest,
  AgreementChargeResult,
  PaymentProviderClient,
  QueriedTrade,
  RefundRequest,
} from './provider.ts';
import { NotificationVerifier, type SigAlgorithm } from './wechat.ts';

/**
 * The payment provider's merchant API over HTTPS, WeChat Pay v3 shape (docs/vending.md
 * "Provider adapter"): query-order, close-order, refund and the agreement deduction used by
 * cabinets. Node's global fetch (undici), no SDK.
 *
 * - [PAY-HTTP-1] every request is signed: `Authorization: WECHATPAY2-<ALG> mchid="",
 *   nonce_str="",timestamp="",serial_no="",signature=""` over
 *   `METHOD\nPATH?QUERY\ntimestamp\nnonce\nbody\n` with the merchant key (HMAC-SHA256 secret
 *   or Ed25519 private key). Production WeChat Pay uses `WECHATPAY2-SHA256-RSA2048` with
 *   the merchant's RSA key: that is `signRequest` below.
 * - [PAY-HTTP-2] every 2xx/4xx answer must be signed by the provider exactly like a
 *   notification; it is checked with the same `NotificationVerifier` before its body is
 *   read. A 5xx/429 is "retry later" whatever its body says.
 * - [PAY-HTTP-3] nothing here retries: every failure is a stable `CLOUD_ERR_PAYMENT_*`
 *   error and the caller (sweeper, refund backoff, cabinet charges) retries with the same
 *   out_trade_no / out_refund_no, which the provider is idempotent on. A timeout is
 *   "unknown outcome", handled the same way.
 */
export type ProviderOp = 'query' | 'close' | 'refund' | 'deduct';

export interface WechatHttpOptions {
  /** The provider's name in `payments.providers` (labels, error messages). */
  name: string;
  /** e.g. https://api.mch.weixin.qq.com (a path prefix is kept). */
  baseUrl: string;
  mchid: string;
  algorithm: SigAlgorithm;
  /** HMAC-SHA256 shared secret, or the merchant's Ed25519 private key (PEM). */
  merchantKey: string;
  /** Serial of the merchant key (serial_no in Authorization). */
  merchantSerial?: string;
  /** HMAC secret or the provider's Ed25519 public key (PEM) that signs answers. */
  providerKey: string;
  /** Expected Wechatpay-Serial of answers; absent = any. */
  providerSerial?: string;
  timeoutMs: number;
  /** Largest clock difference accepted on an answer's timestamp (default 5 min). */
  maxSkewMs?: number;
  now: () => number;
  metrics?: Pick<CloudMetrics, 'paymentProviderRequests' | 'paymentProviderSeconds'>;
}

/** The outcome label of a failed call, by error code. */
const OUTCOME_OF: Partial<Record<CloudErrorCode, string>> = {
  CLOUD_ERR_PAYMENT_UNAVAILABLE: 'unavailable',
  CLOUD_ERR_PAYMENT_TIMEOUT: 'timeout',
  CLOUD_ERR_PAYMENT_SIGNATURE: 'bad_signature',
  CLOUD_ERR_PAYMENT_AUTH: 'auth',
  CLOUD_ERR_PAYMENT_REJECTED: 'rejected',
  CLOUD_ERR_PAYMENT_RESPONSE: 'malformed',
};

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

export class WechatPayHttpClient implements PaymentProviderClient, AgreementChargeClient {
  private readonly verifier: NotificationVerifier;
  private readonly privateKey: KeyObject | undefined;
  private readonly base: URL;

  constructor(private readonly o: WechatHttpOptions) {
    this.verifier = new NotificationVerifier(o.name, {
      algorithm: o.algorithm,
      key: o.providerKey,
      ...(o.providerSerial !== undefined ? { serial: o.providerSerial } : {}),
      maxSkewMs: o.maxSkewMs ?? 5 * 60_000,
    });
    this.privateKey = o.algorithm === 'ed25519' ? createPrivateKey(o.merchantKey) : undefined;
    this.base = new URL(o.baseUrl);
  }

  // ---------------- PaymentProviderClient ----------------

  /** [PAY-QUERY-1] GET /v3/pay/transactions/out-trade-no/{no}?mchid= */
  async queryOrder(outTradeNo: string): Promise<QueriedTrade> {
    return this.call('query', async () => {
      const a = await this.send(
        'query',
        'GET',
        `/v3/pay/transactions/out-trade-no/${encodeURIComponent(outTradeNo)}?mchid=${encodeURIComponent(this.o.mchid)}`,
      );
      this.expect2xx('query', a);
      return { result: this.trade('query', outTradeNo, a.body), outcome: 'ok' };
    });
  }

  /** POST .../{no}/close; 400 ORDERPAID = paid meanwhile (the caller queries again). */
  async closeOrder(outTradeNo: string): Promise<{ ok: true } | { ok: false; reason: 'ORDERPAID' }> {
    return this.call<{ ok: true } | { ok: false; reason: 'ORDERPAID' }>('close', async () => {
      const a = await this.send(
        'close',
        'POST',
        `/v3/pay/transactions/out-trade-no/${encodeURIComponent(outTradeNo)}/close`,
        { mchid: this.o.mchid },
      );
      if (a.status >= 400 && a.body.code === 'ORDERPAID')
        return { result: { ok: false as const, reason: 'ORDERPAID' as const }, outcome: 'orderpaid' };
      this.expect2xx('close', a);
      return { result: { ok: true as const }, outcome: 'ok' };
    });
  }

  /**
   * POST /v3/refund/domestic/refunds. [ORDER-REFUND-NO-1] `outRefundNo` is the order's one
   * refund number; PROCESSING is "not done yet" (the caller retries with the same number).
   */
  async refund(req: RefundRequest): Promise<{ status: 'SUCCESS' | 'PROCESSING' }> {
    return this.call('refund', async () => {
      const a = await this.send('refund', 'POST', '/v3/refund/domestic/refunds', {
        out_trade_no: req.outTradeNo,
        out_refund_no: req.outRefundNo,
        amount: { refund: req.amountCents, total: req.totalCents, currency: req.currency },
      });
      this.expect2xx('refund', a);
      const st = a.body.status;
      if (st === 'SUCCESS' || st === 'PROCESSING')
        return { result: { status: st }, outcome: st === 'SUCCESS' ? 'ok' : 'processing' };
      if (st === 'CLOSED' || st === 'ABNORMAL')
        throw this.err('CLOUD_ERR_PAYMENT_REJECTED', 'refund', {
          status: a.status,
          code: st,
          reason: `refund ${req.outRefundNo} is ${st} at the provider (needs the merchant platform)`,
        });
      throw this.err('CLOUD_ERR_PAYMENT_RESPONSE', 'refund', { reason: `status ${String(st)} is unknown` });
    });
  }

  // ---------------- AgreementChargeClient ----------------

  /**
   * POST /v3/papay/agreement-deductions `{out_trade_no, agreement_id, amount:{total,currency},
   * description}` → `{status: SUCCESS|PROCESSING|REFUSED, transaction_id?, reason?}`.
   * [CAB-CHARGE-2] idempotent on out_trade_no at the provider.
   */
  async chargeAgreement(req: AgreementChargeRequest): Promise<AgreementChargeResult> {
    return this.call('deduct', async () => {
      const a = await this.send('deduct', 'POST', '/v3/papay/agreement-deductions', {
        out_trade_no: req.outTradeNo,
        agreement_id: req.agreementId,
        amount: { total: req.amountCents, currency: req.currency },
        ...(req.description !== undefined ? { description: req.description } : {}),
      });
      this.expect2xx('deduct', a);
      const b = a.body;
      if (b.status !== 'SUCCESS' && b.status !== 'PROCESSING' && b.status !== 'REFUSED')
        throw this.err('CLOUD_ERR_PAYMENT_RESPONSE', 'deduct', {
          reason: `status ${String(b.status)} is unknown`,
        });
      return {
        result: {
          status: b.status,
          ...(typeof b.transaction_id === 'string' ? { transactionId: b.transaction_id } : {}),
          ...(typeof b.reason === 'string' ? { reason: b.reason } : {}),
        },
        outcome: b.status === 'SUCCESS' ? 'ok' : b.status.toLowerCase(),
      };
    });
  }

  // ---------------- the wire ----------------

  /** Times and counts one operation; a thrown StorelinkError is counted by its code. */
  private async call<T>(op: ProviderOp, f: () => Promise<{ result: T; outcome: string }>): Promise<T> {
    const start = performance.now();
    let outcome = 'unavailable';
    try {
      const r = await f();
      outcome = r.outcome;
      return r.result;
    } catch (e) {
      if (isStorelinkError(e)) outcome = OUTCOME_OF[e.code as CloudErrorCode] ?? 'unavailable';
      throw e;
    } finally {
      const labels = { provider: this.o.name, op };
      this.o.metrics?.paymentProviderSeconds.observe(labels, (performance.now() - start) / 1000);
      this.o.metrics?.paymentProviderRequests.inc({ ...labels, outcome });
    }
  }

  /**
   * [PAY-HTTP-1] Authorization over METHOD, path+query, timestamp, nonce and body. With
   * WeChat's RSA this would be `sign('sha256', msg, merchantRsaKey)` and the scheme
   * WECHATPAY2-SHA256-RSA2048 — the one place to change for production.
   */
  signRequest(method: string, pathWithQuery: string, body: string): string {
    const timestamp = String(Math.floor(this.o.now() / 1000));
    const nonce = randomBytes(16).toString('hex');
    const msg = `${method}\n${pathWithQuery}\n${timestamp}\n${nonce}\n${body}\n`;
    const signature = this.privateKey
      ? sign(null, Buffer.from(msg), this.privateKey).toString('base64')
      : createHmac('sha256', this.o.merchantKey).update(msg).digest('base64');
    const scheme = this.o.algorithm === 'ed25519' ? 'WECHATPAY2-ED25519' : 'WECHATPAY2-HMAC-SHA256';
    return `${scheme} mchid="${this.o.mchid}",nonce_str="${nonce}",timestamp="${timestamp}",serial_no="${this.o.merchantSerial ?? ''}",signature="${signature}"`;
  }

  private async send(op: ProviderOp, method: 'GET' | 'POST', path: string, json?: unknown): Promise<Answer> {
    const prefix = this.base.pathname.replace(/\/$/, '');
    const url = new URL(`${prefix}${path}`, this.base);
    const body = json === undefined ? '' : JSON.stringify(json);
    const signal = AbortSignal.timeout(this.o.timeoutMs);
    let status: number;
    let text: string;
    let headers: Record<string, string>;
    try {
      const res = await fetch(url, {
        method,
        headers: {
          accept: 'application/json',
          authorization: this.signRequest(method, `${url.pathname}${url.search}`, body),
          ...(json === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(json === undefined ? {} : { body }),
        signal,
      });
      status = res.status;
      text = await res.text();
      headers = Object.fromEntries(res.headers);
    } catch (e) {
      const err = e as Error;
      if (err.name === 'TimeoutError' || signal.aborted)
        throw this.err('CLOUD_ERR_PAYMENT_TIMEOUT', op, { timeoutMs: this.o.timeoutMs });
      const cause = (err as { cause?: Error }).cause;
      throw this.err('CLOUD_ERR_PAYMENT_UNAVAILABLE', op, {
        reason: cause?.message ? `${err.message}: ${cause.message}` : err.message,
      });
    }
    // [PAY-HTTP-3] a provider outage or throttling: retry later, the body is not evidence.
    if (status >= 500 || status === 429)
      throw this.err('CLOUD_ERR_PAYMENT_UNAVAILABLE', op, {
        reason: `HTTP ${status}${codeOf(text) ? ` ${codeOf(text)}` : ''}`,
      });
    // [PAY-HTTP-2] nothing in an unsigned (or wrongly signed) answer is believed.
    try {
      this.verifier.verify(headers, text, this.o.now());
    } catch (e) {
      const reason = String(
        (e as { details?: { reason?: unknown } }).details?.reason ?? (e as Error).message,
      );
      throw this.err('CLOUD_ERR_PAYMENT_SIGNATURE', op, { reason: `HTTP ${status}: ${reason}` });
    }
    let parsed: Record<string, unknown> = {};
    if (text.length > 0) {
      try {
        const j = JSON.parse(text) as unknown;
        if (j === null || typeof j !== 'object' || Array.isArray(j)) throw new Error('not an object');
        parsed = j as Record<string, unknown>;
      } catch (e) {
        throw this.err('CLOUD_ERR_PAYMENT_RESPONSE', op, {
          reason: `body is not a JSON object (${(e as Error).message})`,
        });
      }
    }
    if (status === 401)
      throw this.err('CLOUD_ERR_PAYMENT_AUTH', op, {
        reason: String(parsed.message ?? parsed.code ?? 'HTTP 401'),
      });
    return { status, body: parsed };
  }

  private expect2xx(op: ProviderOp, a: Answer): void {
    if (a.status >= 200 && a.status < 300) return;
    throw this.err('CLOUD_ERR_PAYMENT_REJECTED', op, {
      status: a.status,
      code: String(a.body.code ?? ''),
      reason: String(a.body.message ?? 'no message'),
    });
  }

  /**
   * A query answer as a `QueriedTrade`. WeChat's other states: USERPAYING (the buyer is
   * entering the password) is "ask again later", never closed under them; PAYERROR is
   * unpaid (closed, then expired); REVOKED is closed.
   */
  private trade(op: ProviderOp, outTradeNo: string, b: Record<string, unknown>): QueriedTrade {
    const bad = (reason: string) => this.err('CLOUD_ERR_PAYMENT_RESPONSE', op, { reason });
    if (b.out_trade_no !== outTradeNo)
      throw bad(`out_trade_no ${String(b.out_trade_no)} is not ${outTradeNo}`);
    const st = b.trade_state;
    if (st === 'USERPAYING')
      throw this.err('CLOUD_ERR_PAYMENT_UNAVAILABLE', op, {
        reason: 'trade_state USERPAYING: the buyer is paying, ask again later',
      });
    const state =
      st === 'SUCCESS' || st === 'REFUND' || st === 'NOTPAY' || st === 'CLOSED'
        ? st
        : st === 'PAYERROR'
          ? 'NOTPAY'
          : st === 'REVOKED'
            ? 'CLOSED'
            : undefined;
    if (!state) throw bad(`trade_state ${String(st)} is unknown`);
    if (state === 'NOTPAY' || state === 'CLOSED') return { outTradeNo, tradeState: state };
    const amount = b.amount as { total?: unknown; currency?: unknown } | undefined;
    if (typeof b.transaction_id !== 'string' || b.transaction_id.length === 0)
      throw bad('transaction_id is missing on a paid trade');
    if (!Number.isInteger(amount?.total)) throw bad('amount.total is not an integer');
    const success = typeof b.success_time === 'string' ? Date.parse(b.success_time) : Number.NaN;
    return {
      outTradeNo,
      tradeState: state,
      transactionId: b.transaction_id,
      amountCents: amount!.total as number,
      currency: typeof amount?.currency === 'string' ? amount.currency : 'CNY',
      ...(Number.isFinite(success) ? { successTime: success } : {}),
    };
  }

  private err(code: CloudErrorCode, op: ProviderOp, details: Record<string, unknown>) {
    return cloudError(code, { provider: this.o.name, op, ...details });
  }
}

function codeOf(text: string): string | undefined {
  try {
    const c = (JSON.parse(text) as { code?: unknown }).code;
    return typeof c === 'string' ? c : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The adapter for `payments.provider`, or undefined when none is configured. The answer
 * key defaults to the provider's notification key (`payments.providers.<name>`): the
 * provider signs answers and notifications with the same platform key.
 */
export function providerHttpClient(
  payments: {
    provider?: {
      name: string;
      baseUrl: string;
      mchid: string;
      algorithm: SigAlgorithm;
      merchantKey: string;
      merchantSerial?: string;
      providerKey?: string;
      timeoutMs: number;
    };
    providers: Record<string, { key: string; serial?: string; maxSkewMs?: number }>;
  },
  now: () => number,
  metrics?: WechatHttpOptions['metrics'],
): { name: string; client: WechatPayHttpClient } | undefined {
  const p = payments.provider;
  if (!p) return undefined;
  const notify = payments.providers[p.name];
  const providerKey = p.providerKey ?? notify?.key;
  if (providerKey === undefined)
    throw cloudError('CLOUD_ERR_CONFIG', {
      errors: `/payments/provider needs providerKey or payments.providers.${p.name}.key`,
    });
  return {
    name: p.name,
    client: new WechatPayHttpClient({
      name: p.name,
      baseUrl: p.baseUrl,
      mchid: p.mchid,
      algorithm: p.algorithm,
      merchantKey: p.merchantKey,
      ...(p.merchantSerial !== undefined ? { merchantSerial: p.merchantSerial } : {}),
      providerKey,
      ...(notify?.serial !== undefined ? { providerSerial: notify.serial } : {}),
      ...(notify?.maxSkewMs !== undefined ? { maxSkewMs: notify.maxSkewMs } : {}),
      timeoutMs: p.timeoutMs,
      now,
      ...(metrics ? { metrics } : {}),
    }),
  };
}
