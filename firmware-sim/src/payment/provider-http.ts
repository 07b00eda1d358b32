import {
  createHmac,
  createPublicKey,
  type KeyObject,
  randomBytes,
  timingSafeEqual,
  verify,
} from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { SimAgreementProvider } from './agreement.ts';
import type { SimPaymentProvider } from './provider.ts';

/**
 * The simulated provider's merchant API over HTTP, in the WeChat Pay v3 shape
 * (docs/vending.md "Provider adapter"), so the cloud's HTTP adapter
 * (cloud/src/payments/wechat-http.ts) is exercised over a real socket:
 *
 *   GET  /v3/pay/transactions/out-trade-no/{out_trade_no}?mchid=M   query-order
 *   POST /v3/pay/transactions/out-trade-no/{out_trade_no}/close     close (204; 400 ORDERPAID)
 *   POST /v3/refund/domestic/refunds                                 refund (SUCCESS | PROCESSING)
 *   POST /v3/papay/agreement-deductions                              agreement deduction (cabinets)
 *
 * [PAY-HTTP-1] every request must carry `Authorization: WECHATPAY2-<ALG> mchid="",
 * nonce_str="",timestamp="",serial_no="",signature=""` signed by the merchant over
 * `METHOD\nPATH?QUERY\ntimestamp\nnonce\nbody\n`; anything else is 401 SIGN_ERROR.
 * [PAY-HTTP-2] every answer is signed by the provider like a notification
 * (Wechatpay-Timestamp/-Nonce/-Serial/-Signature over `timestamp\nnonce\nbody\n`).
 *
 * Faults on demand (`faults`, mutable): the next N requests answered 500 SYSTEM_ERROR,
 * a slow answer, the next N answers with a signature that does not verify, and refunds
 * that answer PROCESSING the first time a refund number is seen (the refund is made; the
 * retry with the same number sees SUCCESS).
 */
export type HttpSigAlgorithm = 'hmac-sha256' | 'ed25519';

export const AUTH_SCHEMES: Record<HttpSigAlgorithm, string> = {
  'hmac-sha256': 'WECHATPAY2-HMAC-SHA256',
  ed25519: 'WECHATPAY2-ED25519',
};

export interface ProviderHttpFaults {
  /** The next N requests are answered 500 SYSTEM_ERROR before anything is done. */
  serverErrors: number;
  /** Every answer waits this long (ms) before it is sent. */
  slowMs: number;
  /** A refund number seen for the first time answers PROCESSING (the refund is made). */
  processingRefundsFirst: boolean;
  /** The next N answers carry a signature that does not verify (body altered after signing). */
  badSignatures: number;
}

export interface ProviderHttpOptions {
  provider: SimPaymentProvider;
  /** Agreement deductions (cabinets); absent = 404 on that route. */
  agreements?: SimAgreementProvider;
  mchid: string;
  /** How merchant requests are verified: HMAC secret, or the merchant's Ed25519 public key. */
  merchant: { algorithm: HttpSigAlgorithm; key: string | KeyObject };
  now: () => number;
  /** Largest |now - timestamp| accepted on a request (default 5 min). */
  maxSkewMs?: number;
  host?: string;
  port?: number;
  faults?: Partial<ProviderHttpFaults>;
}

export interface ProviderHttpStats {
  requests: number;
  byRoute: Record<string, number>;
  authRefused: number;
  serverErrors: number;
  badSignatures: number;
  processing: number;
}

export interface ProviderHttp {
  url: string;
  faults: ProviderHttpFaults;
  stats: ProviderHttpStats;
  close(): Promise<void>;
}

/** The string a merchant request signature covers (WeChat Pay v3 request signing). */
export function requestSigningMessage(
  method: string,
  pathWithQuery: string,
  timestamp: string,
  nonce: string,
  body: string,
): string {
  return `${method}\n${pathWithQuery}\n${timestamp}\n${nonce}\n${body}\n`;
}

class HttpAnswer extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const MAX_BODY = 64 * 1024;

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((res, rej) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        rej(new HttpAnswer(413, 'PARAM_ERROR', 'body too large'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => res(Buffer.concat(chunks).toString('utf8')));
    req.on('error', rej);
  });
}

/** Parses `SCHEME k="v",k="v"`; undefined when it is not that shape. */
export function parseAuthorization(
  header: string | undefined,
): { scheme: string; params: Record<string, string> } | undefined {
  if (!header) return undefined;
  const sp = header.indexOf(' ');
  if (sp <= 0) return undefined;
  const params: Record<string, string> = {};
  for (const m of header.slice(sp + 1).matchAll(/([a-z_]+)="([^"]*)"/g)) params[m[1]!] = m[2]!;
  return { scheme: header.slice(0, sp), params };
}

function simError(e: unknown): HttpAnswer {
  const msg = (e as Error).message ?? String(e);
  const code = /^([A-Z_]+):/.exec(msg)?.[1] ?? 'SYSTEM_ERROR';
  return new HttpAnswer(code === 'SYSTEM_ERROR' ? 500 : 400, code, msg);
}

export async function startProviderHttp(opts: ProviderHttpOptions): Promise<ProviderHttp> {
  const faults: ProviderHttpFaults = {
    serverErrors: 0,
    slowMs: 0,
    processingRefundsFirst: false,
    badSignatures: 0,
    ...opts.faults,
  };
  const stats: ProviderHttpStats = {
    requests: 0,
    byRoute: {},
    authRefused: 0,
    serverErrors: 0,
    badSignatures: 0,
    processing: 0,
  };
  const maxSkewMs = opts.maxSkewMs ?? 5 * 60_000;
  const merchantPub =
    opts.merchant.algorithm === 'ed25519'
      ? typeof opts.merchant.key === 'string'
        ? createPublicKey(opts.merchant.key)
        : opts.merchant.key
      : undefined;
  const refundsSeen = new Set<string>();
  const p = opts.provider;

  /** [PAY-HTTP-1] the merchant's signature, its id and the clock, before anything else. */
  function authenticate(req: IncomingMessage, path: string, body: string): void {
    const refuse = (why: string) => {
      stats.authRefused++;
      return new HttpAnswer(401, 'SIGN_ERROR', why);
    };
    const auth = parseAuthorization(req.headers.authorization);
    if (!auth) throw refuse('Authorization header missing or malformed');
    if (auth.scheme !== AUTH_SCHEMES[opts.merchant.algorithm])
      throw refuse(`scheme ${auth.scheme} is not ${AUTH_SCHEMES[opts.merchant.algorithm]}`);
    const { mchid, nonce_str: nonce, timestamp, signature } = auth.params;
    if (mchid !== opts.mchid) throw refuse(`mchid "${mchid ?? ''}" is not this merchant`);
    if (!nonce || !timestamp || !signature) throw refuse('nonce_str, timestamp or signature missing');
    if (!/^\d{1,12}$/.test(timestamp) || Math.abs(opts.now() - Number(timestamp) * 1000) > maxSkewMs)
      throw refuse(`timestamp ${timestamp} is too far from now`);
    const msg = Buffer.from(requestSigningMessage(req.method ?? '', path, timestamp, nonce, body));
    const sig = Buffer.from(signature, 'base64');
    const ok = merchantPub
      ? sig.length === 64 && verify(null, msg, merchantPub, sig)
      : (() => {
          const mac = createHmac('sha256', opts.merchant.key as string)
            .update(msg)
            .digest();
          return sig.length === mac.length && timingSafeEqual(sig, mac);
        })();
    if (!ok) throw refuse('request signature does not verify');
  }

  function json(body: string): Record<string, unknown> {
    try {
      const j = JSON.parse(body) as unknown;
      if (j && typeof j === 'object' && !Array.isArray(j)) return j as Record<string, unknown>;
    } catch {
      // fall through
    }
    throw new HttpAnswer(400, 'PARAM_ERROR', 'body is not a JSON object');
  }

  async function route(
    method: string,
    url: URL,
    body: string,
  ): Promise<{ status: number; body?: unknown; route: string }> {
    const path = url.pathname;
    let m = /^\/v3\/pay\/transactions\/out-trade-no\/([^/]+)$/.exec(path);
    if (m && method === 'GET') {
      if (url.searchParams.get('mchid') !== opts.mchid)
        throw new HttpAnswer(400, 'PARAM_ERROR', 'mchid query parameter is not this merchant');
      const q = await p.queryOrder(decodeURIComponent(m[1]!)).catch((e) => {
        throw simError(e);
      });
      return {
        route: 'query',
        status: 200,
        body: {
          mchid: opts.mchid,
          out_trade_no: q.outTradeNo,
          trade_state: q.tradeState,
          ...(q.transactionId !== undefined ? { transaction_id: q.transactionId } : {}),
          ...(q.amountCents !== undefined
            ? { amount: { total: q.amountCents, currency: q.currency ?? 'CNY' } }
            : {}),
          ...(q.successTime !== undefined ? { success_time: new Date(q.successTime).toISOString() } : {}),
        },
      };
    }
    m = /^\/v3\/pay\/transactions\/out-trade-no\/([^/]+)\/close$/.exec(path);
    if (m && method === 'POST') {
      const r = await p.closeOrder(decodeURIComponent(m[1]!)).catch((e) => {
        throw simError(e);
      });
      if (!r.ok) throw new HttpAnswer(400, 'ORDERPAID', 'the order is paid');
      return { route: 'close', status: 204 };
    }
    if (path === '/v3/refund/domestic/refunds' && method === 'POST') {
      const b = json(body) as {
        out_trade_no?: unknown;
        out_refund_no?: unknown;
        amount?: { refund?: unknown; total?: unknown; currency?: unknown };
      };
      if (typeof b.out_trade_no !== 'string' || typeof b.out_refund_no !== 'string')
        throw new HttpAnswer(400, 'PARAM_ERROR', 'out_trade_no and out_refund_no are required');
      const refund = b.amount?.refund;
      const total = b.amount?.total;
      if (!Number.isInteger(refund) || !Number.isInteger(total))
        throw new HttpAnswer(400, 'PARAM_ERROR', 'amount.refund and amount.total must be integers');
      const r = await p
        .refund({
          outTradeNo: b.out_trade_no,
          outRefundNo: b.out_refund_no,
          amountCents: refund as number,
          totalCents: total as number,
          currency: typeof b.amount?.currency === 'string' ? b.amount.currency : 'CNY',
        })
        .catch((e) => {
          throw simError(e);
        });
      let status: string = r.status;
      if (faults.processingRefundsFirst && !refundsSeen.has(b.out_refund_no)) {
        status = 'PROCESSING';
        stats.processing++;
      }
      refundsSeen.add(b.out_refund_no);
      return {
        route: 'refund',
        status: 200,
        body: {
          refund_id: `50000${b.out_refund_no}`,
          out_refund_no: b.out_refund_no,
          out_trade_no: b.out_trade_no,
          status,
          amount: { refund, total, currency: b.amount?.currency ?? 'CNY' },
        },
      };
    }
    if (path === '/v3/papay/agreement-deductions' && method === 'POST' && opts.agreements) {
      const b = json(body) as {
        out_trade_no?: unknown;
        agreement_id?: unknown;
        amount?: { total?: unknown; currency?: unknown };
        description?: unknown;
      };
      if (typeof b.out_trade_no !== 'string' || typeof b.agreement_id !== 'string')
        throw new HttpAnswer(400, 'PARAM_ERROR', 'out_trade_no and agreement_id are required');
      if (!Number.isInteger(b.amount?.total))
        throw new HttpAnswer(400, 'PARAM_ERROR', 'amount.total must be an integer');
      const r = await opts.agreements
        .chargeAgreement({
          outTradeNo: b.out_trade_no,
          agreementId: b.agreement_id,
          amountCents: b.amount!.total as number,
          currency: typeof b.amount?.currency === 'string' ? b.amount.currency : 'CNY',
          ...(typeof b.description === 'string' ? { description: b.description } : {}),
        })
        .catch((e) => {
          throw simError(e);
        });
      return {
        route: 'deduct',
        status: 200,
        body: {
          out_trade_no: b.out_trade_no,
          status: r.status,
          ...(r.transactionId !== undefined ? { transaction_id: r.transactionId } : {}),
          ...(r.reason !== undefined ? { reason: r.reason } : {}),
        },
      };
    }
    throw new HttpAnswer(404, 'NOT_FOUND', `no route ${method} ${path}`);
  }

  /** [PAY-HTTP-2] signed like a notification; the bad-signature fault alters the body after signing. */
  function send(res: ServerResponse, status: number, body: string): void {
    const signed = p.signed(body, opts.now());
    let sent = body;
    if (faults.badSignatures > 0) {
      faults.badSignatures--;
      stats.badSignatures++;
      sent = body.length > 0 ? `${body.slice(0, -1)} }` : ' ';
    }
    const headers: Record<string, string> = { ...signed.headers };
    if (sent.length === 0) delete headers['content-type'];
    res.writeHead(status, headers);
    res.end(sent);
  }

  const server: Server = createServer((req, res) => {
    void (async () => {
      stats.requests++;
      let status = 500;
      let out = '';
      try {
        const body = await readBody(req);
        const url = new URL(req.url ?? '/', 'http://provider');
        authenticate(req, `${url.pathname}${url.search}`, body);
        if (faults.serverErrors > 0) {
          faults.serverErrors--;
          stats.serverErrors++;
          throw new HttpAnswer(500, 'SYSTEM_ERROR', 'simulated provider outage');
        }
        const r = await route(req.method ?? 'GET', url, body);
        stats.byRoute[r.route] = (stats.byRoute[r.route] ?? 0) + 1;
        status = r.status;
        out = r.body === undefined ? '' : JSON.stringify(r.body);
      } catch (e) {
        const a = e instanceof HttpAnswer ? e : new HttpAnswer(500, 'SYSTEM_ERROR', (e as Error).message);
        status = a.status;
        out = JSON.stringify({ code: a.code, message: a.message });
      }
      if (faults.slowMs > 0) await new Promise((r) => setTimeout(r, faults.slowMs));
      if (!res.destroyed) send(res, status, out);
    })();
  });
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => res());
  });
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  return {
    url: `http://${host}:${addr.port}`,
    faults,
    stats,
    close: () =>
      new Promise<void>((res) => {
        server.closeAllConnections();
        server.close(() => res());
      }),
  };
}

/** A fresh nonce (32 hex chars, like WeChat's nonce_str). */
export function newNonce(): string {
  return randomBytes(16).toString('hex');
}
