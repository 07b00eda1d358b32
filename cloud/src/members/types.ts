import type { IdKey } from './ids.ts';

/** Stored shapes of the members and coupons domain (docs/members.md). */

export interface LinkRow {
  /** Canonical order: a < b. */
  a: IdKey;
  b: IdKey;
  /** Where the link was seen: payment, import, staff, created, ... */
  source: string;
  evidence: Record<string, unknown>;
  at: number;
  /** Set by an unmerge: the link stays as evidence and never applies again [ID-UNMERGE-2]. */
  revokedAt: number | null;
}

export interface MemberRow {
  id: string;
  createdAt: number;
  /** Set when every id moved to another member (a merge); cleared by an unmerge. */
  mergedInto: string | null;
  erasedAt: number | null;
}

export interface MergeRow {
  id: string;
  into: string;
  from: string;
  /** The link whose arrival caused the merge (the evidence). */
  linkA: IdKey;
  linkB: IdKey;
  /** The ids `from` held just before. */
  fromIds: IdKey[];
  evidence: Record<string, unknown>;
  at: number;
  undoneAt: number | null;
}

export const ACTIVITY_KINDS = [
  'purchase',
  'visit',
  'recognized',
  'cabinet_session',
  'coupon_redeemed',
  'signup',
  'custom',
] as const;
export type ActivityKind = (typeof ACTIVITY_KINDS)[number];

/** One thing a member did, attributed to the id it was seen with (so unmerge splits it back). */
export interface Activity {
  /** Dedupe key (event id, order id, import id) [MEMBER-EVENT-ONCE-1]. */
  key: string;
  idKey: IdKey;
  kind: ActivityKind;
  /** wechat, alipay, app, tmall, store, ... */
  channel: string;
  /** Site id (store), or '' for online channels. */
  store: string;
  gateway: string | null;
  amountCents: number;
  at: number;
}

export interface TagRow {
  memberId: string;
  tag: string;
  source: 'rule' | 'staff';
  at: number;
}

export type CouponKind = 'amount_off' | 'percent_off' | 'free_item';

export interface CouponTemplate {
  id: string;
  name: string;
  kind: CouponKind;
  amountOffCents?: number;
  percentOff?: number;
  freeSku?: string;
  minSpendCents?: number;
  /** Validity: from issue for `validDays`, clipped to [validFrom, validTo] when set. */
  validDays: number;
  validFrom?: number;
  validTo?: number;
  /** Empty or absent: every store / SKU. */
  stores?: string[];
  skus?: string[];
  /** [COUPON-CAP-1] at most `max` coupons of this template per member in any `windowDays`. */
  perMember: { max: number; windowDays: number };
  /** [COUPON-BUDGET-1] at most this many issued, ever (absent: unlimited). */
  budget?: number;
  issued: number;
  createdAt: number;
}

export type CouponState = 'issued' | 'redeemed' | 'expired' | 'void';

export interface Coupon {
  id: string;
  templateId: string;
  /** Member at issuance; resolved through the `member:` id so it follows merges. */
  memberId: string;
  ruleId: string;
  ruleVersion: number;
  /** [COUPON-ONCE-1] (ruleId, triggerKey, templateId) is unique. */
  triggerKey: string;
  /** Time of the triggering event (the cap window is measured on it). */
  triggerAt: number;
  state: CouponState;
  issuedAt: number;
  validFrom: number;
  expiresAt: number;
  orderId: string | null;
  redeemedAt: number | null;
  discountCents: number | null;
  subtotalCents: number | null;
  /** Gateway whose display shows it (the store where it was triggered). */
  gateway: string | null;
}

export interface Delivery {
  couponId: string;
  channel: 'webhook' | 'display';
  state: 'pending' | 'delivered' | 'failed';
  attempts: number;
  lastError: string | null;
  nextAt: number;
  deliveredAt: number | null;
}

export interface RuleVersion {
  id: string;
  version: number;
  body: unknown;
  createdAt: number;
}
