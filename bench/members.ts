/**
 * `npm run bench -- members --json [--events N] [--rule-events N] [--pg-url URL]`:
 * members on the real SQL repo — PGlite (default, in process) or PostgreSQL (`--pg-url`,
 * the system run) — through `MembersService`:
 *
 * - `profile_events_s`: activity events (purchases, visits; new and returning members)
 *   recorded into profiles per second, one transaction each, no rules;
 *   `baseline_inserts_s`: the same number of single-row INSERT transactions into a plain
 *   table on the same database in the same run, and `profile_vs_baseline` their ratio
 *   (the machine is noisy; the ratio is what to compare across runs);
 * - `rule_eval_p50_ms` / `rule_eval_p99_ms`: evaluation of three rules (event, profile
 *   and count-in-window conditions, a coupon action) per recognition event, measured
 *   around the rule step inside the recording transaction; `record_with_rules_p50_ms` /
 *   `_p99_ms`: the whole recording transaction of those events.
 */
import { MembersService } from '../cloud/src/members/service.ts';
import { SqlMembersRepo } from '../cloud/src/members/repo.ts';
import { migrate } from '../cloud/src/store/migrations.ts';
import { openPglite } from '../cloud/src/store/pglite.ts';
import { openPostgres } from '../cloud/src/store/postgres.ts';
import type { Sql } from '../cloud/src/store/sql.ts';
import { log, num, rng, type Scenario } from './lib.ts';

export interface MembersBenchResult {
  store: 'pglite' | 'postgres';
  events: number;
  members: number;
  profile_events_s: number;
  baseline_inserts_s: number;
  profile_vs_baseline: number;
  rule_events: number;
  rule_eval_p50_ms: number;
  rule_eval_p99_ms: number;
  record_with_rules_p50_ms: number;
  record_with_rules_p99_ms: number;
  coupons_issued: number;
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round((s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0) * 1000) / 1000;
};

export async function runMembersBench(o: {
  events: number;
  ruleEvents: number;
  pgUrl?: string;
  seed?: number;
}): Promise<MembersBenchResult> {
  const sql: Sql = o.pgUrl ? await openPostgres(o.pgUrl) : await openPglite();
  try {
    await migrate(sql);
    const rand = rng(o.seed ?? 1);
    const T0 = 1_763_000_000_000;
    let now = T0;
    const evals: number[] = [];
    const svc = new MembersService({
      repo: new SqlMembersRepo(sql),
      now: () => now,
      onRuleEvaluation: (ms) => evals.push(ms),
    });
    const members = Math.max(1, Math.floor(o.events / 5));
    const openid = (i: number) => `oBench${i.toString(36).padStart(6, '0')}`;

    // baseline: plain single-row insert transactions on the same database
    await sql.exec(
      'CREATE TABLE IF NOT EXISTS bench_members_baseline (k text PRIMARY KEY, v bigint NOT NULL)',
    );
    await sql.exec('TRUNCATE bench_members_baseline');
    let t = performance.now();
    for (let i = 0; i < o.events; i++)
      await sql.transaction((q) =>
        q.query('INSERT INTO bench_members_baseline (k, v) VALUES ($1, $2)', [`b${i}`, i]),
      );
    const baseline = o.events / ((performance.now() - t) / 1000);
    log(`baseline: ${Math.round(baseline)} inserts/s`);

    t = performance.now();
    for (let i = 0; i < o.events; i++) {
      const purchase = rand() < 0.4;
      now = T0 + i * 1000;
      await svc.record({
        key: `ev${i}`,
        id: { type: 'wechat_openid', value: openid(Math.floor(rand() * members)) },
        kind: purchase ? 'purchase' : 'visit',
        channel: purchase ? 'wechat' : 'app',
        store: `store-${i % 20}`,
        amountCents: purchase ? 100 + Math.floor(rand() * 900) : 0,
        at: now,
      });
    }
    const profileRate = o.events / ((performance.now() - t) / 1000);
    log(`profiles: ${Math.round(profileRate)} events/s`);

    await svc.putTemplate({
      id: 'b-welcome',
      name: 'welcome',
      kind: 'amount_off',
      amountOffCents: 100,
      validDays: 7,
      perMember: { max: 1, windowDays: 7 },
    });
    await svc.saveRule({
      id: 'b-recognised-buyer',
      name: 'recognised after a purchase',
      on: ['recognized'],
      conditions: [
        { type: 'event', field: 'channel', op: 'eq', value: 'store' },
        { type: 'count', kind: 'purchase', withinDays: 30, op: 'gte', value: 1 },
      ],
      actions: [{ type: 'issue_coupon', template: 'b-welcome' }],
    });
    await svc.saveRule({
      id: 'b-lapsed',
      name: 'recognised, no purchase in 30 days at this store',
      on: ['recognized'],
      conditions: [{ type: 'count', kind: 'purchase', withinDays: 30, sameStore: true, op: 'eq', value: 0 }],
      actions: [{ type: 'tag', tag: 'lapsed-here' }],
    });
    await svc.saveRule({
      id: 'b-loyal',
      name: 'loyal tier',
      on: ['recognized', 'purchase'],
      conditions: [{ type: 'profile', field: 'purchases', op: 'gte', value: 3 }],
      actions: [{ type: 'tag', tag: 'loyal' }],
    });
    const records: number[] = [];
    evals.length = 0;
    for (let i = 0; i < o.ruleEvents; i++) {
      now += 1000;
      const memberId = await svc.resolveRef({
        idType: 'wechat_openid',
        value: openid(Math.floor(rand() * members)),
      });
      if (!memberId) continue;
      const s = performance.now();
      await svc.record({
        key: `rec${i}`,
        id: { type: 'member', value: memberId },
        kind: 'recognized',
        channel: 'store',
        store: `store-${i % 20}`,
        at: now,
      });
      records.push(performance.now() - s);
    }
    const coupons = await svc.repo.listCoupons({ limit: 1_000_000 });
    return {
      store: o.pgUrl ? 'postgres' : 'pglite',
      events: o.events,
      members,
      profile_events_s: Math.round(profileRate),
      baseline_inserts_s: Math.round(baseline),
      profile_vs_baseline: Math.round((profileRate / baseline) * 1000) / 1000,
      rule_events: evals.length,
      rule_eval_p50_ms: pct(evals, 50),
      rule_eval_p99_ms: pct(evals, 99),
      record_with_rules_p50_ms: pct(records, 50),
      record_with_rules_p99_ms: pct(records, 99),
      coupons_issued: coupons.length,
    };
  } finally {
    await sql.close();
  }
}

export const membersBench: Scenario<MembersBenchResult> = {
  name: 'members',
  description:
    'member events into profiles (events/s vs plain inserts) and rule evaluation latency p50/p99, PGlite or PostgreSQL',
  options: {
    events: { type: 'string', default: '3000' },
    'rule-events': { type: 'string', default: '1000' },
    'pg-url': { type: 'string' },
    seed: { type: 'string', default: '1' },
  },
  async run(a) {
    const r = await runMembersBench({
      events: num(a.events, 3000),
      ruleEvents: num(a['rule-events'], 1000),
      ...(typeof a['pg-url'] === 'string' ? { pgUrl: a['pg-url'] } : {}),
      seed: num(a.seed, 1),
    });
    log('members bench:', r);
    return r;
  },
};
