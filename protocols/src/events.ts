import { type Static, type TSchema, Type } from '@sinclair/typebox';
import type { Lane } from './envelope.ts';
import { Millis } from './envelope.ts';
import { protoError, type StorelinkError } from './errors.ts';
import { compile, type Validator } from './validate.ts';

/**
 * Event types. `source: 'device'` types arrive from devices on `dev/{id}/evt/{type}`;
 * `source: 'edge'` types are produced by the edge agent itself (presence, command
 * results) and a device publishing one is refused. Each type has one lane [LANE-2].
 */
export interface EventTypeSpec<S extends TSchema = TSchema> {
  readonly lane: Lane;
  readonly source: 'device' | 'edge';
  readonly payload: S;
  readonly description: string;
}

/** Every device payload may carry its own clock reading; the edge stamps `rts` anyway. */
const DeviceTs = Type.Optional(Millis);
/**
 * A device may give each event its own id; a QoS1 resend of the same id (after a lost
 * PUBACK or an agent restart) is stored once [INGEST-DEDUPE-1].
 */
const DeviceMid = Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,64}$' }));

export const MetricValue = Type.Union([Type.Number(), Type.Boolean(), Type.String({ maxLength: 256 })]);

export const TelemetryPayload = Type.Object(
  {
    id: DeviceMid,
    ts: DeviceTs,
    metrics: Type.Record(Type.String({ pattern: '^[a-zA-Z][a-zA-Z0-9_]{0,63}$' }), MetricValue, {
      minProperties: 1,
      maxProperties: 64,
    }),
  },
  { additionalProperties: false },
);

export const DeviceAlarmPayload = Type.Object(
  {
    id: DeviceMid,
    ts: DeviceTs,
    code: Type.String({ pattern: '^[A-Z][A-Z0-9_]{1,63}$' }),
    severity: Type.Union([Type.Literal('info'), Type.Literal('warning'), Type.Literal('critical')]),
    active: Type.Boolean(),
    message: Type.Optional(Type.String({ maxLength: 512 })),
  },
  { additionalProperties: false },
);

export const DevicePresencePayload = Type.Object(
  {
    reason: Type.Union([
      Type.Literal('connected'),
      Type.Literal('disconnected'),
      Type.Literal('keepalive_timeout'),
      Type.Literal('taken_over'),
      Type.Literal('agent_restart'),
    ]),
    clientId: Type.Optional(Type.String({ maxLength: 128 })),
  },
  { additionalProperties: false },
);

export const COMMAND_RESULT_STATUSES = ['ok', 'error', 'rejected', 'timeout'] as const;
export type CommandResultStatus = (typeof COMMAND_RESULT_STATUSES)[number];

export const CommandResultPayload = Type.Object(
  {
    commandId: Type.String({ minLength: 1, maxLength: 64 }),
    type: Type.String({ maxLength: 64 }),
    status: Type.Union(COMMAND_RESULT_STATUSES.map((s) => Type.Literal(s))),
    code: Type.Optional(Type.String({ maxLength: 64 })),
    message: Type.Optional(Type.String({ maxLength: 1024 })),
    result: Type.Optional(Type.Unknown()),
    /** True when this reports a command id the edge had already executed [CMD-ONCE-1]. */
    duplicate: Type.Optional(Type.Boolean()),
    receivedAt: Millis,
    completedAt: Millis,
  },
  { additionalProperties: false },
);
export type CommandResult = Static<typeof CommandResultPayload>;

export const EVENT_TYPES = {
  telemetry: {
    lane: 'telemetry',
    source: 'device',
    payload: TelemetryPayload,
    description: 'periodic measurements: temperatures, door state, stock counts, signal',
  },
  'device.alarm': {
    lane: 'event',
    source: 'device',
    payload: DeviceAlarmPayload,
    description: 'a condition the device itself detected, raised (active) or cleared',
  },
  'device.online': {
    lane: 'event',
    source: 'edge',
    payload: DevicePresencePayload,
    description: 'a device connected to the edge broker with valid credentials',
  },
  'device.offline': {
    lane: 'event',
    source: 'edge',
    payload: DevicePresencePayload,
    description: 'a device disconnected or stopped answering keepalives',
  },
  'command.result': {
    lane: 'tx',
    source: 'edge',
    payload: CommandResultPayload,
    description: 'the outcome of a cloud command: executed, failed, refused or timed out',
  },
} as const satisfies Record<string, EventTypeSpec>;

export type EventType = keyof typeof EVENT_TYPES;
export type EventPayload<T extends EventType> = Static<(typeof EVENT_TYPES)[T]['payload']>;

const validators = new Map<string, Validator<TSchema>>();
const registry = new Map<string, EventTypeSpec>(Object.entries(EVENT_TYPES));

/** Later capabilities (vending, ESL, cabinets) register their event types here at import. */
export function registerEventType(type: string, spec: EventTypeSpec): void {
  if (registry.has(type)) throw new Error(`event type ${type} registered twice`);
  registry.set(type, spec);
}

export function eventTypeSpec(type: string): EventTypeSpec | undefined {
  return registry.get(type);
}

export function eventTypes(): ReadonlyMap<string, EventTypeSpec> {
  return registry;
}

/** Validates a device-published payload of `type`; refuses unknown and edge-only types. */
export function checkDeviceEvent(
  type: string,
  payload: unknown,
):
  | { ok: true; spec: EventTypeSpec; ts: number | undefined; mid: string | undefined }
  | { ok: false; error: StorelinkError } {
  const spec = registry.get(type);
  if (!spec || spec.source !== 'device') {
    return { ok: false, error: protoError('PROTO_ERR_UNKNOWN_TYPE', { kind: 'device event', type }) };
  }
  const r = validatorFor(type, spec).check(payload, `${type} payload`);
  if (!r.ok) return r;
  const { ts, id: mid } = payload as { ts?: number; id?: string };
  return { ok: true, spec, ts, mid };
}

/** Validates any registered event payload (used by the cloud on ingest). */
export function checkEventPayload(type: string, payload: unknown) {
  const spec = registry.get(type);
  if (!spec)
    return { ok: false as const, error: protoError('PROTO_ERR_UNKNOWN_TYPE', { kind: 'event', type }) };
  return validatorFor(type, spec).check(payload, `${type} payload`);
}

function validatorFor(type: string, spec: EventTypeSpec): Validator<TSchema> {
  let v = validators.get(type);
  if (!v) {
    v = compile(spec.payload, `${type} payload`);
    validators.set(type, v);
  }
  return v;
}
