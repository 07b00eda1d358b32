import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { fleet } from '@storelink/protocols';
import type { FastifyInstance } from 'fastify';
import { cloudError } from '../errors.ts';
import { errorResponses, Id } from '../http/schemas.ts';
import { ROLLOUT_STATES, type RolloutService, TARGET_STATES } from './rollouts.ts';

/** Rollout and firmware catalogue routes under /api/v1 (docs/fleet-shadows-rollouts.md). */
const Enum = <T extends string>(values: readonly T[]) =>
  Type.Unsafe<T>({ type: 'string', enum: [...values] });
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Fraction = (description: string) => Type.Number({ minimum: 0, maximum: 1, description });
const Counts = Type.Object(Object.fromEntries(TARGET_STATES.map((s) => [s, Type.Integer()])));

const WaveSchema = Type.Object(
  {
    gateways: Type.Optional(Type.Array(Id, { maxItems: 10_000 })),
    sites: Type.Optional(Type.Array(Id, { maxItems: 1000 })),
    percent: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 100 })),
    approval: Type.Optional(
      Type.Boolean({ description: 'wait for POST .../approve before this wave starts' }),
    ),
  },
  { additionalProperties: false },
);

const CreateBody = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    kind: Enum(['config', 'firmware'] as const),
    scope: Type.Optional(Enum(['gateway', 'device'] as const)),
    config: Type.Optional(
      Type.Record(fleet.ShadowKey, Type.Unknown(), {
        minProperties: 1,
        maxProperties: 128,
        additionalProperties: false,
      }),
    ),
    firmware: Type.Optional(Type.Object({ version: fleet.FirmwareVersion }, { additionalProperties: false })),
    devices: Type.Optional(Type.Array(Id, { minItems: 1, maxItems: 100_000 })),
    waves: Type.Array(WaveSchema, { minItems: 1, maxItems: 50 }),
    successThreshold: Type.Optional(
      Fraction('fraction of a wave that must succeed before the next (default 1)'),
    ),
    errorThreshold: Type.Optional(
      Fraction('fraction of a wave whose failure halts the rollout (default 0.2)'),
    ),
    autoRollback: Type.Optional(Type.Boolean({ description: 'roll back on halt (default true)' })),
  },
  { additionalProperties: false },
);

export const RolloutSchema = Type.Object({
  id: Type.String(),
  name: Type.String(),
  kind: Type.String(),
  scope: Type.String(),
  change: Type.Record(Type.String(), Type.Any()),
  waves: Type.Array(WaveSchema),
  successThreshold: Type.Number(),
  errorThreshold: Type.Number(),
  autoRollback: Type.Boolean(),
  state: Enum(ROLLOUT_STATES),
  currentWave: Type.Integer(),
  reason: Nullable(Type.String()),
  createdAt: Type.Integer(),
  updatedAt: Type.Integer(),
  counts: Counts,
  waveCounts: Type.Array(Type.Object({ wave: Type.Integer(), total: Type.Integer(), counts: Counts })),
});

const TargetSchema = Type.Object({
  gateway: Type.String(),
  device: Nullable(Type.String()),
  wave: Type.Integer(),
  state: Enum(TARGET_STATES),
  version: Nullable(Type.Integer()),
  previous: Nullable(Type.Record(Type.String(), Type.Any())),
  rollbackVersion: Nullable(Type.Integer()),
  code: Nullable(Type.String()),
  message: Nullable(Type.String()),
  updatedAt: Type.Integer(),
});

const FirmwareSchema = Type.Object({
  version: Type.String(),
  url: Type.String(),
  sha256: Type.String(),
  size: Type.Integer(),
  createdAt: Type.Integer(),
});

const IdParam = Type.Object({ id: Type.String({ pattern: '^[0-9A-HJKMNP-TV-Z]{26}$' }) });

export interface RolloutRoutesOptions {
  rollouts: RolloutService;
}

export default async function rolloutRoutes(app: FastifyInstance, opts: RolloutRoutesOptions) {
  const { rollouts } = opts;
  const tags = ['rollouts'];

  app.put<{ Params: { version: string }; Body: { url: string; sha256: string; size: number } }>(
    '/rollouts/firmware/:version',
    {
      schema: {
        tags,
        summary: 'Add (or correct) a firmware image in the catalogue: where devices fetch it and its hash',
        params: Type.Object({ version: fleet.FirmwareVersion }),
        body: Type.Omit(fleet.FirmwareImageSchema, ['version'], { additionalProperties: false }),
        response: { 200: FirmwareSchema, ...errorResponses },
      },
    },
    async (req) => rollouts.putFirmware({ version: req.params.version, ...req.body }),
  );

  app.get(
    '/rollouts/firmware',
    { schema: { tags, summary: 'The firmware catalogue', response: { 200: Type.Array(FirmwareSchema) } } },
    async () => rollouts.listFirmware(),
  );

  app.post<{ Body: Static<typeof CreateBody> }>(
    '/rollouts',
    {
      schema: {
        tags,
        summary: 'Start a staged rollout of configuration or firmware',
        body: CreateBody,
        response: { 201: RolloutSchema, ...errorResponses },
      },
    },
    async (req, reply) => reply.code(201).send(await rollouts.create(req.body)),
  );

  app.get<{ Querystring: { limit: number } }>(
    '/rollouts',
    {
      schema: {
        tags,
        summary: 'Rollouts, newest first',
        querystring: Type.Object({ limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }) }),
        response: { 200: Type.Array(RolloutSchema) },
      },
    },
    async (req) => rollouts.list(req.query.limit),
  );

  app.get<{ Params: { id: string } }>(
    '/rollouts/:id',
    {
      schema: {
        tags,
        summary: 'A rollout with its per-wave progress',
        params: IdParam,
        response: { 200: RolloutSchema, ...errorResponses },
      },
    },
    async (req) => {
      const r = await rollouts.get(req.params.id);
      if (!r) throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'rollout', id: req.params.id });
      return r;
    },
  );

  app.get<{ Params: { id: string } }>(
    '/rollouts/:id/targets',
    {
      schema: {
        tags,
        summary: 'Every target of a rollout: wave, state, versions, previous values',
        params: IdParam,
        response: { 200: Type.Array(TargetSchema), ...errorResponses },
      },
    },
    async (req) => rollouts.targets(req.params.id),
  );

  const actions = {
    approve: ['Start the wave waiting for approval', (id: string) => rollouts.approve(id)],
    pause: ['Pause: no further targets are sent until resumed', (id: string) => rollouts.pause(id)],
    resume: [
      "Resume a paused rollout, or a halted one (its wave's failed targets become skipped)",
      (id: string) => rollouts.resume(id),
    ],
    rollback: [
      'Roll back every target already changed; the rest is cancelled',
      (id: string) => rollouts.rollback(id),
    ],
    cancel: [
      'Stop here: targets not yet sent are cancelled, changed ones stay',
      (id: string) => rollouts.cancel(id),
    ],
  } as const;
  for (const [action, [summary, fn]] of Object.entries(actions)) {
    app.post<{ Params: { id: string } }>(
      `/rollouts/:id/${action}`,
      {
        schema: { tags, summary, params: IdParam, response: { 200: RolloutSchema, ...errorResponses } },
      },
      async (req) => fn(req.params.id),
    );
  }
}
