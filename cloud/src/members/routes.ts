import { type Static, Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { cloudError } from '../errors.ts';
import { errorResponses } from '../http/schemas.ts';
import { ID_TYPE_NAMES } from './ids.ts';
import { RuleSchema } from './rules.ts';
import type { MembersService } from './service.ts';
import { ACTIVITY_KINDS } from './types.ts';

/**
 * Members and coupons HTTP API (docs/members.md), registered under /api/v1:
 * members (search, profile, merge history, link, unmerge, erase, tags, event import),
 * rules (versioned, validated, dry-run), coupon templates, issued coupons, quotes.
 */
export interface MembersRoutesOptions {
  members: MembersService;
}

const IdTypeEnum = Type.Unsafe<string>({ type: 'string', enum: [...ID_TYPE_NAMES] });
const MemberIdParam = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,64}$' }) });
const IdRef = Type.Object(
  { type: IdTypeEnum, value: Type.String({ maxLength: 256 }) },
  { additionalProperties: false },
);
const Loose = (description: string) => Type.Unsafe<unknown>({ description });
const Member = Type.Object({
  id: Type.String(),
  createdAt: Type.Integer(),
  mergedInto: Type.Union([Type.String(), Type.Null()]),
  erasedAt: Type.Union([Type.Integer(), Type.Null()]),
});
const Merge = Type.Object({
  id: Type.String(),
  into: Type.String(),
  from: Type.String(),
  linkA: Type.String(),
  linkB: Type.String(),
  fromIds: Type.Array(Type.String()),
  evidence: Type.Record(Type.String(), Type.Unknown()),
  at: Type.Integer(),
  undoneAt: Type.Union([Type.Integer(), Type.Null()]),
});
const Coupon = Type.Object({
  id: Type.String(),
  templateId: Type.String(),
  memberId: Type.String(),
  ruleId: Type.String(),
  ruleVersion: Type.Integer(),
  triggerKey: Type.String(),
  triggerAt: Type.Integer(),
  state: Type.String(),
  issuedAt: Type.Integer(),
  validFrom: Type.Integer(),
  expiresAt: Type.Integer(),
  orderId: Type.Union([Type.String(), Type.Null()]),
  redeemedAt: Type.Union([Type.Integer(), Type.Null()]),
  discountCents: Type.Union([Type.Integer(), Type.Null()]),
  subtotalCents: Type.Union([Type.Integer(), Type.Null()]),
  gateway: Type.Union([Type.String(), Type.Null()]),
});
const ActivityBody = Type.Object(
  {
    key: Type.String({ minLength: 1, maxLength: 128, description: 'dedupe key (the channel event id)' }),
    id: IdRef,
    links: Type.Optional(Type.Array(IdRef, { maxItems: 10 })),
    kind: Type.Unsafe<(typeof ACTIVITY_KINDS)[number]>({ type: 'string', enum: [...ACTIVITY_KINDS] }),
    channel: Type.String({ pattern: '^[a-z0-9_-]{1,32}$' }),
    store: Type.String({ maxLength: 64, default: '' }),
    gateway: Type.Optional(Type.String({ maxLength: 64 })),
    amountCents: Type.Optional(Type.Integer({ minimum: 0 })),
    at: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
const Draft = Type.Object(
  {
    site: Type.String({ maxLength: 64 }),
    gateway: Type.String({ maxLength: 64 }),
    items: Type.Array(
      Type.Object(
        {
          sku: Type.String({ maxLength: 64 }),
          priceCents: Type.Integer({ minimum: 0 }),
          qty: Type.Integer({ minimum: 1 }),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 100 },
    ),
    currency: Type.Optional(Type.String()),
    minTotalCents: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);
export const MemberRefSchema = Type.Union([
  Type.Object(
    { memberId: Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,64}$' }) },
    { additionalProperties: false },
  ),
  Type.Object(
    { idType: IdTypeEnum, value: Type.String({ maxLength: 256 }) },
    { additionalProperties: false },
  ),
]);

export default async function membersRoutes(app: FastifyInstance, opts: MembersRoutesOptions) {
  const svc = opts.members;
  const tags = ['members'];

  app.get<{ Querystring: { idType?: string; value?: string; tag?: string; limit: number } }>(
    '/members',
    {
      schema: {
        tags,
        summary: 'Search members by one of their ids and/or a tag (live members only)',
        querystring: Type.Object(
          {
            idType: Type.Optional(IdTypeEnum),
            value: Type.Optional(Type.String({ maxLength: 256 })),
            tag: Type.Optional(Type.String({ maxLength: 64 })),
            limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ items: Type.Array(Member) }), ...errorResponses },
      },
    },
    async (req) => {
      const q = req.query;
      if ((q.idType === undefined) !== (q.value === undefined))
        throw cloudError('CLOUD_ERR_BAD_REQUEST', { errors: 'idType and value go together' });
      const key = q.idType !== undefined ? svc.idKeyOf(q.idType, q.value!) : undefined;
      return {
        items: await svc.repo.listMembers({
          limit: q.limit,
          ...(key ? { idKey: key } : {}),
          ...(q.tag ? { tag: q.tag } : {}),
        }),
      };
    },
  );

  app.get<{ Params: { id: string } }>(
    '/members/:id',
    {
      schema: {
        tags,
        summary: 'Profile: ids, tags, visits/purchases/spend per channel and store, last seen, RFM and tier',
        params: MemberIdParam,
        response: {
          200: Type.Object({
            memberId: Type.String(),
            ids: Type.Array(Type.Object({ type: Type.String(), value: Type.String() })),
            tags: Type.Array(Type.Object({ tag: Type.String(), source: Type.String(), at: Type.Integer() })),
            profile: Loose('computed profile (docs/members.md "Profiles")'),
          }),
          ...errorResponses,
        },
      },
    },
    async (req) => svc.profile(req.params.id),
  );

  app.get<{ Params: { id: string } }>(
    '/members/:id/merges',
    {
      schema: {
        tags,
        summary: 'Merge history of a member, with the evidence of each merge',
        params: MemberIdParam,
        response: { 200: Type.Object({ items: Type.Array(Merge) }), ...errorResponses },
      },
    },
    async (req) => ({ items: await svc.mergeHistory(req.params.id) }),
  );

  app.post<{
    Body: {
      a: Static<typeof IdRef>;
      b: Static<typeof IdRef>;
      source: string;
      evidence?: Record<string, unknown>;
    };
  }>(
    '/members/links',
    {
      schema: {
        tags,
        summary: 'Link two ids as one person (staff or a channel bind); may merge members',
        body: Type.Object(
          {
            a: IdRef,
            b: IdRef,
            source: Type.String({ pattern: '^[a-z0-9_-]{1,32}$', default: 'staff' }),
            evidence: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            status: Type.String(),
            memberA: Type.String(),
            memberB: Type.String(),
            merges: Type.Array(Merge),
          }),
          ...errorResponses,
        },
      },
    },
    async (req) =>
      svc.link(req.body.a, req.body.b, { source: req.body.source, evidence: req.body.evidence ?? {} }),
  );

  app.post<{ Params: { id: string } }>(
    '/members/merges/:id/unmerge',
    {
      schema: {
        tags,
        summary:
          'Undo a merge: its link is revoked (kept as evidence, never applied again) and the members split back',
        params: MemberIdParam,
        response: { 200: Type.Object({ merge: Merge, already: Type.Boolean() }), ...errorResponses },
      },
    },
    async (req) => svc.unmerge(req.params.id),
  );

  app.delete<{ Params: { id: string } }>(
    '/members/:id',
    {
      schema: {
        tags,
        summary:
          'Erase a member on request (PIPL): ids, links, activity, tags, coupons, face-gallery entries',
        params: MemberIdParam,
        response: {
          200: Type.Object({
            memberId: Type.String(),
            aliases: Type.Array(Type.String()),
            faceIds: Type.Array(Type.String()),
            idCount: Type.Integer(),
            at: Type.Integer(),
          }),
          ...errorResponses,
        },
      },
    },
    async (req) => svc.erase(req.params.id),
  );

  for (const method of ['PUT', 'DELETE'] as const)
    app.route<{ Params: { id: string; tag: string } }>({
      method,
      url: '/members/:id/tags/:tag',
      schema: {
        tags,
        summary: method === 'PUT' ? 'Tag a member (staff)' : 'Remove a tag',
        params: Type.Object({
          id: MemberIdParam.properties.id,
          tag: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }),
        }),
        response: { 204: Type.Null(), ...errorResponses },
      },
      handler: async (req, reply) => {
        await svc.setTag(req.params.id, req.params.tag, method === 'DELETE');
        return reply.code(204).send();
      },
    });

  app.post<{ Body: { events: Static<typeof ActivityBody>[] } }>(
    '/members/events',
    {
      schema: {
        tags,
        summary:
          'Import channel events (Tmall, app, WeChat, POS): profile activity, id links, rules; idempotent by key',
        body: Type.Object(
          { events: Type.Array(ActivityBody, { minItems: 1, maxItems: 1000 }) },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            results: Type.Array(
              Type.Object({
                key: Type.String(),
                outcome: Type.String(),
                memberId: Type.Optional(Type.String()),
                reason: Type.Optional(Type.String()),
                coupons: Type.Array(Type.String()),
              }),
            ),
          }),
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const results = [];
      for (const e of req.body.events) {
        const r = await svc.record({ ...e, gateway: e.gateway ?? null });
        results.push({
          key: e.key,
          outcome: r.outcome,
          ...(r.memberId ? { memberId: r.memberId } : {}),
          ...(r.reason ? { reason: r.reason } : {}),
          coupons: r.coupons.map((c) => c.id),
        });
      }
      return { results };
    },
  );

  // ---------------------------------------------------------------- rules
  const rtags = ['rules'];
  app.get(
    '/rules',
    {
      schema: {
        tags: rtags,
        summary: 'Latest version of every rule',
        response: {
          200: Type.Object({ items: Type.Array(Loose('rule version {id, version, body, createdAt}')) }),
        },
      },
    },
    async () => ({ items: await svc.repo.latestRules() }),
  );
  app.put<{ Params: { id: string }; Body: unknown }>(
    '/rules/:id',
    {
      schema: {
        tags: rtags,
        summary: `Save a new version of a rule (validated: schema, and coupon templates exist). Schema: ${JSON.stringify(RuleSchema).length} chars, see docs/members.md`,
        params: Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }) }),
        body: Loose('a rule (docs/members.md "Rules")'),
        response: {
          201: Type.Object({ version: Type.Integer(), rule: Loose('the saved rule') }),
          ...errorResponses,
        },
      },
    },
    async (req, reply) => {
      const body = req.body as Record<string, unknown> | null;
      if (body && typeof body === 'object' && body.id !== undefined && body.id !== req.params.id)
        throw cloudError('CLOUD_ERR_RULE_INVALID', {
          errors: `/id "${String(body.id)}" differs from the URL id "${req.params.id}"`,
        });
      const saved = await svc.saveRule({ ...(body ?? {}), id: req.params.id });
      return reply.code(201).send(saved);
    },
  );
  app.get<{ Params: { id: string } }>(
    '/rules/:id/versions',
    {
      schema: {
        tags: rtags,
        summary: 'Every saved version of a rule',
        params: Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }) }),
        response: { 200: Type.Object({ items: Type.Array(Loose('rule version')) }) },
      },
    },
    async (req) => ({ items: await svc.repo.ruleVersions(req.params.id) }),
  );
  app.post<{ Body: { rule: unknown; sinceHours: number; limit: number } }>(
    '/rules/dry-run',
    {
      schema: {
        tags: rtags,
        summary:
          'Evaluate a rule (saved or not) against recent activity; no coupon, tag or display is touched',
        body: Type.Object(
          {
            rule: Loose('a rule'),
            sinceHours: Type.Number({ exclusiveMinimum: 0, maximum: 24 * 90, default: 24 }),
            limit: Type.Integer({ minimum: 1, maximum: 10_000, default: 1000 }),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            evaluated: Type.Integer(),
            matched: Type.Integer(),
            results: Type.Array(Loose('per event: event, memberId, matched, reason')),
          }),
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const r = await svc.dryRun(req.body.rule, {
        sinceMs: req.body.sinceHours * 3_600_000,
        limit: req.body.limit,
      });
      return { evaluated: r.evaluated, matched: r.matched, results: r.results };
    },
  );

  // ---------------------------------------------------------------- coupons
  const ctags = ['coupons'];
  app.get(
    '/coupon-templates',
    {
      schema: {
        tags: ctags,
        summary: 'Coupon templates with issued counts',
        response: { 200: Type.Object({ items: Type.Array(Loose('template')) }) },
      },
    },
    async () => ({ items: await svc.repo.listTemplates() }),
  );
  app.put<{ Params: { id: string }; Body: unknown }>(
    '/coupon-templates/:id',
    {
      schema: {
        tags: ctags,
        summary:
          'Create or change a coupon template (amount/percent off or free item, validity, stores, SKUs, per-member cap, budget)',
        params: Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }) }),
        body: Loose('template (docs/members.md "Coupons")'),
        response: { 200: Loose('the template'), ...errorResponses },
      },
    },
    async (req) => svc.putTemplate({ ...((req.body as object) ?? {}), id: req.params.id }),
  );
  app.get<{ Querystring: { memberId?: string; state?: string; limit: number } }>(
    '/coupons',
    {
      schema: {
        tags: ctags,
        summary: 'Issued coupons, newest first, by member (and members merged into it) and/or state',
        querystring: Type.Object(
          {
            memberId: Type.Optional(MemberIdParam.properties.id),
            state: Type.Optional(
              Type.Unsafe<string>({ type: 'string', enum: ['issued', 'redeemed', 'expired', 'void'] }),
            ),
            limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ items: Type.Array(Coupon) }), ...errorResponses },
      },
    },
    async (req) => ({
      items: await svc.repo.listCoupons({
        limit: req.query.limit,
        ...(req.query.memberId ? { memberId: req.query.memberId } : {}),
        ...(req.query.state ? { state: req.query.state } : {}),
      }),
    }),
  );
  app.post<{ Body: { member: Static<typeof MemberRefSchema>; draft: Static<typeof Draft> } }>(
    '/coupons/quote',
    {
      schema: {
        tags: ctags,
        summary: 'The best valid coupon of a member for an order draft (nothing is redeemed)',
        body: Type.Object({ member: MemberRefSchema, draft: Draft }, { additionalProperties: false }),
        response: {
          200: Type.Object({ quote: Type.Union([Loose('quote'), Type.Null()]) }),
          ...errorResponses,
        },
      },
    },
    async (req) => ({ quote: (await svc.quote(req.body.member, req.body.draft)) ?? null }),
  );
}
