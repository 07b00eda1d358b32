import { appendFileSync } from 'node:fs';
import { deviceEventTopic } from '@storelink/protocols';
import mqtt, { type MqttClient } from 'mqtt';
import { midSafe, newBootId } from './device.ts';

/**
 * QoS1 load generator for torture runs and benchmarks. Each device is one MQTT.js
 * client (own credentials, username = device id) that publishes as fast as allowed
 * while keeping at most `inflight` publishes without PUBACK — the in-flight window of
 * real firmware — and records every PUBACKed message id in the order PUBACKs arrive.
 *
 * When the broker goes away (the torture harness kills the edge agent) the client
 * reconnects every `reconnectPeriodMs` and MQTT.js resends every unacknowledged
 * publish from its outgoing store. Resends keep their payload `id`, so the edge stores
 * each once [INGEST-DEDUPE-1]: what was PUBACKed must be in the store exactly once.
 *
 * Option names match test/helpers/qos1.ts `startQos1` so the two are swappable.
 */
export interface LoadgenDevice {
  id: string;
  password?: string;
  /** `telemetry` (telemetry lane, default) or `device.alarm` (event lane). */
  type?: 'telemetry' | 'device.alarm';
}

export interface AckRecord {
  device: string;
  /** The message id the device put in its payload. */
  mid: string;
  /** Per-device send index (0-based): the order the device published in. */
  n: number;
  type: string;
}

export interface Qos1PublisherOptions {
  brokerUrl: string;
  devices: LoadgenDevice[];
  /** Messages per second per device; `'max'` or 0 = as fast as the in-flight window allows. */
  ratePerDevice?: number | 'max';
  /** Unacknowledged publishes each device may have outstanding (default 32). */
  inflight?: number;
  /** Approximate JSON payload size in bytes (default 200). */
  payloadBytes?: number;
  /**
   * Where to record PUBACKed messages: an array (pushed to) or a file path (JSON lines
   * of AckRecord, appended with appendFileSync in chunks and on a short timer, so a
   * record is on disk within `flushIntervalMs` of its PUBACK).
   */
  ackLog?: string | AckRecord[];
  /** Stop each device after this many messages (0/undefined = until stop()). */
  maxPerDevice?: number;
  reconnectPeriodMs?: number;
  keepaliveS?: number;
  /** Part of every message id, unique per run (default: a fresh boot id). */
  runId?: string;
  /** Keep the acked ids in memory for `acked()` (default true). */
  keepAcked?: boolean;
  flushEvery?: number;
  flushIntervalMs?: number;
  /** Clock for payload `ts`. */
  now?: () => number;
}

export interface Qos1PublisherStats {
  sent: number;
  acked: number;
  outstanding: number;
  connected: number;
  connects: number;
  errors: number;
}

export interface Qos1Publishers {
  /** Message ids PUBACKed so far, in PUBACK order (empty with keepAcked: false). */
  acked(): string[];
  ackedCount(): number;
  stats(): Qos1PublisherStats;
  /** Resolves once connected at least once per device. */
  ready(timeoutMs?: number): Promise<void>;
  /** Resolves when every device has sent maxPerDevice messages and had them all PUBACKed. */
  done(): Promise<void>;
  /**
   * Stops generating, waits up to `timeoutMs` for outstanding PUBACKs (resends
   * continue meanwhile), then disconnects and flushes the ack log.
   */
  stop(opts?: { timeoutMs?: number }): Promise<{ sent: number; acked: number; outstanding: number }>;
  /** Disconnects at once (outstanding publishes are abandoned), flushes the ack log. */
  close(): Promise<void>;
}

/** Builds a payload of about `bytes` bytes that is valid for its event type. */
export function loadPayload(type: string, mid: string, n: number, ts: number, bytes: number): string {
  if (type === 'telemetry') {
    const metrics: Record<string, number | string> = { n };
    const base = JSON.stringify({ id: mid, ts, metrics });
    let pad = bytes - base.length;
    let k = 0;
    // Metric strings are capped at 256 chars and 64 metrics per event.
    while (pad > 12 && k < 62) {
      const name = `p${k++}`;
      const chunk = Math.min(pad - name.length - 6, 250);
      if (chunk <= 0) break;
      metrics[name] = 'x'.repeat(chunk);
      pad -= chunk + name.length + 6;
    }
    return JSON.stringify({ id: mid, ts, metrics });
  }
  const body = { id: mid, ts, code: 'LOADGEN', severity: 'info', active: n % 2 === 0, message: '' };
  const pad = Math.max(0, Math.min(512, bytes - JSON.stringify(body).length));
  body.message = 'x'.repeat(pad);
  return JSON.stringify(body);
}

interface DeviceState {
  dev: LoadgenDevice;
  type: string;
  topic: string;
  client: MqttClient;
  sent: number;
  acked: number;
  outstanding: number;
  nextAt: number;
  timer: NodeJS.Timeout | null;
  prefix: string;
}

export function startQos1Publishers(opts: Qos1PublisherOptions): Qos1Publishers {
  const runId = midSafe(opts.runId ?? newBootId());
  const inflight = Math.max(1, opts.inflight ?? 32);
  const rate = opts.ratePerDevice === 'max' || !opts.ratePerDevice ? 0 : opts.ratePerDevice;
  const gapMs = rate > 0 ? 1000 / rate : 0;
  const limit = opts.maxPerDevice ?? 0;
  const payloadBytes = opts.payloadBytes ?? 200;
  const now = opts.now ?? Date.now;
  const keep = opts.keepAcked !== false;
  const ackedIds: string[] = [];
  const ackArray = Array.isArray(opts.ackLog) ? opts.ackLog : null;
  const ackPath = typeof opts.ackLog === 'string' ? opts.ackLog : null;
  const flushEvery = opts.flushEvery ?? 256;
  let pendingLines: string[] = [];
  let ackedTotal = 0;
  let sentTotal = 0;
  let errors = 0;
  let connects = 0;
  let stopping = false;
  let closed = false;
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of waiters) w();
  };

  const flush = () => {
    if (!ackPath || pendingLines.length === 0) return;
    const chunk = pendingLines.join('');
    pendingLines = [];
    appendFileSync(ackPath, chunk);
  };
  const flushTimer = ackPath ? setInterval(flush, opts.flushIntervalMs ?? 50) : null;
  flushTimer?.unref();

  const states: DeviceState[] = opts.devices.map((dev) => {
    const client = mqtt.connect(opts.brokerUrl, {
      clientId: dev.id,
      username: dev.id,
      password: dev.password,
      clean: true,
      keepalive: opts.keepaliveS ?? 10,
      reconnectPeriod: opts.reconnectPeriodMs ?? 100,
      connectTimeout: 2000,
      resubscribe: false,
    });
    const type = dev.type ?? 'telemetry';
    const st: DeviceState = {
      dev,
      type,
      topic: deviceEventTopic(dev.id, type),
      client,
      sent: 0,
      acked: 0,
      outstanding: 0,
      nextAt: Date.now(),
      timer: null,
      prefix: `${dev.id.slice(0, 36)}-${runId.slice(0, 14)}-`,
    };
    // The broker going away is expected here: count and keep reconnecting.
    client.on('error', () => {
      errors++;
    });
    client.on('connect', () => {
      connects++;
      wake();
    });
    return st;
  });

  const pump = (st: DeviceState) => {
    while (!stopping && !closed && st.outstanding < inflight && (limit === 0 || st.sent < limit)) {
      if (gapMs > 0) {
        const t = Date.now();
        // Allow at most one second of catch-up burst after a stall.
        if (st.nextAt < t - 1000) st.nextAt = t - 1000;
        if (st.nextAt > t) {
          if (!st.timer) {
            st.timer = setTimeout(() => {
              st.timer = null;
              pump(st);
            }, st.nextAt - t);
            st.timer.unref();
          }
          return;
        }
        st.nextAt += gapMs;
      }
      publishOne(st);
    }
  };

  const publishOne = (st: DeviceState) => {
    const n = st.sent++;
    sentTotal++;
    st.outstanding++;
    const mid = `${st.prefix}${n}`;
    // QoS1: MQTT.js keeps the packet until PUBACK and resends it after reconnects.
    st.client.publish(st.topic, loadPayload(st.type, mid, n, now(), payloadBytes), { qos: 1 }, (err) => {
      st.outstanding--;
      if (err) {
        errors++;
      } else {
        st.acked++;
        ackedTotal++;
        if (keep) ackedIds.push(mid);
        const rec: AckRecord = { device: st.dev.id, mid, n, type: st.type };
        ackArray?.push(rec);
        if (ackPath) {
          pendingLines.push(`${JSON.stringify(rec)}\n`);
          if (pendingLines.length >= flushEvery) flush();
        }
      }
      wake();
      // Refill the window from a fresh tick, not from inside MQTT.js's packet handler.
      setImmediate(() => pump(st));
    });
  };

  for (const st of states) pump(st);

  const outstanding = () => states.reduce((a, s) => a + s.outstanding, 0);
  const waitFor = async (cond: () => boolean, timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs;
    while (!cond() && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, Math.min(100, Math.max(1, deadline - Date.now())));
        function done() {
          clearTimeout(t);
          waiters.delete(done);
          resolve();
        }
        waiters.add(done);
      });
    }
    return cond();
  };
  const endAll = async () => {
    closed = true;
    for (const st of states) if (st.timer) clearTimeout(st.timer);
    await Promise.all(
      states.map((st) =>
        Promise.race([
          st.client.endAsync(!st.client.connected || st.outstanding > 0).catch(() => undefined),
          new Promise((r) => setTimeout(r, 2000).unref()),
        ]),
      ),
    );
    if (flushTimer) clearInterval(flushTimer);
    flush();
  };

  return {
    acked: () => ackedIds,
    ackedCount: () => ackedTotal,
    stats: () => ({
      sent: sentTotal,
      acked: ackedTotal,
      outstanding: outstanding(),
      connected: states.filter((s) => s.client.connected).length,
      connects,
      errors,
    }),
    async ready(timeoutMs = 10_000) {
      const ok = await waitFor(() => states.every((s) => s.client.connected), timeoutMs);
      if (!ok) throw new Error(`publishers not connected within ${timeoutMs} ms`);
    },
    async done() {
      if (limit === 0) throw new Error('done() needs maxPerDevice');
      await waitFor(() => states.every((s) => s.acked >= limit), Number.MAX_SAFE_INTEGER);
    },
    async stop({ timeoutMs = 10_000 } = {}) {
      stopping = true;
      await waitFor(() => outstanding() === 0, timeoutMs);
      await endAll();
      return { sent: sentTotal, acked: ackedTotal, outstanding: outstanding() };
    },
    async close() {
      stopping = true;
      await endAll();
    },
  };
}
