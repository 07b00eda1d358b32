import { openPglite } from './pglite.ts';
import { openPostgres } from './postgres.ts';
import { SqlCloudStore } from './sql-store.ts';
import type { CloudStore } from './store.ts';

export type { Sql, SqlQueryable } from './sql.ts';
export { MIGRATIONS, migrate } from './migrations.ts';
export { openPglite } from './pglite.ts';
export { openPostgres } from './postgres.ts';
export { SqlCloudStore } from './sql-store.ts';
export * from './store.ts';

export type StoreConfig = { kind: 'pglite'; dir?: string } | { kind: 'postgres'; url: string };

/**
 * Opens the configured store and migrates it. PGlite without `dir` runs in memory
 * (tests); the cloud config always gives it a directory under `dataDir`.
 */
export async function openStore(cfg: StoreConfig): Promise<CloudStore> {
  const sql = cfg.kind === 'pglite' ? await openPglite(cfg.dir) : await openPostgres(cfg.url);
  try {
    return await SqlCloudStore.open(sql);
  } catch (e) {
    await sql.close().catch(() => undefined);
    throw e;
  }
}
