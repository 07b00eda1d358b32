import { type Ack, LANES, type Lane, LIMITS } from '@storelink/protocols';
import type { Logger } from 'pino';
import type { EdgeMetrics } from '../metrics.ts';
import type { Outbox } from '../outbox/types.ts';
import { DrainRate } from './rate.ts';

export interface SenderOptions {
  outbox: Outbox;
  site: string;
  gateway: string;
  batchMaxEvents: number;
  batchMaxBytes: number;
  inflightBatches: number;
  retransmitMs: number;
  now: () => number;
  metrics: EdgeMetrics;
  logger: Logger;
  /** Publishes one batch QoS1 on `.../up`. Its PUBACK means nothing to us [OUTBOX-ACK-2]. */
  publish: (json: string) => void;
}

interface InflightBatch {
  /** Per lane, the highest seq the batch carried. */
  upTo: Partial<Record<Lane, number>>;
  sentAt: number;
  events: number;
}

export interface SenderStatus {
  active: boolean;
  inflightBatches: number;
  sent: Record<Lane, number>;
  lastAckAt: number | null;
  retransmits: number;
  drainPerSecond: number;
}

/**
 * The uplink sender. Per lane it keeps `sent`, the last seq published in this session;
 * on every (re)connect `sent` restarts at the cloud's ack, so the backlog is replayed
 * from the last committed point, in seq order per lane [OUTBOX-ACK-2]. Lanes drain in
 * priority order: `tx`, then `event`, then `telemetry` [UPLINK-ORDER-1]. A batch counts
 * as in flight until the cloud *ack* covers it (not the broker PUBACK); with no ack
 * progress for `retransmitMs` while batches are in flight, `sent` rewinds to the ack
 * and the unacknowledged events are sent again (the cloud dedupes by seq).
 */
export class UplinkSender {
  private readonly sent: Record<Lane, number> = { tx: 0, event: 0, telemetry: 0 };
  private inflight: InflightBatch[] = [];
  private active = false;
  /** Bumped on every start/stop: a pump started for an older session publishes nothing. */
  private session = 0;
  private pumping = false;
  private again = false;
  private lastProgressAt = 0;
  private lastAckAt: number | null = null;
  private retransmits = 0;
  private timer: NodeJS.Timeout | null = null;
  private ackChain: Promise<void> = Promise.resolve();
  readonly rate: DrainRate;
  /** Per-lane drain rates (events the cloud acknowledged per second). */
  readonly laneRates: Record<Lane, DrainRate>;

  constructor(private readonly o: SenderOptions) {
    this.rate = new DrainRate(o.now);
    this.laneRates = {
      tx: new DrainRate(o.now),
      event: new DrainRate(o.now),
      telemetry: new DrainRate(o.now),
    };
  }

  /** A new cloud session: replay from the ack. */
  start(): void {
    this.session++;
    this.active = true;
    this.inflight = [];
    for (const lane of LANES) this.sent[lane] = this.o.outbox.acked(lane);
    this.lastProgressAt = this.o.now();
    this.wake();
  }

  stop(): void {
    this.session++;
    this.active = false;
    this.inflight = [];
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  status(): SenderStatus {
    return {
      active: this.active,
      inflightBatches: this.inflight.length,
      sent: { ...this.sent },
      lastAckAt: this.lastAckAt,
      retransmits: this.retransmits,
      drainPerSecond: this.rate.perSecond(),
    };
  }

  /** New events were appended (or an ack freed window room). */
  wake(): void {
    if (!this.active) return;
    if (this.pumping) {
      this.again = true;
      return;
    }
    void this.pump();
  }

  /** A validated ack from the cloud; acks of another outbox epoch are ignored [OUTBOX-EPOCH-1]. */
  onAck(ack: Ack): Promise<void> {
    this.ackChain = this.ackChain
      .then(() => this.applyAck(ack))
      .catch((e: unknown) => {
        this.o.logger.error({ err: (e as Error).message }, 'applying cloud ack failed');
      });
    return this.ackChain;
  }

  /** Resolves when every ack received so far has been applied (the store may then close). */
  async settled(): Promise<void> {
    await this.ackChain;
  }

  private async applyAck(ack: Ack): Promise<void> {
    const { outbox, now } = this.o;
    if (ack.epoch !== outbox.epoch) {
      this.o.logger.warn({ epoch: ack.epoch, ours: outbox.epoch }, 'ignoring ack for another outbox epoch');
      return;
    }
    this.lastAckAt = now();
    let advanced = 0;
    for (const lane of LANES) {
      const upTo = ack.acks[lane];
      if (upTo === undefined) continue;
      const before = outbox.acked(lane);
      if (upTo > before) {
        // Forget only what the cloud committed [OUTBOX-ACK-2].
        await outbox.ack(lane, upTo);
        advanced += upTo - before;
        this.laneRates[lane].record(upTo - before);
      }
      if (this.sent[lane] < upTo) this.sent[lane] = upTo;
    }
    if (advanced > 0) {
      this.lastProgressAt = now();
      this.rate.record(advanced);
    }
    this.dropCovered();
    this.wake();
  }

  private dropCovered(): void {
    const { outbox } = this.o;
    this.inflight = this.inflight.filter((b) =>
      LANES.some((lane) => b.upTo[lane] !== undefined && b.upTo[lane]! > outbox.acked(lane)),
    );
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      do {
        this.again = false;
        const session = this.session;
        while (this.active && session === this.session) {
          this.dropCovered();
          if (this.inflight.length >= this.o.inflightBatches) break;
          const batch = await this.build();
          if (!batch || session !== this.session || !this.active) break;
          if (this.inflight.length === 0) this.lastProgressAt = this.o.now();
          for (const lane of LANES) {
            const up = batch.upTo[lane];
            if (up !== undefined && up > this.sent[lane]) this.sent[lane] = up;
          }
          this.inflight.push({ upTo: batch.upTo, sentAt: this.o.now(), events: batch.events });
          this.o.publish(batch.json);
          this.o.metrics.batchesSent.inc();
          for (const lane of LANES)
            if (batch.counts[lane]) this.o.metrics.eventsSent.inc({ lane }, batch.counts[lane]);
          this.armRetransmit();
        }
      } while (this.again && this.active);
    } catch (e) {
      this.o.logger.error({ err: (e as Error).message }, 'uplink send failed');
    } finally {
      this.pumping = false;
    }
  }

  /** Reads the next batch: lanes in priority order, stored JSON concatenated as is. */
  private async build(): Promise<{
    json: string;
    upTo: Partial<Record<Lane, number>>;
    counts: Partial<Record<Lane, number>>;
    events: number;
  } | null> {
    const { outbox } = this.o;
    const floors: Record<string, number> = {};
    for (const lane of LANES) floors[lane] = outbox.floor(lane);
    const header = JSON.stringify({
      v: 1,
      gateway: this.o.gateway,
      site: this.o.site,
      epoch: outbox.epoch,
      sentAt: this.o.now(),
      floors,
      events: [],
    });
    const maxBytes = Math.min(this.o.batchMaxBytes, LIMITS.uplinkBatchBytes);
    let budget = maxBytes - Buffer.byteLength(header);
    let room = Math.min(this.o.batchMaxEvents, 5000);
    const parts: string[] = [];
    const upTo: Partial<Record<Lane, number>> = {};
    const counts: Partial<Record<Lane, number>> = {};
    let full = false;
    for (const lane of LANES) {
      if (full || room <= 0) break;
      const events = await outbox.read(lane, this.sent[lane], room, Math.max(budget, 1));
      for (const ev of events) {
        if (ev.seq <= (upTo[lane] ?? this.sent[lane])) continue;
        const size = Buffer.byteLength(ev.json) + 1;
        if (parts.length > 0 && size > budget) {
          full = true;
          break;
        }
        parts.push(ev.json);
        budget -= size;
        room--;
        upTo[lane] = ev.seq;
        counts[lane] = (counts[lane] ?? 0) + 1;
        if (room <= 0) break;
      }
      if (events.length > 0 && room <= 0) full = true;
    }
    if (parts.length === 0) return null;
    return { json: header.slice(0, -2) + parts.join(',') + ']}', upTo, counts, events: parts.length };
  }

  private armRetransmit(): void {
    if (this.timer) return;
    const check = () => {
      this.timer = null;
      if (!this.active || this.inflight.length === 0) return;
      const idle = this.o.now() - this.lastProgressAt;
      if (idle >= this.o.retransmitMs) {
        // The ack is the only proof; without it, send again from the ack [OUTBOX-ACK-2].
        this.retransmits++;
        this.o.metrics.retransmits.inc();
        this.o.logger.warn(
          { idleMs: idle, inflight: this.inflight.length },
          'no ack progress: resending from ack',
        );
        this.session++;
        this.inflight = [];
        for (const lane of LANES) this.sent[lane] = this.o.outbox.acked(lane);
        this.lastProgressAt = this.o.now();
        this.wake();
        this.armRetransmit();
      } else {
        this.timer = setTimeout(check, Math.max(10, this.o.retransmitMs - idle));
        this.timer.unref?.();
      }
    };
    this.timer = setTimeout(check, this.o.retransmitMs);
    this.timer.unref?.();
  }
}
