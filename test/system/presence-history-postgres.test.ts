/**
 * Presence history on a real PostgreSQL 15 (the unit run covers PGlite): the same SQL for
 * the transitions recorded with birth/death/heartbeat/revoke, the locked sweep, pruning and
 * the route (docs/fleet-provisioning.md "Presence history").
 */
import { afterAll, beforeAll } from 'vitest';
import { runPresenceHistorySuite } from '../../cloud/src/fleet/presence-history-suite.ts';
import { openStore } from '../../cloud/src/store/index.ts';
import type { SqlCloudStore } from '../../cloud/src/store/sql-store.ts';
import { type Postgres, startPostgres } from '../helpers/postgres.ts';

let pg: Postgres;
beforeAll(async () => {
  pg = await startPostgres();
}, 120_000);
afterAll(async () => {
  await pg?.stop();
});

runPresenceHistorySuite(
  'postgres',
  async () =>
    (await openStore({ kind: 'postgres', url: pg.createDatabase('presence_history') })) as SqlCloudStore,
);
