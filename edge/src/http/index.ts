import Fastify, { type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';

export interface HttpOptions {
  /** Broker listening and store open; the cloud link is reported but not required. */
  ready: () => { ready: boolean; checks: Record<string, boolean> };
  status: () => unknown;
  registry: Registry;
  logger?: boolean;
}

/** The agent's local HTTP surface (house style 5: `build(opts)`, tests use `inject()`). */
export function build(opts: HttpOptions): FastifyInstance {
  const app = Fastify({ logger: opts.logger ?? false });
  app.get('/healthz', async () => ({ ok: true }));
  app.get('/readyz', async (_req, reply) => {
    const r = opts.ready();
    return reply.code(r.ready ? 200 : 503).send(r);
  });
  app.get('/status', async () => opts.status());
  app.get('/metrics', async (_req, reply) => {
    const body = await opts.registry.metrics();
    return reply.type(opts.registry.contentType).send(body);
  });
  return app;
}
