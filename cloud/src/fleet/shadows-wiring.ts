import type { Logger } from 'pino';
import type { SendCommandInput } from '../commands/service.ts';
import type { CloudMetrics } from '../metrics.ts';
import type { SqlCloudStore } from '../store/sql-store.ts';
import type { CommandRecord } from '../store/store.ts';
import { RolloutService } from './rollouts.ts';
import { ShadowService } from './shadows.ts';

export { RolloutService, type RolloutSpec } from './rollouts.ts';
export { ShadowService } from './shadows.ts';

export interface ShadowsAndRollouts {
  shadows: ShadowService;
  rollouts: RolloutService;
  /** Call at each applied gateway birth (ingest.onGatewayOnline) [SHADOW-REDELIVER-1]. */
  gatewayOnline(gateway: string): void;
  close(): Promise<void>;
}

/**
 * Wires shadows and rollouts into a running cloud: shadow reports move in the ingest
 * transaction, a birth re-issues pending shadows, and the rollout engine runs every
 * `tickMs` (0 = never; tests call `rollouts.tick()`), besides being nudged by outcomes.
 */
export function startShadowsAndRollouts(opts: {
  store: SqlCloudStore;
  sendCommand: (input: SendCommandInput) => Promise<CommandRecord>;
  now: () => number;
  logger?: Logger;
  tickMs?: number;
  commandTtlMs?: number;
  metrics?: CloudMetrics;
}): ShadowsAndRollouts {
  const shadows = new ShadowService({
    sql: opts.store.sql,
    sendCommand: opts.sendCommand,
    getCommand: (id) => opts.store.getCommand(id),
    now: opts.now,
    ...(opts.logger ? { logger: opts.logger } : {}),
    ...(opts.commandTtlMs !== undefined ? { commandTtlMs: opts.commandTtlMs } : {}),
    ...(opts.metrics ? { metrics: opts.metrics } : {}),
  });
  const rollouts = new RolloutService({
    sql: opts.store.sql,
    shadows,
    now: opts.now,
    ...(opts.logger ? { logger: opts.logger } : {}),
    ...(opts.metrics ? { metrics: opts.metrics } : {}),
  });
  opts.store.onIngestEvents((tx, batch) => shadows.applyEvents(tx, batch.events));
  const tickMs = opts.tickMs ?? 2000;
  const timer =
    tickMs > 0
      ? setInterval(() => {
          rollouts
            .tick()
            .catch((e: unknown) => opts.logger?.error({ err: (e as Error).message }, 'rollout tick failed'));
        }, tickMs)
      : null;
  timer?.unref();
  return {
    shadows,
    rollouts,
    gatewayOnline(gateway) {
      shadows
        .reconcile(gateway)
        .catch((e: unknown) =>
          opts.logger?.warn({ gateway, err: (e as Error).message }, 'shadow reconcile failed'),
        );
    },
    close: async () => {
      if (timer) clearInterval(timer);
    },
  };
}
