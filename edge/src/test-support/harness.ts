import { createServer, type Server } from 'node:net';
import {
  type Ack,
  checkEventPayload,
  type EventEnvelope,
  gatewayTopic,
  generateSigningKeys,
  type UplinkBatch,
  validateGatewayState,
  validateHeartbeat,
  validateUplinkBatch,
} from '@storelink/protocols';
import { Aedes } from 'aedes';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { type EdgeAgent, type StartEdgeOptions, startEdge } from '../agent.ts';
import type { EdgeConfigInput } from '../config.ts';

export const silentLogger = pino({ level: 'silent' });

/**
 * A stand-in for the cloud in the agent's tests: a plain aedes broker plus a tiny
 * "ingest" that records batches and publishes the retained ack watermark (the real
 * cloud is another package; joining both is the end-to-end test's job).
 */
export class FakeCloud {
  broker!: Aedes;
  server!: Server;
  port = 0;
  client!: MqttClient;
  readonly batches: UplinkBatch[] = [];
  /** Committed events per lane by seq (dedupe like the cloud: by lane+seq). */
  readonly stored: Record<string, Map<number, EventEnvelope>> = {
    tx: new Map(),
    event: new Map(),
    telemetry: new Map(),
  };
  readonly states: Array<{ payload: Record<string, unknown>; retain: boolean }> = [];
  readonly heartbeats: unknown[] = [];
  readonly results: unknown[] = [];
  /** Messages from the edge that broke the protocol schemas (tests expect none). */
  readonly invalid: string[] = [];
  /** Raw byte size of every batch received. */
  readonly batchBytes: number[] = [];
  autoAck = true;
  /** Drop the next N acks (as if lost). */
  dropAcks = 0;
  readonly keys = generateSigningKeys();
  private connectHook: ((username: string) => boolean) | null = null;

  async start(port = 0): Promise<void> {
    this.broker = await Aedes.createBroker({
      authenticate: (_c, username, _p, done) =>
        done(null, this.connectHook ? this.connectHook(username ?? '') : true),
    });
    this.server = createServer(this.broker.handle);
    await new Promise<void>((r) => this.server.listen(port, '127.0.0.1', () => r()));
    this.port = (this.server.address() as { port: number }).port;
    this.client = await mqtt.connectAsync(`mqtt://127.0.0.1:${this.port}`, { clientId: 'cloud-ingest' });
    await this.client.subscribeAsync({
      'sl/v1/+/+/up': { qos: 1 },
      'sl/v1/+/+/state': { qos: 1 },
      'sl/v1/+/+/hb': { qos: 0 },
    });
    this.client.on('message', (topic, payload, packet) => {
      const body = JSON.parse(payload.toString());
      const check = (r: { ok: boolean; error?: { message: string } }) => {
        if (!r.ok) this.invalid.push(`${topic}: ${r.error!.message}`);
      };
      if (topic.endsWith('/state')) {
        check(validateGatewayState.check(body));
        this.states.push({ payload: body, retain: packet.retain });
      } else if (topic.endsWith('/hb')) {
        check(validateHeartbeat.check(body));
        this.heartbeats.push(body);
      } else if (topic.endsWith('/up')) {
        check(validateUplinkBatch.check(body));
        this.batchBytes.push(payload.length);
        this.onBatch(topic, body as UplinkBatch);
      }
    });
  }

  /** Refuse connections while `fn` says so. */
  gate(fn: ((username: string) => boolean) | null): void {
    this.connectHook = fn;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  watermark(lane: string): number {
    const m = this.stored[lane]!;
    let w = 0;
    while (m.has(w + 1)) w++;
    return w;
  }

  private onBatch(topic: string, b: UplinkBatch): void {
    this.batches.push(b);
    for (const e of b.events) {
      const r = checkEventPayload(e.type, e.payload);
      if (!r.ok && !e.type.startsWith('test.')) this.invalid.push(`${e.type} payload: ${r.error.message}`);
      if (!this.stored[e.lane]!.has(e.seq)) this.stored[e.lane]!.set(e.seq, e);
      if (e.type === 'command.result') this.results.push(e.payload);
    }
    if (this.autoAck) this.ack(topic.replace(/\/up$/, ''), b.epoch);
  }

  ack(prefix: string, epoch: string): void {
    if (this.dropAcks > 0) {
      this.dropAcks--;
      return;
    }
    const ack: Ack = {
      v: 1,
      epoch,
      acks: {
        tx: this.watermark('tx'),
        event: this.watermark('event'),
        telemetry: this.watermark('telemetry'),
      },
      at: Date.now(),
    };
    this.client.publish(`${prefix}/ack`, JSON.stringify(ack), { qos: 1, retain: true });
  }

  events(lane?: string): EventEnvelope[] {
    const lanes = lane ? [lane] : ['tx', 'event', 'telemetry'];
    return lanes.flatMap((l) => [...this.stored[l]!.values()].sort((a, b) => a.seq - b.seq));
  }

  /** Publishes a signed command to the gateway's cmd topic. */
  async command(site: string, gateway: string, body: string): Promise<void> {
    await this.client.publishAsync(gatewayTopic({ site, gateway }, 'cmd'), body, { qos: 1 });
  }

  async close(): Promise<void> {
    await this.client.endAsync(true).catch(() => undefined);
    await new Promise<void>((r) => this.broker.close(() => r()));
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

export const DEVICES = [
  { id: 'fridge-1', password: 'pw-fridge-1', kind: 'fridge' },
  { id: 'fridge-2', password: 'pw-fridge-2', kind: 'fridge' },
  { id: 'display-1', password: 'pw-display-1', kind: 'display' },
];

export function edgeConfig(cloud: FakeCloud, over: Partial<EdgeConfigInput> = {}): EdgeConfigInput {
  return {
    site: 'store-1',
    gateway: 'gw-1',
    dataDir: '/nonexistent',
    broker: { host: '127.0.0.1', port: 0, wsPort: null },
    http: { host: '127.0.0.1', port: 0 },
    cloud: {
      url: cloud.url,
      username: 'gw-1',
      password: 'gw-pw',
      publicKeyPem: cloud.keys.publicKeyPem,
      retransmitMs: 400,
      reconnectMinMs: 50,
      reconnectMaxMs: 200,
      inflightBatches: 4,
      batchMaxEvents: 50,
      ...(over.cloud ?? {}),
    },
    outbox: { kind: 'memory' },
    devices: DEVICES,
    heartbeatMs: 200,
    commandTimeoutMs: 500,
    log: { level: 'silent' },
    ...Object.fromEntries(Object.entries(over).filter(([k]) => k !== 'cloud')),
  } as EdgeConfigInput;
}

export async function startTestEdge(
  cloud: FakeCloud,
  over: Partial<EdgeConfigInput> = {},
  opts: StartEdgeOptions = {},
): Promise<EdgeAgent> {
  return startEdge(edgeConfig(cloud, over), { logger: silentLogger, ...opts });
}

/** A device connecting with its own credentials. */
export async function device(
  agent: EdgeAgent,
  id: string,
  over: IClientOptions & { ws?: boolean } = {},
): Promise<MqttClient> {
  const d = agent.config.devices.find((x) => x.id === id);
  const url = over.ws ? `ws://127.0.0.1:${agent.wsPort}` : `mqtt://127.0.0.1:${agent.brokerPort}`;
  return mqtt.connectAsync(url, {
    clientId: id,
    username: id,
    password: d?.password ?? 'x',
    reconnectPeriod: 0,
    connectTimeout: 3000,
    ...over,
  });
}

export async function until(
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
