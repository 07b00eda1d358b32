import { type Static, Type } from '@sinclair/typebox';
import { ID_PATTERN } from '@storelink/protocols';
import type { FastifyInstance } from 'fastify';
import { cloudError } from '../errors.ts';
import { errorResponses } from '../http/schemas.ts';
import { CABINET_SESSION_STATES } from './repo.ts';
import type { CabinetService } from './service.ts';

/**
 * Cabinet HTTP routes (docs/cabinet.md), under /api/v1:
 * - POST /cabinet/sessions — the member scanned the cabinet's QR code [CAB-AUTH-1]
 * - GET /cabinet/sessions/:id, GET /cabinet/sessions?gateway=&state=
 * - PUT /cabinet/agreements/:memberId — the member's deduction agreement (from the provider's signing callback)
 * - PUT /cabinet/prices/:site — cabinet prices per SKU [CAB-PRICE-1]
 */
const Nullable = <T extends ReturnType<typeof Type.String> | ReturnType<typeof Type.Integer>>(t: T) =>
  Type.Union([t, Type.Null()]);
const StateEnum = Type.Unsafe<(typeof CABINET_SESSION_STATES)[number]>({
  type: 'string',
  enum: [...CABINET_SESSION_STATES],
});
const SessionIdParam = Type.String({ pattern: '^[A-Za-z0-9_-]{6,30}$' });
const MemberId = Type.String({ pattern: '^[A-Za-z0-9_.:@-]{1,64}$' });
const Sku = Type.String({ minLength: 1, maxLength: 64 });

export const CabinetSessionSchema = Type.Object({
  id: Type.String(),
  gateway: Type.String(),
  site: Type.String(),
  memberId: Type.String(),
  state: StateEnum,
  commandId: Type.String(),
  orderId: Type.String({ description: 'out_trade_no of the one agreement charge' }),
  items: Type.Array(Type.Object({ sku: Type.String(), qty: Type.Integer(), priceCents: Type.Integer() })),
  returned: Type.Array(Type.Object({ sku: Type.String(), qty: Type.Integer() })),
  unresolved: Type.Array(Type.Unknown()),
  subtotalCents: Type.Integer(),
  discountCents: Type.Integer(),
  totalCents: Type.Integer(),
  couponId: Nullable(Type.String()),
  chargeTxId: Nullable(Type.String()),
  chargeAttempts: Type.Integer(),
  failure: Nullable(Type.String()),
  createdAt: Type.Integer(),
  closedAt: Nullable(Type.Integer()),
  chargedAt: Nullable(Type.Integer()),
});

const ScanBody = Type.Object(
  {
    gateway: Type.String({ pattern: ID_PATTERN }),
    memberId: MemberId,
  },
  { additionalProperties: false },
);
const AgreementBody = Type.Object(
  {
    provider: Type.String({ pattern: '^[a-z0-9_-]{1,32}$' }),
    agreementId: Type.String({ minLength: 1, maxLength: 64 }),
    active: Type.Boolean({ default: true }),
  },
  { additionalProperties: false },
);
const PricesBody = Type.Object(
  {
    items: Type.Array(
      Type.Object(
        { sku: Sku, priceCents: Type.Integer({ minimum: 0, maximum: 10_000_000 }) },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 1000 },
    ),
  },
  { additionalProperties: false },
);
const ListQuery = Type.Object(
  {
    gateway: Type.Optional(Type.String({ pattern: ID_PATTERN })),
    state: Type.Optional(StateEnum),
    limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
  },
  { additionalProperties: false },
);

export interface CabinetRoutesOptions {
  cabinet: CabinetService;
}

export default async function cabinetRoutes(app: FastifyInstance, opts: CabinetRoutesOptions) {
  const { cabinet } = opts;

  app.post<{ Body: Static<typeof ScanBody> }>(
    '/cabinet/sessions',
    {
      schema: {
        tags: ['cabinet'],
        summary: "A member scanned a cabinet's QR code: authorise and send the signed unlock",
        body: ScanBody,
        response: { 201: CabinetSessionSchema, ...errorResponses },
      },
    },
    async (req, reply) => reply.code(201).send(await cabinet.scan(req.body)),
  );

  app.get<{ Params: { id: string } }>(
    '/cabinet/sessions/:id',
    {
      schema: {
        tags: ['cabinet'],
        summary: 'One cabinet session with its order',
        params: Type.Object({ id: SessionIdParam }),
        response: { 200: CabinetSessionSchema, ...errorResponses },
      },
    },
    async (req) => {
      const s = await cabinet.repo.get(req.params.id);
      if (!s) throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'cabinet session', id: req.params.id });
      return s;
    },
  );

  app.get<{ Querystring: Static<typeof ListQuery> }>(
    '/cabinet/sessions',
    {
      schema: {
        tags: ['cabinet'],
        summary: 'Cabinet sessions, newest first, by gateway and/or state',
        querystring: ListQuery,
        response: { 200: Type.Object({ items: Type.Array(CabinetSessionSchema) }), ...errorResponses },
      },
    },
    async (req) => ({
      items: await cabinet.repo.list({
        limit: req.query.limit,
        ...(req.query.gateway ? { gateway: req.query.gateway } : {}),
        ...(req.query.state ? { state: req.query.state } : {}),
      }),
    }),
  );

  app.put<{ Params: { memberId: string }; Body: Static<typeof AgreementBody> }>(
    '/cabinet/agreements/:memberId',
    {
      schema: {
        tags: ['cabinet'],
        summary: "Record a member's payment (deduction) agreement",
        params: Type.Object({ memberId: MemberId }),
        body: AgreementBody,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (req, reply) => {
      await cabinet.repo.setAgreement({ memberId: req.params.memberId, ...req.body }, app.cloud.now());
      return reply.code(204).send();
    },
  );

  app.put<{ Params: { site: string }; Body: Static<typeof PricesBody> }>(
    '/cabinet/prices/:site',
    {
      schema: {
        tags: ['cabinet'],
        summary: 'Set cabinet prices per SKU for a site',
        params: Type.Object({ site: Type.String({ pattern: ID_PATTERN }) }),
        body: PricesBody,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (req, reply) => {
      await cabinet.repo.setPrices(req.params.site, req.body.items);
      return reply.code(204).send();
    },
  );
}
