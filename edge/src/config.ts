import { readFileSync } from 'node:fs';
import { type Static, type TObject, type TSchema, Type } from '@sinclair/typebox';
import { ajv, formatErrors, ID_PATTERN } from '@storelink/protocols';
import { CabinetConfigSchema } from './cabinet/config.ts';
import { edgeError } from './errors.ts';
import { VisionConfigSchema } from './vision/config.ts';

/**
 * Edge agent configuration: a JSON file (`--config path`) plus environment overrides,
 * validated once at start. Every error names the field and why (EDGE_ERR_CONFIG).
 *
 * Environment overrides: every scalar field has a variable named `STORELINK_EDGE_` +
 * its path in SNAKE_CASE, path segments joined by `_`, e.g.
 *   cloud.url                      -> STORELINK_EDGE_CLOUD_URL
 *   cloud.batchMaxEvents           -> STORELINK_EDGE_CLOUD_BATCH_MAX_EVENTS
 *   broker.wsPort                  -> STORELINK_EDGE_BROKER_WS_PORT   ("null" turns it off)
 *   outbox.lanes.telemetry.ttlMs   -> STORELINK_EDGE_OUTBOX_LANES_TELEMETRY_TTL_MS
 *   devices (array)                -> STORELINK_EDGE_DEVICES (JSON)
 * `envVariables()` lists the full mapping.
 */

const Id = Type.String({ pattern: ID_PATTERN });
const Port = Type.Integer({ minimum: 0, maximum: 65535 });
const PosInt = (def: number, extra: object = {}) => Type.Integer({ minimum: 1, default: def, ...extra });

const DeviceSchema = Type.Object(
  {
    id: Id,
    /** Plain password (compared in constant time). */
    password: Type.Optional(Type.String({ minLength: 1 })),
    /** `scrypt$N$saltBase64$hashBase64` (see `hashDevicePassword`). */
    passwordHash: Type.Optional(
      Type.String({ pattern: '^scrypt\\$[0-9]+\\$[A-Za-z0-9+/=]+\\$[A-Za-z0-9+/=]+$' }),
    ),
    kind: Type.Optional(Type.String({ maxLength: 64 })),
  },
  { additionalProperties: false },
);

/** A sysfs GPIO line (onoff): BCM `pin` + the chip's `base`; values are logical (1 = active). */
const GpioLineSchema = Type.Object(
  {
    pin: Type.Integer({ minimum: 0, maximum: 4095 }),
    base: Type.Optional(Type.Integer({ minimum: 0, maximum: 4095 })),
    activeLow: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

const VendingSchema = Type.Object(
  {
    serialPath: Type.String({ minLength: 1 }),
    baudRate: Type.Optional(Type.Integer({ minimum: 1200, maximum: 115200 })),
    /** MDB cashless address the controller polls: 16 (0x10, cashless #1) or 96 (0x60, #2). */
    address: Type.Optional(Type.Union([Type.Literal(0x10), Type.Literal(0x60)])),
    /** Slots this machine has; a dispense for another slot is refused. Absent = any. */
    slots: Type.Optional(Type.Array(Type.Integer({ minimum: 0, maximum: 65535 }), { maxItems: 1024 })),
    /** Drop sensor: a GPIO line, or 'serial' when the board reports the drop over the link. */
    dropGpio: Type.Optional(Type.Union([GpioLineSchema, Type.Literal('serial')])),
    doorGpio: Type.Optional(GpioLineSchema),
    lockGpio: Type.Optional(GpioLineSchema),
    doorDebounceMs: Type.Integer({ minimum: 0, maximum: 10_000, default: 50 }),
    /** Budget until VEND APPROVED (capped by the command's expiry). */
    vendDeadlineMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 30_000 }),
    dropWindowMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 60_000 })),
    linkTimeoutMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 600_000 })),
    vendResultTimeoutMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 600_000 })),
    reopenMinMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 600_000 })),
    reopenMaxMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 600_000 })),
  },
  { additionalProperties: false },
);

/** One UHF RFID reader on a serial port (edge/src/rfid, docs/rfid.md). */
const RfidSchema = Type.Object(
  {
    serialPath: Type.String({ minLength: 1 }),
    framing: Type.Union([Type.Literal('chafon'), Type.Literal('r2000')]),
    /** Names the reader in tag.* and rfid.alarm events. */
    name: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$', default: 'rfid' }),
    baudRate: Type.Optional(Type.Integer({ minimum: 1200, maximum: 921600 })),
    addr: Type.Optional(Type.Integer({ minimum: 0, maximum: 255 })),
    antennas: Type.Array(Type.Integer({ minimum: 1, maximum: 4 }), {
      minItems: 1,
      maxItems: 4,
      default: [1],
    }),
    roundIntervalMs: Type.Integer({ minimum: 0, maximum: 600_000, default: 500 }),
    departRounds: Type.Integer({ minimum: 1, maximum: 1000, default: 3 }),
    departMs: Type.Integer({ minimum: 0, maximum: 3_600_000, default: 2000 }),
    dedupeMs: Type.Integer({ minimum: 0, maximum: 600_000, default: 1000 }),
    scanTime: Type.Optional(Type.Integer({ minimum: 1, maximum: 255 })),
    responseTimeoutMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 600_000 })),
    retries: Type.Integer({ minimum: 0, maximum: 20, default: 2 }),
    reopenMinMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 600_000 })),
    reopenMaxMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 600_000 })),
  },
  { additionalProperties: false },
);

export const EdgeConfigSchema = Type.Object(
  {
    site: Id,
    gateway: Id,
    dataDir: Type.String({ minLength: 1, default: '.data/edge' }),
    broker: Type.Object(
      {
        host: Type.String({ default: '0.0.0.0' }),
        port: Type.Integer({ minimum: 0, maximum: 65535, default: 1883 }),
        /** WebSocket listener for in-store displays: null/absent = off, 0 = a random free port. */
        wsPort: Type.Optional(Type.Union([Port, Type.Null()])),
      },
      { additionalProperties: false, default: {} },
    ),
    http: Type.Object(
      {
        host: Type.String({ default: '127.0.0.1' }),
        port: Type.Integer({ minimum: 0, maximum: 65535, default: 8081 }),
      },
      { additionalProperties: false, default: {} },
    ),
    cloud: Type.Object(
      {
        url: Type.String({ pattern: '^(mqtts?|wss?|tcp|tls)://' }),
        username: Type.String({ minLength: 1 }),
        password: Type.String({ default: '' }),
        /** Ed25519 public key of the cloud command signer (PEM); without one every command is refused. */
        publicKeyPem: Type.Optional(Type.String()),
        publicKeyFile: Type.Optional(Type.String()),
        /**
         * Mutual TLS to the cloud broker (mqtts://, docs/fleet-provisioning.md): the cloud CA
         * to trust, and this gateway's certificate and key, as PEM or as files. Files are
         * read at every connect, so a rotated certificate on disk is used at the next one.
         */
        caPem: Type.Optional(Type.String()),
        caFile: Type.Optional(Type.String()),
        certPem: Type.Optional(Type.String()),
        certFile: Type.Optional(Type.String()),
        keyPem: Type.Optional(Type.String()),
        keyFile: Type.Optional(Type.String()),
        // 2000 events / 1 MiB (the protocol's batch byte limit): a backlog drains in a
        // quarter of the transactions of 500 / 256 KiB (docs/performance.md "Drain path tuning").
        batchMaxEvents: PosInt(2000, { maximum: 5000 }),
        batchMaxBytes: PosInt(1024 * 1024, { maximum: 1024 * 1024, minimum: 1024 }),
        inflightBatches: PosInt(8, { maximum: 1000 }),
        retransmitMs: PosInt(10_000),
        reconnectMinMs: PosInt(500),
        reconnectMaxMs: PosInt(30_000),
        keepaliveS: Type.Integer({ minimum: 0, maximum: 65535, default: 30 }),
      },
      { additionalProperties: false },
    ),
    outbox: Type.Object(
      {
        kind: Type.Union([Type.Literal('level'), Type.Literal('memory')], { default: 'level' }),
        durability: Type.Union([Type.Literal('process'), Type.Literal('power')], { default: 'process' }),
        maxBytes: Type.Integer({ minimum: 1024, default: 512 * 1024 * 1024 }),
        /**
         * Free disk space kept for tx, acks and compaction [OUTBOX-DISK-1]: below it telemetry
         * and event appends are refused. Unset: max(16 MiB, 2 % of the fs), at most half of it; 0 = off.
         */
        diskReserveBytes: Type.Optional(Type.Integer({ minimum: 0 })),
        lanes: Type.Object(
          {
            tx: Type.Object(
              { maxBytes: Type.Integer({ minimum: 0, default: 0 }) },
              { additionalProperties: false, default: {} },
            ),
            event: Type.Object(
              { maxBytes: Type.Integer({ minimum: 0, default: 0 }) },
              { additionalProperties: false, default: {} },
            ),
            telemetry: Type.Object(
              {
                maxBytes: Type.Integer({ minimum: 0, default: 128 * 1024 * 1024 }),
                ttlMs: Type.Integer({ minimum: 1, default: 7 * 24 * 3600 * 1000 }),
              },
              { additionalProperties: false, default: {} },
            ),
          },
          { additionalProperties: false, default: {} },
        ),
      },
      { additionalProperties: false, default: {} },
    ),
    devices: Type.Array(DeviceSchema, { default: [] }),
    heartbeatMs: PosInt(10_000),
    commandTimeoutMs: PosInt(10_000),
    /** Vending machine controller on a serial port (edge/src/vending/agent-wiring.ts); absent = none. */
    vending: Type.Optional(VendingSchema),
    /** UHF RFID reader on a serial port (edge/src/rfid/agent-wiring.ts); absent = none. */
    rfid: Type.Optional(RfidSchema),
    /** Unmanned cabinet: lock, door, inventory (docs/cabinet.md); absent = none. */
    cabinet: Type.Optional(CabinetConfigSchema),
    /** On-device vision (docs/vision.md); absent = none. */
    vision: Type.Optional(VisionConfigSchema),
    log: Type.Object(
      {
        level: Type.Union(
          ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
          { default: 'info' },
        ),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false },
);

export type EdgeConfig = Static<typeof EdgeConfigSchema>;
export type DeviceConfig = Static<typeof DeviceSchema>;
type DeepPartial<T> = T extends readonly (infer U)[]
  ? readonly U[]
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;
/** What callers may pass: the file shape, where every defaulted field may be left out. */
export type EdgeConfigInput = DeepPartial<Omit<EdgeConfig, 'cloud'>> & {
  site: string;
  gateway: string;
  cloud: DeepPartial<EdgeConfig['cloud']> & { url: string; username: string };
};

const validate = ajv.compile(EdgeConfigSchema);

const ENV_PREFIX = 'STORELINK_EDGE_';
const snake = (s: string) => s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();

interface EnvVar {
  name: string;
  path: string[];
  schema: TSchema;
}

/** The environment variable for every scalar config field (and `devices` as JSON). */
export function envVariables(): EnvVar[] {
  const out: EnvVar[] = [];
  const walk = (schema: TObject, path: string[]) => {
    for (const [key, sub] of Object.entries(schema.properties)) {
      const p = [...path, key];
      if ((sub as TSchema).type === 'object' && (sub as TObject).properties) walk(sub as TObject, p);
      else out.push({ name: ENV_PREFIX + p.map(snake).join('_'), path: p, schema: sub as TSchema });
    }
  };
  walk(EdgeConfigSchema, []);
  return out;
}

function typesOf(schema: TSchema): string[] {
  if (schema.anyOf) return (schema.anyOf as TSchema[]).flatMap(typesOf);
  if (schema.const !== undefined) return [typeof schema.const];
  return [String(schema.type)];
}

function parseEnvValue(v: EnvVar, raw: string): unknown {
  const types = typesOf(v.schema);
  if (raw === 'null' && types.includes('null')) return null;
  if (types.includes('array')) {
    try {
      return JSON.parse(raw);
    } catch {
      return raw; // the schema check names the field
    }
  }
  if (types.includes('integer') || types.includes('number')) {
    const n = Number(raw);
    return raw.trim() !== '' && Number.isFinite(n) ? n : raw;
  }
  if (types.includes('boolean')) return raw === 'true' ? true : raw === 'false' ? false : raw;
  return raw;
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let o = target;
  for (const key of path.slice(0, -1)) {
    if (typeof o[key] !== 'object' || o[key] === null) o[key] = {};
    o = o[key] as Record<string, unknown>;
  }
  o[path[path.length - 1]!] = value;
}

/** Validates (and fills defaults into a copy of) a config object; throws EDGE_ERR_CONFIG. */
export function parseConfig(input: unknown, env: NodeJS.ProcessEnv = {}): EdgeConfig {
  const cfg = structuredClone(input ?? {}) as Record<string, unknown>;
  if (typeof cfg !== 'object' || Array.isArray(cfg)) {
    throw edgeError('EDGE_ERR_CONFIG', { errors: '/ must be an object' });
  }
  for (const v of envVariables()) {
    const raw = env[v.name];
    if (raw !== undefined) setPath(cfg, v.path, parseEnvValue(v, raw));
  }
  if (!validate(cfg)) throw edgeError('EDGE_ERR_CONFIG', { errors: formatErrors(validate.errors) });
  const c = cfg as unknown as EdgeConfig;
  const problems: string[] = [];
  if (c.cloud.reconnectMinMs > c.cloud.reconnectMaxMs) {
    problems.push('/cloud/reconnectMinMs must be <= /cloud/reconnectMaxMs');
  }
  if (c.cloud.publicKeyPem && c.cloud.publicKeyFile) {
    problems.push('/cloud give either publicKeyPem or publicKeyFile, not both');
  }
  for (const k of ['ca', 'cert', 'key'] as const) {
    if (c.cloud[`${k}Pem`] && c.cloud[`${k}File`])
      problems.push(`/cloud give either ${k}Pem or ${k}File, not both`);
  }
  if (!(c.cloud.certPem ?? c.cloud.certFile) !== !(c.cloud.keyPem ?? c.cloud.keyFile)) {
    problems.push('/cloud a client certificate needs its key (certPem/certFile with keyPem/keyFile)');
  }
  const seen = new Set<string>();
  c.devices.forEach((d, i) => {
    if (seen.has(d.id)) problems.push(`/devices/${i}/id "${d.id}" is listed twice`);
    seen.add(d.id);
    if (!d.password === !d.passwordHash) {
      problems.push(`/devices/${i} needs exactly one of password or passwordHash`);
    }
  });
  if (c.broker.wsPort !== undefined && c.broker.wsPort !== null && c.broker.wsPort !== 0) {
    if (c.broker.wsPort === c.broker.port) problems.push('/broker/wsPort must differ from /broker/port');
  }
  if (problems.length > 0) throw edgeError('EDGE_ERR_CONFIG', { errors: problems.join('; ') });
  return c;
}

/** Reads `path` (JSON), applies `STORELINK_EDGE_*` overrides from `env`, validates. */
export function loadConfig(path: string | undefined, env: NodeJS.ProcessEnv = process.env): EdgeConfig {
  let raw: unknown = {};
  if (path) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw edgeError(
        'EDGE_ERR_CONFIG',
        { errors: `cannot read ${path}: ${(e as Error).message}` },
        { cause: e },
      );
    }
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw edgeError(
        'EDGE_ERR_CONFIG',
        { errors: `${path} is not valid JSON: ${(e as Error).message}` },
        { cause: e },
      );
    }
  }
  return parseConfig(raw, env);
}

/** The trusted command key as PEM, from the config; undefined when none is configured. */
export function readPublicKeyPem(c: EdgeConfig): string | undefined {
  if (c.cloud.publicKeyPem) return c.cloud.publicKeyPem;
  if (!c.cloud.publicKeyFile) return undefined;
  try {
    return readFileSync(c.cloud.publicKeyFile, 'utf8');
  } catch (e) {
    throw edgeError(
      'EDGE_ERR_CONFIG',
      { errors: `/cloud/publicKeyFile cannot be read: ${(e as Error).message}` },
      { cause: e },
    );
  }
}
