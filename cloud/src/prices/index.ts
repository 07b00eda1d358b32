import type { Logger } from 'pino';
import type { SqlCloudStore } from '../store/sql-store.ts';
import { PriceBook, type SendCommand } from './service.ts';

export { default as pricesRoutes, type PricesRoutesOptions } from './routes.ts';
export * from './service.ts';

export interface Prices {
  book: PriceBook;
  close(): Promise<void>;
}

/**
 * Wires the price book into a running cloud: campaign rows move in the ingest
 * transaction (`esl.tag_state`, `esl.tag_status`, `esl.alert`), and the promotion
 * scheduler runs every `tickMs` (0 = never; tests call `book.tick()`).
 */
export function startPrices(opts: {
  store: SqlCloudStore;
  sendCommand: SendCommand;
  now: () => number;
  logger?: Logger;
  tickMs?: number;
  deadlineMs?: number;
}): Prices {
  const logger = opts.logger?.child({ component: 'prices' });
  const book = new PriceBook({
    sql: opts.store.sql,
    sendCommand: opts.sendCommand,
    now: opts.now,
    ...(logger ? { logger } : {}),
    ...(opts.deadlineMs !== undefined ? { deadlineMs: opts.deadlineMs } : {}),
  });
  opts.store.onIngestEvents((tx, batch) => book.applyEvents(tx, batch.events));
  let timer: NodeJS.Timeout | null = null;
  const tickMs = opts.tickMs ?? 30_000;
  if (tickMs > 0) {
    timer = setInterval(() => {
      book
        .tick()
        .catch((e: unknown) => logger?.error({ err: (e as Error).message }, 'promotion tick failed'));
    }, tickMs);
    timer.unref();
  }
  return {
    book,
    close: async () => {
      if (timer) clearInterval(timer);
    },
  };
}
