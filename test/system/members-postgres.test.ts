import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runMembersBench } from '../../bench/members.ts';
import { runCouponsTorture } from '../../bench/torture-coupons.ts';
import { SqlMembersRepo } from '../../cloud/src/members/repo.ts';
import { runMembersSuite, truncateMembers } from '../../cloud/src/members/suite.ts';
import { openStore, SqlCloudStore } from '../../cloud/src/store/index.ts';
import { type Postgres, startPostgres } from '../helpers/postgres.ts';
import { cleanupTempDirs } from '../helpers/tmp.ts';

/**
 * Members and coupons on a real PostgreSQL cluster started for this run: the same
 * conformance suite PGlite and the memory repo pass in the unit run, a short coupons
 * torture (the million-event run is `npm run torture -- coupons`), and the members
 * benchmark's PostgreSQL figures.
 */
let pg: Postgres;

beforeAll(async () => {
  pg = await startPostgres();
});

afterAll(async () => {
  await pg?.stop();
  cleanupTempDirs();
});

runMembersSuite('postgres (system)', async () => {
  const store = await openStore({ kind: 'postgres', url: pg.createDatabase('members_suite') });
  if (!(store instanceof SqlCloudStore)) throw new Error('expected the SQL store');
  return {
    fresh: async () => {
      await truncateMembers(store.sql);
      return new SqlMembersRepo(store.sql);
    },
    close: () => store.close(),
  };
});

describe('coupons torture and members bench (short runs)', () => {
  it('a replayed stream with duplicates and late events: no duplicate, over-cap or over-budget coupon (memory repo)', async () => {
    const r = await runCouponsTorture({ events: 20_000, seed: 3 });
    expect(r.duplicates_seen).toBeGreaterThan(0);
    expect(r.out_of_order).toBeGreaterThan(0);
    expect(r.issued).toBeGreaterThan(0);
    expect(r.capped).toBeGreaterThan(0);
    expect(r).toMatchObject({ duplicate_issues: 0, over_cap: 0, over_budget: 0 });
  });

  it('the same on the SQL repo (PGlite), small', async () => {
    const r = await runCouponsTorture({ events: 1500, seed: 4, perMember: 15, store: 'pglite' });
    expect(r.issued).toBeGreaterThan(0);
    expect(r).toMatchObject({ duplicate_issues: 0, over_cap: 0, over_budget: 0 });
  });

  it('bench members on PostgreSQL: profile events/s and rule evaluation latency', async () => {
    const r = await runMembersBench({
      events: 500,
      ruleEvents: 200,
      pgUrl: pg.createDatabase('members_bench'),
    });
    console.log(JSON.stringify(r));
    expect(r.store).toBe('postgres');
    expect(r.profile_events_s).toBeGreaterThan(0);
    expect(r.rule_events).toBeGreaterThan(0);
    expect(r.coupons_issued).toBeGreaterThan(0);
  });
});
