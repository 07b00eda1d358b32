import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { type Static, Type } from '@sinclair/typebox';
import { ajv, formatErrors, ID_PATTERN } from '@storelink/protocols';
import { cloudError } from './errors.ts';

/**
 * Cloud configuration: a JSON file (`--config path`), then STORELINK_CLOUD_* environment
 * overrides (table below), then defaults, validated once at start. Every error names the
 * field (and the variable it came from) and why it is wrong [CLOUD_ERR_CONFIG].
 *
 * Relative paths are resolved against the directory of the config file, or the current
 * directory when there is no file.
 */

const Port = Type.Integer({ minimum: 0, maximum: 65535 });
/** A string enum as one JSON Schema `enum` (one clear error, not one per alternative). */
const Enum = <T extends string>(values: readonly T[]) =>
  Type.Unsafe<T>({ type: 'string', enum: [...values] });
const NonEmpty = Type.String({ minLength: 1 });
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Mutual TLS listener of the embedded broker (docs/fleet-provisioning.md) [FLEET-CERT-1]. */
const BrokerTls = Type.Object(
  {
    host: NonEmpty,
    port: Port,
    /** Host names / IPs the gateways dial: the SANs of the broker's server certificate. */
    hosts: Type.Array(NonEmpty, { minItems: 1 }),
    /** false: clients without a certificate may use the password path over TLS. */
    requireClientCert: Type.Boolean(),
  },
  { additionalProperties: false },
);
const EmbeddedBroker = Type.Object(
  { mode: Type.Literal('embedded'), host: NonEmpty, port: Port, tls: Type.Optional(BrokerTls) },
  { additionalProperties: false },
);
/** Gateway provisioning and presence (docs/fleet-provisioning.md). */
const FleetConfig = Type.Object(
  {
    /** The fleet CA's key and certificate (created on first start). */
    caDir: NonEmpty,
    certValidityDays: Type.Integer({ minimum: 1, maximum: 3650 }),
    heartbeatTimeoutMs: Type.Integer({ minimum: 1000, maximum: 24 * 3600 * 1000 }),
    stallAfterMs: Type.Integer({ minimum: 1000, maximum: 24 * 3600 * 1000 }),
    /** Presence history rows kept per gateway [PRESENCE-HIST-3]. */
    presenceHistoryKeep: Type.Integer({ minimum: 1, maximum: 100_000 }),
  },
  { additionalProperties: false },
);
/**
 * Fleet alerts (docs/fleet-alerts-dashboard.md "Configuration") [ALERT-CONFIG-1]: thresholds
 * named here are stored at start over the stored ones (the API can change them until the
 * next start); unnamed ones keep their stored or built-in value. Bounds as the API's.
 */
const AlertMs = Type.Integer({ minimum: 1000, maximum: 7 * 24 * 3600 * 1000 });
const AlertsConfigSchema = Type.Object(
  {
    thresholds: Type.Object(
      {
        offlineAfterMs: Type.Optional(AlertMs),
        backlogAgeMs: Type.Optional(AlertMs),
        tempMinC: Type.Optional(Type.Number({ minimum: -50, maximum: 50 })),
        tempMaxC: Type.Optional(Type.Number({ minimum: -50, maximum: 50 })),
        tempClearMarginC: Type.Optional(Type.Number({ minimum: 0, maximum: 10 })),
        doorOpenMs: Type.Optional(AlertMs),
        lowStockCount: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
        tagBatteryLowMv: Type.Optional(Type.Integer({ minimum: 0, maximum: 5000 })),
        vendFailures: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
        silentAfterMs: Type.Optional(AlertMs),
      },
      { additionalProperties: false },
    ),
    /** Time-based alert rules are swept this often (default 5 s). */
    sweepIntervalMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 3600 * 1000 })),
  },
  { additionalProperties: false },
);
const ExternalBroker = Type.Object(
  {
    mode: Type.Literal('external'),
    url: Type.String({ pattern: '^(mqtt|mqtts|tcp|tls|ws|wss)://' }),
    username: Type.Optional(NonEmpty),
    password: Type.Optional(Type.String()),
  },
  { additionalProperties: false },
);
const PgliteStore = Type.Object(
  {
    kind: Type.Literal('pglite'),
    dir: Type.Optional(NonEmpty),
    /** Run PGlite in a worker thread (default true). */
    worker: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
const PostgresStore = Type.Object(
  { kind: Type.Literal('postgres'), url: Type.String({ pattern: '^postgres(ql)?://' }) },
  { additionalProperties: false },
);
export const GatewayConfigSchema = Type.Object(
  {
    id: Type.String({ pattern: ID_PATTERN }),
    site: Type.String({ pattern: ID_PATTERN }),
    name: Type.Optional(Type.String({ maxLength: 128 })),
    password: NonEmpty,
  },
  { additionalProperties: false },
);

/** Vending payments (docs/vending.md): provider keys for notification signatures, timings. */
const Ms = Type.Integer({ minimum: 0, maximum: 7 * 24 * 3600 * 1000 });
export const PaymentsConfigSchema = Type.Object(
  {
    providers: Type.Record(
      Type.String({ pattern: '^[a-z0-9_-]{1,32}$' }),
      Type.Object(
        {
          algorithm: Enum(['hmac-sha256', 'ed25519'] as const),
          /** HMAC secret or the provider's Ed25519 public key (PEM). */
          key: NonEmpty,
          serial: Type.Optional(NonEmpty),
          maxSkewMs: Type.Optional(Ms),
        },
        { additionalProperties: false },
      ),
    ),
    /** The provider's merchant API (docs/vending.md "Provider adapter"); absent = no query/close/refund. */
    provider: Type.Optional(
      Type.Object(
        {
          /** Its name under `providers` (notifications) and on orders; default `wechat`. */
          name: Type.String({ pattern: '^[a-z0-9_-]{1,32}$' }),
          baseUrl: Type.String({ pattern: '^https?://' }),
          mchid: NonEmpty,
          algorithm: Enum(['hmac-sha256', 'ed25519'] as const),
          /** HMAC secret, or the merchant's Ed25519 private key (PEM). */
          merchantKey: NonEmpty,
          merchantSerial: Type.Optional(NonEmpty),
          /** Verifies the provider's answers; default: `providers.<name>.key`. */
          providerKey: Type.Optional(NonEmpty),
          timeoutMs: Type.Integer({ minimum: 100, maximum: 120_000 }),
        },
        { additionalProperties: false },
      ),
    ),
    orderTtlMs: Ms,
    dispenseTtlMs: Ms,
    settleMarginMs: Ms,
    lateGraceMs: Ms,
    retryMs: Ms,
    sweepIntervalMs: Ms,
  },
  { additionalProperties: false },
);

/** Everything but the two tagged unions; those are validated by their tag (clearer errors). */
const ConfigBase = Type.Object(
  {
    dataDir: NonEmpty,
    http: Type.Object({ host: NonEmpty, port: Port }, { additionalProperties: false }),
    broker: Type.Object({ mode: Enum(['embedded', 'external']) }),
    store: Type.Object({ kind: Enum(['pglite', 'postgres']) }),
    signing: Type.Object({ privateKeyFile: NonEmpty }, { additionalProperties: false }),
    service: Type.Object({ username: NonEmpty, password: NonEmpty }, { additionalProperties: false }),
    gateways: Type.Array(GatewayConfigSchema),
    commands: Type.Object(
      { defaultTtlMs: Type.Integer({ minimum: 1000, maximum: 7 * 24 * 3600 * 1000 }) },
      { additionalProperties: false },
    ),
    log: Type.Object({ level: Enum(LOG_LEVELS) }, { additionalProperties: false }),
    payments: PaymentsConfigSchema,
    fleet: FleetConfig,
    alerts: AlertsConfigSchema,
  },
  { additionalProperties: false },
);

export type EmbeddedBrokerConfig = Static<typeof EmbeddedBroker>;
export type ExternalBrokerConfig = Static<typeof ExternalBroker>;
export type GatewayConfig = Static<typeof GatewayConfigSchema>;
export type CloudConfig = Omit<Static<typeof ConfigBase>, 'broker' | 'store'> & {
  broker: EmbeddedBrokerConfig | ExternalBrokerConfig;
  store: Static<typeof PgliteStore> | Static<typeof PostgresStore>;
};

type DeepPartial<T> = T extends (infer U)[]
  ? U[]
  : T extends object
    ? { [K in keyof T]?: DeepPartial<T[K]> }
    : T;
/** What callers may pass: any subset; the rest comes from defaults. */
export type CloudConfigInput = DeepPartial<Omit<CloudConfig, 'broker' | 'store'>> & {
  broker?:
    | (Partial<Omit<EmbeddedBrokerConfig, 'tls'>> & {
        tls?: Partial<NonNullable<EmbeddedBrokerConfig['tls']>>;
      })
    | ExternalBrokerConfig;
  store?: Partial<Static<typeof PgliteStore>> | Static<typeof PostgresStore>;
};

/**
 * Environment overrides. Booleans do not exist here; numbers must be integers;
 * STORELINK_CLOUD_GATEWAYS is a JSON array. Setting BROKER_URL switches the broker to
 * `external` and STORE_URL the store to `postgres` unless the mode/kind is also given.
 * An unknown STORELINK_CLOUD_* variable is an error (a typo must not be ignored).
 */
type EnvSpec = { path: string; type: 'string' | 'int' | 'number' | 'json' };
export const ENV_MAP: Readonly<Record<string, EnvSpec>> = {
  STORELINK_CLOUD_DATA_DIR: { path: 'dataDir', type: 'string' },
  STORELINK_CLOUD_HTTP_HOST: { path: 'http.host', type: 'string' },
  STORELINK_CLOUD_HTTP_PORT: { path: 'http.port', type: 'int' },
  STORELINK_CLOUD_BROKER_MODE: { path: 'broker.mode', type: 'string' },
  STORELINK_CLOUD_BROKER_HOST: { path: 'broker.host', type: 'string' },
  STORELINK_CLOUD_BROKER_PORT: { path: 'broker.port', type: 'int' },
  STORELINK_CLOUD_BROKER_URL: { path: 'broker.url', type: 'string' },
  STORELINK_CLOUD_BROKER_USERNAME: { path: 'broker.username', type: 'string' },
  STORELINK_CLOUD_BROKER_PASSWORD: { path: 'broker.password', type: 'string' },
  STORELINK_CLOUD_BROKER_TLS_PORT: { path: 'broker.tls.port', type: 'int' },
  STORELINK_CLOUD_BROKER_TLS_HOSTS: { path: 'broker.tls.hosts', type: 'json' },
  STORELINK_CLOUD_FLEET_CA_DIR: { path: 'fleet.caDir', type: 'string' },
  STORELINK_CLOUD_STORE_KIND: { path: 'store.kind', type: 'string' },
  STORELINK_CLOUD_STORE_DIR: { path: 'store.dir', type: 'string' },
  STORELINK_CLOUD_STORE_URL: { path: 'store.url', type: 'string' },
  STORELINK_CLOUD_SIGNING_PRIVATE_KEY_FILE: { path: 'signing.privateKeyFile', type: 'string' },
  STORELINK_CLOUD_SERVICE_USERNAME: { path: 'service.username', type: 'string' },
  STORELINK_CLOUD_SERVICE_PASSWORD: { path: 'service.password', type: 'string' },
  STORELINK_CLOUD_COMMANDS_DEFAULT_TTL_MS: { path: 'commands.defaultTtlMs', type: 'int' },
  STORELINK_CLOUD_LOG_LEVEL: { path: 'log.level', type: 'string' },
  STORELINK_CLOUD_GATEWAYS: { path: 'gateways', type: 'json' },
  STORELINK_CLOUD_PAYMENTS_PROVIDER_NAME: { path: 'payments.provider.name', type: 'string' },
  STORELINK_CLOUD_PAYMENTS_PROVIDER_BASE_URL: { path: 'payments.provider.baseUrl', type: 'string' },
  STORELINK_CLOUD_PAYMENTS_PROVIDER_MCHID: { path: 'payments.provider.mchid', type: 'string' },
  STORELINK_CLOUD_PAYMENTS_PROVIDER_ALGORITHM: { path: 'payments.provider.algorithm', type: 'string' },
  STORELINK_CLOUD_PAYMENTS_PROVIDER_MERCHANT_KEY: { path: 'payments.provider.merchantKey', type: 'string' },
  STORELINK_CLOUD_PAYMENTS_PROVIDER_MERCHANT_SERIAL: {
    path: 'payments.provider.merchantSerial',
    type: 'string',
  },
  STORELINK_CLOUD_PAYMENTS_PROVIDER_KEY: { path: 'payments.provider.providerKey', type: 'string' },
  STORELINK_CLOUD_PAYMENTS_PROVIDER_TIMEOUT_MS: { path: 'payments.provider.timeoutMs', type: 'int' },
  STORELINK_CLOUD_FLEET_PRESENCE_HISTORY_KEEP: { path: 'fleet.presenceHistoryKeep', type: 'int' },
  STORELINK_CLOUD_ALERTS_SWEEP_INTERVAL_MS: { path: 'alerts.sweepIntervalMs', type: 'int' },
  STORELINK_CLOUD_ALERTS_OFFLINE_AFTER_MS: { path: 'alerts.thresholds.offlineAfterMs', type: 'int' },
  STORELINK_CLOUD_ALERTS_BACKLOG_AGE_MS: { path: 'alerts.thresholds.backlogAgeMs', type: 'int' },
  STORELINK_CLOUD_ALERTS_TEMP_MIN_C: { path: 'alerts.thresholds.tempMinC', type: 'number' },
  STORELINK_CLOUD_ALERTS_TEMP_MAX_C: { path: 'alerts.thresholds.tempMaxC', type: 'number' },
  STORELINK_CLOUD_ALERTS_TEMP_CLEAR_MARGIN_C: {
    path: 'alerts.thresholds.tempClearMarginC',
    type: 'number',
  },
  STORELINK_CLOUD_ALERTS_DOOR_OPEN_MS: { path: 'alerts.thresholds.doorOpenMs', type: 'int' },
  STORELINK_CLOUD_ALERTS_LOW_STOCK_COUNT: { path: 'alerts.thresholds.lowStockCount', type: 'int' },
  STORELINK_CLOUD_ALERTS_TAG_BATTERY_LOW_MV: { path: 'alerts.thresholds.tagBatteryLowMv', type: 'int' },
  STORELINK_CLOUD_ALERTS_VEND_FAILURES: { path: 'alerts.thresholds.vendFailures', type: 'int' },
  STORELINK_CLOUD_ALERTS_SILENT_AFTER_MS: { path: 'alerts.thresholds.silentAfterMs', type: 'int' },
};

const VARIANT_KEYS: Record<string, Record<string, readonly string[]>> = {
  broker: { embedded: ['mode', 'host', 'port', 'tls'], external: ['mode', 'url', 'username', 'password'] },
  store: { pglite: ['kind', 'dir', 'worker'], postgres: ['kind', 'url'] },
};

const bad = (errors: string) => cloudError('CLOUD_ERR_CONFIG', { errors });

/** Reads the file (if any), applies the environment and defaults, validates. */
export function loadCloudConfig(path?: string, env: NodeJS.ProcessEnv = process.env): CloudConfig {
  let raw: unknown = {};
  if (path) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      throw bad(`cannot read config file ${path}: ${(e as Error).message}`);
    }
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw bad(`config file ${path} is not valid JSON: ${(e as Error).message}`);
    }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      throw bad(`config file ${path} must hold a JSON object`);
    }
  }
  const withEnv = applyEnv(raw as Record<string, unknown>, env);
  try {
    return resolveCloudConfig(withEnv, { baseDir: path ? dirname(resolve(path)) : process.cwd() });
  } catch (e) {
    // Name the variable a wrong value came from, not only the field.
    const errors = String((e as { details?: { errors?: unknown } }).details?.errors ?? '');
    let annotated = errors;
    for (const [name, spec] of Object.entries(ENV_MAP)) {
      if (env[name] === undefined) continue;
      const field = `/${spec.path.replace(/\./g, '/')}`;
      annotated = annotated.replace(new RegExp(`${field}(?=[ /])[^;]*`, 'g'), (m) => `${m} (from ${name})`);
    }
    if (annotated === errors) throw e;
    throw bad(annotated);
  }
}

/** Applies STORELINK_CLOUD_* variables to a raw config object (a copy). */
export function applyEnv(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out = structuredClone(raw);
  const errors: string[] = [];
  const entries = Object.entries(env).filter(([k, v]) => k.startsWith('STORELINK_CLOUD_') && v !== undefined);
  for (const [name] of entries) {
    // STORELINK_CLOUD_CONFIG names the config file (main.ts), it is not a field.
    if (!ENV_MAP[name] && name !== 'STORELINK_CLOUD_CONFIG')
      errors.push(`${name} is not a known variable (known: ${Object.keys(ENV_MAP).join(', ')})`);
  }
  const get = (name: string) => env[name];
  // A URL alone switches the variant; switching drops the other variant's fields.
  const modeFor = (
    section: 'broker' | 'store',
    key: string,
    urlVar: string,
    modeVar: string,
    urlValue: string,
  ) => {
    const explicit = get(modeVar) ?? (get(urlVar) !== undefined ? urlValue : undefined);
    if (explicit === undefined) return;
    const cur = (out[section] ?? {}) as Record<string, unknown>;
    if (cur[key] !== explicit) {
      const keep = VARIANT_KEYS[section]![explicit] ?? [];
      out[section] = Object.fromEntries(Object.entries(cur).filter(([k]) => keep.includes(k)));
    }
    (out[section] as Record<string, unknown>)[key] = explicit;
  };
  modeFor('broker', 'mode', 'STORELINK_CLOUD_BROKER_URL', 'STORELINK_CLOUD_BROKER_MODE', 'external');
  modeFor('store', 'kind', 'STORELINK_CLOUD_STORE_URL', 'STORELINK_CLOUD_STORE_KIND', 'postgres');
  for (const [name, value] of entries) {
    const spec = ENV_MAP[name];
    if (!spec || value === undefined || name.endsWith('_MODE') || name.endsWith('_KIND')) continue;
    let v: unknown = value;
    if (spec.type === 'int') {
      if (!/^-?\d+$/.test(value.trim())) {
        errors.push(`${name} (${spec.path}) must be an integer, got "${value}"`);
        continue;
      }
      v = Number(value);
    } else if (spec.type === 'number') {
      if (!/^-?\d+(\.\d+)?$/.test(value.trim())) {
        errors.push(`${name} (${spec.path}) must be a number, got "${value}"`);
        continue;
      }
      v = Number(value);
    } else if (spec.type === 'json') {
      try {
        v = JSON.parse(value);
      } catch (e) {
        errors.push(`${name} (${spec.path}) must be JSON: ${(e as Error).message}`);
        continue;
      }
    }
    setPath(out, spec.path, v);
  }
  if (errors.length) throw bad(errors.join('; '));
  return out;
}

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.');
  let cur = obj;
  for (const k of keys.slice(0, -1)) {
    if (cur[k] === null || typeof cur[k] !== 'object') cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[keys[keys.length - 1]!] = value;
}

const validateBase = ajv.compile(ConfigBase);
const variantValidators = {
  broker: { embedded: ajv.compile(EmbeddedBroker), external: ajv.compile(ExternalBroker) },
  store: { pglite: ajv.compile(PgliteStore), postgres: ajv.compile(PostgresStore) },
} as const;

/**
 * Fills defaults into a (partial) config object and validates it. Idempotent: a
 * resolved config resolves to itself.
 */
export function resolveCloudConfig(
  input: CloudConfigInput | Record<string, unknown>,
  opts: { baseDir?: string } = {},
): CloudConfig {
  const baseDir = opts.baseDir ?? process.cwd();
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  if (input === null || typeof input !== 'object' || Array.isArray(input)) throw bad('/ must be an object');
  const i = input as Record<string, unknown>;
  const isObj = (v: unknown): v is Record<string, unknown> =>
    v !== null && typeof v === 'object' && !Array.isArray(v);
  /** Defaults under a section the caller gave as an object; anything else is left for the validator. */
  const section = (v: unknown, defaults: Record<string, unknown>) =>
    v === undefined ? defaults : isObj(v) ? { ...defaults, ...v } : v;
  const dataDir = typeof i.dataDir === 'string' ? i.dataDir : '.data/cloud';
  const brokerIn = i.broker ?? {};
  const storeIn = i.store ?? {};
  // A URL alone means the external variant.
  const brokerMode = isObj(brokerIn)
    ? (brokerIn.mode ?? (brokerIn.url ? 'external' : 'embedded'))
    : undefined;
  const storeKind = isObj(storeIn) ? (storeIn.kind ?? (storeIn.url ? 'postgres' : 'pglite')) : undefined;

  const candidate: Record<string, unknown> = {
    ...i,
    dataDir,
    http: section(i.http, { host: '0.0.0.0', port: 8080 }),
    broker: section(
      brokerIn,
      brokerMode === 'embedded' ? { mode: 'embedded', host: '0.0.0.0', port: 1883 } : { mode: brokerMode },
    ),
    store: section(
      storeIn,
      storeKind === 'pglite' ? { kind: 'pglite', dir: `${dataDir}/pglite` } : { kind: storeKind },
    ),
    signing: section(i.signing, { privateKeyFile: `${dataDir}/signing-key.pem` }),
    service: section(i.service, { username: 'storelink-cloud', password: '' }),
    gateways: i.gateways ?? [],
    commands: section(i.commands, { defaultTtlMs: 60_000 }),
    log: section(i.log, { level: 'info' }),
    fleet: section(i.fleet, {
      caDir: `${dataDir}/fleet-ca`,
      certValidityDays: 365,
      heartbeatTimeoutMs: 35_000,
      stallAfterMs: 60_000,
      presenceHistoryKeep: 200,
    }),
    alerts: section(i.alerts, { thresholds: {} }),
    payments: section(i.payments, {
      providers: {},
      orderTtlMs: 300_000,
      dispenseTtlMs: 60_000,
      settleMarginMs: 300_000,
      lateGraceMs: 120_000,
      retryMs: 30_000,
      sweepIntervalMs: 5_000,
    }),
  };
  // The provider API: defaults for name and timeout; it must be a configured provider.
  const pay = candidate.payments as Record<string, unknown>;
  if (isObj(pay) && isObj(pay.provider)) {
    const name = typeof pay.provider.name === 'string' ? pay.provider.name : 'wechat';
    const notify = isObj(pay.providers) ? pay.providers[name] : undefined;
    const algorithm = isObj(notify) && notify.algorithm ? notify.algorithm : 'hmac-sha256';
    pay.provider = { name, algorithm, timeoutMs: 10_000, ...pay.provider };
  }
  // A TLS listener given (even only its port): defaults for the rest [FLEET-CERT-1].
  const brokerCand = candidate.broker as Record<string, unknown>;
  if (isObj(brokerCand) && brokerCand.mode === 'embedded' && isObj(brokerCand.tls)) {
    brokerCand.tls = {
      host: brokerCand.host,
      hosts: ['localhost', '127.0.0.1'],
      requireClientCert: true,
      ...brokerCand.tls,
    };
  }
  // No service password given: a random one per start. The embedded broker's service
  // clients learn it in process; with an external broker it must be configured.
  const service = candidate.service as Record<string, unknown>;
  if (isObj(service) && service.password === '') service.password = randomBytes(24).toString('base64url');

  const errors: string[] = [];
  if (!validateBase(candidate)) errors.push(formatErrors(validateBase.errors));
  for (const name of ['broker', 'store'] as const) {
    const v = candidate[name];
    const tag = isObj(v) ? String(v[name === 'broker' ? 'mode' : 'kind']) : '';
    const check = (variantValidators[name] as unknown as Record<string, typeof validateBase>)[tag];
    if (check && !check(v)) {
      errors.push(
        formatErrors(check.errors!.map((e) => ({ ...e, instancePath: `/${name}${e.instancePath}` }))),
      );
    }
  }
  if (isObj(pay) && isObj(pay.provider) && isObj(pay.providers)) {
    const name = String(pay.provider.name);
    if (!isObj(pay.providers[name]))
      errors.push(
        `/payments/provider/name "${name}" is not under payments.providers (its notifications need a key there)`,
      );
  }
  // [ALERT-CONFIG-1] the API refuses an empty temperature band; so does the file.
  const at = isObj(candidate.alerts) && isObj(candidate.alerts.thresholds) ? candidate.alerts.thresholds : {};
  if (typeof at.tempMinC === 'number' && typeof at.tempMaxC === 'number' && at.tempMinC >= at.tempMaxC)
    errors.push(`/alerts/thresholds/tempMinC (${at.tempMinC}) must be below tempMaxC (${at.tempMaxC})`);
  const ids = new Set<string>();
  if (Array.isArray(candidate.gateways)) {
    (candidate.gateways as { id?: unknown }[]).forEach((g, n) => {
      if (typeof g?.id !== 'string') return;
      if (ids.has(g.id)) errors.push(`/gateways/${n}/id "${g.id}" is listed twice`);
      ids.add(g.id);
    });
  }
  if (errors.length) throw bad(errors.join('; '));

  const cfg = candidate as unknown as CloudConfig;
  return {
    ...cfg,
    dataDir: abs(cfg.dataDir),
    store:
      cfg.store.kind === 'pglite'
        ? {
            kind: 'pglite',
            dir: abs(cfg.store.dir ?? `${dataDir}/pglite`),
            ...(cfg.store.worker !== undefined ? { worker: cfg.store.worker } : {}),
          }
        : cfg.store,
    signing: { privateKeyFile: abs(cfg.signing.privateKeyFile) },
    fleet: { ...cfg.fleet, caDir: abs(cfg.fleet.caDir) },
  };
}
