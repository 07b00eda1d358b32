import { runShadowsRolloutsSuite } from '../../cloud/src/fleet/shadows-rollouts-suite.ts';
import { openStore } from '../../cloud/src/store/index.ts';
import type { SqlCloudStore } from '../../cloud/src/store/sql-store.ts';
import { afterAll, beforeAll } from 'vitest';
import { type Postgres, startPostgres } from '../helpers/postgres.ts';
import { cleanupTempDirs } from '../helpers/tmp.ts';

/**
 * Shadows and rollouts (docs/fleet-shadows-rollouts.md) on a real PostgreSQL 15 cluster
 * started for this run: the same suite PGlite passes in the unit run.
 */
let pg: Postgres;

beforeAll(async () => {
  pg = await startPostgres();
});

afterAll(async () => {
  await pg?.stop();
  cleanupTempDirs();
});

runShadowsRolloutsSuite(
  'postgres (system)',
  async () =>
    (await openStore({ kind: 'postgres', url: pg.createDatabase('fleetshadows') })) as SqlCloudStore,
);
