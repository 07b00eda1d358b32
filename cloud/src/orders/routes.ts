import { type Static, Type } from '@sinclair/typebox';
import { ID_PATTERN } from '@storelink/protocols';
import type { FastifyInstance } from 'fastify';
import { cloudError } from '../errors.ts';
import { ErrorBody, errorResponses } from '../http/schemas.ts';
import { WECHAT_SUCCESS } from '../payments/wechat.ts';
import { ORDER_STATES } from './machine.ts';
import type { OrdersService } from './service.ts';

/**
 * Vending HTTP routes (docs/vending.md), registered under /api/v1 by http/app.ts:
 * - POST /orders (the machine's QR flow), GET /orders/:id, GET /orders?gateway=&state=
 * - POST /payments/notify/:provider (WeChat Pay v3 style, signature over the raw body)
 */
const Nullable = <T extends ReturnType<typeof Type.String> | ReturnType<typeof Type.Integer>>(t: T) =>
  Type.Union([t, Type.Null()]);
const StateEnum = Type.Unsafe<(typeof ORDER_STATES)[number]>({ type: 'string', enum: [...ORDER_STATES] });
const OrderIdParam = Type.String({ pattern: '^[A-Za-z0-9_-]{6,32}$' });

export const OrderSchema = Type.Object({
  id: Type.String({ description: 'out_trade_no' }),
  gateway: Type.String(),
  site: Type.String(),
  slot: Type.Integer(),
  sku: Nullable(Type.String()),
  amountCents: Type.Integer(),
  currency: Type.String(),
  state: StateEnum,
  provider: Nullable(Type.String()),
  paymentTxId: Nullable(Type.String()),
  refundNo: Type.String(),
  dispenseCommandId: Nullable(Type.String()),
  dispenseExpiresAt: Nullable(Type.Integer()),
  createdAt: Type.Integer(),
  expiresAt: Type.Integer(),
  paidAt: Nullable(Type.Integer()),
  settledAt: Nullable(Type.Integer()),
  failureReason: Nullable(Type.String()),
  refundAttempts: Type.Integer(),
});

const CreateOrderBody = Type.Object(
  {
    gateway: Type.String({ pattern: ID_PATTERN }),
    slot: Type.Integer({ minimum: 0, maximum: 65535 }),
    amountCents: Type.Integer({ minimum: 1, maximum: 65535 }),
    currency: Type.Optional(Type.String({ pattern: '^[A-Z]{3}$' })),
    sku: Type.Optional(Type.String({ maxLength: 64 })),
    provider: Type.Optional(Type.String({ pattern: '^[a-z0-9_-]{1,32}$' })),
    id: Type.Optional(OrderIdParam),
    /** The member ordering (mini-program scan): their best valid coupon lowers the price. */
    member: Type.Optional(
      Type.Union([
        Type.Object(
          { memberId: Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,64}$' }) },
          { additionalProperties: false },
        ),
        Type.Object(
          { idType: Type.String({ pattern: '^[a-z_]{1,32}$' }), value: Type.String({ maxLength: 256 }) },
          { additionalProperties: false },
        ),
      ]),
    ),
    couponId: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' })),
  },
  { additionalProperties: false },
);

const CreatedOrder = Type.Composite([
  OrderSchema,
  Type.Object({
    coupon: Type.Optional(
      Type.Object({
        couponId: Type.String(),
        templateId: Type.String(),
        memberId: Type.String(),
        subtotalCents: Type.Integer(),
        discountCents: Type.Integer(),
        totalCents: Type.Integer(),
      }),
    ),
  }),
]);

const ListQuery = Type.Object(
  {
    gateway: Type.Optional(Type.String({ pattern: ID_PATTERN })),
    state: Type.Optional(StateEnum),
    limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
  },
  { additionalProperties: false },
);

export interface VendingRoutesOptions {
  orders: OrdersService;
  /** Site of a gateway (the order is stamped with it); undefined = unknown gateway. */
  siteOf: (gateway: string) => Promise<string | undefined>;
}

export default async function vendingRoutes(app: FastifyInstance, opts: VendingRoutesOptions) {
  const { orders, siteOf } = opts;

  app.post<{ Body: Static<typeof CreateOrderBody> }>(
    '/orders',
    {
      schema: {
        tags: ['orders'],
        summary:
          'Create an order for one slot of a vending machine (QR flow); pay it with its id as out_trade_no',
        body: CreateOrderBody,
        response: { 201: CreatedOrder, ...errorResponses },
      },
    },
    async (req, reply) => {
      const site = await siteOf(req.body.gateway);
      if (site === undefined)
        throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'gateway', id: req.body.gateway });
      const { order, coupon } = await orders.createOrderWithCoupon({ ...req.body, site });
      return reply.code(201).send(coupon ? { ...order, coupon } : order);
    },
  );

  app.get<{ Params: { id: string } }>(
    '/orders/:id',
    {
      schema: {
        tags: ['orders'],
        summary: 'One order with its state',
        params: Type.Object({ id: OrderIdParam }),
        response: { 200: OrderSchema, ...errorResponses },
      },
    },
    async (req) => {
      const o = await orders.repo.get(req.params.id);
      if (!o) throw cloudError('CLOUD_ERR_ORDER_UNKNOWN', { orderId: req.params.id });
      return o;
    },
  );

  app.get<{ Querystring: Static<typeof ListQuery> }>(
    '/orders',
    {
      schema: {
        tags: ['orders'],
        summary: 'Orders, newest first, by gateway and/or state',
        querystring: ListQuery,
        response: { 200: Type.Object({ items: Type.Array(OrderSchema) }), ...errorResponses },
      },
    },
    async (req) => ({
      items: await orders.repo.list({
        limit: req.query.limit,
        ...(req.query.gateway ? { gateway: req.query.gateway } : {}),
        ...(req.query.state ? { state: req.query.state } : {}),
      }),
    }),
  );

  // The signature covers the exact bytes: this scope keeps the JSON body as a string.
  await app.register(async (raw) => {
    raw.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) =>
      done(null, body),
    );
    raw.post<{ Params: { provider: string }; Body: string }>(
      '/payments/notify/:provider',
      {
        schema: {
          tags: ['payments'],
          summary:
            'Payment notification (WeChat Pay v3 style: Wechatpay-Signature over timestamp\\nnonce\\nbody\\n); idempotent',
          params: Type.Object({ provider: Type.String({ pattern: '^[a-z0-9_-]{1,32}$' }) }),
          response: {
            200: Type.Object({ code: Type.String(), message: Type.String() }),
            401: ErrorBody,
            ...errorResponses,
          },
        },
      },
      async (req) => {
        const outcome = await orders.handleNotification(
          req.params.provider,
          req.headers,
          typeof req.body === 'string' ? req.body : '',
        );
        req.log.info({ provider: req.params.provider, outcome }, 'payment notification');
        // [PAY-NOTIFY-ONCE-1] success for duplicates too, so the provider stops retrying.
        return WECHAT_SUCCESS;
      },
    );
  });
}
