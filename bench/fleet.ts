import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import {
  type Ack,
  type CommandEnvelope,
  type GatewayAddress,
  gatewayTopic,
  type Heartbeat,
  newId,
} from '@storelink/protocols';
import mqtt, { type MqttClient } from 'mqtt';
import { freePort, freePorts, waitForPort } from '../test/helpers/ports.ts';
import { Proc } from '../test/helpers/proc.ts';
import { CLOUD_BIN, ROOT } from '../test/helpers/stack.ts';
import { tempDir } from '../test/helpers/tmp.ts';
import { log, num, type Scenario } from './lib.ts';

/**
 * `bench fleet`: N simulated gateways — MQTT clients speaking the gateway protocol
 * (docs/protocol.md: retained birth with a last-will death, heartbeats, `cmd` in and
 * `command.result` up in a tx-lane batch, `ack` back) — against ONE cloud process
 * (embedded broker, PGlite), as in production where a brand's fleet talks to one cloud.
 *
 * Phases: register the gateways over HTTP (setup, not timed); connect them all
 * (`--concurrency` at a time) and wait until the cloud has applied every birth; send
 * heartbeats every `--heartbeat-ms` for `--seconds` and count what the cloud applied
 * (its own `storelink_cloud_heartbeats_total`); then `--commands` pings over HTTP, each timed
 * from the POST to the gateway receiving the `ack` that covers its result (= committed).
 * Baseline in the same run: the same clients connecting to raw aedes (bench/raw-aedes.ts,
 * no password hashing, no store), so `connect_ratio` says what auth + presence cost.
 */
export interface FleetBenchResult {
  gateways: number;
  connect_s: number;
  connects_per_s: number;
  connect_p99_ms: number;
  /** Until the cloud had applied every birth (presence online in the store). */
  births_applied_s: number;
  baseline_connect_s: number;
  /** connect_s / baseline_connect_s (raw aedes, same clients, same run). */
  connect_ratio: number;
  heartbeat_offered_per_s: number;
  heartbeat_ingested_per_s: number;
  /** Sent but never handled by the cloud (QoS0: shed on the way under overload). */
  heartbeats_dropped: number;
  /** Refused by the cloud's checks (must be 0 here). */
  heartbeats_rejected: number;
  commands: number;
  command_p50_ms: number;
  command_p99_ms: number;
  command_max_ms: number;
  /** Commands with no committed result within the timeout (must be 0). */
  commands_lost: number;
  /** Gateways that failed to connect (must be 0). */
  connect_failed: number;
  cloud_rss_mb: number;
  cloud_peak_rss_mb: number;
  setup_s: number;
  wall_s: number;
}

const pct = (sorted: number[], p: number): number =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
const r1 = (x: number) => Math.round(x * 10) / 10;
const r3 = (x: number) => Math.round(x * 1000) / 1000;

/** One simulated gateway: the edge agent's wire behaviour without devices or an outbox. */
class SimGateway {
  client: MqttClient | undefined;
  readonly addr: GatewayAddress;
  private readonly epoch = newId();
  private seq = 0;
  private readonly bdSeq = 1;
  /** command id → tx seq of its result batch, and when the ack covering it arrived. */
  private readonly results = new Map<string, number>();
  private readonly ackWaiters = new Map<string, (at: number) => void>();
  readonly acked = new Map<string, number>();

  constructor(
    readonly id: string,
    site: string,
    readonly password: string,
  ) {
    this.addr = { site, gateway: id };
  }

  private state(state: 'online' | 'offline') {
    return JSON.stringify({
      v: 1,
      state,
      bdSeq: this.bdSeq,
      gateway: this.id,
      site: this.addr.site,
      at: Date.now(),
      version: 'bench',
      epoch: this.epoch,
    });
  }

  /** CONNECT (will = death), SUBSCRIBE cmd + ack, PUBLISH the retained birth (PUBACKed). */
  async connect(url: string, withProtocol: boolean): Promise<void> {
    const client = await mqtt.connectAsync(
      url,
      {
        protocolVersion: 4,
        clientId: this.id,
        username: this.id,
        password: this.password,
        clean: true,
        keepalive: 120,
        reconnectPeriod: 0,
        connectTimeout: 120_000,
        will: {
          topic: gatewayTopic(this.addr, 'state'),
          payload: Buffer.from(this.state('offline')),
          qos: 1,
          retain: true,
        },
      },
      false,
    );
    this.client = client;
    if (!withProtocol) return;
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
    await client.subscribeAsync({
      [gatewayTopic(this.addr, 'cmd')]: { qos: 1 },
      [gatewayTopic(this.addr, 'ack')]: { qos: 1 },
    });
    await client.publishAsync(gatewayTopic(this.addr, 'state'), this.state('online'), {
      qos: 1,
      retain: true,
    });
  }

  heartbeat(): void {
    const hb: Heartbeat = {
      v: 1,
      gateway: this.id,
      site: this.addr.site,
      at: Date.now(),
      bdSeq: this.bdSeq,
      uptimeS: Math.round(process.uptime()),
      devicesOnline: [],
      outbox: { depth: 0, bytes: 0, oldestAgeMs: 0, lanes: {} },
    };
    this.client?.publish(gatewayTopic(this.addr, 'hb'), JSON.stringify(hb), { qos: 0 });
  }

  /** Resolves with the time the ack covering this command's result arrived. */
  whenAcked(commandId: string): Promise<number> {
    const done = this.acked.get(commandId);
    if (done !== undefined) return Promise.resolve(done);
    return new Promise((res) => this.ackWaiters.set(commandId, res));
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (topic.endsWith('/cmd')) this.onCommand(JSON.parse(payload.toString()) as CommandEnvelope);
    else if (topic.endsWith('/ack')) this.onAck(JSON.parse(payload.toString()) as Ack);
  }

  /** Executes a ping at once and reports `command.result` on the tx lane. */
  private onCommand(cmd: CommandEnvelope): void {
    if (this.results.has(cmd.id)) return; // a redelivery: already answered
    const now = Date.now();
    const seq = ++this.seq;
    this.results.set(cmd.id, seq);
    const batch = {
      v: 1,
      gateway: this.id,
      site: this.addr.site,
      epoch: this.epoch,
      sentAt: now,
      floors: {},
      events: [
        {
          id: newId(now),
          type: 'command.result',
          device: this.id,
          gateway: this.id,
          site: this.addr.site,
          ts: now,
          rts: now,
          lane: 'tx',
          seq,
          payload: {
            commandId: cmd.id,
            type: cmd.type,
            status: 'ok',
            result: { echo: (cmd.payload as { echo?: string }).echo ?? null },
            receivedAt: now,
            completedAt: now,
          },
        },
      ],
    };
    this.client?.publish(gatewayTopic(this.addr, 'up'), JSON.stringify(batch), { qos: 1 });
  }

  private onAck(ack: Ack): void {
    if (ack.epoch !== this.epoch) return;
    const upTo = ack.acks.tx ?? 0;
    const at = performance.now();
    for (const [id, seq] of this.results) {
      if (seq > upTo || this.acked.has(id)) continue;
      this.acked.set(id, at);
      this.ackWaiters.get(id)?.(at);
      this.ackWaiters.delete(id);
    }
  }

  async close(): Promise<void> {
    await this.client?.endAsync(true).catch(() => undefined);
  }
}

/** Runs `fn` over `items`, at most `n` at a time. */
async function pool<T>(items: T[], n: number, fn: (t: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (i < items.length) await fn(items[i++]!);
    }),
  );
}

/** Connects every gateway; per-connect latencies (ms) and failures. */
async function connectAll(
  gws: SimGateway[],
  url: string,
  concurrency: number,
  withProtocol: boolean,
): Promise<{ seconds: number; latencies: number[]; failed: number }> {
  const latencies: number[] = [];
  let failed = 0;
  const t0 = performance.now();
  await pool(gws, concurrency, async (g) => {
    const s = performance.now();
    try {
      await g.connect(url, withProtocol);
      latencies.push(performance.now() - s);
    } catch (e) {
      failed += 1;
      if (failed <= 3) log(`connect ${g.id} failed: ${(e as Error).message}`);
    }
  });
  return { seconds: (performance.now() - t0) / 1000, latencies: latencies.sort((a, b) => a - b), failed };
}

/** One sample (sum over labels matching `match`) of a counter in Prometheus text. */
async function scrape(httpUrl: string, name: string, match = ''): Promise<number> {
  const text = await (await fetch(`${httpUrl}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) {
      if (match && !line.includes(match)) continue;
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return sum;
}

async function until(what: string, timeoutMs: number, fn: () => Promise<boolean>): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function baselineConnect(n: number, concurrency: number): Promise<number> {
  const port = await freePort();
  const dir = tempDir('storelink-fleet-raw-');
  const raw = new Proc({
    name: 'raw-aedes',
    command: process.execPath,
    args: ['--import', 'tsx', join(ROOT, 'bench/raw-aedes.ts'), String(port)],
    cwd: ROOT,
    logFile: join(dir, 'raw.log'),
  });
  await raw.start();
  await waitForPort(port);
  const gws = Array.from({ length: n }, (_, i) => new SimGateway(`gw-${i}`, `site-${i % 50}`, `pw-${i}`));
  try {
    const r = await connectAll(gws, `mqtt://127.0.0.1:${port}`, concurrency, false);
    return r.seconds;
  } finally {
    await Promise.all(gws.map((g) => g.close()));
    await raw.dispose();
  }
}

export async function runFleetBench(o: {
  gateways: number;
  concurrency: number;
  heartbeatMs: number;
  seconds: number;
  commands: number;
  commandConcurrency: number;
}): Promise<FleetBenchResult> {
  const wall0 = performance.now();
  const baseline = await baselineConnect(o.gateways, o.concurrency);
  log(`baseline: ${o.gateways} clients connected to raw aedes in ${r3(baseline)} s`);

  const dir = tempDir('storelink-fleet-');
  const [httpPort, mqttPort] = await freePorts(2);
  const service = { username: 'storelink-cloud', password: 'bench-service-secret' };
  const configFile = join(dir, 'cloud.json');
  writeFileSync(
    configFile,
    JSON.stringify({
      dataDir: join(dir, 'cloud'),
      http: { host: '127.0.0.1', port: httpPort },
      broker: { mode: 'embedded', host: '127.0.0.1', port: mqttPort },
      store: { kind: 'pglite', dir: join(dir, 'cloud', 'pg') },
      signing: { privateKeyFile: join(dir, 'signing.key') },
      service,
      gateways: [],
      log: { level: 'warn' },
    }),
  );
  const httpUrl = `http://127.0.0.1:${httpPort}`;
  const cloud = new Proc({
    name: 'cloud',
    command: process.execPath,
    args: [CLOUD_BIN, '--config', configFile],
    cwd: ROOT,
    logFile: join(dir, 'cloud.log'),
    readyUrl: `${httpUrl}/readyz`,
    readyTimeoutMs: 120_000,
  });
  const gws = Array.from(
    { length: o.gateways },
    (_, i) => new SimGateway(`gw-${i}`, `site-${i % 50}`, `pw-${i}`),
  );
  try {
    await cloud.start();
    // Setup (not timed as a figure): register every gateway over the API (scrypt hash each).
    const s0 = performance.now();
    await pool(gws, 8, async (g) => {
      const r = await fetch(`${httpUrl}/api/v1/gateways`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ id: g.id, site: g.addr.site, password: g.password }),
      });
      if (r.status !== 201) throw new Error(`register ${g.id}: HTTP ${r.status} ${await r.text()}`);
    });
    const setupS = (performance.now() - s0) / 1000;
    log(`registered ${o.gateways} gateways in ${r1(setupS)} s`);

    // Connect phase.
    const c = await connectAll(gws, `mqtt://127.0.0.1:${mqttPort}`, o.concurrency, true);
    log(`connected ${c.latencies.length}/${o.gateways} in ${r3(c.seconds)} s (${c.failed} failed)`);
    const c0 = performance.now() - c.seconds * 1000;
    await until('every birth applied', 600_000, async () => {
      const n = await scrape(
        httpUrl,
        'storelink_cloud_gateway_states_total',
        'state="online",applied="true"',
      );
      return n >= c.latencies.length;
    });
    const birthsS = (performance.now() - c0) / 1000;

    // Heartbeat phase: every gateway every heartbeatMs, spread evenly over the period.
    const hb0 = await scrape(httpUrl, 'storelink_cloud_heartbeats_total');
    let sent = 0;
    const connected = gws.filter((g) => g.client?.connected);
    const tickMs = 50;
    const perTick = (connected.length * tickMs) / o.heartbeatMs;
    let carry = 0;
    let next = 0;
    const hbStart = performance.now();
    await new Promise<void>((res) => {
      const t = setInterval(() => {
        carry += perTick;
        while (carry >= 1) {
          connected[next++ % connected.length]!.heartbeat();
          sent += 1;
          carry -= 1;
        }
        if (performance.now() - hbStart >= o.seconds * 1000) {
          clearInterval(t);
          res();
        }
      }, tickMs);
    });
    const hbSeconds = (performance.now() - hbStart) / 1000;
    // The last ones may still be in the ingest queue: wait until the count has not moved
    // for 3 s (bounded), then count.
    let last = -1;
    let still = 0;
    await until('heartbeats to settle', 120_000, async () => {
      const n = await scrape(httpUrl, 'storelink_cloud_heartbeats_total');
      still = n === last ? still + 1 : 0;
      last = n;
      return still >= 15; // 15 × 200 ms
    });
    const ingested = (await scrape(httpUrl, 'storelink_cloud_heartbeats_total')) - hb0;
    const hbRejected = await scrape(httpUrl, 'storelink_cloud_ingest_rejected_total', 'channel="hb"');
    log(`heartbeats: sent ${sent}, cloud applied ${ingested} in ${r1(hbSeconds)} s, rejected ${hbRejected}`);

    // Command round trips: POST → the ack covering the committed result.
    const rtts: number[] = [];
    let lost = 0;
    const targets = Array.from({ length: o.commands }, (_, i) => connected[(i * 7919) % connected.length]!);
    await pool(targets, o.commandConcurrency, async (g) => {
      const t0 = performance.now();
      const r = await fetch(`${httpUrl}/api/v1/gateways/${g.id}/commands`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'ping', payload: { echo: 'bench' }, ttlMs: 60_000 }),
      });
      if (r.status !== 202) throw new Error(`command to ${g.id}: HTTP ${r.status} ${await r.text()}`);
      const { id } = (await r.json()) as { id: string };
      const at = await Promise.race([
        g.whenAcked(id),
        new Promise<null>((res) => setTimeout(() => res(null), 30_000).unref()),
      ]);
      if (at === null) lost += 1;
      else rtts.push(at - t0);
    });
    rtts.sort((a, b) => a - b);
    log(`commands: ${rtts.length} round trips, p99 ${r1(pct(rtts, 99))} ms, ${lost} lost`);

    return {
      gateways: o.gateways,
      connect_s: r3(c.seconds),
      connects_per_s: r1(c.latencies.length / c.seconds),
      connect_p99_ms: r1(pct(c.latencies, 99)),
      births_applied_s: r3(birthsS),
      baseline_connect_s: r3(baseline),
      connect_ratio: r1(c.seconds / baseline),
      heartbeat_offered_per_s: r1(sent / hbSeconds),
      heartbeat_ingested_per_s: r1(ingested / hbSeconds),
      heartbeats_dropped: Math.max(0, sent - ingested - hbRejected),
      heartbeats_rejected: hbRejected,
      commands: o.commands,
      command_p50_ms: r1(pct(rtts, 50)),
      command_p99_ms: r1(pct(rtts, 99)),
      command_max_ms: r1(rtts[rtts.length - 1] ?? 0),
      commands_lost: lost,
      connect_failed: c.failed,
      cloud_rss_mb: r1(cloud.rssBytes() / 2 ** 20),
      cloud_peak_rss_mb: r1(cloud.peakRssBytes / 2 ** 20),
      setup_s: r1(setupS),
      wall_s: r1((performance.now() - wall0) / 1000),
    };
  } finally {
    await Promise.all(gws.map((g) => g.close()));
    await cloud.dispose();
  }
}

export const fleetBench: Scenario<FleetBenchResult> = {
  name: 'fleet',
  description:
    'N simulated gateways (birth, heartbeats, command round trip) against one cloud process: connect time, heartbeat ingest rate, p99 command RTT, cloud RSS',
  options: {
    gateways: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '50' },
    'heartbeat-ms': { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '20' },
    commands: { type: 'string', default: '500' },
    'command-concurrency': { type: 'string', default: '10' },
  },
  mustBeZero: ['commands_lost', 'connect_failed', 'heartbeats_rejected'],
  run: (a) =>
    runFleetBench({
      gateways: num(a.gateways, 2000),
      concurrency: num(a.concurrency, 50),
      heartbeatMs: num(a['heartbeat-ms'], 1000),
      seconds: num(a.seconds, 20),
      commands: num(a.commands, 500),
      commandConcurrency: num(a['command-concurrency'], 10),
    }),
};
