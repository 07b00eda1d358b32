import { openPglite, openPgliteInWorker } from './pglite.ts';
import { openPostgres } from './postgres.ts';
import { SqlCloudStore } from './sql-store.ts';
import type { CloudStore } from './store.ts';

export type { Sql, SqlQueryable } from './sql.ts';
export { MIGRATIONS, migrate } from './migrations.ts';
export { openPglite, openPgliteInWorker } from './pglite.ts';
export { openPostgres } from './postgres.ts';
export { SqlCloudStore } from './sql-store.ts';
export * from './store.ts';

/** `worker` (default true): PGlite runs in a worker thread, falling back to this thread if it cannot start. */
export type StoreConfig =
  | { kind: 'pglite'; dir?: string; worker?: boolean }
  | { kind: 'postgres'; url: string };

/**
 * Opens the configured store and migrates it. PGlite without `dir` runs in memory
 * (tests); the cloud config always gives it a directory under `dataDir`.
 */
export async function openStore(cfg: StoreConfig): Promise<CloudStore> {
  const sql = cfg.kind === 'pglite' ? await openPgliteDriver(cfg) : await openPostgres(cfg.url);
  try {
    return await SqlCloudStore.open(sql);
  } catch (e) {
    await sql.close().catch(() => undefined);
    throw e;
  }
}

async function openPgliteDriver(cfg: { dir?: string; worker?: boolean }) {
  if (cfg.worker === false) return openPglite(cfg.dir);
  try {
    return await openPgliteInWorker(cfg.dir);
  } catch {
    // e.g. a build without the worker file: the same database, on this thread.
    return openPglite(cfg.dir);
  }
}
