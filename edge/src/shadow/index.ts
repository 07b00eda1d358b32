import {
  type CommandEnvelope,
  type DeviceCommand,
  type DeviceResult,
  deviceCommandTopic,
  fleet,
  newId,
  parseJsonPayload,
  type StorelinkError,
  type UnsequencedEvent,
  validateDeviceResult,
} from '@storelink/protocols';
import type { Logger } from 'pino';
import { refuseCommand } from '../commands/index.ts';
import { edgeError } from '../errors.ts';
import type { Done } from '../ingest/event.ts';
import type { KvStore } from '../outbox/types.ts';

type ShadowDoc = fleet.ShadowDoc;

/** A gateway configuration key the gateway shadow may set (all-or-nothing per version). */
export interface GatewayShadowKey {
  get(): unknown;
  /** Why the value is unacceptable, or null. */
  check(value: unknown): string | null;
  set(value: unknown): void;
}

export interface ShadowAgentDeps {
  site: string;
  gateway: string;
  now: () => number;
  kv: KvStore;
  logger: Logger;
  /** Appends an edge event (shadow.reported) to the outbox. */
  append: (ev: UnsequencedEvent) => Promise<void>;
  /** Publishes QoS1 to a device through the local broker. */
  publishToDevice: (topic: string, json: string) => Promise<void>;
  knownDevice: (id: string) => boolean;
  /** Whether the device is connected to the local broker now. */
  deviceOnline: (id: string) => boolean;
  /** Wait after a device connects before sending it a deferred shadow (it subscribes first). */
  settleMs?: number;
  gatewayKeys: Record<string, GatewayShadowKey>;
  /** How long a device gets to answer `device.config`. */
  deviceTimeoutMs: number;
  /** How long a device gets to download, check and boot an image. */
  firmwareTimeoutMs?: number;
  /** A malformed device result: counted and told to the device (as the command router does). */
  onBadResult?: (device: string, topic: string, error: StorelinkError) => void;
  /** Counts each handled version (storelink_edge_shadow_applies_total). */
  count?: (
    target: 'gateway' | 'device',
    status: 'applied' | 'failed' | 'deferred' | 'stale' | 'refused',
  ) => void;
}

/** What the edge keeps per shadow target (kv `shadow!gateway`, `shadow!device!{id}`). */
export interface EdgeShadowState {
  /** Highest version applied completely (0: none). */
  appliedVersion: number;
  /** Highest version attempted, applied or not [SHADOW-VERSION-1]. */
  seenVersion: number;
  reported: ShadowDoc;
  /** A version that arrived while the device was offline, applied when it connects [SHADOW-DEVICE-2]. */
  pending?: { version: number; desired: ShadowDoc; commandId: string };
}

const KEY_GATEWAY = 'shadow!gateway';
const keyOf = (device: string | undefined) => (device ? `shadow!device!${device}` : KEY_GATEWAY);
const EMPTY: EdgeShadowState = { appliedVersion: 0, seenVersion: 0, reported: {} };

interface Awaiting {
  device: string;
  resolve: (r: DeviceResult | { status: 'timeout' }) => void;
}

class ApplyFailure extends Error {
  constructor(
    readonly deviceCode: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Applies desired shadows on the edge (docs/fleet-shadows-rollouts.md). It is the
 * executor of the signed `shadow.delta` command, so signature, expiry and run-once come
 * from the command router [CMD-SIG-1][CMD-EXP-1][CMD-ONCE-1]; this adds the version rule
 * [SHADOW-VERSION-1] and the translation of a device's delta into the device's own
 * commands (`device.config`, `firmware.update`) on `dev/{id}/cmd/...` [SHADOW-DEVICE-1].
 */
export class ShadowAgent {
  private readonly chains = new Map<string, Promise<unknown>>();
  private readonly awaiting = new Map<string, Awaiting>();
  private readonly settleTimers = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(private readonly d: ShadowAgentDeps) {}

  /** The `shadow.delta` executor (register with CommandRouter.registerExecutor). */
  readonly execute = (cmd: CommandEnvelope): Promise<unknown> => {
    const r = fleet.validateShadowDelta.check(cmd.payload);
    if (!r.ok) return Promise.reject(refuseCommand(r.error));
    const delta = r.value;
    return this.tally(
      delta.device,
      this.serial(keyOf(delta.device), () => this.applyVersion(cmd.id, delta)),
    );
  };

  private tally<T>(device: string | undefined, p: Promise<T>): Promise<T> {
    const target = device ? 'device' : 'gateway';
    return p.then(
      (r) => {
        if (r === null) return r;
        const deferred = (r as { deferred?: boolean } | undefined)?.deferred === true;
        this.d.count?.(target, deferred ? 'deferred' : 'applied');
        return r;
      },
      (e: unknown) => {
        const code = (e as { code?: string }).code;
        this.d.count?.(
          target,
          code === 'EDGE_ERR_SHADOW_STALE'
            ? 'stale'
            : code === 'EDGE_ERR_SHADOW_APPLY'
              ? 'failed'
              : 'refused',
        );
        throw e;
      },
    );
  }

  /** One apply at a time per target: two versions arriving together are judged in order. */
  private serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(key) ?? Promise.resolve();
    const run = prev.catch(() => undefined).then(fn);
    this.chains.set(key, run);
    return run.finally(() => {
      if (this.chains.get(key) === run) this.chains.delete(key);
    });
  }

  /**
   * A device connected: a version deferred while it was offline is applied now
   * [SHADOW-DEVICE-2], after `settleMs` so the device has subscribed to its commands.
   */
  deviceOnline(device: string): void {
    if (this.closed) return;
    const t = setTimeout(() => {
      this.settleTimers.delete(t);
      const run = this.serial(keyOf(device), async () => {
        const st = await this.state(device);
        const p = st.pending;
        // null: nothing was waiting (not counted).
        if (!p || p.version <= st.appliedVersion || this.closed || !this.d.deviceOnline(device)) return null;
        const target = `device ${device}`;
        return this.applyDevice(
          p.commandId,
          { device, version: p.version, desired: p.desired },
          device,
          st,
          target,
        );
      });
      void this.tally(device, run).catch((e: unknown) => {
        this.d.logger.warn({ device, err: (e as Error).message }, 'deferred shadow not applied');
      });
    }, this.d.settleMs ?? 500);
    t.unref?.();
    this.settleTimers.add(t);
  }

  /** The stored state of one shadow target. */
  async state(device?: string): Promise<EdgeShadowState> {
    const raw = await this.d.kv.get(keyOf(device));
    return raw ? (JSON.parse(raw) as EdgeShadowState) : { ...EMPTY, reported: {} };
  }

  /**
   * A `dev/{id}/res/{commandId}` for a command this agent sent; false when it is not
   * ours (the command router's then).
   */
  deviceResult(deviceId: string, commandId: string, raw: Buffer, done: Done): boolean {
    const w = this.awaiting.get(commandId);
    if (!w || w.device !== deviceId) return false;
    const parsed = parseJsonPayload(raw, 64 * 1024);
    const r = parsed.ok ? validateDeviceResult.check(parsed.value, 'device result') : parsed;
    if (!r.ok) this.d.onBadResult?.(deviceId, `dev/${deviceId}/res/${commandId}`, r.error);
    w.resolve(
      r.ok ? r.value : { status: 'error', code: 'BAD_RESULT', message: r.error.message.slice(0, 1024) },
    );
    done();
    return true;
  }

  private async applyVersion(commandId: string, delta: fleet.ShadowDelta): Promise<unknown> {
    const target = delta.device ? `device ${delta.device}` : `gateway ${this.d.gateway}`;
    const st = await this.state(delta.device);
    // [SHADOW-VERSION-1] an older copy (a redelivered or reordered command) never
    // undoes a newer one; the same version may be retried only if it did not apply.
    if (delta.version < st.seenVersion || delta.version <= st.appliedVersion) {
      throw refuseCommand(
        edgeError('EDGE_ERR_SHADOW_STALE', {
          version: delta.version,
          target,
          applied: Math.max(st.appliedVersion, st.seenVersion),
        }),
      );
    }
    if (delta.device && !this.d.knownDevice(delta.device)) {
      throw refuseCommand(
        edgeError('EDGE_ERR_SHADOW_KEY', { target, reason: 'the device is not configured on this gateway' }),
      );
    }
    return delta.device
      ? this.applyDevice(commandId, delta, delta.device, st, target)
      : this.applyGateway(commandId, delta, target);
  }

  // ---------- gateway ----------

  private async applyGateway(commandId: string, delta: fleet.ShadowDelta, target: string): Promise<unknown> {
    const keys = this.d.gatewayKeys;
    const reportedNow = this.gatewayReported();
    const changed = fleet.shadowDelta(delta.desired, reportedNow);
    // All or nothing, checked before anything is set (as device.config on devices).
    for (const k of changed) {
      const key = Object.hasOwn(keys, k) ? keys[k] : undefined;
      const why = key
        ? key.check(delta.desired[k])
        : `no gateway key '${k}' (known: ${Object.keys(keys).join(', ')})`;
      if (why) throw refuseCommand(edgeError('EDGE_ERR_SHADOW_KEY', { target, reason: `${k}: ${why}` }));
    }
    const previous: ShadowDoc = {};
    for (const k of changed) {
      previous[k] = keys[k]!.get();
      keys[k]!.set(delta.desired[k]);
    }
    const reported = this.gatewayReported();
    await this.save(undefined, { appliedVersion: delta.version, seenVersion: delta.version, reported });
    await this.report({
      version: delta.version,
      status: 'applied',
      reported,
      previous,
      applied: changed,
      commandId,
    });
    this.d.logger.info({ version: delta.version, applied: changed }, `${target} shadow applied`);
    return { version: delta.version, applied: changed };
  }

  private gatewayReported(): ShadowDoc {
    const out: ShadowDoc = {};
    for (const [k, key] of Object.entries(this.d.gatewayKeys)) out[k] = key.get();
    return out;
  }

  // ---------- device ----------

  private async applyDevice(
    commandId: string,
    delta: fleet.ShadowDelta,
    device: string,
    st: EdgeShadowState,
    target: string,
  ): Promise<unknown> {
    if (!this.d.deviceOnline(device)) return this.defer(commandId, delta, device, st);
    const changed = fleet.shadowDelta(delta.desired, st.reported);
    const configKeys = changed.filter((k) => k !== fleet.FIRMWARE_KEY);
    let image: fleet.FirmwareImage | undefined;
    if (changed.includes(fleet.FIRMWARE_KEY)) {
      const r = fleet.validateFirmwareImage.check(delta.desired[fleet.FIRMWARE_KEY]);
      if (!r.ok) throw refuseCommand(edgeError('EDGE_ERR_SHADOW_KEY', { target, reason: r.error.message }));
      image = r.value;
    }
    const reported: ShadowDoc = { ...st.reported };
    const previous: ShadowDoc = {};
    const applied: string[] = [];
    try {
      if (configKeys.length > 0) {
        const config = Object.fromEntries(configKeys.map((k) => [k, delta.desired[k]]));
        const res = await this.ask(device, 'device.config', { config }, this.d.deviceTimeoutMs);
        const ok = fleet.validateDeviceConfigResult.check(res);
        if (!ok.ok) throw new ApplyFailure('BAD_RESULT', ok.error.message);
        for (const k of configKeys) {
          previous[k] = ok.value.previous?.[k] ?? st.reported[k] ?? null;
          reported[k] = k in ok.value.applied ? ok.value.applied[k] : delta.desired[k];
          applied.push(k);
        }
      }
      if (image) await this.updateFirmware(device, image, reported, previous, applied);
    } catch (e) {
      const failure =
        e instanceof ApplyFailure ? e : new ApplyFailure('EDGE_FAULT', String((e as Error).message));
      // The device left while we waited: not its failure, wait for it to come back.
      if (failure.deviceCode === 'TIMEOUT' && (this.closed || !this.d.deviceOnline(device)))
        return this.defer(commandId, delta, device, { ...st, reported });
      await this.save(device, { appliedVersion: st.appliedVersion, seenVersion: delta.version, reported });
      await this.report({
        device,
        version: delta.version,
        status: 'failed',
        reported,
        previous,
        applied,
        commandId,
        code: failure.deviceCode.slice(0, 64),
        message: failure.message.slice(0, 1024),
      });
      this.d.logger.warn(
        { device, version: delta.version, code: failure.deviceCode },
        `${target} shadow failed: ${failure.message}`,
      );
      throw edgeError('EDGE_ERR_SHADOW_APPLY', {
        version: delta.version,
        target,
        reason: `${failure.deviceCode}: ${failure.message}`,
      });
    }
    await this.save(device, { appliedVersion: delta.version, seenVersion: delta.version, reported });
    await this.report({
      device,
      version: delta.version,
      status: 'applied',
      reported,
      previous,
      applied,
      commandId,
    });
    this.d.logger.info({ device, version: delta.version, applied }, `${target} shadow applied`);
    return { version: delta.version, applied };
  }

  /** Keeps the version for the device's next connection; the cloud's shadow stays pending. */
  private async defer(
    commandId: string,
    delta: fleet.ShadowDelta,
    device: string,
    st: EdgeShadowState,
  ): Promise<unknown> {
    await this.save(device, {
      appliedVersion: st.appliedVersion,
      seenVersion: delta.version,
      reported: st.reported,
      pending: { version: delta.version, desired: delta.desired, commandId },
    });
    this.d.logger.info({ device, version: delta.version }, `device ${device} offline: shadow deferred`);
    return { version: delta.version, deferred: true };
  }

  private async updateFirmware(
    device: string,
    image: fleet.FirmwareImage,
    reported: ShadowDoc,
    previous: ShadowDoc,
    applied: string[],
  ): Promise<void> {
    const before = reported[fleet.FIRMWARE_KEY];
    try {
      const res = await this.ask(device, fleet.FIRMWARE_UPDATE, image, this.d.firmwareTimeoutMs ?? 120_000);
      const ok = fleet.validateFirmwareResult.check(res);
      if (!ok.ok) throw new ApplyFailure('BAD_RESULT', ok.error.message);
      previous[fleet.FIRMWARE_KEY] =
        ok.value.previousVersion !== undefined ? { version: ok.value.previousVersion } : (before ?? null);
      reported[fleet.FIRMWARE_KEY] = { version: ok.value.version };
      applied.push(fleet.FIRMWARE_KEY);
    } catch (e) {
      // A device that reverted tells which version it runs now: reported stays true.
      const r = e instanceof DeviceRefusal ? fleet.validateFirmwareResult.check(e.result) : undefined;
      if (r?.ok) reported[fleet.FIRMWARE_KEY] = { version: r.value.version };
      throw e;
    }
  }

  /** Sends one device command and waits for its result (or the timeout). */
  private ask(device: string, type: string, payload: unknown, timeoutMs: number): Promise<unknown> {
    const now = this.d.now();
    const id = newId(now);
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => finish({ status: 'timeout' }), timeoutMs);
      timer.unref?.();
      const finish = (r: DeviceResult | { status: 'timeout' }) => {
        if (!this.awaiting.delete(id)) return;
        clearTimeout(timer);
        if (r.status === 'ok') resolve((r as DeviceResult).result);
        else if (r.status === 'timeout')
          reject(
            new ApplyFailure('TIMEOUT', `device ${device} did not answer ${type} within ${timeoutMs} ms`),
          );
        else {
          const dr = r as DeviceResult;
          reject(
            new DeviceRefusal(dr.code ?? 'ERROR', `${type}: ${dr.message ?? 'device error'}`, dr.result),
          );
        }
      };
      this.awaiting.set(id, { device, resolve: finish });
      const cmd: DeviceCommand = { id, expiresAt: now + timeoutMs, payload };
      this.d.publishToDevice(deviceCommandTopic(device, type), JSON.stringify(cmd)).catch((e: unknown) => {
        finish({ status: 'error', code: 'UNDELIVERED', message: (e as Error).message });
      });
    });
  }

  // ---------- persistence and reports ----------

  private async save(device: string | undefined, st: EdgeShadowState): Promise<void> {
    await this.d.kv.put(keyOf(device), JSON.stringify(st), { sync: true });
  }

  private async report(p: fleet.ShadowReported): Promise<void> {
    const now = this.d.now();
    const device = p.device ?? this.d.gateway;
    await this.d.append({
      id: newId(now),
      type: fleet.SHADOW_REPORTED,
      device,
      gateway: this.d.gateway,
      site: this.d.site,
      ts: now,
      rts: now,
      lane: 'event',
      payload: p,
    });
  }

  /** Pending device answers are abandoned (their commands are reported interrupted on restart). */
  close(): void {
    this.closed = true;
    for (const t of this.settleTimers) clearTimeout(t);
    this.settleTimers.clear();
    for (const w of [...this.awaiting.values()]) w.resolve({ status: 'timeout' });
  }
}

class DeviceRefusal extends ApplyFailure {
  constructor(
    code: string,
    message: string,
    readonly result: unknown,
  ) {
    super(code, message);
  }
}
