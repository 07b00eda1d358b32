import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newId } from '@storelink/protocols';
import { afterAll, describe, expect, it } from 'vitest';
import { batchOf, telemetryRun } from '../testing.ts';
import { runStoreSuite } from './conformance.ts';
import { openStore } from './index.ts';
import { MIGRATIONS, migrate } from './migrations.ts';
import { openPglite } from './pglite.ts';
import { SqlCloudStore } from './sql-store.ts';

runStoreSuite('pglite (memory, this thread)', () => openStore({ kind: 'pglite', worker: false }));

describe('PGlite store on disk', () => {
  const dir = mkdtempSync(join(tmpdir(), 'storelink-pglite-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps data and migration state across a reopen; migrations are not applied twice', async () => {
    const gw = { gateway: 'gw-1', site: 's' };
    const epoch = newId();
    const sql1 = await openPglite(join(dir, 'db'));
    // Applied in version order, whatever order the entries are listed in.
    expect(await migrate(sql1)).toEqual(MIGRATIONS.map((m) => m.version).sort((a, b) => a - b));
    const s1 = await SqlCloudStore.open(sql1);
    await s1.ingestBatch(batchOf(gw, epoch, telemetryRun(gw, 1, 7)), 1);
    await s1.close();

    const sql2 = await openPglite(join(dir, 'db'));
    expect(await migrate(sql2)).toEqual([]);
    const s2 = await SqlCloudStore.open(sql2);
    expect(await s2.laneCounts('gw-1')).toMatchObject([{ epoch, stored: 7, acked: 7 }]);
    // the resend after a restart is still a duplicate
    expect(await s2.ingestBatch(batchOf(gw, epoch, telemetryRun(gw, 1, 7)), 2)).toMatchObject({
      inserted: 0,
      duplicates: 7,
    });
    await s2.close();
  });

  it('a failing migration names itself and leaves the version unapplied', async () => {
    const sql = await openPglite();
    await expect(
      migrate(sql, [{ version: 1, name: 'broken', sql: 'CREATE TABLE x (;' }]),
    ).rejects.toMatchObject({
      code: 'CLOUD_ERR_MIGRATION',
      message: expect.stringContaining('store migration 1 (broken) failed'),
    });
    expect((await sql.query('SELECT count(*)::int AS n FROM schema_migrations')).rows).toEqual([{ n: 0 }]);
    await sql.close();
  });
});
