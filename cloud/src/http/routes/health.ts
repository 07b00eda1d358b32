import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

const Status = Type.Object({
  status: Type.String(),
  checks: Type.Optional(Type.Record(Type.String(), Type.Boolean())),
});

/** Liveness, readiness (store and broker connections) and Prometheus metrics. */
async function healthRoutes(app: FastifyInstance) {
  const { store, metrics, readiness } = app.cloud;

  app.get(
    '/healthz',
    { schema: { tags: ['ops'], summary: 'The process answers', response: { 200: Status } } },
    async () => ({ status: 'ok' }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        tags: ['ops'],
        summary: 'The store answers and the services are connected to the broker',
        response: { 200: Status, 503: Status },
      },
    },
    async (_req, reply) => {
      const checks: Record<string, boolean> = {};
      try {
        await store.ping();
        checks.store = true;
      } catch {
        checks.store = false;
      }
      Object.assign(checks, (await readiness?.()) ?? {});
      const ok = Object.values(checks).every(Boolean);
      return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not ready', checks });
    },
  );

  app.get(
    '/metrics',
    { schema: { tags: ['ops'], summary: 'Prometheus metrics', hide: false } },
    async (_req, reply) => {
      reply.header('content-type', metrics.registry.contentType);
      return metrics.registry.metrics();
    },
  );
}

export default fp(healthRoutes, {
  name: 'storelink-health-routes',
  dependencies: ['storelink-context'],
  encapsulate: true,
});
