import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { cloudError } from '../../errors.ts';
import {
  Command,
  CommandsQuery,
  errorResponses,
  GatewayParams,
  Items,
  SendCommandBody,
  Ulid,
} from '../schemas.ts';

const CommandParams = Type.Object({ id: Ulid });

async function commandRoutes(app: FastifyInstance) {
  const { store, sendCommand } = app.cloud;

  app.post<{ Params: Static<typeof GatewayParams>; Body: Static<typeof SendCommandBody> }>(
    '/gateways/:id/commands',
    {
      schema: {
        tags: ['commands'],
        summary: 'Sign, store and publish a command; the result arrives later (GET /commands/:id)',
        params: GatewayParams,
        body: SendCommandBody,
        response: { 202: Command, ...errorResponses },
      },
    },
    async (req, reply) => {
      const { type, target, payload, ttlMs } = req.body;
      const cmd = await sendCommand({
        gateway: req.params.id,
        type,
        payload: payload ?? {},
        ...(target ? { target } : {}),
        ...(ttlMs !== undefined ? { ttlMs } : {}),
      });
      return reply.code(202).send(cmd);
    },
  );

  app.get<{ Params: Static<typeof CommandParams> }>(
    '/commands/:id',
    {
      schema: {
        tags: ['commands'],
        summary: 'A command with its status, result and round-trip time',
        params: CommandParams,
        response: { 200: Command, ...errorResponses },
      },
    },
    async (req) => {
      const c = await store.getCommand(req.params.id);
      if (!c) throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'command', id: req.params.id });
      return c;
    },
  );

  app.get<{ Querystring: Static<typeof CommandsQuery> }>(
    '/commands',
    {
      schema: {
        tags: ['commands'],
        summary: 'Commands, newest first',
        querystring: CommandsQuery,
        response: { 200: Items(Command), ...errorResponses },
      },
    },
    async (req) => ({
      items: await store.listCommands({
        ...(req.query.gateway !== undefined ? { gateway: req.query.gateway } : {}),
        limit: req.query.limit ?? 100,
      }),
    }),
  );
}

export default fp(commandRoutes, {
  name: 'storelink-command-routes',
  dependencies: ['storelink-context'],
  encapsulate: true,
});
