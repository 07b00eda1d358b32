import { openStore } from '../store/index.ts';
import type { SqlCloudStore } from '../store/sql-store.ts';
import { runShadowsRolloutsSuite } from './shadows-rollouts-suite.ts';

// The suite on PGlite; test/system/fleet-shadows-postgres.test.ts runs it on PostgreSQL.
runShadowsRolloutsSuite('pglite', async () => (await openStore({ kind: 'pglite' })) as SqlCloudStore);
