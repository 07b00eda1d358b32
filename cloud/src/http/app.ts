import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { isStorelinkError } from '@storelink/protocols';
import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { cloudError } from '../errors.ts';
import { type CloudContext, contextPlugin } from './context.ts';
import commandRoutes from './routes/commands.ts';
import eventRoutes from './routes/events.ts';
import gatewayRoutes from './routes/gateways.ts';
import healthRoutes from './routes/health.ts';
import vendingRoutes, { type VendingRoutesOptions } from '../orders/routes.ts';
import pricesRoutes, { type PricesRoutesOptions } from '../prices/routes.ts';
import cabinetRoutes, { type CabinetRoutesOptions } from '../cabinet/routes.ts';
import visionRoutes, { type VisionRoutesOptions } from '../vision/routes.ts';
import shadowRoutes, { type ShadowRoutesOptions } from '../fleet/routes-shadows.ts';
import rolloutRoutes, { type RolloutRoutesOptions } from '../fleet/routes-rollouts.ts';
import provisioningRoutes, { type ProvisioningRoutesOptions } from '../fleet/routes-provisioning.ts';
import alertRoutes, { type AlertRoutesOptions } from '../fleet/routes-alerts.ts';
import presenceHistoryRoutes, {
  type PresenceHistoryRoutesOptions,
} from '../fleet/presence-history-routes.ts';
import dashboardRoutes, { type DashboardOptions } from '../dashboard/routes.ts';
import membersRoutes, { type MembersRoutesOptions } from '../members/routes.ts';

export interface HttpOptions {
  context: CloudContext;
  /** A pino logger for request logs; omit for none. */
  logger?: Logger;
  /** Vending orders and payment notifications (cloud/src/orders); omit for none. */
  vending?: VendingRoutesOptions;
  /** Price book and ESL campaigns (cloud/src/prices); omit for none. */
  prices?: PricesRoutesOptions;
  /** Cabinet sessions, agreements, prices (cloud/src/cabinet); omit for none. */
  cabinet?: CabinetRoutesOptions;
  /** Face gallery (cloud/src/vision, docs/vision.md); omit for none. */
  vision?: VisionRoutesOptions;
  /** Fleet shadows and staged rollouts (cloud/src/fleet/shadows*, rollouts*); omit for none. */
  fleetShadows?: ShadowRoutesOptions & RolloutRoutesOptions;
  /** Gateway provisioning and judged presence (cloud/src/fleet/provisioning*); omit for none. */
  provisioning?: ProvisioningRoutesOptions;
  /** Fleet alerts and webhooks (cloud/src/fleet/alerts*); omit for none. */
  alerts?: AlertRoutesOptions;
  /** Presence history of a gateway (cloud/src/fleet/presence-history*); omit for none. */
  presenceHistory?: PresenceHistoryRoutesOptions;
  /** Members, rules, coupon templates and coupons (cloud/src/members); omit for none. */
  members?: MembersRoutesOptions;
  /** The operations dashboard at /dashboard (cloud/src/dashboard); omit for none. */
  dashboard?: DashboardOptions;
}

export const API_PREFIX = '/api/v1';

/**
 * The HTTP API as a factory, separate from the process entry (house style 5): tests call
 * `build()` and `inject()`, `startCloud` calls `build()` and `listen()`.
 */
export async function build(opts: HttpOptions): Promise<FastifyInstance> {
  // One instance type whatever the logger (fastify infers a narrower one from a pino instance).
  const app: FastifyInstance = await createApp(opts);
  return app;
}

async function createApp(opts: HttpOptions) {
  const app = Fastify({
    ...(opts.logger
      ? { loggerInstance: opts.logger.child({ component: 'http' }) as unknown as FastifyBaseLogger }
      : { logger: false }),
    // Unknown fields are an error, never silently dropped (as everywhere in storelink).
    ajv: {
      customOptions: { removeAdditional: false, coerceTypes: true, useDefaults: true, allErrors: true },
    },
    bodyLimit: 1024 * 1024,
  });

  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (isStorelinkError(err)) {
      if (err.status >= 500) req.log.error({ err, code: err.code }, err.message);
      return reply.code(err.status).send({ code: err.code, message: err.message, fix: err.fix });
    }
    if (err.validation) {
      const where = err.validationContext ?? 'request';
      const errors = err.validation
        .slice(0, 5)
        .map(
          (v) =>
            `${where}${v.instancePath || ''} ${v.message ?? 'is invalid'}${
              v.keyword === 'additionalProperties'
                ? ` ("${(v.params as { additionalProperty?: string }).additionalProperty}")`
                : ''
            }`,
        )
        .join('; ');
      const e = cloudError('CLOUD_ERR_BAD_REQUEST', { errors });
      return reply.code(400).send({ code: e.code, message: e.message, fix: e.fix });
    }
    const status = err.statusCode ?? 500;
    if (status < 500) {
      // fastify's own refusals: malformed JSON, wrong content type, body too large
      const e = cloudError('CLOUD_ERR_BAD_REQUEST', { errors: err.message });
      return reply.code(status).send({ code: e.code, message: e.message, fix: e.fix });
    }
    req.log.error({ err }, 'unhandled error');
    const e = cloudError('CLOUD_ERR_INTERNAL', { reason: err.message });
    return reply.code(500).send({ code: e.code, message: e.message, fix: e.fix });
  });

  app.setNotFoundHandler((req, reply) => {
    const e = cloudError('CLOUD_ERR_NOT_FOUND', {
      what: 'route',
      id: `${req.method} ${req.url.split('?')[0]}`,
    });
    return reply.code(404).send({ code: e.code, message: e.message, fix: e.fix });
  });

  await app.register(swagger, {
    openapi: {
      info: {
        title: 'storelink cloud API',
        version: '1',
        description:
          'Fleet, devices, events and commands. Errors are {code, message, fix}; codes in docs/errors.md.',
      },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  await app.register(contextPlugin, opts.context);
  await app.register(healthRoutes);
  await app.register(
    async (api) => {
      await api.register(gatewayRoutes);
      await api.register(eventRoutes);
      await api.register(commandRoutes);
      if (opts.vending) await api.register(vendingRoutes, opts.vending);
      if (opts.prices) await api.register(pricesRoutes, opts.prices);
      if (opts.cabinet) await api.register(cabinetRoutes, opts.cabinet);
      if (opts.vision) await api.register(visionRoutes, opts.vision);
      if (opts.fleetShadows) await api.register(shadowRoutes, opts.fleetShadows);
      if (opts.fleetShadows) await api.register(rolloutRoutes, opts.fleetShadows);
      if (opts.provisioning) await api.register(provisioningRoutes, opts.provisioning);
      if (opts.alerts) await api.register(alertRoutes, opts.alerts);
      if (opts.presenceHistory) await api.register(presenceHistoryRoutes, opts.presenceHistory);
      if (opts.members) await api.register(membersRoutes, opts.members);
    },
    { prefix: API_PREFIX },
  );
  if (opts.dashboard) await app.register(dashboardRoutes, opts.dashboard);
  await app.ready();
  return app;
}
