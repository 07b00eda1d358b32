import { type TSchema, Type } from '@sinclair/typebox';
import { ID_PATTERN, LANES } from '@storelink/protocols';

/**
 * Route schemas (TypeBox → JSON Schema): fastify validates requests with them,
 * serialises responses with them and @fastify/swagger publishes them at /docs.
 * No `$id`s here: the protocol schemas carry theirs and one route must not clash with
 * another over a shared id.
 */

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Enum = <T extends string>(values: readonly T[], description?: string) =>
  Type.Unsafe<T>({ type: 'string', enum: [...values], ...(description ? { description } : {}) });

export const Id = Type.String({ pattern: ID_PATTERN, description: 'site, gateway or device id' });
export const Ulid = Type.String({ pattern: '^[0-9A-HJKMNP-TV-Z]{26}$' });
export const Millis = Type.Integer({ minimum: 0, description: 'ms since the Unix epoch' });
export const LaneParam = Enum(LANES);
/** Integers in query strings arrive as text; fastify's ajv coerces them. */
const Int = (opts: { minimum?: number; maximum?: number; default?: number; description?: string }) =>
  Type.Integer(opts);

export const ErrorBody = Type.Object(
  {
    code: Type.String({ description: 'stable error code, see docs/errors.md' }),
    message: Type.String(),
    fix: Type.String({ description: 'what to do about it' }),
  },
  { description: 'every error response' },
);

export const errorResponses = {
  400: ErrorBody,
  404: ErrorBody,
  409: ErrorBody,
  500: ErrorBody,
  503: ErrorBody,
} as const;

export const Presence = Type.Object({
  state: Enum(['unknown', 'online', 'offline']),
  bdSeq: Nullable(Type.Integer()),
  epoch: Nullable(Type.String()),
  version: Nullable(Type.String()),
  onlineSince: Nullable(Millis),
  stateAt: Nullable(Millis),
  lastSeen: Nullable(Millis),
  heartbeat: Type.Unknown({ description: 'the last Heartbeat of the current session, or null' }),
});

export const Gateway = Type.Object({
  id: Type.String(),
  site: Type.String(),
  name: Nullable(Type.String()),
  createdAt: Millis,
  hasPassword: Type.Boolean(),
  presence: Presence,
});

export const LaneCount = Type.Object({
  epoch: Type.String(),
  lane: LaneParam,
  stored: Type.Integer({ description: 'events stored' }),
  minSeq: Nullable(Type.Integer()),
  maxSeq: Nullable(Type.Integer()),
  acked: Type.Integer({ description: 'committed watermark [OUTBOX-ACK-2]' }),
  gaps: Type.Integer({ description: 'gap records' }),
  gapSeqs: Type.Integer({ description: 'seqs the gaps cover' }),
});

export const GatewayDetail = Type.Intersect([Gateway, Type.Object({ lanes: Type.Array(LaneCount) })]);

export const Gap = Type.Object({
  gateway: Type.String(),
  epoch: Type.String(),
  lane: LaneParam,
  fromSeq: Type.Integer(),
  toSeq: Type.Integer(),
  reason: Type.String(),
  at: Millis,
});

export const Device = Type.Object({
  gateway: Type.String(),
  id: Type.String(),
  online: Nullable(Type.Boolean()),
  presenceReason: Nullable(Type.String()),
  presenceAt: Nullable(Millis),
  firstSeen: Millis,
  lastSeen: Millis,
  lastEventType: Type.String(),
});

export const StoredEvent = Type.Object({
  id: Type.String(),
  type: Type.String(),
  device: Type.String(),
  gateway: Type.String(),
  site: Type.String(),
  ts: Millis,
  rts: Millis,
  lane: LaneParam,
  seq: Type.Integer(),
  mid: Type.Optional(Type.String()),
  payload: Type.Unknown(),
  epoch: Type.String(),
  receivedAt: Millis,
});

export const Command = Type.Object({
  id: Type.String(),
  gateway: Type.String(),
  site: Type.String(),
  device: Nullable(Type.String()),
  type: Type.String(),
  payload: Type.Unknown(),
  issuedAt: Millis,
  expiresAt: Millis,
  sig: Type.String(),
  status: Enum(['pending', 'sent', 'ok', 'error', 'rejected', 'timeout']),
  result: Type.Unknown(),
  code: Nullable(Type.String()),
  message: Nullable(Type.String()),
  sentAt: Nullable(Millis),
  completedAt: Nullable(Millis),
  resultReceivedAt: Nullable(Millis),
  rttMs: Nullable(Type.Integer({ description: 'issued → result committed, cloud clock' })),
  duplicateResult: Nullable(Type.Boolean()),
});

export const Items = <T extends TSchema>(t: T) => Type.Object({ items: Type.Array(t) });

export const GatewayParams = Type.Object({ id: Id });

export const RegisterGatewayBody = Type.Object(
  {
    id: Id,
    site: Id,
    name: Type.Optional(Type.String({ maxLength: 128 })),
    password: Type.String({ minLength: 1, maxLength: 1024 }),
  },
  { additionalProperties: false },
);

export const SendCommandBody = Type.Object(
  {
    type: Type.String({ minLength: 1, maxLength: 64 }),
    target: Type.Optional(Type.Object({ device: Type.Optional(Id) }, { additionalProperties: false })),
    payload: Type.Optional(Type.Unknown()),
    ttlMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 7 * 24 * 3600 * 1000 })),
  },
  { additionalProperties: false },
);

export const DevicesQuery = Type.Object(
  { online: Type.Optional(Type.Boolean()), gateway: Type.Optional(Id) },
  { additionalProperties: false },
);

export const EventsQuery = Type.Object(
  {
    gateway: Type.Optional(Id),
    device: Type.Optional(Id),
    type: Type.Optional(Type.String({ maxLength: 64 })),
    lane: Type.Optional(LaneParam),
    limit: Type.Optional(Int({ minimum: 1, maximum: 1000, default: 100 })),
  },
  { additionalProperties: false },
);

export const LaneEventsQuery = Type.Object(
  {
    epoch: Type.Optional(Ulid),
    lane: LaneParam,
    after: Type.Optional(Int({ minimum: 0, default: 0, description: 'only seqs above this' })),
    limit: Type.Optional(Int({ minimum: 1, maximum: 10_000, default: 1000 })),
  },
  { additionalProperties: false },
);

export const GapsQuery = Type.Object(
  { epoch: Type.Optional(Ulid), lane: Type.Optional(LaneParam) },
  { additionalProperties: false },
);

export const CommandsQuery = Type.Object(
  { gateway: Type.Optional(Id), limit: Type.Optional(Int({ minimum: 1, maximum: 1000, default: 100 })) },
  { additionalProperties: false },
);
