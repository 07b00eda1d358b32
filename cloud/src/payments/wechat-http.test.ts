/**
 * The WeChat Pay v3 HTTP adapter against the simulated provider's HTTP API over a real
 * socket on 127.0.0.1 (firmware-sim/src/payment/provider-http.ts): signed requests,
 * signed answers, the provider's faults on demand, stable error codes and metrics.
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { SimAgreementProvider } from '../../../firmware-sim/src/payment/agreement.ts';
import { SimPaymentProvider } from '../../../firmware-sim/src/payment/provider.ts';
import { type ProviderHttp, startProviderHttp } from '../../../firmware-sim/src/payment/provider-http.ts';
import { applyEnv, resolveCloudConfig } from '../config.ts';
import { type CloudMetrics, createCloudMetrics } from '../metrics.ts';
import { providerHttpClient, WechatPayHttpClient, type WechatHttpOptions } from './wechat-http.ts';

const PROVIDER_SECRET = 'provider-platform-secret';
const MERCHANT_SECRET = 'merchant-api-secret';
const MCHID = '1900000109';

let provider: SimPaymentProvider;
let agreements: SimAgreementProvider;
let http: ProviderHttp;
let metrics: CloudMetrics;

function client(over: Partial<WechatHttpOptions> = {}): WechatPayHttpClient {
  return new WechatPayHttpClient({
    name: 'wechat',
    baseUrl: http.url,
    mchid: MCHID,
    algorithm: 'hmac-sha256',
    merchantKey: MERCHANT_SECRET,
    providerKey: PROVIDER_SECRET,
    timeoutMs: 5_000,
    now: Date.now,
    metrics,
    ...over,
  });
}

async function count(op: string, outcome: string): Promise<number> {
  const m = await metrics.paymentProviderRequests.get();
  return m.values.find((v) => v.labels.op === op && v.labels.outcome === outcome)?.value ?? 0;
}

async function rejection(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await p;
  } catch (e) {
    return e as { code?: string; message: string };
  }
  throw new Error('expected the call to fail');
}

beforeAll(async () => {
  provider = new SimPaymentProvider({
    algorithm: 'hmac-sha256',
    key: PROVIDER_SECRET,
    now: Date.now,
    deliver: async () => 200,
  });
  agreements = new SimAgreementProvider({ now: Date.now });
  http = await startProviderHttp({
    provider,
    agreements,
    mchid: MCHID,
    merchant: { algorithm: 'hmac-sha256', key: MERCHANT_SECRET },
    now: Date.now,
  });
});

afterAll(async () => {
  await http?.close();
});

beforeEach(() => {
  metrics = createCloudMetrics();
  Object.assign(http.faults, { serverErrors: 0, slowMs: 0, processingRefundsFirst: false, badSignatures: 0 });
});

describe('WeChat Pay v3 HTTP adapter against the simulated provider', () => {
  it('query-order: NOTPAY before the buyer pays, SUCCESS with transaction and amount after', async () => {
    const c = client();
    expect(await c.queryOrder('ORD-Q1')).toEqual({ outTradeNo: 'ORD-Q1', tradeState: 'NOTPAY' });
    const paid = provider.pay('ORD-Q1', 350, 'CNY');
    expect(paid.ok).toBe(true);
    const q = await c.queryOrder('ORD-Q1');
    expect(q.tradeState).toBe('SUCCESS');
    expect(q.transactionId).toBe(provider.trades.get('ORD-Q1')!.transactionId);
    expect(q.amountCents).toBe(350);
    expect(q.currency).toBe('CNY');
    expect(q.successTime).toBe(provider.trades.get('ORD-Q1')!.successTime);
    expect(await count('query', 'ok')).toBe(2);
    const hist = await metrics.paymentProviderSeconds.get();
    expect(hist.values.find((v) => v.metricName?.endsWith('_count') && v.labels.op === 'query')?.value).toBe(
      2,
    );
  });

  it('close: an unpaid order is closed (a later payment is refused); a paid one answers ORDERPAID', async () => {
    const c = client();
    expect(await c.closeOrder('ORD-C1')).toEqual({ ok: true });
    expect(provider.pay('ORD-C1', 100)).toEqual({ ok: false, reason: 'ORDER_CLOSED' });
    expect(await c.queryOrder('ORD-C1')).toEqual({ outTradeNo: 'ORD-C1', tradeState: 'CLOSED' });
    // The race: paid between the sweeper's query and its close.
    provider.pay('ORD-C2', 100);
    expect(await c.closeOrder('ORD-C2')).toEqual({ ok: false, reason: 'ORDERPAID' });
    expect(await count('close', 'ok')).toBe(1);
    expect(await count('close', 'orderpaid')).toBe(1);
  });

  it('refund: PROCESSING first, SUCCESS on the retry with the same refund number, money moved once', async () => {
    http.faults.processingRefundsFirst = true;
    const c = client();
    provider.pay('ORD-R1', 500);
    const req = {
      outTradeNo: 'ORD-R1',
      outRefundNo: 'R-ORD-R1',
      amountCents: 500,
      totalCents: 500,
      currency: 'CNY',
    };
    const before = { ...provider.stats };
    expect(await c.refund(req)).toEqual({ status: 'PROCESSING' });
    expect(await c.refund(req)).toEqual({ status: 'SUCCESS' });
    expect(provider.stats.refundsSucceeded - before.refundsSucceeded).toBe(1);
    expect(provider.stats.refundReplays - before.refundReplays).toBe(1);
    expect(provider.stats.refundIdChanged).toBe(0);
    expect(provider.trades.get('ORD-R1')!.refundedCents).toBe(500);
    expect(await count('refund', 'processing')).toBe(1);
    expect(await count('refund', 'ok')).toBe(1);
  });

  it('refund with another number for the same order is refused by the provider: CLOUD_ERR_PAYMENT_REJECTED', async () => {
    const c = client();
    provider.pay('ORD-R2', 200);
    const req = {
      outTradeNo: 'ORD-R2',
      outRefundNo: 'R-ORD-R2',
      amountCents: 200,
      totalCents: 200,
      currency: 'CNY',
    };
    expect(await c.refund(req)).toEqual({ status: 'SUCCESS' });
    const e = await rejection(c.refund({ ...req, outRefundNo: 'R-OTHER' }));
    expect(e.code).toBe('CLOUD_ERR_PAYMENT_REJECTED');
    expect(e.message).toMatch(/INVALID_REQUEST.*inconsistent/);
    expect(await count('refund', 'rejected')).toBe(1);
  });

  it('an answer whose signature does not verify is refused with a clear error and counted', async () => {
    provider.pay('ORD-S1', 300);
    http.faults.badSignatures = 1;
    const e = await rejection(client().queryOrder('ORD-S1'));
    expect(e.code).toBe('CLOUD_ERR_PAYMENT_SIGNATURE');
    expect(e.message).toContain('signature does not verify');
    expect(await count('query', 'bad_signature')).toBe(1);
    // The wrong provider key: every answer is refused, nothing in it believed.
    const e2 = await rejection(client({ providerKey: 'not-the-provider' }).queryOrder('ORD-S1'));
    expect(e2.code).toBe('CLOUD_ERR_PAYMENT_SIGNATURE');
    expect(await count('query', 'bad_signature')).toBe(2);
    // The fault is spent: the right key verifies again.
    expect((await client().queryOrder('ORD-S1')).tradeState).toBe('SUCCESS');
  });

  it('a request signed with the wrong merchant key is refused by the provider: CLOUD_ERR_PAYMENT_AUTH', async () => {
    const before = http.stats.authRefused;
    const e = await rejection(client({ merchantKey: 'wrong-merchant-secret' }).queryOrder('ORD-A1'));
    expect(e.code).toBe('CLOUD_ERR_PAYMENT_AUTH');
    expect(e.message).toContain('request signature does not verify');
    expect(http.stats.authRefused - before).toBe(1);
    const e2 = await rejection(client({ mchid: '1900000999' }).queryOrder('ORD-A1'));
    expect(e2.code).toBe('CLOUD_ERR_PAYMENT_AUTH');
    expect(await count('query', 'auth')).toBe(2);
  });

  it('a provider 5xx is CLOUD_ERR_PAYMENT_UNAVAILABLE (retry later); the retry succeeds', async () => {
    provider.pay('ORD-U1', 400);
    http.faults.serverErrors = 1;
    const c = client();
    const req = {
      outTradeNo: 'ORD-U1',
      outRefundNo: 'R-ORD-U1',
      amountCents: 400,
      totalCents: 400,
      currency: 'CNY',
    };
    const e = await rejection(c.refund(req));
    expect(e.code).toBe('CLOUD_ERR_PAYMENT_UNAVAILABLE');
    expect(e.message).toContain('HTTP 500 SYSTEM_ERROR');
    expect(provider.trades.get('ORD-U1')!.refundedCents).toBe(0);
    expect(await c.refund(req)).toEqual({ status: 'SUCCESS' });
    expect(await count('refund', 'unavailable')).toBe(1);
    // Nobody listening at all: the same code.
    const gone = client({ baseUrl: 'http://127.0.0.1:1' });
    expect((await rejection(gone.queryOrder('ORD-U1'))).code).toBe('CLOUD_ERR_PAYMENT_UNAVAILABLE');
  });

  it('a slow provider is CLOUD_ERR_PAYMENT_TIMEOUT after timeoutMs', async () => {
    http.faults.slowMs = 3_000;
    const e = await rejection(client({ timeoutMs: 200 }).queryOrder('ORD-T1'));
    expect(e.code).toBe('CLOUD_ERR_PAYMENT_TIMEOUT');
    expect(e.message).toContain('within 200 ms');
    expect(await count('query', 'timeout')).toBe(1);
  });

  it('agreement deduction (cabinets): charged once per out_trade_no, a replay returns the first trade', async () => {
    const c = client();
    const agreementId = agreements.sign('member-1');
    const req = { outTradeNo: 'CAB-1', agreementId, amountCents: 1250, currency: 'CNY' };
    const first = await c.chargeAgreement(req);
    expect(first.status).toBe('SUCCESS');
    expect(first.transactionId).toMatch(/^AT/);
    expect(await c.chargeAgreement(req)).toEqual(first);
    expect(agreements.chargesFor('CAB-1')).toBe(1);
    expect((await c.chargeAgreement({ ...req, amountCents: 1 })).status).toBe('REFUSED');
    agreements.revoke(agreementId);
    const refused = await c.chargeAgreement({ ...req, outTradeNo: 'CAB-2' });
    expect(refused.status).toBe('REFUSED');
    expect(refused.reason).toContain('not active');
  });

  it('Ed25519 both ways: merchant private key signs requests, provider private key signs answers', async () => {
    const merchant = generateKeyPairSync('ed25519');
    const platform = generateKeyPairSync('ed25519');
    const p2 = new SimPaymentProvider({
      algorithm: 'ed25519',
      key: platform.privateKey,
      now: Date.now,
      deliver: async () => 200,
    });
    const h2 = await startProviderHttp({
      provider: p2,
      mchid: MCHID,
      merchant: { algorithm: 'ed25519', key: merchant.publicKey },
      now: Date.now,
    });
    try {
      const made = providerHttpClient(
        {
          provider: {
            name: 'wechat',
            baseUrl: h2.url,
            mchid: MCHID,
            algorithm: 'ed25519',
            merchantKey: merchant.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
            timeoutMs: 5_000,
          },
          providers: {
            wechat: { key: platform.publicKey.export({ type: 'spki', format: 'pem' }).toString() },
          },
        },
        Date.now,
        metrics,
      )!;
      p2.pay('ORD-E1', 700);
      expect((await made.client.queryOrder('ORD-E1')).amountCents).toBe(700);
      expect(h2.stats.authRefused).toBe(0);
    } finally {
      await h2.close();
    }
  });
});

describe('payments.provider config', () => {
  const base = { payments: { providers: { wechat: { algorithm: 'ed25519', key: 'PEM' } } } };

  it('STORELINK_CLOUD_PAYMENTS_PROVIDER_* fill payments.provider; name, algorithm and timeout default', () => {
    const raw = applyEnv(base, {
      STORELINK_CLOUD_PAYMENTS_PROVIDER_BASE_URL: 'https://api.mch.example',
      STORELINK_CLOUD_PAYMENTS_PROVIDER_MCHID: MCHID,
      STORELINK_CLOUD_PAYMENTS_PROVIDER_MERCHANT_KEY: 'k',
    });
    const cfg = resolveCloudConfig(raw);
    expect(cfg.payments.provider).toEqual({
      name: 'wechat',
      algorithm: 'ed25519',
      timeoutMs: 10_000,
      baseUrl: 'https://api.mch.example',
      mchid: MCHID,
      merchantKey: 'k',
    });
    expect(resolveCloudConfig(cfg)).toEqual(cfg);
    expect(resolveCloudConfig(base).payments.provider).toBeUndefined();
  });

  it('refuses a provider that has no notification key, a bad URL and a non-integer timeout', () => {
    const provider = { baseUrl: 'https://x', mchid: 'M', merchantKey: 'k' };
    expect(() => resolveCloudConfig({ payments: { provider } })).toThrow(
      /payments\/provider\/name "wechat" is not under payments.providers/,
    );
    expect(() =>
      resolveCloudConfig({
        ...base,
        payments: { ...base.payments, provider: { ...provider, baseUrl: 'ftp://x' } },
      } as never),
    ).toThrow(/CLOUD_ERR_CONFIG|baseUrl/);
    expect(() => applyEnv(base, { STORELINK_CLOUD_PAYMENTS_PROVIDER_TIMEOUT_MS: 'soon' })).toThrow(
      /must be an integer/,
    );
  });
});
