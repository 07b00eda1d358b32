import { type Static, Type } from '@sinclair/typebox';
import { ajv, formatErrors } from '@storelink/protocols';
import { cloudError } from '../errors.ts';
import type { CouponQuote, OrderDraft } from './coupons.ts';
import { subtotalOf } from './coupons.ts';
import { currentMember } from './identity.ts';
import type { MembersTx } from './repo.ts';
import type { Coupon, CouponTemplate } from './types.ts';

/**
 * Coupon issuance and redemption as steps on a `MembersTx` (docs/members.md "Coupons"),
 * shared by the SQL and memory repos:
 * - [COUPON-ONCE-1] one coupon per (rule, triggering event, template): checked under the member's
 *   row lock and enforced by a unique key;
 * - [COUPON-CAP-1] at most `perMember.max` coupons of a template per member in any
 *   window of `perMember.windowDays`, measured on the triggering events' times. A
 *   candidate at time t is refused if `max` coupons already lie in (t − W, t + W), so a
 *   late (out-of-order) event cannot open a second slot in a window already used;
 * - [COUPON-BUDGET-1] a template's budget is taken with one conditional UPDATE, after the
 *   cap and duplicate checks, in the same transaction as the coupon row.
 */
const Ident = Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' });
export const TemplateSchema = Type.Object(
  {
    id: Ident,
    name: Type.String({ minLength: 1, maxLength: 64 }),
    kind: Type.Union([Type.Literal('amount_off'), Type.Literal('percent_off'), Type.Literal('free_item')]),
    amountOffCents: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000_000 })),
    percentOff: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
    freeSku: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    minSpendCents: Type.Optional(Type.Integer({ minimum: 0 })),
    validDays: Type.Number({ exclusiveMinimum: 0, maximum: 3650 }),
    validFrom: Type.Optional(Type.Integer({ minimum: 0 })),
    validTo: Type.Optional(Type.Integer({ minimum: 0 })),
    stores: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 1000 })),
    skus: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 1000 })),
    perMember: Type.Object(
      {
        max: Type.Integer({ minimum: 1, maximum: 1000 }),
        windowDays: Type.Number({ exclusiveMinimum: 0, maximum: 3650 }),
      },
      { additionalProperties: false },
    ),
    budget: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);
export type TemplateInput = Static<typeof TemplateSchema>;
const validateTemplateSchema = ajv.compile(TemplateSchema);

export function validateTemplate(body: unknown): TemplateInput {
  const t = structuredClone(body);
  if (!validateTemplateSchema(t))
    throw cloudError('CLOUD_ERR_COUPON_TEMPLATE', { errors: formatErrors(validateTemplateSchema.errors) });
  const x = t as TemplateInput;
  const need = { amount_off: 'amountOffCents', percent_off: 'percentOff', free_item: 'freeSku' } as const;
  if (x[need[x.kind]] === undefined)
    throw cloudError('CLOUD_ERR_COUPON_TEMPLATE', {
      errors: `/${need[x.kind]} is required for kind ${x.kind}`,
    });
  if (x.validFrom !== undefined && x.validTo !== undefined && x.validTo <= x.validFrom)
    throw cloudError('CLOUD_ERR_COUPON_TEMPLATE', { errors: '/validTo must be after /validFrom' });
  return x;
}

const DAY = 86_400_000;

export type IssueOutcome = 'issued' | 'duplicate' | 'over_cap' | 'no_budget' | 'out_of_validity';

export interface IssueRequest {
  templateId: string;
  memberId: string;
  ruleId: string;
  ruleVersion: number;
  triggerKey: string;
  triggerAt: number;
  gateway: string | null;
  now: number;
  newId: () => string;
}

export async function issueCoupon(
  tx: MembersTx,
  r: IssueRequest,
): Promise<{ outcome: IssueOutcome; coupon?: Coupon }> {
  const t = await tx.getTemplate(r.templateId);
  if (!t) throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'coupon template', id: r.templateId });
  const member = (await currentMember(tx, r.memberId)) ?? r.memberId;
  // Serialises issuance per member: cap and duplicate checks see every committed coupon.
  await tx.lockMember(member);
  const dup = await tx.couponByTrigger(r.ruleId, r.triggerKey, r.templateId);
  if (dup) return { outcome: 'duplicate', coupon: dup };
  const validFrom = Math.max(r.now, t.validFrom ?? 0);
  const expiresAt = Math.min(r.now + t.validDays * DAY, t.validTo ?? Number.MAX_SAFE_INTEGER);
  if (expiresAt <= validFrom) return { outcome: 'out_of_validity' };
  const w = t.perMember.windowDays * DAY;
  const near = await tx.countCoupons({
    memberId: member,
    templateId: t.id,
    from: r.triggerAt - w,
    to: r.triggerAt + w,
  });
  if (near >= t.perMember.max) return { outcome: 'over_cap' };
  if (!(await tx.takeBudget(t.id))) return { outcome: 'no_budget' };
  const c: Coupon = {
    id: r.newId(),
    templateId: t.id,
    memberId: member,
    ruleId: r.ruleId,
    ruleVersion: r.ruleVersion,
    triggerKey: r.triggerKey,
    triggerAt: r.triggerAt,
    state: 'issued',
    issuedAt: r.now,
    validFrom,
    expiresAt,
    orderId: null,
    redeemedAt: null,
    discountCents: null,
    subtotalCents: null,
    gateway: r.gateway,
  };
  if (!(await tx.insertCoupon(c)))
    throw cloudError('CLOUD_ERR_CONFLICT', {
      what: 'coupon',
      id: r.triggerKey,
      reason: 'issued concurrently',
    });
  return { outcome: 'issued', coupon: c };
}

/** Discount of one coupon on a draft, or the reason it does not apply. */
export function discountFor(
  c: Coupon,
  t: CouponTemplate,
  draft: OrderDraft,
  now: number,
  minTotalCents = 0,
): { ok: true; discountCents: number; subtotalCents: number } | { ok: false; reason: string } {
  if (c.state !== 'issued') return { ok: false, reason: `coupon is ${c.state}` };
  if (now < c.validFrom) return { ok: false, reason: 'coupon is not valid yet' };
  if (now >= c.expiresAt) return { ok: false, reason: 'coupon has expired' };
  if (t.stores?.length && !t.stores.includes(draft.site))
    return { ok: false, reason: `not valid at store ${draft.site}` };
  const subtotal = subtotalOf(draft);
  if (t.minSpendCents !== undefined && subtotal < t.minSpendCents)
    return { ok: false, reason: `order under the minimum spend ${t.minSpendCents}` };
  const eligible = draft.items.filter((i) => !t.skus?.length || t.skus.includes(i.sku));
  const eligibleCents = eligible.reduce((s, i) => s + i.priceCents * i.qty, 0);
  let d = 0;
  if (t.kind === 'amount_off') d = Math.min(t.amountOffCents ?? 0, eligibleCents);
  else if (t.kind === 'percent_off') d = Math.floor((eligibleCents * (t.percentOff ?? 0)) / 100);
  else {
    const item = draft.items.find((i) => i.sku === t.freeSku && i.qty > 0);
    d = item ? item.priceCents : 0;
  }
  d = Math.min(d, Math.max(0, subtotal - minTotalCents));
  if (d <= 0) return { ok: false, reason: 'nothing in the order this coupon applies to' };
  return { ok: true, discountCents: d, subtotalCents: subtotal };
}

/** The member's best coupon for the draft (largest discount; then soonest to expire). */
export async function bestQuote(
  tx: MembersTx,
  memberId: string,
  draft: OrderDraft,
  now: number,
  opts: { couponId?: string; minTotalCents?: number } = {},
): Promise<CouponQuote | undefined> {
  const coupons = await tx.couponsOf(memberId);
  const templates = new Map<string, CouponTemplate | undefined>();
  let best: (CouponQuote & { expiresAt: number }) | undefined;
  for (const c of coupons) {
    if (opts.couponId !== undefined && c.id !== opts.couponId) continue;
    if (!templates.has(c.templateId)) templates.set(c.templateId, await tx.getTemplate(c.templateId));
    const t = templates.get(c.templateId);
    if (!t) continue;
    const d = discountFor(c, t, draft, now, opts.minTotalCents);
    if (!d.ok) {
      if (opts.couponId !== undefined)
        throw cloudError('CLOUD_ERR_COUPON_NOT_APPLICABLE', { couponId: c.id, reason: d.reason });
      continue;
    }
    const q = {
      couponId: c.id,
      templateId: t.id,
      memberId,
      subtotalCents: d.subtotalCents,
      discountCents: d.discountCents,
      totalCents: d.subtotalCents - d.discountCents,
      expiresAt: c.expiresAt,
    };
    if (
      !best ||
      q.discountCents > best.discountCents ||
      (q.discountCents === best.discountCents && q.expiresAt < best.expiresAt)
    )
      best = q;
  }
  if (opts.couponId !== undefined && !best)
    throw cloudError('CLOUD_ERR_COUPON_NOT_APPLICABLE', {
      couponId: opts.couponId,
      reason: 'not a coupon of this member',
    });
  if (!best) return undefined;
  const { expiresAt: _e, ...quote } = best;
  return quote;
}
