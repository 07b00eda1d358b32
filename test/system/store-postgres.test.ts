import { openStore } from '../../cloud/src/store/index.ts';
import { runStoreSuite } from '../../cloud/src/store/conformance.ts';
import { afterAll, beforeAll } from 'vitest';
import { type Postgres, startPostgres } from '../helpers/postgres.ts';
import { cleanupTempDirs } from '../helpers/tmp.ts';

/**
 * The cloud store conformance suite (house style 1) on a real PostgreSQL 15 cluster
 * started for this run: the same suite PGlite passes in the unit run.
 */
let pg: Postgres;
let db = 0;

beforeAll(async () => {
  pg = await startPostgres();
});

afterAll(async () => {
  await pg?.stop();
  cleanupTempDirs();
});

runStoreSuite('postgres (system)', async () =>
  openStore({ kind: 'postgres', url: pg.createDatabase(`conf${++db}`) }),
);
