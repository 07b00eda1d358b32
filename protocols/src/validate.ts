import type { Static, TSchema } from '@sinclair/typebox';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { protoError, type StorelinkError } from './errors.ts';

/**
 * One ajv instance for the whole process; each schema is compiled once and reused
 * (fastify routes get the same JSON Schemas). `removeAdditional` is off: unknown fields
 * are an error, not silently dropped, so a typo in a device firmware shows up at once.
 */
export const ajv = new Ajv({ allErrors: true, strict: false, coerceTypes: false, useDefaults: true });
// ajv-formats ships CJS with a default export under ESM interop.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ??
  addFormatsModule) as unknown as (a: Ajv) => void;
addFormats(ajv);

export type Validator<T extends TSchema> = {
  (value: unknown): value is Static<T>;
  readonly schema: T;
  /** Throws PROTO_ERR_SCHEMA naming the wrong fields. */
  assert(value: unknown, what?: string): Static<T>;
  /** Returns the value or a coded error, without throwing. */
  check(value: unknown, what?: string): { ok: true; value: Static<T> } | { ok: false; error: StorelinkError };
};

export function compile<T extends TSchema>(schema: T, name?: string): Validator<T> {
  const fn: ValidateFunction = ajv.compile(schema);
  const label = name ?? (schema as { $id?: string }).$id ?? 'message';
  const check = (value: unknown, what = label) =>
    fn(value)
      ? ({ ok: true, value: value as Static<T> } as const)
      : ({
          ok: false,
          error: protoError('PROTO_ERR_SCHEMA', { what, errors: formatErrors(fn.errors) }),
        } as const);
  const validator = ((value: unknown) => fn(value)) as Validator<T>;
  Object.assign(validator, {
    schema,
    check,
    assert(value: unknown, what = label) {
      const r = check(value, what);
      if (!r.ok) throw r.error;
      return r.value;
    },
  });
  return validator;
}

/** `/metrics/temp must be number; must have required property 'ts'` — field paths first. */
export function formatErrors(errors: ErrorObject[] | null | undefined): string {
  if (!errors || errors.length === 0) return 'unknown schema error';
  return errors
    .slice(0, 5)
    .map((e) => {
      const path = e.instancePath || '/';
      if (e.keyword === 'additionalProperties') {
        return `${path} has unknown field "${(e.params as { additionalProperty: string }).additionalProperty}"`;
      }
      return `${path} ${e.message ?? 'is invalid'}`;
    })
    .join('; ');
}

/** Parses a JSON MQTT payload under a size limit, with coded errors. */
export function parseJsonPayload(
  payload: Buffer | Uint8Array | string,
  limitBytes: number,
): { ok: true; value: unknown; text: string } | { ok: false; error: StorelinkError } {
  const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.byteLength;
  if (size > limitBytes)
    return { ok: false, error: protoError('PROTO_ERR_OVERSIZE', { size, limit: limitBytes }) };
  try {
    // Decode in place: Buffer.from(aBuffer) would copy every payload first.
    const text =
      typeof payload === 'string'
        ? payload
        : Buffer.isBuffer(payload)
          ? payload.toString('utf8')
          : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8');
    // `text` too: the edge stores it as the payload JSON instead of stringifying the value again.
    return { ok: true, value: JSON.parse(text), text };
  } catch (e) {
    return { ok: false, error: protoError('PROTO_ERR_MALFORMED_JSON', { reason: (e as Error).message }) };
  }
}
