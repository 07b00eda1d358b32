import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { Id, Millis, Ulid } from './envelope.ts';
import { protoError, type StorelinkError } from './errors.ts';
import { compile, type Validator } from './validate.ts';

/**
 * Command envelope on `sl/v1/{site}/{gateway}/cmd`. Signed by the cloud (Ed25519 over
 * the canonical form of topic + every field but `sig`) [CMD-SIG-1], expires at
 * `expiresAt` [CMD-EXP-1], and runs at most once per `id` [CMD-ONCE-1].
 */
export const CommandTargetSchema = Type.Object(
  { device: Type.Optional(Id) },
  { additionalProperties: false },
);

export const CommandEnvelopeSchema = Type.Object(
  {
    v: Type.Literal(1),
    id: Ulid,
    type: Type.String({ minLength: 1, maxLength: 64 }),
    target: CommandTargetSchema,
    issuedAt: Millis,
    expiresAt: Millis,
    payload: Type.Unknown(),
    sig: Type.String({ pattern: '^[A-Za-z0-9+/]{86}==$' }),
  },
  { $id: 'CommandEnvelope', additionalProperties: false },
);
export type CommandEnvelope = Static<typeof CommandEnvelopeSchema>;
export type UnsignedCommand = Omit<CommandEnvelope, 'sig'>;

export interface CommandTypeSpec<S extends TSchema = TSchema> {
  /** `gateway`: executed by the edge agent; `device`: routed to `target.device`. */
  readonly executor: 'gateway' | 'device' | 'either';
  readonly payload: S;
  readonly description: string;
}

export const DeviceConfigPayload = Type.Object(
  {
    config: Type.Record(Type.String({ maxLength: 64 }), Type.Unknown(), { maxProperties: 128 }),
  },
  { additionalProperties: false },
);
export const PingPayload = Type.Object(
  { echo: Type.Optional(Type.String({ maxLength: 256 })) },
  { additionalProperties: false },
);

export const COMMAND_TYPES = {
  'device.config': {
    executor: 'device',
    payload: DeviceConfigPayload,
    description: 'set configuration keys on a device (reporting interval, thresholds)',
  },
  ping: {
    executor: 'either',
    payload: PingPayload,
    description: 'round trip check to the gateway, or through it to a device',
  },
} as const satisfies Record<string, CommandTypeSpec>;

const registry = new Map<string, CommandTypeSpec>(Object.entries(COMMAND_TYPES));
const validators = new Map<string, Validator<TSchema>>();

export function registerCommandType(type: string, spec: CommandTypeSpec): void {
  if (registry.has(type)) throw new Error(`command type ${type} registered twice`);
  registry.set(type, spec);
}

export function commandTypeSpec(type: string): CommandTypeSpec | undefined {
  return registry.get(type);
}

export function commandTypes(): ReadonlyMap<string, CommandTypeSpec> {
  return registry;
}

/** Checks type, target and payload of a command (signature and expiry are separate). */
export function checkCommandBody(
  cmd: UnsignedCommand,
): { ok: true; spec: CommandTypeSpec } | { ok: false; error: StorelinkError } {
  const spec = registry.get(cmd.type);
  if (!spec)
    return { ok: false, error: protoError('PROTO_ERR_UNKNOWN_TYPE', { kind: 'command', type: cmd.type }) };
  if (spec.executor === 'device' && !cmd.target.device) {
    return {
      ok: false,
      error: protoError('PROTO_ERR_SCHEMA', {
        what: `${cmd.type} command`,
        errors: '/target/device is required',
      }),
    };
  }
  if (spec.executor === 'gateway' && cmd.target.device) {
    return {
      ok: false,
      error: protoError('PROTO_ERR_SCHEMA', {
        what: `${cmd.type} command`,
        errors: '/target/device must be absent',
      }),
    };
  }
  let v = validators.get(cmd.type);
  if (!v) {
    v = compile(spec.payload, `${cmd.type} payload`);
    validators.set(cmd.type, v);
  }
  const r = v.check(cmd.payload);
  return r.ok ? { ok: true, spec } : r;
}

/** edge → device on `dev/{id}/cmd/{type}`: what the device needs, nothing it could misuse. */
export const DeviceCommandSchema = Type.Object(
  { id: Ulid, expiresAt: Millis, payload: Type.Unknown() },
  { $id: 'DeviceCommand', additionalProperties: false },
);
export type DeviceCommand = Static<typeof DeviceCommandSchema>;

/** device → edge on `dev/{id}/res/{commandId}`. */
export const DeviceResultSchema = Type.Object(
  {
    status: Type.Union([Type.Literal('ok'), Type.Literal('error')]),
    result: Type.Optional(Type.Unknown()),
    code: Type.Optional(Type.String({ maxLength: 64 })),
    message: Type.Optional(Type.String({ maxLength: 1024 })),
  },
  { $id: 'DeviceResult', additionalProperties: false },
);
export type DeviceResult = Static<typeof DeviceResultSchema>;

export const validateCommandEnvelope = compile(CommandEnvelopeSchema, 'command envelope');
export const validateDeviceCommand = compile(DeviceCommandSchema, 'device command');
export const validateDeviceResult = compile(DeviceResultSchema, 'device result');
