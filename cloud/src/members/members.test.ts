import { openStore, SqlCloudStore } from '../store/index.ts';
import type { Sql } from '../store/sql.ts';
import { MemoryMembersRepo } from './memory-repo.ts';
import { SqlMembersRepo } from './repo.ts';
import { runMembersSuite } from './suite.ts';

export const MEMBER_TABLES = [
  'members',
  'member_ids',
  'member_links',
  'member_merges',
  'member_activity',
  'member_tags',
  'member_rules',
  'coupon_templates',
  'coupons',
  'coupon_deliveries',
];

export async function truncateMembers(sql: Sql): Promise<void> {
  await sql.exec(`TRUNCATE ${MEMBER_TABLES.join(', ')}`);
}

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
