import { type GatewayState, gatewayTopic, parseJsonPayload, validateAck } from '@storelink/protocols';
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { EdgeConfig } from '../config.ts';
import type { EdgeMetrics } from '../metrics.ts';
import type { KvStore, Outbox } from '../outbox/types.ts';
import { backoffDelay } from './backoff.ts';
import { UplinkSender } from './sender.ts';
import { readUplinkTls } from './tls.ts';

export const BDSEQ_KEY = 'uplink!bdSeq';

export interface UplinkOptions {
  cloud: EdgeConfig['cloud'];
  site: string;
  gateway: string;
  outbox: Outbox;
  kv: KvStore;
  now: () => number;
  metrics: EdgeMetrics;
  logger: Logger;
  version: string;
  /** A message on `.../cmd`. */
  onCommand: (topic: string, payload: Buffer) => void;
  random?: () => number;
}

export interface UplinkStatus {
  connected: boolean;
  bdSeq: number;
  lastAckAt: number | null;
  inflightBatches: number;
  reconnects: number;
  retransmits: number;
  drainPerSecond: number;
  lastError: string | null;
  nextAttemptAt: number | null;
  /** Connect attempts that could not persist their bdSeq (so did not connect) [UPLINK-BDSEQ-2]. */
  bdSeqPersistFailures: number;
  /** Why the last bdSeq persist failed; null once one succeeded. */
  bdSeqPersistError: string | null;
}

/**
 * The link to the cloud broker: one MQTT.js client per connection attempt (so the will
 * carries that attempt's bdSeq), reconnects driven here with backoff and jitter, and the
 * sender that replays the outbox from the ack on every connect.
 */
export class Uplink {
  readonly sender: UplinkSender;
  private client: MqttClient | null = null;
  private connected = false;
  private closed = false;
  private bdSeq = 0;
  private attempt = 0;
  private reconnects = 0;
  private lastError: string | null = null;
  private timer: NodeJS.Timeout | null = null;
  private nextAttemptAt: number | null = null;
  private bdSeqPersistFailures = 0;
  private bdSeqPersistError: string | null = null;
  private readonly topics: { up: string; ack: string; cmd: string; state: string; hb: string };
  private offAppend: (() => void) | null = null;

  constructor(private readonly o: UplinkOptions) {
    const a = { site: o.site, gateway: o.gateway };
    this.topics = {
      up: gatewayTopic(a, 'up'),
      ack: gatewayTopic(a, 'ack'),
      cmd: gatewayTopic(a, 'cmd'),
      state: gatewayTopic(a, 'state'),
      hb: gatewayTopic(a, 'hb'),
    };
    this.sender = new UplinkSender({
      outbox: o.outbox,
      site: o.site,
      gateway: o.gateway,
      batchMaxEvents: o.cloud.batchMaxEvents,
      batchMaxBytes: o.cloud.batchMaxBytes,
      inflightBatches: o.cloud.inflightBatches,
      retransmitMs: o.cloud.retransmitMs,
      now: o.now,
      metrics: o.metrics,
      logger: o.logger,
      publish: (json) => {
        this.client?.publish(this.topics.up, json, { qos: 1 }, (err) => {
          if (err) o.logger.debug({ err: err.message }, 'batch publish failed (resent from ack later)');
        });
      },
    });
  }

  async start(): Promise<void> {
    this.offAppend = this.o.outbox.onAppend(() => this.sender.wake());
    this.bdSeq = Number((await this.o.kv.get(BDSEQ_KEY)) ?? 0);
    try {
      await this.connect();
    } catch (e) {
      // [UPLINK-BDSEQ-2] e.g. the bdSeq could not be persisted: retried with backoff, never fatal.
      this.lastError = (e as Error).message;
      this.o.logger.error({ err: this.lastError }, 'cloud connect failed');
      this.scheduleReconnect();
    }
  }

  status(): UplinkStatus {
    const s = this.sender.status();
    return {
      connected: this.connected,
      bdSeq: this.bdSeq,
      lastAckAt: s.lastAckAt,
      inflightBatches: s.inflightBatches,
      reconnects: this.reconnects,
      retransmits: s.retransmits,
      drainPerSecond: s.drainPerSecond,
      lastError: this.lastError,
      nextAttemptAt: this.nextAttemptAt,
      bdSeqPersistFailures: this.bdSeqPersistFailures,
      bdSeqPersistError: this.bdSeqPersistError,
    };
  }

  get isConnected(): boolean {
    return this.connected;
  }

  get currentBdSeq(): number {
    return this.bdSeq;
  }

  /** QoS0, only while connected: a stale heartbeat says nothing. */
  publishHeartbeat(json: string): void {
    if (this.connected) this.client?.publish(this.topics.hb, json, { qos: 0 });
  }

  private state(state: 'online' | 'offline'): string {
    const s: GatewayState = {
      v: 1,
      state,
      bdSeq: this.bdSeq,
      gateway: this.o.gateway,
      site: this.o.site,
      at: this.o.now(),
    };
    if (state === 'online') {
      s.version = this.o.version;
      s.epoch = this.o.outbox.epoch;
    }
    return JSON.stringify(s);
  }

  private async connect(): Promise<void> {
    this.nextAttemptAt = null;
    if (this.closed) return;
    // Persist the new bdSeq before connecting, so the will of this session and the birth
    // carry a number no earlier session used, even across restarts [PRESENCE-BDSEQ-1].
    // [UPLINK-BDSEQ-2] If that write fails (disk full, store reopening) this attempt does
    // not connect: an unpersisted bdSeq could be handed out again after a restart, and a
    // late will of this session would then mark the next, live session offline. The
    // attempt fails, the reconnect backoff retries (the store reopens itself meanwhile).
    // Certificate files first: an unreadable one fails the attempt before a bdSeq is used.
    const tls = readUplinkTls(this.o.cloud);
    const bdSeq = this.bdSeq + 1;
    try {
      await this.o.kv.put(BDSEQ_KEY, String(bdSeq), { sync: true });
    } catch (e) {
      this.bdSeqPersistFailures++;
      this.bdSeqPersistError = (e as Error).message;
      this.o.logger.error(
        { err: this.bdSeqPersistError, bdSeq, failures: this.bdSeqPersistFailures },
        'could not persist the next bdSeq; not connecting, retrying with backoff',
      );
      throw new Error(`bdSeq ${bdSeq} could not be persisted: ${this.bdSeqPersistError}`, { cause: e });
    }
    this.bdSeqPersistError = null;
    this.bdSeq = bdSeq;
    if (this.closed) return;
    const c = this.o.cloud;
    const client = mqtt.connect(c.url, {
      clientId: this.o.gateway,
      username: c.username,
      password: c.password,
      clean: true,
      keepalive: c.keepaliveS,
      reconnectPeriod: 0, // reconnects are ours: new bdSeq, backoff with jitter
      connectTimeout: 10_000,
      resubscribe: false,
      // mqtts:// with the cloud CA and, for mutual TLS, this gateway's certificate.
      ...tls,
      rejectUnauthorized: true,
      will: { topic: this.topics.state, payload: Buffer.from(this.state('offline')), qos: 1, retain: true },
    });
    this.client = client;
    client.on('connect', () => {
      if (this.client !== client) return;
      this.onConnected(client).catch((e: unknown) => {
        this.lastError = (e as Error).message;
        this.o.logger.error({ err: this.lastError }, 'cloud session setup failed');
        client.end(true);
      });
    });
    client.on('message', (topic, payload) => this.onMessage(topic, payload));
    client.on('error', (err) => {
      this.lastError = err.message;
      this.o.logger.warn({ err: err.message }, 'cloud link error');
    });
    client.on('close', () => {
      if (this.client !== client) return;
      if (this.connected) this.o.logger.warn({ bdSeq }, 'cloud link lost');
      this.connected = false;
      this.o.metrics.uplinkConnected.set(0);
      this.sender.stop();
      this.client = null;
      client.removeAllListeners('close');
      client.end(true);
      this.scheduleReconnect();
    });
  }

  private async onConnected(client: MqttClient): Promise<void> {
    this.attempt = 0;
    this.lastError = null;
    const granted = await client.subscribeAsync({
      [this.topics.ack]: { qos: 1 },
      [this.topics.cmd]: { qos: 1 },
    });
    for (const g of granted) {
      if (g.qos === 128) throw new Error(`cloud broker refused subscription to ${g.topic}`);
    }
    if (this.client !== client) return;
    // Birth, retained, with the bdSeq the will of this session carries [PRESENCE-BDSEQ-1].
    await client.publishAsync(this.topics.state, this.state('online'), { qos: 1, retain: true });
    if (this.client !== client) return;
    this.connected = true;
    this.o.metrics.uplinkConnected.set(1);
    this.o.logger.info({ bdSeq: this.bdSeq, url: this.o.cloud.url }, 'cloud link up');
    this.sender.start();
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (topic === this.topics.cmd) {
      this.o.onCommand(topic, payload);
      return;
    }
    if (topic !== this.topics.ack) return;
    const parsed = parseJsonPayload(payload, 64 * 1024);
    const r = parsed.ok ? validateAck.check(parsed.value) : parsed;
    if (!r.ok) {
      this.o.logger.warn({ code: r.error.code, err: r.error.message }, 'ignoring invalid ack');
      return;
    }
    void this.sender.onAck(r.value);
  }

  private scheduleReconnect(): void {
    if (this.closed || this.timer) return;
    const delay = backoffDelay(
      this.attempt++,
      this.o.cloud.reconnectMinMs,
      this.o.cloud.reconnectMaxMs,
      this.o.random,
    );
    this.nextAttemptAt = this.o.now() + delay;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.reconnects++;
      this.o.metrics.reconnects.inc();
      this.connect().catch((e: unknown) => {
        this.lastError = (e as Error).message;
        this.o.logger.error({ err: this.lastError }, 'cloud reconnect failed');
        this.scheduleReconnect();
      });
    }, delay);
  }

  /**
   * Graceful stop: publish the offline state with this session's bdSeq explicitly
   * (a clean DISCONNECT suppresses the will), then end the client.
   */
  async close(): Promise<void> {
    this.closed = true;
    this.offAppend?.();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.sender.stop();
    const client = this.client;
    this.client = null;
    if (!client) {
      await this.sender.settled();
      return;
    }
    client.removeAllListeners('close');
    if (this.connected) {
      this.connected = false;
      await Promise.race([
        client
          .publishAsync(this.topics.state, this.state('offline'), { qos: 1, retain: true })
          .catch(() => {}),
        new Promise((r) => setTimeout(r, 2000).unref()),
      ]);
    }
    this.o.metrics.uplinkConnected.set(0);
    // A clean DISCONNECT (no will); forced when the broker does not answer in time.
    const ended = client.endAsync(!client.connected).catch(() => undefined);
    const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 3000).unref());
    if ((await Promise.race([ended, timeout])) === 'timeout')
      await client.endAsync(true).catch(() => undefined);
    // No ack can arrive any more; let those already received reach the outbox before the
    // agent closes the store (an ack applied to a closed store would only log an error).
    client.removeAllListeners('message');
    await this.sender.settled();
  }
}
