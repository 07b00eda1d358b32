/**
 * The simulated provider's HTTP API from a bare client (node fetch + node:crypto, no cloud
 * code): [PAY-HTTP-1] merchant request signatures are checked before anything is done,
 * [PAY-HTTP-2] every answer is signed, faults happen on demand.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimPaymentProvider } from './provider.ts';
import { type ProviderHttp, startProviderHttp } from './provider-http.ts';

const MCHID = 'M1';
const MERCHANT = 'merchant-secret';
const PLATFORM = 'platform-secret';

let provider: SimPaymentProvider;
let http: ProviderHttp;

beforeAll(async () => {
  provider = new SimPaymentProvider({
    algorithm: 'hmac-sha256',
    key: PLATFORM,
    now: Date.now,
    deliver: async () => 200,
  });
  http = await startProviderHttp({
    provider,
    mchid: MCHID,
    merchant: { algorithm: 'hmac-sha256', key: MERCHANT },
    now: Date.now,
  });
});

afterAll(async () => {
  await http?.close();
});

function authorization(
  method: string,
  path: string,
  body: string,
  over: { key?: string; ts?: number; mchid?: string } = {},
) {
  const ts = String(over.ts ?? Math.floor(Date.now() / 1000));
  const nonce = randomBytes(8).toString('hex');
  const sig = createHmac('sha256', over.key ?? MERCHANT)
    .update(`${method}\n${path}\n${ts}\n${nonce}\n${body}\n`)
    .digest('base64');
  return `WECHATPAY2-HMAC-SHA256 mchid="${over.mchid ?? MCHID}",nonce_str="${nonce}",timestamp="${ts}",serial_no="",signature="${sig}"`;
}

async function call(
  method: string,
  path: string,
  json?: unknown,
  over?: Parameters<typeof authorization>[3],
) {
  const body = json === undefined ? '' : JSON.stringify(json);
  const res = await fetch(`${http.url}${path}`, {
    method,
    headers: { authorization: authorization(method, path, body, over), 'content-type': 'application/json' },
    ...(json === undefined ? {} : { body }),
  });
  const text = await res.text();
  return {
    status: res.status,
    text,
    headers: res.headers,
    json: text ? (JSON.parse(text) as Record<string, unknown>) : {},
  };
}

/** The answer's signature as the cloud checks it: timestamp\nnonce\nbody\n with the platform key. */
function answerVerifies(r: { text: string; headers: Headers }): boolean {
  const ts = r.headers.get('wechatpay-timestamp');
  const nonce = r.headers.get('wechatpay-nonce');
  const sig = r.headers.get('wechatpay-signature');
  const mac = createHmac('sha256', PLATFORM).update(`${ts}\n${nonce}\n${r.text}\n`).digest('base64');
  return sig === mac;
}

describe('simulated provider HTTP API', () => {
  it('query answers WeChat v3 fields, signed', async () => {
    provider.pay('O1', 120);
    const r = await call('GET', `/v3/pay/transactions/out-trade-no/O1?mchid=${MCHID}`);
    expect(r.status).toBe(200);
    expect(r.json).toMatchObject({
      out_trade_no: 'O1',
      trade_state: 'SUCCESS',
      transaction_id: provider.trades.get('O1')!.transactionId,
      amount: { total: 120, currency: 'CNY' },
    });
    expect(answerVerifies(r)).toBe(true);
  });

  it('refuses a wrong key, another merchant and a stale timestamp with 401 SIGN_ERROR (signed) and does nothing', async () => {
    const before = http.stats.authRefused;
    const path = '/v3/pay/transactions/out-trade-no/O2/close';
    for (const over of [{ key: 'nope' }, { mchid: 'M2' }, { ts: Math.floor(Date.now() / 1000) - 3600 }]) {
      const r = await call('POST', path, { mchid: MCHID }, over);
      expect(r.status).toBe(401);
      expect(r.json.code).toBe('SIGN_ERROR');
      expect(answerVerifies(r)).toBe(true);
    }
    expect(http.stats.authRefused - before).toBe(3);
    // Not closed: the buyer can still pay.
    expect(provider.pay('O2', 10).ok).toBe(true);
    const noAuth = await fetch(`${http.url}${path}`, { method: 'POST', body: '{}' });
    expect(noAuth.status).toBe(401);
  });

  it('close answers 204, or 400 ORDERPAID for a paid order', async () => {
    expect((await call('POST', '/v3/pay/transactions/out-trade-no/O3/close', { mchid: MCHID })).status).toBe(
      204,
    );
    const paid = await call('POST', '/v3/pay/transactions/out-trade-no/O1/close', { mchid: MCHID });
    expect(paid.status).toBe(400);
    expect(paid.json.code).toBe('ORDERPAID');
  });

  it('faults: 5xx before anything is done, PROCESSING first, a signature that does not verify', async () => {
    provider.pay('O4', 50);
    const refund = {
      out_trade_no: 'O4',
      out_refund_no: 'R-O4',
      amount: { refund: 50, total: 50, currency: 'CNY' },
    };
    http.faults.serverErrors = 1;
    const down = await call('POST', '/v3/refund/domestic/refunds', refund);
    expect(down.status).toBe(500);
    expect(provider.trades.get('O4')!.refundedCents).toBe(0);
    http.faults.processingRefundsFirst = true;
    expect((await call('POST', '/v3/refund/domestic/refunds', refund)).json.status).toBe('PROCESSING');
    expect((await call('POST', '/v3/refund/domestic/refunds', refund)).json.status).toBe('SUCCESS');
    expect(provider.trades.get('O4')!.refundedCents).toBe(50);
    http.faults.processingRefundsFirst = false;
    http.faults.badSignatures = 1;
    const forged = await call('GET', `/v3/pay/transactions/out-trade-no/O4?mchid=${MCHID}`);
    expect(answerVerifies(forged)).toBe(false);
    expect(answerVerifies(await call('GET', `/v3/pay/transactions/out-trade-no/O4?mchid=${MCHID}`))).toBe(
      true,
    );
  });

  it('unknown route 404, bad JSON 400, agreement route absent without an agreement provider', async () => {
    expect((await call('GET', '/v3/nothing')).status).toBe(404);
    const bad = await fetch(`${http.url}/v3/refund/domestic/refunds`, {
      method: 'POST',
      headers: { authorization: authorization('POST', '/v3/refund/domestic/refunds', '{') },
      body: '{',
    });
    expect(bad.status).toBe(400);
    expect((await call('POST', '/v3/papay/agreement-deductions', {})).status).toBe(404);
  });
});
