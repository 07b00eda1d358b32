import { openStore, SqlCloudStore } from '../store/index.ts';
import { MemoryMembersRepo } from './memory-repo.ts';
import { SqlMembersRepo } from './repo.ts';
import { runMembersSuite, truncateMembers } from './suite.ts';

runMembersSuite('memory', async () => ({ fresh: async () => new MemoryMembersRepo() }));
runMembersSuite('pglite', async () => {
  const store = await openStore({ kind: 'pglite', worker: false });
  if (!(store instanceof SqlCloudStore)) throw new Error('expected the SQL store');
  return {
    fresh: async () => {
      await truncateMembers(store.sql);
      return new SqlMembersRepo(store.sql);
    },
    close: () => store.close(),
  };
});
