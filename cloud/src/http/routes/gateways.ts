import type { Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { cloudError } from '../../errors.ts';
import {
  Device,
  errorResponses,
  Gap,
  GapsQuery,
  Gateway,
  GatewayDetail,
  GatewayParams,
  Items,
  LaneCount,
  RegisterGatewayBody,
} from '../schemas.ts';

type Params = Static<typeof GatewayParams>;

async function gatewayRoutes(app: FastifyInstance) {
  const { store, hashPassword, now } = app.cloud;
  const mustExist = async (id: string) => {
    const g = await store.getGateway(id);
    if (!g) throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'gateway', id });
    return g;
  };

  app.get(
    '/gateways',
    {
      schema: {
        tags: ['gateways'],
        summary: 'Every gateway with its presence',
        response: { 200: Items(Gateway) },
      },
    },
    async () => ({ items: await store.listGateways() }),
  );

  app.post<{ Body: Static<typeof RegisterGatewayBody> }>(
    '/gateways',
    {
      schema: {
        tags: ['gateways'],
        summary: 'Register a gateway and its MQTT password (stored as a scrypt hash)',
        body: RegisterGatewayBody,
        response: { 201: Gateway, ...errorResponses },
      },
    },
    async (req, reply) => {
      const { id, site, name, password } = req.body;
      const g = await store.createGateway(
        { id, site, name: name ?? null, passwordHash: await hashPassword(password) },
        now(),
      );
      return reply.code(201).send(g);
    },
  );

  app.get<{ Params: Params }>(
    '/gateways/:id',
    {
      schema: {
        tags: ['gateways'],
        summary: 'One gateway: presence, last heartbeat, lanes and watermarks',
        params: GatewayParams,
        response: { 200: GatewayDetail, ...errorResponses },
      },
    },
    async (req) => {
      const g = await mustExist(req.params.id);
      return { ...g, lanes: await store.laneCounts(g.id) };
    },
  );

  app.get<{ Params: Params }>(
    '/gateways/:id/devices',
    {
      schema: {
        tags: ['devices'],
        summary: 'Devices seen behind a gateway',
        params: GatewayParams,
        response: { 200: Items(Device), ...errorResponses },
      },
    },
    async (req) => {
      await mustExist(req.params.id);
      return { items: await store.listDevices({ gateway: req.params.id }) };
    },
  );

  app.get<{ Params: Params }>(
    '/gateways/:id/counts',
    {
      schema: {
        tags: ['events'],
        summary: 'Per epoch and lane: events stored, committed watermark, gaps (exactly-once checks)',
        params: GatewayParams,
        response: { 200: Items(LaneCount), ...errorResponses },
      },
    },
    async (req) => {
      await mustExist(req.params.id);
      return { items: await store.laneCounts(req.params.id) };
    },
  );

  app.get<{ Params: Params; Querystring: Static<typeof GapsQuery> }>(
    '/gateways/:id/gaps',
    {
      schema: {
        tags: ['events'],
        summary: 'Seq ranges recorded as never received (dropped at the edge)',
        params: GatewayParams,
        querystring: GapsQuery,
        response: { 200: Items(Gap), ...errorResponses },
      },
    },
    async (req) => {
      await mustExist(req.params.id);
      return { items: await store.listGaps(req.params.id, req.query) };
    },
  );
}

export default fp(gatewayRoutes, {
  name: 'storelink-gateway-routes',
  dependencies: ['storelink-context'],
  encapsulate: true,
});
