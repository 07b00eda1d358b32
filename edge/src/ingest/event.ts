import {
  checkDeviceEvent,
  isStorelinkError,
  LIMITS,
  newId,
  parseJsonPayload,
  type StorelinkError,
  type UnsequencedEvent,
} from '@storelink/protocols';
import type { Logger } from 'pino';
import { edgeError } from '../errors.ts';
import type { EdgeMetrics } from '../metrics.ts';
import type { Outbox } from '../outbox/types.ts';

export interface IngestDeps {
  outbox: Outbox;
  site: string;
  gateway: string;
  now: () => number;
  metrics: EdgeMetrics;
  logger: Logger;
  /** Tells the device what was wrong with what it sent (dev/{id}/err, QoS1). */
  reportToDevice: (deviceId: string, topic: string, error: StorelinkError) => void;
  /** Per-device counters for /status. */
  count?: (deviceId: string, what: 'events' | 'rejected') => void;
}

/** `done(err)` closes the device connection without PUBACK; `done()` PUBACKs. */
export type Done = (err?: Error | null) => void;

/**
 * Device event handler: validate, wrap, append, and only then let the broker PUBACK
 * [OUTBOX-WRITE-1]. Runs inside aedes' `authorizePublish`, the one hook that runs
 * before aedes writes PUBACK, so this is the hot path: no awaits before the append.
 */
export class EventIngest {
  private inflight = 0;
  private idleWaiters: Array<() => void> = [];
  private closed = false;

  constructor(private readonly d: IngestDeps) {}

  /** Appends in progress (close waits for them). */
  get pending(): number {
    return this.inflight;
  }

  /** Stops accepting: later events close their connection unacknowledged (the device resends). */
  stop(): Promise<void> {
    this.closed = true;
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  handle(deviceId: string, type: string, topic: string, raw: Buffer, done: Done): void {
    const d = this.d;
    if (this.closed) {
      done(new Error('agent is stopping'));
      return;
    }
    const parsed = parseJsonPayload(raw, LIMITS.devicePayloadBytes);
    if (!parsed.ok) {
      this.refuse(deviceId, topic, parsed.error, done);
      return;
    }
    const checked = checkDeviceEvent(type, parsed.value);
    if (!checked.ok) {
      this.refuse(deviceId, topic, checked.error, done);
      return;
    }
    const { spec, ts, mid } = checked;
    const now = d.now();

    const event: UnsequencedEvent = {
      id: newId(now),
      type,
      device: deviceId,
      gateway: d.gateway,
      site: d.site,
      ts: ts ?? now,
      rts: now,
      lane: spec.lane,
      payload: parsed.value,
    };
    if (mid !== undefined) event.mid = mid;

    this.inflight++;
    // A resend of the same (device, mid) is stored once by the outbox [INGEST-DEDUPE-1].
    // [OUTBOX-WRITE-2] a callback, not a promise per event: this is the broker's hot path.
    d.outbox.appendWith(
      event,
      (err) => {
        this.settle();
        if (err) {
          this.appendFailed(deviceId, topic, spec.lane, err, done);
          return;
        }
        this.acceptedCounter(type, spec.lane).inc();
        d.count?.(deviceId, 'events');
        done();
      },
      parsed.text,
    );
  }

  /** Bound label children, so the hot path does not hash labels per event. */
  private readonly counters = new Map<string, { inc(): void }>();
  private acceptedCounter(type: string, lane: string): { inc(): void } {
    let c = this.counters.get(type);
    if (!c) {
      c = this.d.metrics.accepted.labels(type, lane);
      this.counters.set(type, c);
    }
    return c;
  }

  private settle(): void {
    this.inflight--;
    if (this.inflight === 0 && this.idleWaiters.length > 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Bad input: PUBACK (a resend cannot help), store nothing, tell the device, count, log. */
  private refuse(deviceId: string, topic: string, error: StorelinkError, done: Done): void {
    this.d.metrics.rejected.inc({ code: error.code });
    this.d.count?.(deviceId, 'rejected');
    this.d.logger.warn(
      { device: deviceId, topic, code: error.code, err: error.message },
      'device event refused',
    );
    this.d.reportToDevice(deviceId, topic, error);
    done();
  }

  private appendFailed(deviceId: string, topic: string, lane: string, err: unknown, done: Done): void {
    const e = isStorelinkError(err)
      ? err
      : edgeError('EDGE_ERR_OUTBOX_IO', { reason: (err as Error)?.message ?? String(err) }, { cause: err });
    this.d.metrics.rejected.inc({ code: e.code });
    if (lane === 'telemetry' && e.code === 'EDGE_ERR_OUTBOX_FULL') {
      // Telemetry may be lost under pressure [LANE-1]: acknowledge, count, tell the device.
      this.d.logger.warn({ device: deviceId, topic, code: e.code }, 'telemetry dropped: outbox full');
      this.d.reportToDevice(deviceId, topic, e);
      done();
      return;
    }
    // A lane that must not lose data: no PUBACK; aedes closes the connection and the
    // device keeps the message and resends it later [LANE-1].
    this.d.logger.error({ device: deviceId, topic, code: e.code, err: e.message }, 'event not stored');
    done(e);
  }
}
