import { type Static, Type } from '@sinclair/typebox';
import { ID_PATTERN } from '@storelink/protocols';
import type { FastifyInstance } from 'fastify';
import { cloudError } from '../errors.ts';
import { errorResponses } from '../http/schemas.ts';
import { galleryKeyFor, type VisionGallery } from './service.ts';

/** Face gallery routes (docs/vision.md), registered under /api/v1 by http/app.ts. */
export interface VisionRoutesOptions {
  gallery: VisionGallery;
  masterKey: Buffer;
}

const MemberParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,64}$' }) });
const GatewayParams = Type.Object({ id: Type.String({ pattern: ID_PATTERN }) });
const EnrolBody = Type.Object(
  {
    /** The member's own photo, JPEG or PNG, base64 (≤ ~700 KiB decoded under the 1 MiB body limit). */
    photo: Type.String({ minLength: 100, maxLength: 1_000_000 }),
    sites: Type.Array(Type.String({ pattern: ID_PATTERN }), { minItems: 1, maxItems: 1000 }),
    consent: Type.Object(
      {
        /** [VISION-CONSENT-2] separate consent for face recognition, as accepted by the member. */
        separate: Type.Literal(true),
        at: Type.Integer({ minimum: 0 }),
        text: Type.String({ minLength: 1, maxLength: 4000 }),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const Removal = Type.Object({
  gateway: Type.String(),
  version: Type.Integer(),
  commandId: Type.Union([Type.String(), Type.Null()]),
  commandStatus: Type.Union([Type.String(), Type.Null()]),
  heartbeatConfirmed: Type.Boolean(),
  confirmed: Type.Boolean(),
});
const WithdrawQuery = Type.Object({
  reason: Type.Union([Type.Literal('withdrawn'), Type.Literal('erased')], { default: 'withdrawn' }),
});

export default async function visionRoutes(app: FastifyInstance, opts: VisionRoutesOptions) {
  const { gallery } = opts;

  app.post<{ Params: Static<typeof MemberParams>; Body: Static<typeof EnrolBody> }>(
    '/vision/members/:id/face',
    {
      schema: {
        tags: ['vision'],
        summary:
          "Enrol a consenting member's face from their own photo; sent sealed to their sites' gateways",
        params: MemberParams,
        body: EnrolBody,
        response: {
          201: Type.Object({
            memberId: Type.String(),
            gateways: Type.Array(Type.Object({ gateway: Type.String(), version: Type.Integer() })),
          }),
          ...errorResponses,
        },
      },
    },
    async (req, reply) => {
      const photo = Buffer.from(req.body.photo, 'base64');
      if (photo.length < 100)
        throw cloudError('CLOUD_ERR_VISION_PHOTO', { reason: 'photo is not base64 image data' });
      const r = await gallery.enrol({
        memberId: req.params.id,
        photo,
        sites: req.body.sites,
        consent: { at: req.body.consent.at, text: req.body.consent.text },
      });
      return reply.code(201).send(r);
    },
  );

  app.delete<{ Params: Static<typeof MemberParams>; Querystring: Static<typeof WithdrawQuery> }>(
    '/vision/members/:id/face',
    {
      schema: {
        tags: ['vision'],
        summary:
          'Withdraw face consent (or erase): removed from the cloud now and from every gateway that had it',
        params: MemberParams,
        querystring: WithdrawQuery,
        response: { 202: Type.Object({ removals: Type.Array(Removal) }), ...errorResponses },
      },
    },
    async (req, reply) =>
      reply.code(202).send({ removals: await gallery.remove(req.params.id, req.query.reason) }),
  );

  app.get<{ Params: Static<typeof MemberParams> }>(
    '/vision/members/:id/face/removal',
    {
      schema: {
        tags: ['vision'],
        summary: 'Per gateway: is the removal confirmed (command result ok, or heartbeat gallery version)?',
        params: MemberParams,
        response: { 200: Type.Object({ removals: Type.Array(Removal) }), ...errorResponses },
      },
    },
    async (req) => ({ removals: await gallery.removalStatus(req.params.id) }),
  );

  app.post<{ Params: Static<typeof GatewayParams> }>(
    '/vision/gateways/:id/gallery/resync',
    {
      schema: {
        tags: ['vision'],
        summary:
          'Send a gateway every member enrolled for its site (replaced or wiped gateway), 64 per command',
        params: GatewayParams,
        response: {
          202: Type.Object({
            gateway: Type.String(),
            members: Type.Integer(),
            versions: Type.Array(Type.Integer()),
          }),
          ...errorResponses,
        },
      },
    },
    async (req, reply) => reply.code(202).send(await gallery.resync(req.params.id)),
  );

  app.get<{ Params: Static<typeof GatewayParams> }>(
    '/vision/gateways/:id/gallery-key',
    {
      schema: {
        tags: ['vision'],
        summary: "The gateway's gallery key (base64) for provisioning its vision.galleryKey",
        params: GatewayParams,
        response: {
          200: Type.Object({ gateway: Type.String(), galleryKey: Type.String() }),
          ...errorResponses,
        },
      },
    },
    async (req) => ({
      gateway: req.params.id,
      galleryKey: galleryKeyFor(opts.masterKey, req.params.id).toString('base64'),
    }),
  );
}
