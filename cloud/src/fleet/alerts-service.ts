import type { Logger } from 'pino';
import type { CloudMetrics } from '../metrics.ts';
import type { SqlCloudStore } from '../store/sql-store.ts';
import type { GatewayRecord } from '../store/store.ts';
import { AlertEngine, type AlertThresholds, type GatewayView } from './alerts.ts';
import { Webhooks } from './webhooks.ts';

export interface AlertsConfig {
  /** Sweep for time-based alerts every this many ms (0 = never; tests call `sweep()`). */
  sweepIntervalMs?: number;
  /** Look for due webhook deliveries every this many ms (0 = never; tests call `deliver()`). */
  deliverIntervalMs?: number;
  thresholds?: Partial<AlertThresholds>;
  webhookMaxAttempts?: number;
  webhookBackoffBaseMs?: number;
}

export interface Alerts {
  engine: AlertEngine;
  webhooks: Webhooks;
  /** One sweep now (time-based rules), then the due deliveries. */
  sweep(): Promise<void>;
  deliver(): Promise<number>;
  close(): Promise<void>;
}

/** A presence row as the sweep sees it. */
export function gatewayView(g: GatewayRecord): GatewayView {
  const hb = g.presence.heartbeat;
  return {
    id: g.id,
    site: g.site,
    state: g.presence.state,
    stateAt: g.presence.state === 'offline' ? g.presence.stateAt : null,
    lastSeen: g.presence.lastSeen,
    backlog: hb
      ? { depth: hb.outbox.depth, oldestAgeMs: hb.outbox.oldestAgeMs, heardAt: g.presence.lastSeen ?? hb.at }
      : null,
  };
}

/**
 * Wires alerts into a running cloud: the engine's ingest hook (in the batch transaction),
 * the webhook outbox as its transition sink, the sweep and the delivery loop on timers.
 */
export async function startAlerts(opts: {
  store: SqlCloudStore;
  metrics: CloudMetrics;
  now: () => number;
  logger?: Logger;
  config?: AlertsConfig;
}): Promise<Alerts> {
  const { metrics, store } = opts;
  const cfg = opts.config ?? {};
  const logger = opts.logger?.child({ component: 'alerts' });
  const engine = new AlertEngine({
    sql: store.sql,
    now: opts.now,
    ...(logger ? { logger } : {}),
    ...(cfg.thresholds ? { thresholds: cfg.thresholds } : {}),
    metrics: {
      raised: (kind) => metrics.alertsRaised.inc({ kind }),
      cleared: (kind) => metrics.alertsCleared.inc({ kind }),
      active: (counts) => {
        for (const [kind, n] of Object.entries(counts)) metrics.alertsActive.set({ kind }, n);
      },
    },
  });
  await engine.init();
  const webhooks = new Webhooks({
    sql: store.sql,
    now: opts.now,
    ...(logger ? { logger } : {}),
    ...(cfg.webhookMaxAttempts !== undefined ? { maxAttempts: cfg.webhookMaxAttempts } : {}),
    ...(cfg.webhookBackoffBaseMs !== undefined ? { backoffBaseMs: cfg.webhookBackoffBaseMs } : {}),
    metrics: {
      delivery: (outcome, seconds) => {
        metrics.webhookDeliveries.inc({ outcome });
        metrics.webhookLatency.observe(seconds);
      },
      pending: (n) => metrics.webhookPending.set(n),
    },
  });
  engine.onTransition(webhooks.enqueue);
  store.onIngestEvents((tx, batch) => engine.applyEvents(tx, batch));

  const sweep = async () => {
    await engine.sweep(async () => (await store.listGateways()).map(gatewayView));
    await webhooks.deliverDue();
  };
  const timers: NodeJS.Timeout[] = [];
  const inflight = new Set<Promise<unknown>>();
  const every = (ms: number | undefined, def: number, fn: () => Promise<unknown>, what: string) => {
    const period = ms ?? def;
    if (period <= 0) return;
    const t = setInterval(() => {
      const p = fn()
        .catch((e: unknown) => logger?.error({ err: (e as Error).message }, `${what} failed`))
        .finally(() => inflight.delete(p));
      inflight.add(p);
    }, period);
    t.unref();
    timers.push(t);
  };
  every(cfg.sweepIntervalMs, 5_000, sweep, 'alert sweep');
  every(cfg.deliverIntervalMs, 1_000, () => webhooks.deliverDue(), 'webhook delivery');
  return {
    engine,
    webhooks,
    sweep,
    deliver: () => webhooks.deliverDue(),
    close: async () => {
      for (const t of timers) clearInterval(t);
      // The store closes next: let a running pass finish first.
      await Promise.all([...inflight]);
    },
  };
}
