import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { ajv, formatErrors } from '@storelink/protocols';
import { cloudError } from '../errors.ts';
import type { Profile } from './profile.ts';
import { ACTIVITY_KINDS, type Activity, type ActivityKind, type TagRow } from './types.ts';

/**
 * Rules are data (docs/members.md "Rules"), after Apache Unomi's rule = condition +
 * actions: JSON with a schema, versioned (every save is a new version; the latest one
 * runs), validated on save with errors that name the field [RULE-VALID-1], and dry-run
 * against recent activity without side effects [RULE-DRYRUN-1].
 *
 * A rule runs when an activity of one of its `on` kinds is recorded; all its
 * conditions must hold: on the triggering event, on profile fields, on tags, and on
 * counts of past activity in a window (Unomi's pastEventCondition), e.g. "recognised
 * at a store, no purchase in 30 days".
 */
const Op = Type.Union(['eq', 'ne', 'gt', 'gte', 'lt', 'lte'].map((o) => Type.Literal(o)));
type OpT = Static<typeof Op>;
const Kind = Type.Union(ACTIVITY_KINDS.map((k) => Type.Literal(k)));
const Scalar = Type.Union([Type.String({ maxLength: 128 }), Type.Number()]);
const Ident = Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' });
const strict = <T extends Record<string, TSchema>>(p: T, description?: string) =>
  Type.Object(p, { additionalProperties: false, ...(description ? { description } : {}) });

export const PROFILE_FIELDS = [
  'visits',
  'purchases',
  'spendCents',
  'recognitions',
  'daysSinceLastSeen',
  'daysSinceLastPurchase',
  'rfm.r',
  'rfm.f',
  'rfm.m',
  'rfm.score',
  'tier',
] as const;
export const EVENT_FIELDS = ['kind', 'channel', 'store', 'gateway', 'amountCents'] as const;

export const ConditionSchema = Type.Union([
  strict(
    {
      type: Type.Literal('event'),
      field: Type.Union(EVENT_FIELDS.map((f) => Type.Literal(f))),
      op: Op,
      value: Scalar,
    },
    'a field of the triggering event',
  ),
  strict(
    {
      type: Type.Literal('profile'),
      field: Type.Union(PROFILE_FIELDS.map((f) => Type.Literal(f))),
      op: Op,
      value: Scalar,
    },
    'a profile field of the member (before this event)',
  ),
  strict({ type: Type.Literal('tag'), tag: Ident, present: Type.Boolean() }, 'the member has / lacks a tag'),
  strict(
    {
      type: Type.Literal('count'),
      kind: Kind,
      withinDays: Type.Number({ exclusiveMinimum: 0, maximum: 3650 }),
      sameStore: Type.Optional(Type.Boolean()),
      op: Op,
      value: Type.Integer({ minimum: 0 }),
    },
    'how many past activities of a kind in the last N days (the triggering event excluded)',
  ),
]);
export type Condition = Static<typeof ConditionSchema>;

export const ActionSchema = Type.Union([
  strict({
    type: Type.Literal('issue_coupon'),
    template: Ident,
    /** Also show it on the store display at the triggering gateway. */
    display: Type.Optional(Type.Boolean()),
  }),
  strict({ type: Type.Literal('tag'), tag: Ident, remove: Type.Optional(Type.Boolean()) }),
  strict({ type: Type.Literal('notify_display'), text: Type.String({ minLength: 1, maxLength: 64 }) }),
]);
export type Action = Static<typeof ActionSchema>;

export const RuleSchema = strict({
  id: Ident,
  name: Type.String({ minLength: 1, maxLength: 128 }),
  enabled: Type.Boolean({ default: true }),
  on: Type.Array(Kind, { minItems: 1, maxItems: ACTIVITY_KINDS.length, uniqueItems: true }),
  conditions: Type.Array(ConditionSchema, { maxItems: 20, default: [] }),
  actions: Type.Array(ActionSchema, { minItems: 1, maxItems: 5 }),
});
export type Rule = Static<typeof RuleSchema>;

const validateRuleSchema = ajv.compile(RuleSchema);

/**
 * [RULE-VALID-1] schema first, then what a schema cannot say: the coupon templates the
 * rule issues must exist; a `count` of the triggering kind in the same store is fine.
 */
export function validateRule(body: unknown, knownTemplates: ReadonlySet<string>): Rule {
  const copy = structuredClone(body);
  if (!validateRuleSchema(copy))
    throw cloudError('CLOUD_ERR_RULE_INVALID', { errors: formatErrors(validateRuleSchema.errors) });
  const r = copy as Rule;
  const problems: string[] = [];
  r.actions.forEach((a, i) => {
    if (a.type === 'issue_coupon' && !knownTemplates.has(a.template))
      problems.push(`/actions/${i}/template "${a.template}" is not a coupon template (create it first)`);
  });
  r.conditions.forEach((c, i) => {
    if (c.type === 'profile' && c.field === 'tier' && typeof c.value !== 'string')
      problems.push(`/conditions/${i}/value must be a tier name for field "tier"`);
    if (c.type === 'event' && c.field === 'amountCents' && typeof c.value !== 'number')
      problems.push(`/conditions/${i}/value must be a number for field "amountCents"`);
  });
  if (problems.length) throw cloudError('CLOUD_ERR_RULE_INVALID', { errors: problems.join('; ') });
  return r;
}

export function compare(a: unknown, op: OpT, b: unknown): boolean {
  switch (op) {
    case 'eq':
      return a === b;
    case 'ne':
      return a !== b;
    case 'gt':
      return typeof a === 'number' && typeof b === 'number' && a > b;
    case 'gte':
      return typeof a === 'number' && typeof b === 'number' && a >= b;
    case 'lt':
      return typeof a === 'number' && typeof b === 'number' && a < b;
    case 'lte':
      return typeof a === 'number' && typeof b === 'number' && a <= b;
    default:
      return false;
  }
}

/** What a condition may ask about the member; the service answers from the store. */
export interface RuleContext {
  event: Activity;
  profile: () => Promise<Profile>;
  tags: () => Promise<TagRow[]>;
  /** Past activities of `kind` in [from, to], the triggering event excluded. */
  count: (q: { kind: ActivityKind; from: number; to: number; store?: string }) => Promise<number>;
}

const DAY = 86_400_000;

export function profileField(p: Profile, f: (typeof PROFILE_FIELDS)[number]): unknown {
  switch (f) {
    case 'rfm.r':
      return p.rfm.r;
    case 'rfm.f':
      return p.rfm.f;
    case 'rfm.m':
      return p.rfm.m;
    case 'rfm.score':
      return p.rfm.score;
    default:
      return p[f];
  }
}

/** Why a condition failed (dry-run explains), or undefined when it holds. */
export async function failedCondition(c: Condition, ctx: RuleContext): Promise<string | undefined> {
  switch (c.type) {
    case 'event': {
      const v = ctx.event[c.field];
      return compare(v, c.op, c.value)
        ? undefined
        : `event.${c.field} ${String(v)} is not ${c.op} ${c.value}`;
    }
    case 'profile': {
      const v = profileField(await ctx.profile(), c.field);
      return compare(v, c.op, c.value)
        ? undefined
        : `profile.${c.field} ${String(v)} is not ${c.op} ${c.value}`;
    }
    case 'tag': {
      const has = (await ctx.tags()).some((t) => t.tag === c.tag);
      return has === c.present ? undefined : `tag ${c.tag} is ${has ? 'present' : 'absent'}`;
    }
    case 'count': {
      const to = ctx.event.at;
      const n = await ctx.count({
        kind: c.kind,
        from: to - c.withinDays * DAY,
        to,
        ...(c.sameStore ? { store: ctx.event.store } : {}),
      });
      return compare(n, c.op, c.value)
        ? undefined
        : `${n} ${c.kind} in ${c.withinDays} days is not ${c.op} ${c.value}`;
    }
  }
}

/** All conditions hold → undefined; else the first reason. Cheap conditions go first. */
export async function evaluate(rule: Rule, ctx: RuleContext): Promise<string | undefined> {
  if (!rule.enabled) return 'rule disabled';
  if (!rule.on.includes(ctx.event.kind))
    return `event kind ${ctx.event.kind} is not one of ${rule.on.join(',')}`;
  const order = (c: Condition) =>
    c.type === 'event' ? 0 : c.type === 'tag' ? 1 : c.type === 'profile' ? 2 : 3;
  for (const c of [...rule.conditions].sort((a, b) => order(a) - order(b))) {
    const why = await failedCondition(c, ctx);
    if (why) return why;
  }
  return undefined;
}
