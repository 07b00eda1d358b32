import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { ID_PATTERN } from './ids.ts';
import { compile } from './validate.ts';

/**
 * Lanes [LANE-1]: `tx` is never dropped or expired (payments, dispenses, command results);
 * `event` is business events; `telemetry` may expire and be dropped oldest-first under a
 * byte budget. Each lane has its own gap-free `seq` per gateway outbox epoch.
 */
export const LANES = ['tx', 'event', 'telemetry'] as const;
export type Lane = (typeof LANES)[number];
export const LaneSchema = Type.Union(LANES.map((l) => Type.Literal(l)));

/** `{ tx?, event?, telemetry? }` and nothing else: a misspelt lane is an error, not ignored. */
function perLane<T extends TSchema>(schema: T) {
  return Type.Object(
    { tx: Type.Optional(schema), event: Type.Optional(schema), telemetry: Type.Optional(schema) },
    { additionalProperties: false },
  );
}

export const Id = Type.String({ pattern: ID_PATTERN });
export const Ulid = Type.String({ pattern: '^[0-9A-HJKMNP-TV-Z]{26}$' });
/** Milliseconds since the Unix epoch. */
export const Millis = Type.Integer({ minimum: 0 });
export const Seq = Type.Integer({ minimum: 1 });

export const EventEnvelopeSchema = Type.Object(
  {
    id: Ulid,
    type: Type.String({ minLength: 1, maxLength: 64 }),
    device: Id,
    gateway: Id,
    site: Id,
    ts: Millis,
    rts: Millis,
    lane: LaneSchema,
    seq: Seq,
    /** The device's own message id, when it sent one; the edge drops resends by it [INGEST-DEDUPE-1]. */
    mid: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    payload: Type.Unknown(),
  },
  { $id: 'EventEnvelope', additionalProperties: false },
);
export type EventEnvelope = Static<typeof EventEnvelopeSchema>;
/** An envelope before the outbox has assigned its lane sequence number. */
export type UnsequencedEvent = Omit<EventEnvelope, 'seq'>;

/**
 * Uplink batch on `sl/v1/{site}/{gateway}/up`. `epoch` names the outbox incarnation:
 * a gateway whose store was rebuilt starts a new epoch so the cloud never mistakes its
 * new seq 1 for an old duplicate [OUTBOX-EPOCH-1]. `floors[lane]` is the lowest seq the
 * edge still holds for the lane (or the next seq when empty): every lower seq was
 * either acknowledged or dropped at the edge and counted there [OUTBOX-ACK-3].
 */
export const UplinkBatchSchema = Type.Object(
  {
    v: Type.Literal(1),
    gateway: Id,
    site: Id,
    epoch: Ulid,
    sentAt: Millis,
    floors: perLane(Seq),
    events: Type.Array(EventEnvelopeSchema, { maxItems: 5000 }),
  },
  { $id: 'UplinkBatch', additionalProperties: false },
);
export type UplinkBatch = Static<typeof UplinkBatchSchema>;

/**
 * Cloud's durable acknowledgement on `.../ack` (retained, QoS1): per lane, the highest
 * seq such that every seq up to it is committed in the cloud store [OUTBOX-ACK-2].
 */
export const AckSchema = Type.Object(
  {
    v: Type.Literal(1),
    epoch: Ulid,
    acks: perLane(Type.Integer({ minimum: 0 })),
    at: Millis,
  },
  { $id: 'Ack', additionalProperties: false },
);
export type Ack = Static<typeof AckSchema>;

/** Per-lane outbox figures, carried by the heartbeat and shown on /status. */
export const LaneStatsSchema = Type.Object({
  depth: Type.Integer({ minimum: 0 }),
  bytes: Type.Integer({ minimum: 0 }),
  oldestAgeMs: Type.Integer({ minimum: 0 }),
  nextSeq: Seq,
  ackedSeq: Type.Integer({ minimum: 0 }),
  dropped: Type.Integer({ minimum: 0 }),
});
export type LaneStats = Static<typeof LaneStatsSchema>;

/**
 * Birth (retained) and death (last will) on `.../state`. `bdSeq` increases at every
 * connect and is persisted, so a stale death that arrives after a newer birth is
 * recognised and ignored [PRESENCE-BDSEQ-1] (after Sparkplug B).
 */
export const GatewayStateSchema = Type.Object(
  {
    v: Type.Literal(1),
    state: Type.Union([Type.Literal('online'), Type.Literal('offline')]),
    bdSeq: Type.Integer({ minimum: 0 }),
    gateway: Id,
    site: Id,
    at: Millis,
    version: Type.Optional(Type.String({ maxLength: 64 })),
    epoch: Type.Optional(Ulid),
  },
  { $id: 'GatewayState', additionalProperties: false },
);
export type GatewayState = Static<typeof GatewayStateSchema>;

/** Heartbeat on `.../hb` (QoS0, not stored: a stale heartbeat says nothing). */
export const HeartbeatSchema = Type.Object(
  {
    v: Type.Literal(1),
    gateway: Id,
    site: Id,
    at: Millis,
    bdSeq: Type.Integer({ minimum: 0 }),
    uptimeS: Type.Number({ minimum: 0 }),
    devicesOnline: Type.Array(Id),
    outbox: Type.Object({
      depth: Type.Integer({ minimum: 0 }),
      bytes: Type.Integer({ minimum: 0 }),
      oldestAgeMs: Type.Integer({ minimum: 0 }),
      lanes: perLane(LaneStatsSchema),
    }),
  },
  { $id: 'Heartbeat', additionalProperties: true },
);
export type Heartbeat = Static<typeof HeartbeatSchema>;

export const validateEnvelope = compile(EventEnvelopeSchema, 'event envelope');
export const validateUplinkBatch = compile(UplinkBatchSchema, 'uplink batch');
export const validateAck = compile(AckSchema, 'ack');
export const validateGatewayState = compile(GatewayStateSchema, 'gateway state');
export const validateHeartbeat = compile(HeartbeatSchema, 'heartbeat');
