import { VEND_DISPENSE } from '@storelink/protocols';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { CommandService, SendCommandInput } from '../commands/service.ts';
import type { CouponRedeemer } from '../members/coupons.ts';
import type { PaymentProviderClient } from '../payments/provider.ts';
import { NotificationVerifier, type SigAlgorithm } from '../payments/wechat.ts';
import type { SqlCloudStore } from '../store/sql-store.ts';
import { SqlOrdersRepo, sqlOrdersTx } from './repo.ts';
import {
  createOrdersMetrics,
  type DispenseCommand,
  OrdersService,
  type OrdersServiceOptions,
  type PaymentsTiming,
  type ProviderBinding,
  vendResultFromEvent,
} from './service.ts';
import { SettlementSweeper } from './sweeper.ts';

export * from './machine.ts';
export * from './repo.ts';
export * from './service.ts';
export * from './sweeper.ts';
export { default as vendingRoutes, type VendingRoutesOptions } from './routes.ts';

export interface PaymentsConfig extends PaymentsTiming {
  providers: Record<string, { algorithm: SigAlgorithm; key: string; serial?: string; maxSkewMs?: number }>;
  sweepIntervalMs: number;
}

export interface Vending {
  service: OrdersService;
  sweeper: SettlementSweeper;
  close(): Promise<void>;
}

/**
 * Wires vending into a running cloud: the orders repo on the store's SQL, the service
 * (dispense commands through the command service, with the order-derived id), the
 * ingest hook that settles orders from `vend.result` / `command.result` in the ingest
 * transaction, and the sweeper on an interval.
 */
export function startVending(opts: {
  store: SqlCloudStore;
  config: PaymentsConfig;
  sendCommand: (c: SendCommandInput) => Promise<unknown>;
  /** Sign now, store in the payment transaction, publish after commit [CMD-TX-1]. */
  commands?: Pick<CommandService, 'prepare' | 'publishPrepared'>;
  /** Provider API clients (query, close, refund) by provider name; none in production yet. */
  clients?: Record<string, PaymentProviderClient>;
  registry?: Registry;
  logger?: Logger;
  now: () => number;
  /** Members' coupons and the purchase hook (docs/members.md). */
  coupons?: CouponRedeemer;
  onPaid?: OrdersServiceOptions['onPaid'];
}): Vending {
  const { config } = opts;
  const providers: Record<string, ProviderBinding> = {};
  for (const [name, p] of Object.entries(config.providers)) {
    const client = opts.clients?.[name];
    providers[name] = {
      verifier: new NotificationVerifier(name, {
        algorithm: p.algorithm,
        key: p.key,
        ...(p.serial !== undefined ? { serial: p.serial } : {}),
        maxSkewMs: p.maxSkewMs ?? 5 * 60_000,
      }),
      ...(client ? { client } : {}),
    };
  }
  const logger = opts.logger?.child({ component: 'orders' });
  const service = new OrdersService({
    repo: new SqlOrdersRepo(opts.store.sql),
    providers,
    issueDispense: async (c) => {
      await opts.sendCommand({
        id: c.id,
        gateway: c.gateway,
        type: VEND_DISPENSE,
        payload: c.payload,
        ttlMs: c.ttlMs,
      });
    },
    ...(opts.commands ? { dispenseInTx: dispenseInTx(opts.commands) } : {}),
    now: opts.now,
    timing: config,
    metrics: createOrdersMetrics(opts.registry),
    ...(logger ? { logger } : {}),
    ...(opts.coupons ? { coupons: opts.coupons } : {}),
    ...(opts.onPaid ? { onPaid: opts.onPaid } : {}),
  });
  opts.store.onIngestEvents(async (q, batch) => {
    const tx = sqlOrdersTx(q);
    for (const e of batch.events) {
      const r = vendResultFromEvent(e.type, e.payload);
      if (r) await service.applyVendResult(tx, batch.gateway, r, batch.receivedAt);
    }
  });
  const sweeper = new SettlementSweeper(service, logger ? { logger } : {});
  if (config.sweepIntervalMs > 0) sweeper.start(config.sweepIntervalMs, opts.now);
  return { service, sweeper, close: () => sweeper.stop() };
}

function dispenseInTx(commands: Pick<CommandService, 'prepare' | 'publishPrepared'>) {
  return {
    prepare(c: DispenseCommand, site: string) {
      const p = commands.prepare(
        { id: c.id, gateway: c.gateway, type: VEND_DISPENSE, payload: c.payload, ttlMs: c.ttlMs },
        site,
      );
      return { row: p.row, publish: () => commands.publishPrepared(p) };
    },
  };
}
