import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  compile,
  DeviceConfigPayload,
  type DeviceResult,
  deviceCommandTopic,
  deviceErrorTopic,
  deviceEventTopic,
  deviceResultTopic,
  deviceStateTopic,
  deviceSubtreeFilter,
  LIMITS,
  PingPayload,
  parseDeviceTopic,
  parseJsonPayload,
  validateDeviceCommand,
} from '@storelink/protocols';
import mqtt, { type MqttClient } from 'mqtt';
import { type FirmwareFault, FirmwareSlot } from './firmware.ts';
import { mulberry32, type Rng, seedFrom } from './rng.ts';

/**
 * A simulated device. It is a device, not a code path: it connects to the edge agent's
 * local broker over MQTT with its own credentials (username = device id), publishes its
 * events QoS1 on `dev/{id}/evt/{type}`, listens on `dev/{id}/cmd/#` and `dev/{id}/err`,
 * and answers commands on `dev/{id}/res/{commandId}` — the same bytes real firmware
 * sends, so the real edge ingest path is what gets tested (DESIGN §2).
 *
 * Result codes sent on `res/` are the device's own (as docs/protocol.md shows:
 * `UNKNOWN_KEY`), not storelink catalogue codes; the edge wraps them in its
 * `command.result` with status `error`.
 */

/** Codes this firmware puts in a `DeviceResult` with status `error`. */
export const DEVICE_RESULT_CODES = {
  /** The command's `expiresAt` has passed when it arrived; it was not executed. */
  EXPIRED: 'EXPIRED',
  /** The command body does not match `DeviceCommand` or the type's payload schema. */
  BAD_COMMAND: 'BAD_COMMAND',
  /** The device does not implement this command type. */
  UNKNOWN_COMMAND: 'UNKNOWN_COMMAND',
  /** `device.config` named a key the device does not have. */
  UNKNOWN_KEY: 'UNKNOWN_KEY',
  /** `device.config` gave a key a value out of range or of the wrong type. */
  BAD_VALUE: 'BAD_VALUE',
  /** The handler failed while executing. */
  DEVICE_FAULT: 'DEVICE_FAULT',
} as const;

export type Metrics = Record<string, number | boolean | string>;

export interface SimDeviceOptions {
  id: string;
  password?: string;
  /** `mqtt://host:port` of the edge agent's local broker. */
  brokerUrl: string;
  /** Telemetry period in wall-clock milliseconds (`device.config` key `intervalMs`). */
  intervalMs?: number;
  /** Device clock: payload `ts`, command expiry and the simulated physics use it. */
  now?: () => number;
  /** Seed for the device's behaviour; defaults to a hash of the id (stable per device). */
  seed?: number;
  /** A PRNG to use instead of mulberry32(seed). */
  rng?: Rng;
  /** Unique per process start; part of every message id so ids never repeat across restarts. */
  bootId?: string;
  keepaliveS?: number;
  reconnectPeriodMs?: number;
  connectTimeoutMs?: number;
  /**
   * Largest number of unacknowledged QoS1 publishes the device keeps, like the small
   * buffer of real firmware. When it is full, telemetry samples are skipped (counted in
   * `dropped`); alarms and command results are always kept.
   */
  maxInflight?: number;
  /** Publish a retained state document on `dev/{id}/state` at each connect (default true). */
  publishState?: boolean;
  /** Start the periodic telemetry timer (default true; tests may drive `tick()` by hand). */
  autoTick?: boolean;
  /** Firmware version running at start (default 1.0.0); `firmware.update` changes it. */
  firmwareVersion?: string;
  /** A fault every firmware update hits (rollout tests). */
  firmwareFault?: FirmwareFault | null;
}

export interface SimDeviceStats {
  id: string;
  kind: string;
  connected: boolean;
  /** Successful CONNACKs, including reconnects. */
  connects: number;
  /** Connection attempts refused or failed (bad credentials, broker gone). */
  connectErrors: number;
  /** QoS1 publishes handed to the client (events, results, state). */
  published: number;
  /** Publishes the broker PUBACKed. */
  acked: number;
  /** Publishes the client gave up on (only on a forced stop). */
  publishErrors: number;
  /** Unacknowledged publishes right now. */
  inflight: number;
  /** Telemetry samples skipped because the in-flight buffer was full. */
  dropped: number;
  /** Coded errors the edge sent on `dev/{id}/err`. */
  errorsReceived: number;
  /** Commands answered with status ok. */
  commandsHandled: number;
  /** Commands answered with status error (expired, unknown, bad payload, failed). */
  commandsFailed: number;
  /** Commands that could not be answered at all (no usable id). */
  badCommands: number;
  lastError?: { code?: string; message?: string; topic?: string };
}

/** A config key the device accepts through `device.config`. */
export interface ConfigKey {
  get(): unknown;
  /** Returns why the value is unacceptable, or null when it is fine. */
  check(value: unknown): string | null;
  set(value: unknown): void;
}

export type CommandHandler = (
  payload: unknown,
  cmd: { id: string; expiresAt: number },
) => DeviceResult | Promise<DeviceResult>;

const ULID_RE = /^[0-9A-HJKMNP-TV-Z]{26}$/;
const RECENT_RESULTS = 64;
const validateConfigPayload = compile(DeviceConfigPayload, 'device.config payload');
const validatePingPayload = compile(PingPayload, 'ping payload');

export function intRange(min: number, max: number) {
  return (v: unknown) =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max
      ? null
      : `must be an integer from ${min} to ${max}`;
}

export function numRange(min: number, max: number) {
  return (v: unknown) =>
    typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max
      ? null
      : `must be a number from ${min} to ${max}`;
}

/** Boot id: wall clock (base 36) plus random bytes, so a restarted sim never reuses ids. */
export function newBootId(): string {
  return `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
}

/** Keeps a caller-given boot/run id inside the payload `id` alphabet `[A-Za-z0-9_.:-]`. */
export function midSafe(text: string): string {
  return text.replace(/[^A-Za-z0-9_.:-]/g, '_').slice(0, 14) || '0';
}

export abstract class SimDevice extends EventEmitter {
  abstract readonly kind: string;
  readonly id: string;
  readonly bootId: string;
  protected readonly now: () => number;
  protected readonly rng: Rng;
  protected intervalMs: number;
  protected readonly opts: SimDeviceOptions;
  /** The firmware slot (`firmware.update`, docs/fleet-shadows-rollouts.md). */
  readonly firmware: FirmwareSlot;
  private client: MqttClient | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private counter = 0;
  private readonly midPrefix: string;
  private readonly handlers = new Map<string, CommandHandler>();
  private readonly recentResults = new Map<string, DeviceResult>();
  private readonly alarms = new Map<string, boolean>();
  private readonly maxInflight: number;
  private subscribed = false;
  private readyWaiters: Array<() => void> = [];
  private readonly s: Omit<SimDeviceStats, 'id' | 'kind' | 'connected'> = {
    connects: 0,
    connectErrors: 0,
    published: 0,
    acked: 0,
    publishErrors: 0,
    inflight: 0,
    dropped: 0,
    errorsReceived: 0,
    commandsHandled: 0,
    commandsFailed: 0,
    badCommands: 0,
  };

  constructor(opts: SimDeviceOptions) {
    super();
    this.opts = opts;
    this.id = opts.id;
    this.now = opts.now ?? Date.now;
    this.rng = opts.rng ?? mulberry32(opts.seed ?? seedFrom(opts.id));
    this.intervalMs = opts.intervalMs ?? 5000;
    this.bootId = midSafe(opts.bootId ?? newBootId());
    this.maxInflight = opts.maxInflight ?? 16;
    // `{device}-{boot}-{counter}` within the 64 characters the payload `id` allows
    // [INGEST-DEDUPE-1]; the edge keys dedupe by (device, id), so a shortened device
    // prefix on very long ids is still unique.
    this.midPrefix = `${opts.id.slice(0, 36)}-${this.bootId.slice(0, 14)}-`;
    this.handlers.set('ping', (p) => this.onPing(p));
    this.handlers.set('device.config', (p) => this.onConfig(p));
    this.firmware = new FirmwareSlot({
      ...(opts.firmwareVersion !== undefined ? { version: opts.firmwareVersion } : {}),
      fault: opts.firmwareFault ?? null,
    });
    this.handlers.set('firmware.update', async (p) => {
      const r = await this.firmware.update(p);
      if (r.status === 'ok' && this.opts.publishState !== false) this.publishStateDoc();
      return r;
    });
  }

  // ---------- to be provided by each kind ----------

  /** Advances the simulated physics to `now` (called before each sample). */
  protected abstract advance(now: number): void;
  /** The telemetry metrics of the current state. */
  protected abstract metrics(): Metrics;
  /** Config keys beyond `intervalMs`. */
  protected extraConfigKeys(): Record<string, ConfigKey> {
    return {};
  }

  // ---------- lifecycle ----------

  /** Connects (and keeps reconnecting) and starts the telemetry timer. */
  start(): this {
    if (this.client) return this;
    const client = mqtt.connect(this.opts.brokerUrl, {
      clientId: this.id,
      username: this.id,
      password: this.opts.password,
      clean: true,
      keepalive: this.opts.keepaliveS ?? 30,
      reconnectPeriod: this.opts.reconnectPeriodMs ?? 1000,
      connectTimeout: this.opts.connectTimeoutMs ?? 5000,
      // Clean session: the broker forgets subscriptions, so we subscribe again on each
      // connect ourselves (below) and know when we are ready.
      resubscribe: false,
      // A refused CONNECT (wrong password, edge not yet configured) is retried like any
      // other failure: firmware in the field cannot wait for someone to restart it.
      reconnectOnConnackError: true,
    });
    this.client = client;
    client.on('connect', () => this.onConnect());
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
    client.on('close', () => {
      this.subscribed = false;
    });
    client.on('offline', () => this.emit('offline'));
    // A refused CONNECT (bad password) or a broken socket: count it and keep retrying,
    // like firmware does; an 'error' with no listener would crash the process.
    client.on('error', (err) => {
      this.s.connectErrors++;
      this.emit('connectError', err);
    });
    if (this.opts.autoTick !== false) this.schedule();
    return this;
  }

  /** Resolves once connected and subscribed to its command and error topics. */
  ready(timeoutMs = 10_000): Promise<void> {
    if (this.subscribed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`device ${this.id} not connected within ${timeoutMs} ms`)),
        timeoutMs,
      );
      t.unref();
      this.readyWaiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  get connected(): boolean {
    return this.client?.connected === true;
  }

  /**
   * Stops the timer and disconnects. Without `force` it first waits (up to
   * `drainTimeoutMs`) for outstanding PUBACKs and sends DISCONNECT.
   */
  async stop(opts: { force?: boolean; drainTimeoutMs?: number } = {}): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const client = this.client;
    if (!client) return;
    if (!opts.force && client.connected) {
      const deadline = Date.now() + (opts.drainTimeoutMs ?? 2000);
      while (this.s.inflight > 0 && client.connected && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 10).unref());
      }
    }
    const force = opts.force === true || !client.connected;
    await Promise.race([
      client.endAsync(force).catch(() => undefined),
      new Promise((r) => setTimeout(r, 2000).unref()),
    ]);
    if (!client.disconnected) client.end(true);
    this.emit('stopped');
  }

  // ---------- telemetry ----------

  private schedule(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      try {
        this.tick();
      } catch (e) {
        this.emit('tickError', e);
      }
      this.schedule();
    }, this.intervalMs);
    this.timer.unref();
  }

  /** Advances the simulation to now and publishes one telemetry sample. */
  tick(): string | null {
    this.advance(this.now());
    return this.publishTelemetry();
  }

  /** Publishes the current metrics (skipped and counted when the in-flight buffer is full). */
  publishTelemetry(): string | null {
    if (this.s.inflight >= this.maxInflight) {
      this.s.dropped++;
      return null;
    }
    return this.publishEvent('telemetry', { metrics: this.metrics() });
  }

  /**
   * Publishes an event QoS1 with a fresh message id and the device clock in `ts`.
   * Returns the message id.
   */
  publishEvent(type: string, body: Record<string, unknown>): string {
    const mid = `${this.midPrefix}${++this.counter}`;
    const payload = { id: mid, ts: Math.round(this.now()), ...body };
    this.publishQos1(deviceEventTopic(this.id, type), payload);
    this.emit('published', type, payload);
    return mid;
  }

  private publishQos1(topic: string, payload: unknown, retain = false): void {
    const client = this.client;
    if (!client || this.stopped) return;
    this.s.published++;
    this.s.inflight++;
    // MQTT.js keeps QoS1 publishes in its outgoing store until PUBACK and resends them
    // after a reconnect; the callback fires on PUBACK (or on a forced end).
    client.publish(topic, JSON.stringify(payload), { qos: 1, retain }, (err) => {
      this.s.inflight--;
      if (err) this.s.publishErrors++;
      else this.s.acked++;
    });
  }

  // ---------- alarms ----------

  /** Raises or clears an alarm; publishes `device.alarm` only when the state changes. */
  protected setAlarm(
    code: string,
    active: boolean,
    severity: 'info' | 'warning' | 'critical',
    message?: string,
  ): void {
    if ((this.alarms.get(code) ?? false) === active) return;
    this.alarms.set(code, active);
    const body: Record<string, unknown> = { code, severity, active };
    if (message !== undefined) body.message = message.slice(0, 512);
    this.publishEvent('device.alarm', body);
    this.emit('alarm', code, active);
  }

  /** Codes of the alarms currently raised. */
  activeAlarms(): string[] {
    return [...this.alarms].filter(([, a]) => a).map(([c]) => c);
  }

  // ---------- connection and messages ----------

  private onConnect(): void {
    this.s.connects++;
    const client = this.client;
    if (!client) return;
    client.subscribe(
      [deviceCommandTopic(this.id, '#'), deviceErrorTopic(this.id)],
      { qos: 1 },
      (err, granted) => {
        if (err) {
          this.emit('subscribeError', err);
          return;
        }
        // SUBACK 0x80 means the edge refused the filter (ACL): not ready.
        if (granted?.some((g) => g.qos === 128)) {
          this.emit('subscribeError', new Error(`subscription refused: ${JSON.stringify(granted)}`));
          return;
        }
        this.subscribed = true;
        for (const w of this.readyWaiters.splice(0)) w();
        this.emit('ready');
      },
    );
    if (this.opts.publishState !== false) this.publishStateDoc();
    this.emit('connect');
  }

  /** Retained state document on `dev/{id}/state` (not forwarded by the edge). */
  protected publishStateDoc(): void {
    this.publishQos1(
      deviceStateTopic(this.id),
      {
        kind: this.kind,
        bootId: this.bootId,
        firmware: this.firmware.version,
        config: this.config(),
        ts: Math.round(this.now()),
      },
      true,
    );
  }

  private onMessage(topic: string, payload: Buffer): void {
    // A device never crashes on what it receives [DESIGN §4 "bad input"].
    try {
      const t = parseDeviceTopic(topic);
      if (!t || t.deviceId !== this.id) return;
      if (t.kind === 'err') this.onEdgeError(topic, payload);
      else if (t.kind === 'cmd') this.onCommand(t.type, payload);
    } catch (e) {
      this.s.badCommands++;
      this.emit('messageError', e);
    }
  }

  private onEdgeError(topic: string, payload: Buffer): void {
    this.s.errorsReceived++;
    const parsed = parseJsonPayload(payload, LIMITS.devicePayloadBytes);
    const v = parsed.ok && parsed.value && typeof parsed.value === 'object' ? parsed.value : {};
    const e = v as { code?: unknown; message?: unknown; topic?: unknown };
    this.s.lastError = {
      code: typeof e.code === 'string' ? e.code : undefined,
      message: typeof e.message === 'string' ? e.message : undefined,
      topic: typeof e.topic === 'string' ? e.topic : topic,
    };
    this.emit('edgeError', this.s.lastError);
  }

  private onCommand(type: string, payload: Buffer): void {
    const parsed = parseJsonPayload(payload, LIMITS.devicePayloadBytes);
    const raw = parsed.ok ? parsed.value : undefined;
    const rawId = (raw as { id?: unknown } | undefined)?.id;
    const answerable = typeof rawId === 'string' && ULID_RE.test(rawId);
    if (!parsed.ok) {
      this.s.badCommands++;
      this.emit('badCommand', type, parsed.error.message);
      return;
    }
    const checked = validateDeviceCommand.check(parsed.value);
    if (!checked.ok) {
      if (!answerable) {
        // No usable id: nothing to answer on; the edge times the command out.
        this.s.badCommands++;
        this.emit('badCommand', type, checked.error.message);
        return;
      }
      this.answer(type, rawId, {
        status: 'error',
        code: DEVICE_RESULT_CODES.BAD_COMMAND,
        message: checked.error.message,
      });
      return;
    }
    const cmd = checked.value;
    // A QoS1 redelivery of a command already answered gets the same answer and is not
    // executed twice (the edge dedupes too [CMD-ONCE-1]; firmware should not rely on it).
    const previous = this.recentResults.get(cmd.id);
    if (previous) {
      this.publishQos1(deviceResultTopic(this.id, cmd.id), previous);
      return;
    }
    const now = this.now();
    if (cmd.expiresAt <= now) {
      // [CMD-EXP-1] the edge should not forward an expired command; if one arrives
      // late anyway the device refuses it rather than acting on stale intent.
      this.answer(type, cmd.id, {
        status: 'error',
        code: DEVICE_RESULT_CODES.EXPIRED,
        message: `command ${cmd.id} expired at ${cmd.expiresAt} (device time ${Math.round(now)})`,
      });
      return;
    }
    const handler = this.handlers.get(type);
    if (!handler) {
      this.answer(type, cmd.id, {
        status: 'error',
        code: DEVICE_RESULT_CODES.UNKNOWN_COMMAND,
        message: `this ${this.kind} does not implement command '${type}'`.slice(0, 1024),
      });
      return;
    }
    const fault = (e: unknown): DeviceResult => ({
      status: 'error',
      code: DEVICE_RESULT_CODES.DEVICE_FAULT,
      message: String((e as Error)?.message ?? e).slice(0, 1024),
    });
    let result: DeviceResult | Promise<DeviceResult>;
    try {
      result = handler(cmd.payload, cmd);
    } catch (e) {
      result = fault(e);
    }
    // Long handlers (firmware download and reboot) answer when they finish.
    if (result instanceof Promise)
      void result.then(
        (r) => this.answer(type, cmd.id, r),
        (e) => this.answer(type, cmd.id, fault(e)),
      );
    else this.answer(type, cmd.id, result);
  }

  private answer(type: string, commandId: string, result: DeviceResult): void {
    if (result.status === 'ok') this.s.commandsHandled++;
    else this.s.commandsFailed++;
    this.recentResults.set(commandId, result);
    if (this.recentResults.size > RECENT_RESULTS) {
      const oldest = this.recentResults.keys().next().value;
      if (oldest !== undefined) this.recentResults.delete(oldest);
    }
    this.publishQos1(deviceResultTopic(this.id, commandId), result);
    this.emit('command', type, commandId, result);
  }

  /** Registers (or replaces) the handler of a command type. */
  protected handle(type: string, handler: CommandHandler): void {
    this.handlers.set(type, handler);
  }

  // ---------- built-in commands ----------

  private onPing(payload: unknown): DeviceResult {
    const r = validatePingPayload.check(payload);
    if (!r.ok) return { status: 'error', code: DEVICE_RESULT_CODES.BAD_COMMAND, message: r.error.message };
    const result: Record<string, unknown> = { bootId: this.bootId, ts: Math.round(this.now()) };
    if (r.value.echo !== undefined) result.echo = r.value.echo;
    return { status: 'ok', result };
  }

  private configKeys(): Record<string, ConfigKey> {
    return {
      intervalMs: {
        get: () => this.intervalMs,
        check: intRange(10, 86_400_000),
        set: (v) => {
          this.intervalMs = v as number;
          // The new period starts now, not after the old (maybe long) one runs out.
          if (this.timer) this.schedule();
        },
      },
      ...this.extraConfigKeys(),
    };
  }

  /** The device's current configuration. */
  config(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [k, key] of Object.entries(this.configKeys())) out[k] = key.get();
    return out;
  }

  /** Applies `device.config` all-or-nothing: any unknown key or bad value changes nothing. */
  private onConfig(payload: unknown): DeviceResult {
    const r = validateConfigPayload.check(payload);
    if (!r.ok) return { status: 'error', code: DEVICE_RESULT_CODES.BAD_COMMAND, message: r.error.message };
    const keys = this.configKeys();
    const entries = Object.entries(r.value.config);
    for (const [k, v] of entries) {
      const key = Object.hasOwn(keys, k) ? keys[k] : undefined;
      if (!key) {
        return {
          status: 'error',
          code: DEVICE_RESULT_CODES.UNKNOWN_KEY,
          message: `no config key '${k}' (known: ${Object.keys(keys).join(', ')})`.slice(0, 1024),
        };
      }
      const why = key.check(v);
      if (why) {
        return {
          status: 'error',
          code: DEVICE_RESULT_CODES.BAD_VALUE,
          message: `config key '${k}' ${why}`.slice(0, 1024),
        };
      }
    }
    const applied: Record<string, unknown> = {};
    // What each key was, so a fleet rollback can put it back (docs/fleet-shadows-rollouts.md).
    const previous: Record<string, unknown> = {};
    for (const [k, v] of entries) {
      previous[k] = keys[k]!.get();
      keys[k]!.set(v);
      applied[k] = keys[k]!.get();
    }
    if (this.opts.publishState !== false && entries.length > 0) this.publishStateDoc();
    return { status: 'ok', result: { applied, previous } };
  }

  stats(): SimDeviceStats {
    return { id: this.id, kind: this.kind, connected: this.connected, ...this.s };
  }

  /** The MQTT filter a device may touch, for brokers that configure ACLs from the sim spec. */
  get subtree(): string {
    return deviceSubtreeFilter(this.id);
  }
}
