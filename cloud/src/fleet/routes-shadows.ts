import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { fleet } from '@storelink/protocols';
import type { FastifyInstance } from 'fastify';
import { cloudError } from '../errors.ts';
import { errorResponses, Id } from '../http/schemas.ts';
import type { ShadowRecord, ShadowService } from './shadows.ts';

/**
 * Shadow routes under /api/v1 (docs/fleet-shadows-rollouts.md). A change names the
 * desired version it was made against; a stale one is refused with 409
 * CLOUD_ERR_SHADOW_VERSION [SHADOW-VERSION-1].
 */
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

export const ShadowSchema = Type.Object({
  gateway: Type.String(),
  device: Type.Union([Type.String(), Type.Null()]),
  desired: Type.Record(Type.String(), Type.Any()),
  desiredVersion: Type.Integer(),
  desiredAt: Type.Integer(),
  reported: Type.Record(Type.String(), Type.Any()),
  reportedVersion: Type.Integer({ description: 'the desired version applied last (0: none)' }),
  reportedAt: Nullable(Type.Integer()),
  status: Type.Unsafe<'in_sync' | 'pending' | 'failed'>({
    type: 'string',
    enum: ['in_sync', 'pending', 'failed'],
  }),
  commandId: Nullable(Type.String()),
  error: Nullable(Type.Object({ code: Type.String(), message: Type.String() })),
  updatedAt: Type.Integer(),
});

const ChangeBody = Type.Object(
  {
    desired: Type.Record(fleet.ShadowKey, Type.Unknown(), {
      maxProperties: 128,
      additionalProperties: false,
      description: 'merge patch on desired: a key set to null is removed',
    }),
    version: Type.Integer({
      minimum: 0,
      description:
        'the desired version this change was made against (0 for a shadow that does not exist yet)',
    }),
  },
  { additionalProperties: false },
);

export interface ShadowRoutesOptions {
  shadows: ShadowService;
}

export default async function shadowRoutes(app: FastifyInstance, opts: ShadowRoutesOptions) {
  const { shadows } = opts;
  const tags = ['shadows'];
  const notFound = (id: string): never => {
    throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'shadow', id });
  };
  const read = async (gateway: string, device: string | null): Promise<ShadowRecord> =>
    (await shadows.get(gateway, device)) ?? notFound(device ? `${gateway}/${device}` : gateway);

  app.get<{ Querystring: { gateway?: string; status?: 'in_sync' | 'pending' | 'failed'; limit: number } }>(
    '/shadows',
    {
      schema: {
        tags,
        summary: 'List shadows (gateways and devices), optionally of one gateway or in one status',
        querystring: Type.Object(
          {
            gateway: Type.Optional(Id),
            status: Type.Optional(
              Type.Unsafe<'in_sync' | 'pending' | 'failed'>({
                type: 'string',
                enum: ['in_sync', 'pending', 'failed'],
              }),
            ),
            limit: Type.Integer({ minimum: 1, maximum: 10_000, default: 500 }),
          },
          { additionalProperties: false },
        ),
        response: { 200: Type.Array(ShadowSchema), ...errorResponses },
      },
    },
    async (req) => shadows.list(req.query),
  );

  app.get<{ Params: { gateway: string } }>(
    '/shadows/:gateway',
    {
      schema: {
        tags,
        summary: "A gateway's own shadow",
        params: Type.Object({ gateway: Id }),
        response: { 200: ShadowSchema, ...errorResponses },
      },
    },
    async (req) => read(req.params.gateway, null),
  );

  app.get<{ Params: { gateway: string; device: string } }>(
    '/shadows/:gateway/devices/:device',
    {
      schema: {
        tags,
        summary: "A device's shadow",
        params: Type.Object({ gateway: Id, device: Id }),
        response: { 200: ShadowSchema, ...errorResponses },
      },
    },
    async (req) => read(req.params.gateway, req.params.device),
  );

  app.patch<{ Params: { gateway: string }; Body: Static<typeof ChangeBody> }>(
    '/shadows/:gateway',
    {
      schema: {
        tags,
        summary: "Change a gateway's desired shadow (keys: logLevel, labels)",
        params: Type.Object({ gateway: Id }),
        body: ChangeBody,
        response: { 200: ShadowSchema, ...errorResponses },
      },
    },
    async (req) =>
      shadows.change({
        gateway: req.params.gateway,
        patch: req.body.desired,
        expectedVersion: req.body.version,
      }),
  );

  app.patch<{ Params: { gateway: string; device: string }; Body: Static<typeof ChangeBody> }>(
    '/shadows/:gateway/devices/:device',
    {
      schema: {
        tags,
        summary: "Change a device's desired shadow (its device.config keys, and firmware)",
        params: Type.Object({ gateway: Id, device: Id }),
        body: ChangeBody,
        response: { 200: ShadowSchema, ...errorResponses },
      },
    },
    async (req) =>
      shadows.change({
        gateway: req.params.gateway,
        device: req.params.device,
        patch: req.body.desired,
        expectedVersion: req.body.version,
      }),
  );
}
