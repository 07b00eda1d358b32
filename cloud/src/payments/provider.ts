/**
 * What the cloud asks of a payment provider besides receiving its notifications: the
 * query-order fallback, closing an unpaid order, and refunds (WeChat Pay v3 / Alipay
 * shapes, shared/reference/02-mdb.md "Mobile payment"). The simulated provider in
 * firmware-sim/src/payment implements it; a real adapter would wrap the provider's HTTPS
 * API. Errors are thrown (network, provider 5xx); the sweeper retries.
 */
export type TradeState = 'SUCCESS' | 'NOTPAY' | 'CLOSED' | 'REFUND';

export interface QueriedTrade {
  outTradeNo: string;
  tradeState: TradeState;
  transactionId?: string;
  amountCents?: number;
  currency?: string;
  successTime?: number;
}

export interface RefundRequest {
  outTradeNo: string;
  /** [ORDER-REFUND-NO-1] always the order's stable refund number. */
  outRefundNo: string;
  amountCents: number;
  totalCents: number;
  currency: string;
}

export interface PaymentProviderClient {
  queryOrder(outTradeNo: string): Promise<QueriedTrade>;
  /** `ORDERPAID`: too late, it was paid meanwhile (query again and process the payment). */
  closeOrder(outTradeNo: string): Promise<{ ok: true } | { ok: false; reason: 'ORDERPAID' }>;
  /** Idempotent on outRefundNo; `PROCESSING` counts as not done yet (retry with the same number). */
  refund(req: RefundRequest): Promise<{ status: 'SUCCESS' | 'PROCESSING' }>;
}

/**
 * A charge against a member's deduction agreement (WeChat Pay Score / Alipay agreement
 * payment: the member signed once, the merchant deducts after the fact). Used by cabinet
 * checkout (docs/cabinet.md). [CAB-CHARGE-2] idempotent on `outTradeNo`: a repeated call
 * returns the first trade and never deducts twice; the same number with another amount is
 * refused.
 */
export interface AgreementChargeRequest {
  outTradeNo: string;
  agreementId: string;
  amountCents: number;
  currency: string;
  description?: string;
}

export interface AgreementChargeResult {
  status: 'SUCCESS' | 'PROCESSING' | 'REFUSED';
  transactionId?: string;
  reason?: string;
}

export interface AgreementChargeClient {
  chargeAgreement(req: AgreementChargeRequest): Promise<AgreementChargeResult>;
}
