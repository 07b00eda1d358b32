import { fleet, type UnsequencedEvent } from '@storelink/protocols';
import type { Logger } from 'pino';
import type { CommandRouter } from '../commands/index.ts';
import type { KvStore } from '../outbox/types.ts';
import { type GatewayShadowKey, ShadowAgent, type ShadowAgentDeps } from './index.ts';

export { type EdgeShadowState, type GatewayShadowKey, ShadowAgent } from './index.ts';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
const LABEL_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,31}$/;

/**
 * The gateway's own shadow keys [SHADOW-GW-1]: `logLevel` (the agent's pino level) and
 * `labels` (operator metadata: up to 32 name → text pairs, shown in the reported shadow
 * and usable to pick rollout groups). Everything else in the gateway's desired is refused.
 */
export function gatewayShadowKeys(logger: Logger): Record<string, GatewayShadowKey> {
  let labels: Record<string, string> = {};
  return {
    logLevel: {
      get: () => logger.level,
      check: (v) =>
        typeof v === 'string' && LOG_LEVELS.includes(v) ? null : `must be one of ${LOG_LEVELS.join(', ')}`,
      set: (v) => {
        logger.level = v as string;
      },
    },
    labels: {
      get: () => ({ ...labels }),
      check: (v) => {
        if (typeof v !== 'object' || v === null || Array.isArray(v))
          return 'must be an object of text values';
        const entries = Object.entries(v);
        if (entries.length > 32) return 'at most 32 labels';
        for (const [k, x] of entries) {
          if (!LABEL_RE.test(k)) return `label name '${k}' must match ${LABEL_RE.source}`;
          if (typeof x !== 'string' || x.length > 128)
            return `label '${k}' must be text of at most 128 characters`;
        }
        return null;
      },
      set: (v) => {
        labels = { ...(v as Record<string, string>) };
      },
    },
  };
}

export interface StartShadowsOptions {
  site: string;
  gateway: string;
  now: () => number;
  kv: KvStore;
  logger: Logger;
  append: (ev: UnsequencedEvent) => Promise<void>;
  publishToDevice: (topic: string, json: string) => Promise<void>;
  knownDevice: (id: string) => boolean;
  deviceOnline: (id: string) => boolean;
  commands: CommandRouter;
  deviceTimeoutMs: number;
  firmwareTimeoutMs?: number;
  /** Counts handled versions (EdgeMetrics.shadowApplies). */
  count?: ShadowAgentDeps['count'];
  onBadResult?: ShadowAgentDeps['onBadResult'];
  /** Defaults to `gatewayShadowKeys(logger)`. */
  gatewayKeys?: Record<string, GatewayShadowKey>;
}

/**
 * Creates the shadow agent, puts the gateway keys back to what the last applied shadow
 * set (they live in memory; the shadow is the durable copy), and registers the
 * `shadow.delta` executor with the command router.
 */
export async function startShadows(o: StartShadowsOptions): Promise<ShadowAgent> {
  const log = o.logger.child({ component: 'shadow' });
  const gatewayKeys = o.gatewayKeys ?? gatewayShadowKeys(o.logger);
  const agent = new ShadowAgent({
    site: o.site,
    gateway: o.gateway,
    now: o.now,
    kv: o.kv,
    logger: log,
    append: o.append,
    publishToDevice: o.publishToDevice,
    knownDevice: o.knownDevice,
    deviceOnline: o.deviceOnline,
    gatewayKeys,
    deviceTimeoutMs: o.deviceTimeoutMs,
    ...(o.firmwareTimeoutMs !== undefined ? { firmwareTimeoutMs: o.firmwareTimeoutMs } : {}),
    ...(o.count ? { count: o.count } : {}),
    ...(o.onBadResult ? { onBadResult: o.onBadResult } : {}),
  });
  const st = await agent.state();
  for (const [k, v] of Object.entries(st.reported)) {
    const key = Object.hasOwn(gatewayKeys, k) ? gatewayKeys[k] : undefined;
    if (key && key.check(v) === null) key.set(v);
  }
  o.commands.registerExecutor(fleet.SHADOW_DELTA, agent.execute);
  return agent;
}
