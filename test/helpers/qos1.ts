import mqtt, { type MqttClient } from 'mqtt';

/**
 * A QoS1 device publisher for harnesses: each device is one MQTT.js client that keeps
 * at most `inflight` unacknowledged publishes outstanding, gives every message a unique
 * `id` (so the edge can drop resends [INGEST-DEDUPE-1]) and records every message the
 * broker PUBACKed, in the order the device sent them. MQTT.js keeps unacked publishes
 * in its outgoing store and resends them after a reconnect, which is exactly what a
 * real device does when the gateway restarts under it.
 *
 * Same option names as firmware-sim's `startQos1Publishers` so the two are swappable.
 */
export interface Qos1Device {
  id: string;
  password?: string;
  /** Which event type to publish: `telemetry` (telemetry lane) or `device.alarm` (event lane). */
  type?: 'telemetry' | 'device.alarm';
}

export interface AckRecord {
  device: string;
  /** The message id the device put in its payload. */
  mid: string;
  /** Per-device send index (0-based), the order the device published in. */
  n: number;
  type: string;
}

export interface Qos1Options {
  brokerUrl: string;
  devices: Qos1Device[];
  /** Messages per second per device; 0 = as fast as the inflight window allows. */
  ratePerDevice: number;
  inflight: number;
  payloadBytes: number;
  /** Appended to on every PUBACK. */
  ackLog?: AckRecord[];
  /** Stop each device after this many messages (0/undefined = until stop()). */
  maxPerDevice?: number;
  reconnectPeriodMs?: number;
  /** Identifier prefix for message ids, so two runs against one store never collide. */
  runId?: string;
}

export interface Qos1Publishers {
  stats(): { sent: number; acked: number; outstanding: number; connected: number; errors: number };
  /** Stops generating; waits (up to timeoutMs) until every sent message is PUBACKed. */
  stop(opts?: { timeoutMs?: number }): Promise<{ sent: number; acked: number; outstanding: number }>;
  /** Resolves when every device has sent maxPerDevice and had them all acked. */
  done(): Promise<void>;
  close(): Promise<void>;
}

function payloadFor(type: string, mid: string, n: number, bytes: number): string {
  const base =
    type === 'telemetry'
      ? { id: mid, ts: Date.now(), metrics: { n } as Record<string, number | string> }
      : {
          id: mid,
          ts: Date.now(),
          code: 'TORTURE_TEST',
          severity: 'info',
          active: n % 2 === 0,
          message: '',
        };
  const len = JSON.stringify(base).length;
  let pad = Math.max(0, bytes - len - 12);
  if (type === 'telemetry') {
    const m = (base as { metrics: Record<string, number | string> }).metrics;
    let k = 0;
    while (pad > 0) {
      const chunk = Math.min(pad, 250);
      m[`p${k++}`] = 'x'.repeat(chunk);
      pad -= chunk + 8;
    }
  } else {
    (base as { message: string }).message = 'x'.repeat(Math.min(pad, 512));
  }
  return JSON.stringify(base);
}

export async function startQos1(opts: Qos1Options): Promise<Qos1Publishers> {
  const runId = opts.runId ?? Date.now().toString(36);
  let sent = 0;
  let acked = 0;
  let errors = 0;
  let stopping = false;
  const clients: MqttClient[] = [];
  const perDevice = opts.devices.map(() => ({ sent: 0, acked: 0, outstanding: 0 }));
  const waiters: Array<() => void> = [];
  const wake = () => {
    for (const w of waiters.splice(0)) w();
  };

  const runners = opts.devices.map(async (dev, i) => {
    const type = dev.type ?? 'telemetry';
    const client = mqtt.connect(opts.brokerUrl, {
      clientId: dev.id,
      username: dev.id,
      password: dev.password,
      clean: true,
      reconnectPeriod: opts.reconnectPeriodMs ?? 100,
      connectTimeout: 5000,
      keepalive: 30,
      resubscribe: false,
    });
    client.on('error', () => {
      errors++;
    });
    clients.push(client);
    const st = perDevice[i]!;
    const topic = `dev/${dev.id}/evt/${type}`;
    const interval = opts.ratePerDevice > 0 ? 1000 / opts.ratePerDevice : 0;
    let nextAt = Date.now();
    const limit = opts.maxPerDevice ?? 0;
    while (!stopping && (limit === 0 || st.sent < limit)) {
      if (st.outstanding >= opts.inflight) {
        await new Promise<void>((r) => waiters.push(r));
        continue;
      }
      if (interval > 0) {
        const wait = nextAt - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        nextAt += interval;
        if (stopping) break;
      }
      const n = st.sent++;
      sent++;
      st.outstanding++;
      const mid = `${runId}.${dev.id}.${n}`;
      client.publish(topic, payloadFor(type, mid, n, opts.payloadBytes), { qos: 1 }, (err) => {
        st.outstanding--;
        if (err) {
          errors++;
        } else {
          st.acked++;
          acked++;
          opts.ackLog?.push({ device: dev.id, mid, n, type });
        }
        wake();
      });
      // Yield to the event loop now and then so acks are processed under max rate.
      if (interval === 0 && n % 64 === 63) await new Promise((r) => setImmediate(r));
    }
  });
  const allRun = Promise.all(runners);

  const outstanding = () => perDevice.reduce((a, d) => a + d.outstanding, 0);
  const waitDrained = async (timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs;
    while (outstanding() > 0 && Date.now() < deadline) {
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, 100);
      });
    }
  };

  return {
    stats: () => ({
      sent,
      acked,
      outstanding: outstanding(),
      connected: clients.filter((c) => c.connected).length,
      errors,
    }),
    async stop({ timeoutMs = 60_000 } = {}) {
      stopping = true;
      wake();
      await allRun;
      await waitDrained(timeoutMs);
      return { sent, acked, outstanding: outstanding() };
    },
    async done() {
      await allRun;
      await waitDrained(600_000);
    },
    async close() {
      stopping = true;
      wake();
      await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
    },
  };
}
