import { type Static, Type } from '@sinclair/typebox';
import { registerCommandType } from './commands.ts';
import { Id, Ulid } from './envelope.ts';
import { registerEventType } from './events.ts';
import { compile } from './validate.ts';

/**
 * Fleet shadows and firmware (docs/fleet-shadows-rollouts.md).
 *
 * A shadow is a flat document of configuration keys per gateway (`device` absent) or per
 * device behind it. The cloud keeps `desired` with a version that grows by one per
 * change; the edge keeps what it applied (`reported`) and the version it came from.
 * Desired travels as a signed `shadow.delta` command carrying the WHOLE desired document
 * and its version (so any one copy is enough and an older copy can be recognised as
 * stale [SHADOW-VERSION-1]); the edge applies only the keys that differ from reported
 * and reports the outcome as a `shadow.reported` event.
 */

export const SHADOW_DELTA = 'shadow.delta';
export const SHADOW_REPORTED = 'shadow.reported';
export const FIRMWARE_UPDATE = 'firmware.update';
/** The one shadow key of a device that is not a `device.config` key: its firmware image. */
export const FIRMWARE_KEY = 'firmware';

export const ShadowKey = Type.String({ pattern: '^[A-Za-z][A-Za-z0-9_.-]{0,63}$' });
// additionalProperties: false, or a key that misses the pattern would pass unchecked.
export const ShadowDocSchema = Type.Record(ShadowKey, Type.Unknown(), {
  maxProperties: 128,
  additionalProperties: false,
});
export type ShadowDoc = Static<typeof ShadowDocSchema>;

export const FirmwareVersion = Type.String({ pattern: '^[0-9A-Za-z][0-9A-Za-z.+_-]{0,31}$' });
/** What a device needs to fetch and check an image; also the desired value of `firmware`. */
export const FirmwareImageSchema = Type.Object(
  {
    version: FirmwareVersion,
    url: Type.String({ pattern: '^https?://', maxLength: 1024 }),
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    size: Type.Integer({ minimum: 1, maximum: 64 * 1024 * 1024 }),
  },
  { additionalProperties: false },
);
export type FirmwareImage = Static<typeof FirmwareImageSchema>;

export const ShadowDeltaPayload = Type.Object(
  {
    /** Absent: the gateway's own shadow. */
    device: Type.Optional(Id),
    version: Type.Integer({ minimum: 1 }),
    desired: ShadowDocSchema,
  },
  { additionalProperties: false },
);
export type ShadowDelta = Static<typeof ShadowDeltaPayload>;

export const ShadowReportedPayload = Type.Object(
  {
    device: Type.Optional(Id),
    /** The desired version this report answers. */
    version: Type.Integer({ minimum: 1 }),
    status: Type.Union([Type.Literal('applied'), Type.Literal('failed')]),
    /** The whole reported document after the attempt (partial progress included). */
    reported: ShadowDocSchema,
    /** Values the changed keys had before (what a rollback re-applies). */
    previous: ShadowDocSchema,
    /** Keys changed by this attempt. */
    applied: Type.Array(ShadowKey, { maxItems: 128 }),
    commandId: Type.Optional(Ulid),
    code: Type.Optional(Type.String({ maxLength: 64 })),
    message: Type.Optional(Type.String({ maxLength: 1024 })),
  },
  { additionalProperties: false },
);
export type ShadowReported = Static<typeof ShadowReportedPayload>;

/** Device → edge result of `firmware.update` (status ok, and `BOOT_FAILED` with reverted). */
export const FirmwareResultSchema = Type.Object(
  {
    version: FirmwareVersion,
    previousVersion: Type.Optional(FirmwareVersion),
    reverted: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: true },
);
export type FirmwareResult = Static<typeof FirmwareResultSchema>;

/** Device → edge result of `device.config` (status ok): what was set and what it was. */
export const DeviceConfigResultSchema = Type.Object(
  {
    applied: Type.Record(Type.String(), Type.Unknown()),
    previous: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: true },
);

export const validateShadowDelta = compile(ShadowDeltaPayload, 'shadow.delta payload');
export const validateFirmwareImage = compile(FirmwareImageSchema, 'firmware image');
export const validateFirmwareResult = compile(FirmwareResultSchema, 'firmware.update result');
export const validateDeviceConfigResult = compile(DeviceConfigResultSchema, 'device.config result');

/**
 * Keys of `desired` whose value differs from `reported` — the delta the edge applies.
 * For `firmware` only the version counts (reported carries `{ version }`).
 */
export function shadowDelta(desired: ShadowDoc, reported: ShadowDoc): string[] {
  return Object.keys(desired).filter((k) => {
    if (k === FIRMWARE_KEY) {
      const want = (desired[k] as { version?: unknown } | null)?.version;
      const have = (reported[k] as { version?: unknown } | null | undefined)?.version;
      return want !== have;
    }
    return !sameJson(desired[k], reported[k]);
  });
}

/** Structural equality of JSON values (key order ignored). */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) => sameJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

registerCommandType(SHADOW_DELTA, {
  executor: 'gateway',
  payload: ShadowDeltaPayload,
  description:
    'the whole desired shadow (gateway or one device) with its version; the edge applies what differs',
});
registerCommandType(FIRMWARE_UPDATE, {
  executor: 'device',
  payload: FirmwareImageSchema,
  description: 'fetch a firmware image, check size and sha256, reboot into it, report the version',
});
registerEventType(SHADOW_REPORTED, {
  lane: 'event',
  source: 'edge',
  payload: ShadowReportedPayload,
  description: 'what a gateway or device applied of a desired shadow version (or why not)',
});
