import type { Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { cloudError } from '../../errors.ts';
import {
  Device,
  DevicesQuery,
  errorResponses,
  EventsQuery,
  GatewayParams,
  Items,
  LaneEventsQuery,
  StoredEvent,
} from '../schemas.ts';

async function eventRoutes(app: FastifyInstance) {
  const { store } = app.cloud;

  app.get<{ Querystring: Static<typeof DevicesQuery> }>(
    '/devices',
    {
      schema: {
        tags: ['devices'],
        summary: 'Devices of every gateway; online=false also lists devices never reported online',
        querystring: DevicesQuery,
        response: { 200: Items(Device), ...errorResponses },
      },
    },
    async (req) => ({ items: await store.listDevices(req.query) }),
  );

  app.get<{ Querystring: Static<typeof EventsQuery> }>(
    '/events',
    {
      schema: {
        tags: ['events'],
        summary: 'Recent events, newest first',
        querystring: EventsQuery,
        response: { 200: Items(StoredEvent), ...errorResponses },
      },
    },
    async (req) => ({ items: await store.recentEvents({ ...req.query, limit: req.query.limit ?? 100 }) }),
  );

  app.get<{ Params: Static<typeof GatewayParams>; Querystring: Static<typeof LaneEventsQuery> }>(
    '/gateways/:id/events',
    {
      schema: {
        tags: ['events'],
        summary: 'Events of one lane in seq order after a seq (default epoch: the newest)',
        params: GatewayParams,
        querystring: LaneEventsQuery,
        response: { 200: Items(StoredEvent), ...errorResponses },
      },
    },
    async (req) => {
      const g = await store.getGateway(req.params.id);
      if (!g) throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'gateway', id: req.params.id });
      const { epoch, lane, after, limit } = req.query;
      return {
        items: await store.laneEvents({
          gateway: g.id,
          ...(epoch !== undefined ? { epoch } : {}),
          lane,
          after: after ?? 0,
          limit: limit ?? 1000,
        }),
      };
    },
  );
}

export default fp(eventRoutes, {
  name: 'storelink-event-routes',
  dependencies: ['storelink-context'],
  encapsulate: true,
});
