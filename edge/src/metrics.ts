import { LANES } from '@storelink/protocols';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Outbox } from './outbox/types.ts';

/**
 * The agent's Prometheus metrics, on a per-instance Registry (never the global one), so
 * several agents can run in one test process.
 */
export class EdgeMetrics {
  readonly registry = new Registry();
  readonly accepted: Counter<'type' | 'lane'>;
  readonly rejected: Counter<'code'>;
  readonly authFailures: Counter<'reason'>;
  readonly aclDenied: Counter<'kind'>;
  readonly batchesSent: Counter;
  readonly eventsSent: Counter<'lane'>;
  readonly retransmits: Counter;
  readonly reconnects: Counter;
  readonly uplinkConnected: Gauge;
  readonly commandResults: Counter<'status'>;
  readonly commandLatency: Histogram;
  readonly devicesOnline: Gauge;
  readonly shadowApplies: Counter<'target' | 'status'>;

  constructor(sources: { outbox: () => Outbox | undefined; devicesOnline: () => number }) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'storelink_edge_process_' });
    this.accepted = new Counter({
      name: 'storelink_edge_events_accepted_total',
      help: 'device and edge events stored in the outbox',
      labelNames: ['type', 'lane'],
      registers,
    });
    this.rejected = new Counter({
      name: 'storelink_edge_rejected_total',
      help: 'device messages refused, by error code',
      labelNames: ['code'],
      registers,
    });
    this.authFailures = new Counter({
      name: 'storelink_edge_auth_failures_total',
      help: 'device connections refused at authentication',
      labelNames: ['reason'],
      registers,
    });
    this.aclDenied = new Counter({
      name: 'storelink_edge_acl_denied_total',
      help: 'publishes and subscriptions refused by the device ACL',
      labelNames: ['kind'],
      registers,
    });
    this.batchesSent = new Counter({
      name: 'storelink_edge_uplink_batches_sent_total',
      help: 'uplink batches published',
      registers,
    });
    this.eventsSent = new Counter({
      name: 'storelink_edge_uplink_events_sent_total',
      help: 'events published in uplink batches (resends included)',
      labelNames: ['lane'],
      registers,
    });
    this.retransmits = new Counter({
      name: 'storelink_edge_uplink_retransmits_total',
      help: 'times the uplink rewound to the cloud ack because no ack progress came [OUTBOX-ACK-2]',
      registers,
    });
    this.reconnects = new Counter({
      name: 'storelink_edge_uplink_reconnects_total',
      help: 'cloud connection attempts after the first',
      registers,
    });
    this.uplinkConnected = new Gauge({
      name: 'storelink_edge_uplink_connected',
      help: '1 while connected to the cloud broker',
      registers,
    });
    this.commandResults = new Counter({
      name: 'storelink_edge_command_results_total',
      help: 'command outcomes by status',
      labelNames: ['status'],
      registers,
    });
    this.commandLatency = new Histogram({
      name: 'storelink_edge_command_latency_seconds',
      help: 'time from receiving a command to its result',
      buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.devicesOnline = new Gauge({
      name: 'storelink_edge_devices_online',
      help: 'devices with a live connection',
      registers,
      collect() {
        this.set(sources.devicesOnline());
      },
    });
    this.shadowApplies = new Counter({
      name: 'storelink_edge_shadow_applies_total',
      help: 'shadow.delta versions handled, by target (gateway, device) and status (applied, failed, deferred, stale, refused)',
      labelNames: ['target', 'status'],
      registers,
    });
    // Outbox figures are read from the store at scrape time.
    const laneGauge = (
      name: string,
      help: string,
      pick: (o: Outbox, lane: (typeof LANES)[number]) => number,
    ) =>
      new Gauge({
        name,
        help,
        labelNames: ['lane'],
        registers,
        collect() {
          const o = sources.outbox();
          if (!o) return;
          for (const lane of LANES) this.set({ lane }, pick(o, lane));
        },
      });
    laneGauge('storelink_edge_outbox_depth', 'events held per lane', (o, l) => o.stats().lanes[l].depth);
    laneGauge('storelink_edge_outbox_bytes', 'bytes held per lane', (o, l) => o.stats().lanes[l].bytes);
    laneGauge(
      'storelink_edge_outbox_oldest_age_seconds',
      'age of the oldest event held per lane',
      (o, l) => o.stats().lanes[l].oldestAgeMs / 1000,
    );
    laneGauge('storelink_edge_uplink_acked_seq', 'highest seq the cloud acknowledged, per lane', (o, l) =>
      o.acked(l),
    );
    new Gauge({
      name: 'storelink_edge_outbox_dropped_events',
      help: 'events dropped by the outbox (never tx), by lane and reason; counted since the store was created',
      labelNames: ['lane', 'reason'],
      registers,
      collect() {
        const o = sources.outbox();
        if (!o) return;
        const st = o.stats();
        for (const lane of LANES) {
          for (const [reason, n] of Object.entries(st.lanes[lane].dropReasons)) this.set({ lane, reason }, n);
        }
      },
    });
  }
}

/**
 * A factory of counters that mirror a driver's own counters at scrape time (the driver
 * counts; nothing is counted twice). `counters()` is read at each scrape: undefined while
 * no driver is attached, and the counters then read 0.
 */
export function counterMirror<C>(registry: Registry, counters: () => C | undefined) {
  const registers = [registry];
  return <L extends string>(
    name: string,
    help: string,
    labelNames: L[],
    read: (c: C) => Array<[Partial<Record<L, string>>, number]>,
  ) =>
    new Counter<L>({
      name,
      help,
      labelNames,
      registers,
      collect() {
        this.reset();
        const c = counters();
        if (!c) return;
        for (const [labels, v] of read(c)) this.inc(labels as never, v);
      },
    });
}
