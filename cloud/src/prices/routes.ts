import { type Static, Type } from '@sinclair/typebox';
import { esl, ID_PATTERN } from '@storelink/protocols';
import type { FastifyInstance } from 'fastify';
import { cloudError } from '../errors.ts';
import { errorResponses } from '../http/schemas.ts';
import { CAMPAIGN_STATES, type PriceBook, REPORT_REASONS } from './service.ts';

/**
 * Price book and campaign routes (docs/esl.md), registered under /api/v1 by http/app.ts.
 */
const Site = Type.String({ pattern: ID_PATTERN });
const Sku = Type.String({ minLength: 1, maxLength: 32, pattern: '^[A-Za-z0-9_.-]+$' });
const CampaignIdParam = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,40}$' }) });
const StateEnum = Type.Unsafe<(typeof CAMPAIGN_STATES)[number]>({
  type: 'string',
  enum: [...CAMPAIGN_STATES],
});
const Counts = Type.Object(Object.fromEntries(CAMPAIGN_STATES.map((s) => [s, Type.Integer()])));

export const ProgressSchema = Type.Object({
  id: Type.String(),
  site: Type.String(),
  reason: Type.String(),
  total: Type.Integer(),
  counts: Counts,
  complete: Type.Boolean(),
  createdAt: Type.Integer(),
  deadlineAt: Type.Integer(),
  cancelledAt: Type.Union([Type.Integer(), Type.Null()]),
});

const ReportSchema = Type.Object({
  id: Type.String(),
  total: Type.Integer(),
  confirmed: Type.Integer(),
  byReason: Type.Record(Type.String(), Type.Integer()),
  notConfirmed: Type.Array(
    Type.Object({
      tag: Type.String(),
      sku: Type.String(),
      state: StateEnum,
      reason: Type.Unsafe<string>({ type: 'string', enum: [...REPORT_REASONS] }),
      batteryMv: Type.Union([Type.Integer(), Type.Null()]),
      lastCheckin: Type.Union([Type.Integer(), Type.Null()]),
    }),
  ),
});

const PricesBody = Type.Object(
  {
    items: Type.Array(
      Type.Object(
        {
          sku: Sku,
          priceCents: Type.Integer({ minimum: 0, maximum: 99_999_999 }),
          currency: Type.Optional(Type.String({ pattern: '^[A-Z]{3}$' })),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 20000 },
    ),
    campaign: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
const PromotionBody = Type.Object(
  {
    id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,40}$' })),
    sku: Sku,
    promoCents: Type.Integer({ minimum: 0, maximum: 99_999_999 }),
    startsAt: Type.Integer({ minimum: 0 }),
    endsAt: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
const TagBody = Type.Object(
  {
    kind: Type.Optional(Type.Union([Type.Literal('tag'), Type.Literal('display')])),
    site: Site,
    gateway: Type.String({ pattern: ID_PATTERN }),
    ap: Type.Optional(Type.String({ pattern: ID_PATTERN })),
    sku: Sku,
    size: esl.SizeSchema,
    bpp: esl.BppSchema,
  },
  { additionalProperties: false },
);
const CampaignBody = Type.Object(
  {
    site: Site,
    skus: Type.Optional(Type.Array(Sku, { maxItems: 20000 })),
    reason: Type.Optional(Type.String({ maxLength: 64 })),
    deadlineMs: Type.Optional(Type.Integer({ minimum: 1000 })),
  },
  { additionalProperties: false },
);

export interface PricesRoutesOptions {
  book: PriceBook;
}

export default async function pricesRoutes(app: FastifyInstance, opts: PricesRoutesOptions) {
  const { book } = opts;
  const tags = ['prices'];

  app.put<{ Params: { sku: string }; Body: { name: string; barcode?: string } }>(
    '/prices/skus/:sku',
    {
      schema: {
        tags,
        summary: 'Create or update a SKU (name, barcode)',
        params: Type.Object({ sku: Sku }),
        body: Type.Object(
          { name: Type.String({ maxLength: 64 }), barcode: Type.Optional(Type.String({ maxLength: 32 })) },
          { additionalProperties: false },
        ),
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (req, reply) => {
      await book.upsertSku({ sku: req.params.sku, ...req.body });
      return reply.code(204).send();
    },
  );

  app.put<{ Params: { size: esl.EslSize }; Body: { code: 'barcode' | 'qr' | 'none' } }>(
    '/prices/templates/:size',
    {
      schema: {
        tags,
        summary: 'Label template per tag size: which code the tag shows',
        params: Type.Object({ size: esl.SizeSchema }),
        body: Type.Object(
          { code: Type.Union([Type.Literal('barcode'), Type.Literal('qr'), Type.Literal('none')]) },
          { additionalProperties: false },
        ),
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (req, reply) => {
      await book.upsertTemplate(req.params.size, req.body.code);
      return reply.code(204).send();
    },
  );

  app.put<{ Params: { mac: string }; Body: Static<typeof TagBody> }>(
    '/esl/tags/:mac',
    {
      schema: {
        tags,
        summary: 'Link a tag (or signage display) to a SKU, its gateway and access point',
        params: Type.Object({ mac: Type.String({ pattern: ID_PATTERN }) }),
        body: TagBody,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (req, reply) => {
      await book.upsertTag({ mac: req.params.mac, ...req.body });
      return reply.code(204).send();
    },
  );

  app.post<{ Params: { site: string }; Body: Static<typeof PricesBody> }>(
    '/prices/sites/:site/prices',
    {
      schema: {
        tags,
        summary: 'Set prices; the tags showing changed SKUs get a campaign (unless campaign=false)',
        params: Type.Object({ site: Site }),
        body: PricesBody,
        response: {
          200: Type.Object({ campaignId: Type.Union([Type.String(), Type.Null()]), changed: Type.Integer() }),
          ...errorResponses,
        },
      },
    },
    async (req) =>
      book.setPrices(
        req.params.site,
        req.body.items,
        req.body.campaign === undefined ? {} : { campaign: req.body.campaign },
      ),
  );

  app.post<{ Params: { site: string }; Body: Static<typeof PromotionBody> }>(
    '/prices/sites/:site/promotions',
    {
      schema: {
        tags,
        summary: 'Create or update a promotion; its start and its end each produce a campaign',
        params: Type.Object({ site: Site }),
        body: PromotionBody,
        response: { 200: Type.Object({ id: Type.String() }), ...errorResponses },
      },
    },
    async (req) => book.upsertPromotion({ site: req.params.site, ...req.body }),
  );

  app.post<{ Body: Static<typeof CampaignBody> }>(
    '/campaigns',
    {
      schema: {
        tags,
        summary: 'Create a campaign for the tags of a site (all, or those showing `skus`)',
        body: CampaignBody,
        response: { 201: ProgressSchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const { site, ...rest } = req.body;
      const c = await book.createCampaign(site, rest);
      if (!c)
        throw cloudError('CLOUD_ERR_BAD_REQUEST', {
          errors:
            'no tag with a price shows these SKUs (link tags with PUT /api/v1/esl/tags/:mac, set prices first)',
        });
      return reply.code(201).send(await book.progress(c.id));
    },
  );

  app.get<{ Params: { id: string } }>(
    '/campaigns/:id',
    {
      schema: {
        tags,
        summary: 'Campaign progress: tags per state',
        params: CampaignIdParam,
        response: { 200: ProgressSchema, ...errorResponses },
      },
    },
    async (req) => book.progress(req.params.id),
  );

  app.get<{
    Params: { id: string };
    Querystring: { state?: (typeof CAMPAIGN_STATES)[number]; limit: number; after?: string };
  }>(
    '/campaigns/:id/tags',
    {
      schema: {
        tags,
        summary: 'Per-tag state and reason (paged by tag: pass the last tag as `after`)',
        params: CampaignIdParam,
        querystring: Type.Object({
          state: Type.Optional(StateEnum),
          limit: Type.Integer({ minimum: 1, maximum: 5000, default: 1000 }),
          after: Type.Optional(Type.String({ maxLength: 64 })),
        }),
        response: {
          200: Type.Object({
            items: Type.Array(
              Type.Object({
                tag: Type.String(),
                sku: Type.String(),
                state: StateEnum,
                reason: Type.Union([Type.String(), Type.Null()]),
                dataVer: Type.Union([Type.String(), Type.Null()]),
                updatedAt: Type.Integer(),
              }),
            ),
          }),
          ...errorResponses,
        },
      },
    },
    async (req) => ({ items: await book.tags(req.params.id, req.query) }),
  );

  app.post<{ Params: { id: string } }>(
    '/campaigns/:id/cancel',
    {
      schema: {
        tags,
        summary: 'Cancel: tags not confirmed yet are withdrawn at the edge',
        params: CampaignIdParam,
        response: { 200: ProgressSchema, ...errorResponses },
      },
    },
    async (req) => book.cancel(req.params.id),
  );

  app.get<{ Params: { id: string } }>(
    '/campaigns/:id/report',
    {
      schema: {
        tags,
        summary: 'Completion report: every tag that did not confirm and why',
        params: CampaignIdParam,
        response: { 200: ReportSchema, ...errorResponses },
      },
    },
    async (req) => book.report(req.params.id),
  );
}
