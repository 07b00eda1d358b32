import { createHmac, createPublicKey, type KeyObject, timingSafeEqual, verify } from 'node:crypto';
import { cloudError } from '../errors.ts';

/**
 * WeChat Pay v3 style payment notifications (docs/vending.md "Payment notifications").
 *
 * Headers Wechatpay-Timestamp / -Nonce / -Serial / -Signature; the signature covers
 * `timestamp\nnonce\nbody\n`. Substitution: real WeChat Pay signs with the platform's
 * RSA key (SHA256-RSA2048) and encrypts `resource` with AEAD_AES_256_GCM; storelink
 * accepts Ed25519 (provider public key) or HMAC-SHA256 (shared secret) signatures and a
 * plaintext `resource`, configured per provider under `payments.providers`.
 */
export type SigAlgorithm = 'hmac-sha256' | 'ed25519';

export interface ProviderVerifyConfig {
  algorithm: SigAlgorithm;
  /** HMAC secret, or the provider's Ed25519 public key (PEM). */
  key: string;
  /** Expected Wechatpay-Serial (key id); absent = any. */
  serial?: string;
  /** Largest |now - timestamp| accepted (ms); replays of old deliveries are refused. */
  maxSkewMs: number;
}

export interface PaymentNotice {
  notificationId: string;
  outTradeNo: string;
  transactionId: string;
  tradeState: string;
  amountCents: number;
  currency: string;
  successTime: number;
  /** The payer's channel id (WeChat `payer.openid`, Alipay `buyer_id`), when the provider sends it. */
  payerId?: string;
}

export function signingMessage(timestamp: string, nonce: string, body: string): string {
  return `${timestamp}\n${nonce}\n${body}\n`;
}

export class NotificationVerifier {
  private readonly pub: KeyObject | undefined;
  constructor(
    readonly provider: string,
    private readonly cfg: ProviderVerifyConfig,
  ) {
    this.pub = cfg.algorithm === 'ed25519' ? createPublicKey(cfg.key) : undefined;
  }

  /** Throws CLOUD_ERR_PAY_SIGNATURE with the reason; returns nothing when the signature holds. */
  verify(headers: Record<string, string | string[] | undefined>, body: string, now: number): void {
    const h = (k: string) => {
      const v = headers[k.toLowerCase()];
      return Array.isArray(v) ? v[0] : v;
    };
    const ts = h('wechatpay-timestamp');
    const nonce = h('wechatpay-nonce');
    const sig = h('wechatpay-signature');
    const serial = h('wechatpay-serial');
    const refuse = (reason: string) =>
      cloudError('CLOUD_ERR_PAY_SIGNATURE', { provider: this.provider, reason });
    if (!ts || !nonce || !sig) throw refuse('missing Wechatpay-Timestamp, -Nonce or -Signature header');
    if (this.cfg.serial !== undefined && serial !== this.cfg.serial)
      throw refuse(`unknown key serial "${serial ?? ''}"`);
    if (!/^\d{1,12}$/.test(ts)) throw refuse('Wechatpay-Timestamp is not a number of seconds');
    // [PAY-SIG-2] a stale timestamp is a replayed delivery, not a retry (retries are re-signed).
    if (Math.abs(now - Number(ts) * 1000) > this.cfg.maxSkewMs)
      throw refuse(`timestamp ${ts} is too far from now`);
    const msg = Buffer.from(signingMessage(ts, nonce, body));
    let sigBytes: Buffer;
    try {
      sigBytes = Buffer.from(sig, 'base64');
    } catch {
      throw refuse('signature is not base64');
    }
    let ok: boolean;
    if (this.pub) {
      ok = sigBytes.length === 64 && verify(null, msg, this.pub, sigBytes);
    } else {
      const mac = createHmac('sha256', this.cfg.key).update(msg).digest();
      ok = sigBytes.length === mac.length && timingSafeEqual(sigBytes, mac);
    }
    // [PAY-SIG-1] verify before trusting anything in the body ("false notifications").
    if (!ok) throw refuse('signature does not verify');
  }
}

/** Parses a TRANSACTION.SUCCESS notification body; throws CLOUD_ERR_PAY_NOTIFICATION. */
export function parseNotification(provider: string, body: string): PaymentNotice {
  const bad = (reason: string) => cloudError('CLOUD_ERR_PAY_NOTIFICATION', { provider, reason });
  let j: unknown;
  try {
    j = JSON.parse(body);
  } catch {
    throw bad('body is not JSON');
  }
  const o = j as {
    id?: unknown;
    event_type?: unknown;
    resource?: {
      out_trade_no?: unknown;
      transaction_id?: unknown;
      trade_state?: unknown;
      amount?: { total?: unknown; currency?: unknown };
      success_time?: unknown;
      payer?: { openid?: unknown; buyer_id?: unknown };
    };
  };
  if (typeof o !== 'object' || o === null) throw bad('body is not an object');
  if (typeof o.id !== 'string') throw bad('id is missing');
  if (o.event_type !== 'TRANSACTION.SUCCESS')
    throw bad(`event_type ${String(o.event_type)} is not TRANSACTION.SUCCESS`);
  const r = o.resource;
  if (!r || typeof r !== 'object') throw bad('resource is missing');
  if (typeof r.out_trade_no !== 'string' || r.out_trade_no.length === 0)
    throw bad('resource.out_trade_no is missing');
  if (typeof r.transaction_id !== 'string' || r.transaction_id.length === 0)
    throw bad('resource.transaction_id is missing');
  if (typeof r.trade_state !== 'string') throw bad('resource.trade_state is missing');
  const total = r.amount?.total;
  if (typeof total !== 'number' || !Number.isInteger(total) || total < 0)
    throw bad('resource.amount.total is not an integer');
  const currency = r.amount?.currency ?? 'CNY';
  if (typeof currency !== 'string') throw bad('resource.amount.currency is not a string');
  const st = typeof r.success_time === 'string' ? Date.parse(r.success_time) : Number.NaN;
  return {
    notificationId: o.id,
    outTradeNo: r.out_trade_no,
    transactionId: r.transaction_id,
    tradeState: r.trade_state,
    amountCents: total,
    currency,
    successTime: Number.isFinite(st) ? st : 0,
    ...(typeof r.payer?.openid === 'string'
      ? { payerId: r.payer.openid }
      : typeof r.payer?.buyer_id === 'string'
        ? { payerId: r.payer.buyer_id }
        : {}),
  };
}

/** WeChat Pay v3: any 2xx is success; we answer 200 with its JSON shape. */
export const WECHAT_SUCCESS = { code: 'SUCCESS', message: 'OK' } as const;
