import type { SimPaymentProvider } from './provider.ts';

/**
 * A simulated buyer at a vending machine: scans the machine's QR code (the machine's
 * flow creates an order through the cloud API), then pays it at the provider, at once,
 * late, or never (walks away). The order API is injected: `httpOrderApi(baseUrl)` for a
 * running cloud, or any function in process.
 */
export interface OrderApi {
  createOrder(req: {
    gateway: string;
    slot: number;
    amountCents: number;
    provider?: string;
    /** The member ordering (mini-program scan), so the cloud can apply their coupon. */
    member?: { idType: string; value: string } | { memberId: string };
  }): Promise<{
    id: string;
    amountCents: number;
    currency: string;
  }>;
}

export function httpOrderApi(baseUrl: string): OrderApi {
  return {
    async createOrder(req) {
      const res = await fetch(`${baseUrl}/api/v1/orders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(req),
      });
      const body = (await res.json()) as {
        id: string;
        amountCents: number;
        currency: string;
        message?: string;
      };
      if (res.status !== 201) throw new Error(`create order: HTTP ${res.status} ${body.message ?? ''}`);
      return body;
    },
  };
}

/** A notify transport for the provider that POSTs to a running cloud. */
export function httpNotify(baseUrl: string, provider = 'wechat') {
  return async (req: { headers: Record<string, string>; body: string }): Promise<number> => {
    const res = await fetch(`${baseUrl}/api/v1/payments/notify/${provider}`, {
      method: 'POST',
      headers: req.headers,
      body: req.body,
    });
    await res.arrayBuffer();
    return res.status;
  };
}

export class SimBuyer {
  constructor(
    private readonly api: OrderApi,
    private readonly provider: SimPaymentProvider,
  ) {}

  /** Creates an order for `slot` and pays it; returns the order id and the payment result. */
  async buy(req: {
    gateway: string;
    slot: number;
    amountCents: number;
    pay?: boolean;
    /** The buyer's WeChat openid: on the order (coupons) and in the payment notification. */
    openid?: string;
  }) {
    const order = await this.api.createOrder({
      gateway: req.gateway,
      slot: req.slot,
      amountCents: req.amountCents,
      provider: this.provider.name,
      ...(req.openid !== undefined ? { member: { idType: 'wechat_openid', value: req.openid } } : {}),
    });
    if (req.pay === false) return { order, payment: undefined };
    const payment = this.provider.pay(order.id, order.amountCents, order.currency, req.openid);
    return { order, payment };
  }

  /** Pays an order created earlier (a late payer). */
  payLater(order: { id: string; amountCents: number; currency: string }) {
    return this.provider.pay(order.id, order.amountCents, order.currency);
  }
}
