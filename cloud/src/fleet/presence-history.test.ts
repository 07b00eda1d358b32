import { openStore } from '../store/index.ts';
import type { SqlCloudStore } from '../store/sql-store.ts';
import { runPresenceHistorySuite } from './presence-history-suite.ts';

runPresenceHistorySuite(
  'pglite',
  async () => (await openStore({ kind: 'pglite', worker: false })) as SqlCloudStore,
);
