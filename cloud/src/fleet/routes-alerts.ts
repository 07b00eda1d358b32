import { type Static, Type } from '@sinclair/typebox';
import { ID_PATTERN } from '@storelink/protocols';
import type { FastifyInstance } from 'fastify';
import { cloudError } from '../errors.ts';
import { errorResponses } from '../http/schemas.ts';
import { ALERT_KINDS, DEFAULT_THRESHOLDS } from './alerts-rules.ts';
import type { Alerts } from './alerts-service.ts';

/**
 * Alert HTTP routes (docs/fleet-alerts-dashboard.md), under /api/v1:
 * - GET /alerts?state=&gateway=&kind=&limit=, GET /alerts/:id
 * - GET/PUT /alerts/settings (thresholds [ALERT-CONFIG-1])
 * - GET/POST /alerts/webhooks, DELETE /alerts/webhooks/:id, GET /alerts/deliveries
 */
const Nullable = <T extends ReturnType<typeof Type.String> | ReturnType<typeof Type.Number>>(t: T) =>
  Type.Union([t, Type.Null()]);
const KindEnum = Type.Unsafe<(typeof ALERT_KINDS)[number]>({ type: 'string', enum: [...ALERT_KINDS] });
const StateEnum = Type.Unsafe<'active' | 'cleared'>({ type: 'string', enum: ['active', 'cleared'] });

export const AlertSchema = Type.Object({
  id: Type.String(),
  kind: KindEnum,
  gateway: Type.String(),
  site: Type.String(),
  subject: Type.String({ description: "device, tag or slot; '' for the gateway itself" }),
  state: StateEnum,
  severity: Type.String(),
  message: Type.String(),
  value: Nullable(Type.Number()),
  raisedAt: Type.Integer(),
  lastSeenAt: Type.Integer(),
  occurrences: Type.Integer({ description: 'times the condition was seen while active' }),
  clearedAt: Nullable(Type.Number()),
  clearReason: Nullable(Type.String()),
});

const ListQuery = Type.Object(
  {
    state: Type.Optional(StateEnum),
    gateway: Type.Optional(Type.String({ pattern: ID_PATTERN })),
    kind: Type.Optional(KindEnum),
    limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
  },
  { additionalProperties: false },
);

const Ms = Type.Integer({ minimum: 1000, maximum: 7 * 24 * 3600 * 1000 });
const ThresholdFields = {
  offlineAfterMs: Ms,
  backlogAgeMs: Ms,
  tempMinC: Type.Number({ minimum: -50, maximum: 50 }),
  tempMaxC: Type.Number({ minimum: -50, maximum: 50 }),
  tempClearMarginC: Type.Number({ minimum: 0, maximum: 10 }),
  doorOpenMs: Ms,
  lowStockCount: Type.Integer({ minimum: 0, maximum: 1000 }),
  tagBatteryLowMv: Type.Integer({ minimum: 0, maximum: 5000 }),
  vendFailures: Type.Integer({ minimum: 1, maximum: 1000 }),
  silentAfterMs: Ms,
};
const Thresholds = Type.Object(ThresholdFields, { additionalProperties: false });
const ThresholdsPatch = Type.Partial(Type.Object(ThresholdFields, { additionalProperties: false }), {
  additionalProperties: false,
});

const WebhookSchema = Type.Object({
  id: Type.String(),
  url: Type.String(),
  kinds: Type.Union([Type.Array(KindEnum), Type.Null()]),
  createdAt: Type.Integer(),
});
const CreateWebhook = Type.Object(
  {
    url: Type.String({ minLength: 1, maxLength: 2048 }),
    secret: Type.Optional(Type.String({ minLength: 16, maxLength: 256 })),
    kinds: Type.Optional(Type.Array(KindEnum, { minItems: 1, uniqueItems: true })),
  },
  { additionalProperties: false },
);
const DeliverySchema = Type.Object({
  id: Type.String(),
  webhookId: Type.String(),
  alertId: Type.String(),
  transition: Type.String(),
  status: Type.String(),
  attempts: Type.Integer(),
  nextAt: Type.Integer(),
  lastError: Nullable(Type.String()),
  lastStatus: Nullable(Type.Number()),
  createdAt: Type.Integer(),
  deliveredAt: Nullable(Type.Number()),
});

export interface AlertRoutesOptions {
  alerts: Alerts;
}

export default async function alertRoutes(app: FastifyInstance, opts: AlertRoutesOptions) {
  const { engine, webhooks } = opts.alerts;

  app.get<{ Querystring: Static<typeof ListQuery> }>(
    '/alerts',
    {
      schema: {
        tags: ['alerts'],
        summary: 'Fleet alerts, newest first, by state, gateway and kind',
        querystring: ListQuery,
        response: { 200: Type.Object({ items: Type.Array(AlertSchema) }), ...errorResponses },
      },
    },
    async (req) => ({
      items: await engine.list({
        limit: req.query.limit,
        ...(req.query.state ? { state: req.query.state } : {}),
        ...(req.query.gateway ? { gateway: req.query.gateway } : {}),
        ...(req.query.kind ? { kind: req.query.kind } : {}),
      }),
    }),
  );

  app.get(
    '/alerts/settings',
    {
      schema: {
        tags: ['alerts'],
        summary: 'Alert thresholds in force (defaults merged with stored changes)',
        response: { 200: Thresholds },
      },
    },
    async () => engine.currentThresholds,
  );

  app.put<{ Body: Static<typeof ThresholdsPatch> }>(
    '/alerts/settings',
    {
      schema: {
        tags: ['alerts'],
        summary: `Change alert thresholds (only the fields given). Defaults: ${JSON.stringify(DEFAULT_THRESHOLDS)}`,
        body: ThresholdsPatch,
        response: { 200: Thresholds, ...errorResponses },
      },
    },
    async (req) => {
      const next = { ...engine.currentThresholds, ...req.body };
      if (next.tempMinC >= next.tempMaxC)
        throw cloudError('CLOUD_ERR_BAD_REQUEST', {
          errors: `body/tempMinC (${next.tempMinC}) must be below tempMaxC (${next.tempMaxC})`,
        });
      return engine.setThresholds(req.body);
    },
  );

  app.get(
    '/alerts/webhooks',
    {
      schema: {
        tags: ['alerts'],
        summary: 'Registered alert webhooks (secrets are never shown again)',
        response: { 200: Type.Object({ items: Type.Array(WebhookSchema) }) },
      },
    },
    async () => ({ items: await webhooks.list() }),
  );

  app.post<{ Body: Static<typeof CreateWebhook> }>(
    '/alerts/webhooks',
    {
      schema: {
        tags: ['alerts'],
        summary:
          'Register a webhook: alert.raised / alert.cleared POSTs signed with HMAC-SHA256 (header x-storelink-signature); the secret is returned once',
        body: CreateWebhook,
        response: {
          201: Type.Composite([WebhookSchema, Type.Object({ secret: Type.String() })]),
          ...errorResponses,
        },
      },
    },
    async (req, reply) => reply.code(201).send(await webhooks.create(req.body)),
  );

  app.delete<{ Params: { id: string } }>(
    '/alerts/webhooks/:id',
    {
      schema: {
        tags: ['alerts'],
        summary: 'Remove a webhook and its pending deliveries',
        params: Type.Object({ id: Type.String({ pattern: ID_PATTERN }) }),
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (req, reply) => {
      if (!(await webhooks.remove(req.params.id)))
        throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'webhook', id: req.params.id });
      return reply.code(204).send();
    },
  );

  app.get<{ Querystring: { webhook?: string; alert?: string; limit: number } }>(
    '/alerts/deliveries',
    {
      schema: {
        tags: ['alerts'],
        summary:
          'Webhook deliveries, newest first (status pending / delivered / failed, attempts, last error)',
        querystring: Type.Object(
          {
            webhook: Type.Optional(Type.String({ pattern: ID_PATTERN })),
            alert: Type.Optional(Type.String({ pattern: ID_PATTERN })),
            limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Object({ items: Type.Array(DeliverySchema) }), ...errorResponses },
      },
    },
    async (req) => ({
      items: await webhooks.deliveries({
        limit: req.query.limit,
        ...(req.query.webhook ? { webhookId: req.query.webhook } : {}),
        ...(req.query.alert ? { alertId: req.query.alert } : {}),
      }),
    }),
  );

  app.get<{ Params: { id: string } }>(
    '/alerts/:id',
    {
      schema: {
        tags: ['alerts'],
        summary: 'One alert',
        params: Type.Object({ id: Type.String({ pattern: ID_PATTERN }) }),
        response: { 200: AlertSchema, ...errorResponses },
      },
    },
    async (req) => {
      const a = await engine.get(req.params.id);
      if (!a) throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'alert', id: req.params.id });
      return a;
    },
  );
}
