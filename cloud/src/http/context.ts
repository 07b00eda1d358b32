import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { SendCommandInput } from '../commands/service.ts';
import type { CloudMetrics } from '../metrics.ts';
import type { CloudStore, CommandRecord } from '../store/store.ts';

/** What the routes need from the rest of the cloud; tests pass fakes or the real ones. */
export interface CloudContext {
  store: CloudStore;
  sendCommand: (input: SendCommandInput) => Promise<CommandRecord>;
  metrics: CloudMetrics;
  hashPassword: (password: string) => Promise<string>;
  /** Readiness checks beyond the store (broker connections). */
  readiness?: () => Promise<Record<string, boolean>>;
  now: () => number;
}

declare module 'fastify' {
  interface FastifyInstance {
    cloud: CloudContext;
  }
}

/** Decorates the instance with the cloud context; every route plugin depends on it. */
export const contextPlugin = fp(
  async (app: FastifyInstance, ctx: CloudContext) => {
    app.decorate('cloud', ctx);
  },
  { name: 'storelink-context', fastify: '5.x' },
);
