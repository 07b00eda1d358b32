import { type Static, Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { cloudError } from '../errors.ts';
import { errorResponses, GatewayParams, Items } from '../http/schemas.ts';
import type { SqlQueryable } from '../store/sql.ts';
import { presenceHistory } from './presence-history.ts';

/**
 * GET /api/v1/gateways/:id/presence/history?limit= — the gateway's presence transitions,
 * newest first [PRESENCE-HIST-1] (docs/fleet-provisioning.md "Presence history").
 */
export interface PresenceHistoryRoutesOptions {
  sql: SqlQueryable;
}

const Nullable = <T extends ReturnType<typeof Type.String> | ReturnType<typeof Type.Integer>>(t: T) =>
  Type.Union([t, Type.Null()]);

export const PresenceHistoryEntrySchema = Type.Object({
  id: Type.Integer(),
  gateway: Type.String(),
  at: Type.Integer({ description: 'cloud clock, ms since the Unix epoch' }),
  state: Type.Unsafe<'online' | 'offline' | 'stalled' | 'revoked'>({
    type: 'string',
    enum: ['online', 'offline', 'stalled', 'revoked'],
  }),
  reason: Nullable(
    Type.String({
      description:
        'birth, death, missed_birth, no_heartbeat, backlog_not_draining, recovered, judged, or the revocation reason',
    }),
  ),
  bdSeq: Nullable(Type.Integer()),
  source: Type.Unsafe<'birth' | 'death' | 'heartbeat' | 'sweep' | 'revoke'>({
    type: 'string',
    enum: ['birth', 'death', 'heartbeat', 'sweep', 'revoke'],
  }),
});

const HistoryQuery = Type.Object(
  { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 50 })) },
  { additionalProperties: false },
);

async function presenceHistoryRoutes(app: FastifyInstance, o: PresenceHistoryRoutesOptions): Promise<void> {
  app.get<{ Params: Static<typeof GatewayParams>; Querystring: Static<typeof HistoryQuery> }>(
    '/gateways/:id/presence/history',
    {
      schema: {
        tags: ['presence'],
        summary: 'Presence transitions of the gateway, newest first (birth, death, stalled, revoked, ...)',
        params: GatewayParams,
        querystring: HistoryQuery,
        response: { 200: Items(PresenceHistoryEntrySchema), ...errorResponses },
      },
    },
    async (req) => {
      const known = await o.sql.query('SELECT 1 FROM gateways WHERE id = $1', [req.params.id]);
      if (known.rows.length === 0)
        throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'gateway', id: req.params.id });
      return { items: await presenceHistory(o.sql, req.params.id, req.query.limit ?? 50) };
    },
  );
}

export default fp(presenceHistoryRoutes, { name: 'presence-history-routes' });
