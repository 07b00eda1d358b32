/**
 * Coupons (docs/members.md). This module starts with the small interface other services
 * (vending orders, cabinet checkout — issue 8) use to apply a member's coupon to an
 * order; the implementation lives in `coupon-service.ts`.
 *
 * [COUPON-REDEEM-1] a redemption is keyed by the order id: redeeming again for the same
 * order returns the first redemption (same coupon, same discount) and never uses a
 * second coupon. [COUPON-REDEEM-2] `release(orderId)` gives the coupon back when the
 * order is never paid (expired) or refunded; a released coupon is valid again until it
 * expires.
 */

/** One order line; prices are per unit in cents. */
export interface OrderDraftItem {
  sku: string;
  priceCents: number;
  qty: number;
}

/** What checkout knows before the price is final. */
export interface OrderDraft {
  site: string;
  gateway: string;
  items: OrderDraftItem[];
  currency?: string;
  /** The discount never takes the total below this (a mobile payment needs >= 1 cent). */
  minTotalCents?: number;
}

/** A member, by cloud member id or by any linked channel id (e.g. the payer's openid). */
export type MemberRef = { memberId: string } | { idType: string; value: string };

export interface CouponQuote {
  couponId: string;
  templateId: string;
  memberId: string;
  subtotalCents: number;
  discountCents: number;
  /** subtotal − discount, never below 0 (a free order is still an order). */
  totalCents: number;
}

export interface CouponRedemption extends CouponQuote {
  orderId: string;
  redeemedAt: number;
}

export interface CouponRedeemer {
  /** The member's best valid coupon for this draft (largest discount), or undefined. Pure read. */
  quote(member: MemberRef, draft: OrderDraft): Promise<CouponQuote | undefined>;
  /**
   * Quote and redeem in one transaction, idempotent per `orderId` [COUPON-REDEEM-1].
   * `couponId` pins a coupon (it must still be valid for the draft); otherwise the best.
   * Undefined when the member has no applicable coupon (the order keeps its price).
   */
  redeem(input: {
    member: MemberRef;
    orderId: string;
    draft: OrderDraft;
    couponId?: string;
  }): Promise<CouponRedemption | undefined>;
  /** The redemption recorded for an order, if any. */
  redemptionFor(orderId: string): Promise<CouponRedemption | undefined>;
  /** [COUPON-REDEEM-2] the order will not be paid: the coupon becomes usable again. Idempotent. */
  release(orderId: string): Promise<void>;
}

/** Sum of the draft's lines (cents). */
export function subtotalOf(draft: OrderDraft): number {
  return draft.items.reduce((s, i) => s + i.priceCents * i.qty, 0);
}
