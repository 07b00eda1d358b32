import { readFileSync } from 'node:fs';
import { type Static, Type } from '@sinclair/typebox';
import { compile, Id } from '@storelink/protocols';
import type { SimFleetSpec } from './fleet.ts';

/**
 * `sim.json` for `storelink-sim --config sim.json`:
 *
 *   { "brokerUrl": "mqtt://127.0.0.1:1883",
 *     "devices": [ { "id": "fridge-1", "password": "s3cret", "kind": "fridge", "intervalMs": 5000 } ] }
 *
 * Unknown fields are an error (same rule as the protocol), so a typo is caught at start.
 */
export const SimDeviceConfigSchema = Type.Object(
  {
    id: Id,
    password: Type.Optional(Type.String({ maxLength: 256 })),
    // An enum, not a union of literals: ajv then reports one clear error for a bad kind.
    kind: Type.Unsafe<'fridge' | 'vending'>({
      type: 'string',
      enum: ['fridge', 'vending'],
      description: 'fridge | vending',
    }),
    intervalMs: Type.Optional(Type.Integer({ minimum: 10, maximum: 86_400_000 })),
    seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 4294967295 })),
    options: Type.Optional(
      Type.Object(
        {
          setpointC: Type.Optional(Type.Number()),
          hysteresisC: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
          ambientC: Type.Optional(Type.Number()),
          tempHighC: Type.Optional(Type.Number()),
          doorOpenAlarmMs: Type.Optional(Type.Integer({ minimum: 1000 })),
          doorOpensPerHour: Type.Optional(Type.Number({ minimum: 0 })),
          initialTempC: Type.Optional(Type.Number()),
          slots: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
          capacity: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
          initialStock: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
          salesPerHour: Type.Optional(Type.Number({ minimum: 0 })),
          lowStockThreshold: Type.Optional(Type.Integer({ minimum: 0 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export const SimConfigSchema = Type.Object(
  {
    brokerUrl: Type.String({ pattern: '^(mqtt|mqtts|tcp|tls|ws|wss)://.+' }),
    devices: Type.Array(SimDeviceConfigSchema, { minItems: 1, maxItems: 10_000 }),
    keepaliveS: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
    reconnectPeriodMs: Type.Optional(Type.Integer({ minimum: 10, maximum: 600_000 })),
    maxInflight: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    /** How often the status line is printed. */
    statusEveryMs: Type.Optional(Type.Integer({ minimum: 100 })),
  },
  { $id: 'SimConfig', additionalProperties: false },
);
export type SimConfig = Static<typeof SimConfigSchema>;

const validateSimConfig = compile(SimConfigSchema, 'sim config');

/** Validates a parsed config; throws PROTO_ERR_SCHEMA naming the wrong fields. */
export function parseSimConfig(value: unknown): SimConfig {
  const cfg = validateSimConfig.assert(value);
  const seen = new Set<string>();
  for (const [i, d] of cfg.devices.entries()) {
    if (seen.has(d.id)) throw new Error(`sim config: /devices/${i}/id "${d.id}" appears twice`);
    seen.add(d.id);
  }
  return cfg;
}

/** Reads and validates a config file. */
export function loadSimConfig(path: string): SimConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read sim config ${path}: ${(e as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new Error(`sim config ${path} is not valid JSON: ${(e as Error).message}`);
  }
  return parseSimConfig(value);
}

export function fleetSpecFromConfig(cfg: SimConfig, now?: () => number): SimFleetSpec {
  const { statusEveryMs: _status, ...rest } = cfg;
  return now ? { ...rest, now } : rest;
}
