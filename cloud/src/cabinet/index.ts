import { cabinet as cab } from '@storelink/protocols';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { SendCommandInput } from '../commands/service.ts';
import type { CouponRedeemer } from '../members/coupons.ts';
import type { AgreementChargeClient } from '../payments/provider.ts';
import type { SqlCloudStore } from '../store/sql-store.ts';
import { SqlCabinetRepo, sqlCabinetTx } from './repo.ts';
import { CabinetService, type CabinetTiming, createCabinetMetrics } from './service.ts';

export * from './repo.ts';
export * from './service.ts';
export { default as cabinetRoutes, type CabinetRoutesOptions } from './routes.ts';

export interface Cabinets {
  service: CabinetService;
  close(): Promise<void>;
}

/**
 * Wires cabinets into a running cloud: the repo on the store's SQL, the service (unlocks
 * through the command service with the session-derived id), the ingest hook that applies
 * session events in the ingest transaction [CAB-CHARGE-1], the charge after commit and a
 * sweeper on an interval (charge retries, unanswered unlocks).
 */
export function startCabinets(opts: {
  store: SqlCloudStore;
  sendCommand: (c: SendCommandInput) => Promise<unknown>;
  payments: Record<string, AgreementChargeClient>;
  coupons?: CouponRedeemer;
  timing?: Partial<CabinetTiming>;
  sweepIntervalMs?: number;
  registry?: Registry;
  logger?: Logger;
  now: () => number;
}): Cabinets {
  const logger = opts.logger?.child({ component: 'cabinet' });
  const service = new CabinetService({
    repo: new SqlCabinetRepo(opts.store.sql),
    payments: opts.payments,
    ...(opts.coupons ? { coupons: opts.coupons } : {}),
    sendUnlock: async (c) => {
      await opts.sendCommand({
        id: c.id,
        gateway: c.gateway,
        type: cab.CABINET_UNLOCK,
        payload: c.payload,
        ttlMs: c.ttlMs,
      });
    },
    siteOf: async (id) => (await opts.store.getGateway(id))?.site,
    now: opts.now,
    ...(opts.timing ? { timing: opts.timing } : {}),
    metrics: createCabinetMetrics(opts.registry),
    ...(logger ? { logger } : {}),
  });
  let closed = false;
  const kick = (ids: string[]) => {
    // After the ingest transaction commits: the charge is an outside call [CAB-CHARGE-1].
    setTimeout(() => {
      for (const id of ids) {
        if (closed) return;
        service
          .tryCharge(id)
          .catch((e: unknown) => logger?.warn({ err: e, sessionId: id }, 'cabinet charge failed'));
      }
    }, 10).unref();
  };
  opts.store.onIngestEvents(async (q, batch) => {
    const tx = sqlCabinetTx(q);
    const toCharge: string[] = [];
    for (const e of batch.events) {
      if (e.type !== 'command.result' && !e.type.startsWith('cabinet.session.')) continue;
      const effect = await service.applyEvent(tx, batch.gateway, e.type, e.payload, batch.receivedAt);
      if (effect === 'applied' && e.type === 'cabinet.session.closed')
        toCharge.push((e.payload as { sessionId: string }).sessionId);
    }
    if (toCharge.length > 0) kick(toCharge);
  });
  const every = opts.sweepIntervalMs ?? 5_000;
  const timer =
    every > 0
      ? setInterval(() => {
          service.sweep().catch((e: unknown) => logger?.warn({ err: e }, 'cabinet sweep failed'));
        }, every)
      : undefined;
  timer?.unref();
  return {
    service,
    async close() {
      closed = true;
      if (timer) clearInterval(timer);
    },
  };
}
