/**
 * A simulated deduction-agreement provider (WeChat Pay Score / Alipay agreement payment:
 * the member signs once, the merchant deducts after the fact), for cabinet checkout
 * (docs/cabinet.md). Shape of cloud/src/payments/provider.ts `AgreementChargeClient`
 * (structurally; a simulator does not import the cloud).
 *
 * - `sign(memberId)` makes an agreement id; `revoke` ends it (charges are then refused).
 * - [CAB-CHARGE-2] `chargeAgreement` is idempotent on out_trade_no: a repeat returns the
 *   first trade and deducts nothing; the same number with another amount is refused
 *   (`stats.amountMismatch`). Every deduction is recorded in `charges`, so a test can count
 *   how many times money actually moved per out_trade_no.
 * - Faults: `apiError` (fails before deducting) and `lostResponse` (deducts, then the
 *   answer is lost: the merchant must retry with the same number), on an injected rng.
 */
export interface AgreementFaults {
  apiError?: number;
  lostResponse?: number;
}

export interface AgreementCharge {
  outTradeNo: string;
  agreementId: string;
  amountCents: number;
  transactionId: string;
  at: number;
}

export class SimAgreementProvider {
  readonly agreements = new Map<string, { memberId: string; active: boolean }>();
  /** Every deduction that moved money, in order. */
  readonly charges: AgreementCharge[] = [];
  private readonly byTrade = new Map<string, AgreementCharge>();
  private seq = 0;
  /** Fault probabilities; tests may change them between calls. */
  readonly faults: AgreementFaults;
  readonly stats = {
    calls: 0,
    charged: 0,
    replays: 0,
    refused: 0,
    amountMismatch: 0,
    apiErrors: 0,
    lostResponses: 0,
  };

  constructor(
    private readonly opts: {
      now: () => number;
      rng?: () => number;
      faults?: AgreementFaults;
      name?: string;
    } = {
      now: Date.now,
    },
  ) {
    this.faults = { ...opts.faults };
  }

  sign(memberId: string): string {
    const id = `AGR${memberId.replace(/[^A-Za-z0-9]/g, '').slice(0, 40)}${(++this.seq).toString(36)}`;
    this.agreements.set(id, { memberId, active: true });
    return id;
  }

  revoke(agreementId: string): void {
    const a = this.agreements.get(agreementId);
    if (a) a.active = false;
  }

  /** Money moved for this out_trade_no (0 or 1 — never more). */
  chargesFor(outTradeNo: string): number {
    return this.charges.filter((c) => c.outTradeNo === outTradeNo).length;
  }

  async chargeAgreement(req: {
    outTradeNo: string;
    agreementId: string;
    amountCents: number;
    currency: string;
    description?: string;
  }): Promise<{ status: 'SUCCESS' | 'PROCESSING' | 'REFUSED'; transactionId?: string; reason?: string }> {
    this.stats.calls++;
    const rng = this.opts.rng ?? Math.random;
    if (rng() < (this.faults.apiError ?? 0)) {
      this.stats.apiErrors++;
      throw new Error('SYSTEM_ERROR: agreement deduction unavailable');
    }
    const prior = this.byTrade.get(req.outTradeNo);
    if (prior) {
      if (prior.amountCents !== req.amountCents || prior.agreementId !== req.agreementId) {
        this.stats.amountMismatch++;
        return { status: 'REFUSED', reason: `out_trade_no ${req.outTradeNo} was used with other parameters` };
      }
      this.stats.replays++;
      return { status: 'SUCCESS', transactionId: prior.transactionId };
    }
    const a = this.agreements.get(req.agreementId);
    if (!a?.active) {
      this.stats.refused++;
      return { status: 'REFUSED', reason: `agreement ${req.agreementId} is not active` };
    }
    if (req.amountCents <= 0) {
      this.stats.refused++;
      return { status: 'REFUSED', reason: 'amount must be positive' };
    }
    const c: AgreementCharge = {
      outTradeNo: req.outTradeNo,
      agreementId: req.agreementId,
      amountCents: req.amountCents,
      transactionId: `AT${(++this.seq).toString().padStart(12, '0')}`,
      at: this.opts.now(),
    };
    this.byTrade.set(c.outTradeNo, c);
    this.charges.push(c);
    this.stats.charged++;
    if (rng() < (this.faults.lostResponse ?? 0)) {
      this.stats.lostResponses++;
      throw new Error('SYSTEM_ERROR: response lost');
    }
    return { status: 'SUCCESS', transactionId: c.transactionId };
  }
}
