import {
  type Ack,
  allGatewaysFilter,
  type GatewayAddress,
  type GatewayState,
  gatewayTopic,
  type Heartbeat,
  isStorelinkError,
  type Lane,
  parseGatewayTopic,
  type UplinkBatch,
} from '@storelink/protocols';
import type { MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { cloudError } from '../errors.ts';
import type { CloudMetrics } from '../metrics.ts';
import { connectServiceClient } from '../mqtt-client.ts';
import type { CloudStore, IngestResult } from '../store/store.ts';
import { type Checked, checkHeartbeat, checkState, checkUplink } from './check.ts';

export interface IngestOptions {
  broker: { url: string; username?: string; password?: string };
  /** MQTT client id; one ingest per deployment (MQTT 3.1.1 has no shared subscriptions). */
  clientId?: string;
  store: CloudStore;
  metrics: CloudMetrics;
  logger: Logger;
  now?: () => number;
  /**
   * Batches received but not committed before we stop reading from the broker: past it,
   * the PUBACK of the next message waits, so the broker (and through it the gateways)
   * slow down instead of this process buffering without bound.
   */
  maxPending?: number;
  /**
   * The same bound in bytes of received payloads (default 32 MiB): with 1 MiB batches a
   * count alone would let 256 parsed batches (~1 GB of objects) pile up while the store
   * commits more slowly than a gateway drains.
   */
  maxPendingBytes?: number;
}

type Channel = 'up' | 'state' | 'hb';

/**
 * The ingest service: hears every gateway's `up`, `state` and `hb`; one handler per
 * channel; per gateway a promise chain keeps its messages in arrival order while
 * different gateways proceed in parallel. A batch is acknowledged on `.../ack` only after
 * its store transaction committed [OUTBOX-ACK-2]; a refused batch is counted, logged and
 * never acknowledged, and the service carries on.
 */
export class IngestService {
  private readonly chains = new Map<string, Promise<void>>();
  private pending = 0;
  private pendingBytes = 0;
  private readonly waiting: (() => void)[] = [];
  private closed = false;
  private readonly log: Logger;
  private readonly now: () => number;
  private readonly maxPending: number;
  private readonly maxPendingBytes: number;

  private constructor(
    private readonly client: MqttClient,
    private readonly opts: IngestOptions,
  ) {
    this.log = opts.logger.child({ component: 'ingest' });
    this.now = opts.now ?? Date.now;
    this.maxPending = opts.maxPending ?? 256;
    this.maxPendingBytes = opts.maxPendingBytes ?? 32 * 2 ** 20;
  }

  static async start(opts: IngestOptions): Promise<IngestService> {
    const client = await connectServiceClient({
      url: opts.broker.url,
      ...(opts.broker.username !== undefined ? { username: opts.broker.username } : {}),
      ...(opts.broker.password !== undefined ? { password: opts.broker.password } : {}),
      clientId: opts.clientId ?? `${opts.broker.username ?? 'storelink-cloud'}-ingest`,
      // Persistent session: QoS1 batches published while we reconnect wait for us.
      clean: false,
      logger: opts.logger,
    });
    const svc = new IngestService(client, opts);
    client.on('message', (topic, payload) => svc.onMessage(topic, payload));
    // Backpressure: the PUBACK (and the reading of the next packet) waits for room.
    // QoS0 (heartbeats) never waits: there is no PUBACK to hold back, heartbeats are
    // coalesced per gateway instead [INGEST-HB-1], and a stream held shut for longer than
    // the keepalive would also hold back the PINGRESP and drop the connection.
    client.handleMessage = (packet, done) => {
      if (packet.qos === 0 || svc.hasRoom() || svc.closed) done();
      else svc.waiting.push(() => done());
    };
    try {
      const granted = await client.subscribeAsync({
        [allGatewaysFilter('up')]: { qos: 1 },
        [allGatewaysFilter('state')]: { qos: 1 },
        [allGatewaysFilter('hb')]: { qos: 0 },
      });
      const refused = granted.filter((g) => g.qos === 128);
      if (refused.length)
        throw new Error(`broker refused subscriptions ${refused.map((g) => g.topic).join(', ')}`);
    } catch (e) {
      await client.endAsync(true).catch(() => undefined);
      throw cloudError('CLOUD_ERR_BROKER', { client: 'ingest', reason: (e as Error).message }, { cause: e });
    }
    svc.log.info('ingest subscribed to sl/v1/+/+/(up|state|hb)');
    return svc;
  }

  /** Room for one more message: both bounds hold (the message just received counts). */
  private hasRoom(): boolean {
    return this.pending <= this.maxPending && this.pendingBytes <= this.maxPendingBytes;
  }

  /** Batches and payload bytes received but not yet handled (the bounded ingest queue). */
  get queued(): { messages: number; bytes: number } {
    return { messages: this.pending, bytes: this.pendingBytes };
  }

  get connected(): boolean {
    return this.client.connected;
  }

  /** Resolves when every message received so far has been handled. */
  async idle(): Promise<void> {
    while (this.chains.size > 0) await Promise.all([...this.chains.values()]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.waiting.splice(0)) w();
    await this.idle();
    await this.client.endAsync();
  }

  // ---------- dispatch: one handler per channel ----------

  private onMessage(topic: string, payload: Buffer): void {
    if (this.closed) return;
    const receivedAt = this.now();
    const addr = parseGatewayTopic(topic);
    if (!addr || !(addr.channel in this.handlers)) {
      this.log.warn({ topic }, 'message on a topic ingest does not handle');
      return;
    }
    // An empty retained message clears a topic; it carries nothing to handle.
    if (payload.length === 0 && addr.channel !== 'up') return;
    const channel = addr.channel as Channel;
    this.handlers[channel](addr, payload, receivedAt);
  }

  private readonly handlers: Record<
    Channel,
    (addr: GatewayAddress, payload: Buffer, receivedAt: number) => void
  > = {
    up: (addr, payload, receivedAt) => {
      const c = checkUplink(addr, payload);
      if (!c.ok) this.refuse(addr, 'up', c);
      else this.enqueue(addr.gateway, () => this.handleUplink(c.value, receivedAt), payload.length);
    },
    state: (addr, payload, receivedAt) => {
      const c = checkState(addr, payload);
      if (!c.ok) this.refuse(addr, 'state', c);
      else this.enqueue(addr.gateway, () => this.handleState(c.value, receivedAt));
    },
    hb: (addr, payload, receivedAt) => {
      const c = checkHeartbeat(addr, payload);
      if (!c.ok) this.refuse(addr, 'hb', c);
      else this.queueHeartbeat(addr.gateway, c.value, receivedAt);
    },
  };

  private refuse(addr: GatewayAddress, channel: Channel, c: Extract<Checked<unknown>, { ok: false }>): void {
    const code = channel === 'up' ? 'CLOUD_ERR_BATCH_REJECTED' : 'CLOUD_ERR_STATE_REJECTED';
    const err =
      channel === 'up'
        ? cloudError(code, { gateway: addr.gateway, reason: c.reason })
        : cloudError(code, {
            kind: channel === 'hb' ? 'heartbeat' : 'state',
            gateway: addr.gateway,
            reason: c.reason,
          });
    this.opts.metrics.ingestRejected.inc({ channel, code: c.code });
    this.log.warn({ code, cause: c.code, gateway: addr.gateway, site: addr.site, channel }, err.message);
  }

  /** Per-gateway order, parallel across gateways; a failure never breaks the chain. */
  private enqueue(gateway: string, job: () => Promise<void>, bytes = 0): void {
    this.pending += 1;
    this.pendingBytes += bytes;
    this.opts.metrics.ingestQueue.set(this.pending);
    const prev = this.chains.get(gateway) ?? Promise.resolve();
    const next = prev
      .then(job)
      .catch((e: unknown) => {
        const code = isStorelinkError(e) ? e.code : 'CLOUD_ERR_STORE';
        this.log.error({ err: e, code, gateway }, `ingest of a message from ${gateway} failed`);
      })
      .finally(() => {
        this.pending -= 1;
        this.pendingBytes -= bytes;
        this.opts.metrics.ingestQueue.set(this.pending);
        if (this.chains.get(gateway) === next) this.chains.delete(gateway);
        while (this.waiting.length > 0 && this.hasRoom()) this.waiting.shift()!();
      });
    this.chains.set(gateway, next);
  }

  // ---------- handlers ----------

  /** Commit, then acknowledge [OUTBOX-ACK-2]. */
  private async handleUplink(batch: UplinkBatch, receivedAt: number): Promise<void> {
    const { metrics } = this.opts;
    let r: IngestResult;
    try {
      r = await this.opts.store.ingestBatch(batch, receivedAt);
    } catch (e) {
      if (isStorelinkError(e) && e.code === 'CLOUD_ERR_BATCH_REJECTED') {
        metrics.ingestRejected.inc({ channel: 'up', code: e.code });
        this.log.warn({ code: e.code, gateway: batch.gateway }, e.message);
        return;
      }
      // Not acknowledged: the edge keeps the events and sends them again.
      metrics.ingestFailed.inc({ code: isStorelinkError(e) ? e.code : 'CLOUD_ERR_STORE' });
      throw e;
    }
    const ack: Ack = { v: 1, epoch: r.epoch, acks: r.acks, at: this.now() };
    const topic = gatewayTopic(batch, 'ack');
    // Retained: a gateway that reconnects learns its watermark at once. Handed to the
    // client in commit order (MQTT.js sends in order) but its PUBACK is NOT awaited here:
    // while the ingest queue is full, reading from the broker (hence that PUBACK) waits
    // for this job to finish, so awaiting it would deadlock the queue; and the next batch
    // can commit meanwhile.
    this.client.publish(topic, JSON.stringify(ack), { qos: 1, retain: true }, (e) => {
      if (!e) return;
      // Committed but not acknowledged: the resend will be a duplicate and get this ack.
      metrics.ingestFailed.inc({ code: 'CLOUD_ERR_BROKER' });
      const err = cloudError('CLOUD_ERR_BROKER', { client: 'ingest', reason: e.message }, { cause: e });
      this.log.error({ err, code: err.code, gateway: batch.gateway }, err.message);
    });
    this.account(batch, r, receivedAt);
  }

  private readonly onlineListeners: Array<(gateway: string) => void> = [];

  /** Called after a birth was applied: the gateway has (re)subscribed to its `cmd` topic. */
  onGatewayOnline(listener: (gateway: string) => void): void {
    this.onlineListeners.push(listener);
  }

  /** [PRESENCE-BDSEQ-1] is decided by the store, in a transaction. */
  private async handleState(state: GatewayState, receivedAt: number): Promise<void> {
    const r = await this.opts.store.applyGatewayState(state, receivedAt);
    this.opts.metrics.gatewayStates.inc({ state: state.state, applied: String(r.applied) });
    const line = { gateway: state.gateway, state: state.state, bdSeq: state.bdSeq, ...r };
    if (r.applied) {
      this.log.info(line, `gateway ${state.gateway} is ${state.state}`);
      if (state.state === 'online') for (const l of this.onlineListeners) l(state.gateway);
    } else
      this.log.info(
        line,
        `gateway ${state.gateway} ${state.state} (bdSeq ${state.bdSeq}) ignored: ${r.reason}`,
      );
  }

  /**
   * [INGEST-HB-1] Latest wins: at most one heartbeat per gateway waits in the queue; a
   * newer one replaces it there (counted `applied="coalesced"`). Under overload the queue
   * then grows with gateways, not with time, and no heartbeat holds up a batch.
   */
  private queueHeartbeat(gateway: string, hb: Heartbeat, receivedAt: number): void {
    const queued = this.heartbeatsQueued.get(gateway);
    if (queued) {
      queued.hb = hb;
      queued.receivedAt = receivedAt;
      this.opts.metrics.heartbeats.inc({ applied: 'coalesced' });
      return;
    }
    const entry = { hb, receivedAt };
    this.heartbeatsQueued.set(gateway, entry);
    this.enqueue(gateway, () => {
      this.heartbeatsQueued.delete(gateway);
      return this.handleHeartbeat(entry.hb, entry.receivedAt);
    });
  }

  private readonly heartbeatsQueued = new Map<string, { hb: Heartbeat; receivedAt: number }>();

  private async handleHeartbeat(hb: Heartbeat, receivedAt: number): Promise<void> {
    const applied = await this.opts.store.recordHeartbeat(hb, receivedAt);
    this.opts.metrics.heartbeats.inc({ applied: String(applied) });
  }

  private account(batch: UplinkBatch, r: IngestResult, receivedAt: number): void {
    const { metrics } = this.opts;
    metrics.ingestBatches.inc();
    for (const [lane, n] of Object.entries(r.insertedByLane)) metrics.ingestEvents.inc({ lane }, n);
    for (const [lane, n] of Object.entries(r.duplicatesByLane)) metrics.ingestDuplicates.inc({ lane }, n);
    for (const g of r.gaps) {
      metrics.ingestGapSeqs.inc({ lane: g.lane, reason: g.reason }, g.toSeq - g.fromSeq + 1);
      this.log.warn(
        {
          gateway: batch.gateway,
          epoch: g.epoch,
          lane: g.lane,
          fromSeq: g.fromSeq,
          toSeq: g.toSeq,
          reason: g.reason,
        },
        `seqs ${g.fromSeq}..${g.toSeq} of ${batch.gateway}/${g.lane} were dropped at the edge`,
      );
    }
    for (const h of r.holes) {
      metrics.ingestHoles.inc({ lane: h.lane as Lane });
      this.log.info(
        { gateway: batch.gateway, epoch: r.epoch, ...h },
        `in-transit gap: ${batch.gateway}/${h.lane} seqs ${h.fromSeq}..${h.toSeq} not received yet, ack held at ${h.fromSeq - 1}`,
      );
    }
    for (const c of r.commandResults) {
      metrics.commandResults.inc({ status: c.status });
      metrics.commandRtt.observe(c.rttMs / 1000);
    }
    metrics.ingestLatency.observe(Math.max(0, this.now() - receivedAt) / 1000);
    this.log.debug(
      {
        gateway: batch.gateway,
        epoch: r.epoch,
        inserted: r.inserted,
        duplicates: r.duplicates,
        acks: r.acks,
      },
      'batch committed and acknowledged',
    );
  }
}
