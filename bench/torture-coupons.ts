/**
 * `npm run torture -- coupons --events 1000000 --seed N --json`: a replayed stream of
 * member events with duplicates and out-of-order delivery through the real
 * `MembersService` (identity, activity, rules, coupon issuance), deterministic for a
 * seed, in simulated time.
 *
 * The repo is `MemoryMembersRepo` (same interface and transaction semantics as the SQL
 * one; cloud/src/members/members.test.ts runs the same suite on both): PGlite costs
 * ~1 ms per statement and a million events × ~10 statements would take hours.
 * `--store pglite` runs the SQL repo for small runs.
 *
 * Verdict, computed from the stored coupons (not from the service's counters):
 * - duplicate_issues: coupons beyond the first for one (rule, triggering event, template) [COUPON-ONCE-1];
 * - over_cap: windows of `perMember.windowDays` holding more than `perMember.max` coupons
 *   of a template for one member, by triggering-event time [COUPON-CAP-1];
 * - over_budget: coupons of a template beyond its budget [COUPON-BUDGET-1].
 */
import { MemoryMembersRepo } from '../cloud/src/members/memory-repo.ts';
import { type MembersRepo, SqlMembersRepo } from '../cloud/src/members/repo.ts';
import { MembersService } from '../cloud/src/members/service.ts';
import type { Coupon } from '../cloud/src/members/types.ts';
import { migrate } from '../cloud/src/store/migrations.ts';
import { openPglite } from '../cloud/src/store/pglite.ts';
import { log, num, rng as mulberry, type Scenario, str } from './lib.ts';

export interface CouponsTortureOptions {
  events: number;
  seed: number;
  /** Events per member on average. */
  perMember?: number;
  /** Share of events delivered twice, and share delivered far out of order. */
  duplicateRate?: number;
  lateRate?: number;
  store?: 'memory' | 'pglite';
}

export interface CouponsTortureResult {
  events: number;
  delivered: number;
  members: number;
  recorded: number;
  duplicates_seen: number;
  out_of_order: number;
  issued: number;
  capped: number;
  budget_refusals: number;
  duplicate_issues: number;
  over_cap: number;
  over_budget: number;
  seconds: number;
  events_per_s: number;
}

const DAY = 86_400_000;
const T0 = 1_760_000_000_000;

export const TEMPLATES = [
  {
    id: 'welcome-back',
    name: 'Welcome back, 3 off',
    kind: 'amount_off',
    amountOffCents: 300,
    validDays: 14,
    perMember: { max: 1, windowDays: 7 },
  },
  {
    id: 'big-spender',
    name: '10% off next',
    kind: 'percent_off',
    percentOff: 10,
    validDays: 30,
    perMember: { max: 2, windowDays: 30 },
  },
];

export const RULES = [
  {
    id: 'recognised-buyer',
    name: 'recognised within 30 days of a purchase',
    on: ['recognized'],
    conditions: [{ type: 'count', kind: 'purchase', withinDays: 30, op: 'gte', value: 1 }],
    actions: [{ type: 'issue_coupon', template: 'welcome-back' }],
  },
  {
    id: 'big-basket',
    name: 'a purchase of 8 yuan or more',
    on: ['purchase'],
    conditions: [{ type: 'event', field: 'amountCents', op: 'gte', value: 800 }],
    actions: [
      { type: 'issue_coupon', template: 'big-spender' },
      { type: 'tag', tag: 'big-basket' },
    ],
  },
];

interface Ev {
  key: string;
  member: number;
  kind: 'purchase' | 'recognized';
  amountCents: number;
  at: number;
}

export async function runCouponsTorture(o: CouponsTortureOptions): Promise<CouponsTortureResult> {
  const rand = mulberry(o.seed);
  const perMember = o.perMember ?? 40;
  const members = Math.max(1, Math.round(o.events / perMember));
  const dupRate = o.duplicateRate ?? 0.05;
  const lateRate = o.lateRate ?? 0.02;
  // Budgets: big enough to issue many, small enough that the second template runs out.
  const budgets = { 'welcome-back': Math.ceil(members * 2), 'big-spender': Math.ceil(members / 4) };

  let repo: MembersRepo;
  let close: () => Promise<void> = async () => undefined;
  if ((o.store ?? 'memory') === 'pglite') {
    const sql = await openPglite();
    await migrate(sql);
    repo = new SqlMembersRepo(sql);
    close = () => sql.close();
  } else repo = new MemoryMembersRepo();
  let now = T0;
  const svc = new MembersService({ repo, now: () => now });
  for (const t of TEMPLATES) await svc.putTemplate({ ...t, budget: budgets[t.id as keyof typeof budgets] });
  for (const r of RULES) await svc.saveRule(r);

  // The true stream, in event-time order over 120 simulated days.
  const span = 120 * DAY;
  const evs: Ev[] = [];
  for (let i = 0; i < o.events; i++) {
    const purchase = rand() < 0.3;
    evs.push({
      key: `e${i}`,
      member: Math.floor(rand() * members),
      kind: purchase ? 'purchase' : 'recognized',
      amountCents: purchase ? 200 + Math.floor(rand() * 1000) : 0,
      at: T0 + Math.floor((i / o.events) * span) + Math.floor(rand() * 60_000),
    });
  }
  // Delivery: local reordering (swap with a near neighbour), some events days late, duplicates.
  const delivered: Ev[] = [];
  const late: { due: number; ev: Ev }[] = [];
  let outOfOrder = 0;
  for (let i = 0; i < evs.length; i++) {
    if (i + 1 < evs.length && rand() < 0.1) [evs[i], evs[i + 1]] = [evs[i + 1]!, evs[i]!];
    const ev = evs[i]!;
    if (rand() < lateRate) {
      late.push({ due: i + Math.floor(rand() * 20_000), ev });
      outOfOrder++;
    } else delivered.push(ev);
    if (rand() < dupRate) late.push({ due: i + Math.floor(rand() * 2_000), ev });
    while (late.length && late[0]!.due <= i) delivered.push(late.shift()!.ev);
    if (late.length > 1 && late[late.length - 1]!.due < late[late.length - 2]!.due)
      late.sort((a, b) => a.due - b.due);
  }
  for (const l of late.sort((a, b) => a.due - b.due)) delivered.push(l.ev);

  const started = performance.now();
  let recorded = 0;
  let dups = 0;
  let lastLog = started;
  for (let i = 0; i < delivered.length; i++) {
    const e = delivered[i]!;
    now = Math.max(now, e.at);
    const r = await svc.record({
      key: e.key,
      id: { type: 'wechat_openid', value: `o${e.member.toString(36).padStart(6, '0')}` },
      kind: e.kind,
      channel: e.kind === 'purchase' ? 'wechat' : 'store',
      store: `store-${e.member % 50}`,
      amountCents: e.amountCents,
      at: e.at,
    });
    if (r.outcome === 'recorded') recorded++;
    else if (r.outcome === 'duplicate') dups++;
    if (performance.now() - lastLog > 10_000) {
      lastLog = performance.now();
      log(`coupons torture: ${i + 1}/${delivered.length} delivered`);
    }
  }
  const seconds = (performance.now() - started) / 1000;

  const coupons = await repo.listCoupons({ limit: Number.MAX_SAFE_INTEGER });
  const verdict = judge(coupons, budgets);
  const c = svc.metrics.coupons;
  const count = async (outcome: string) =>
    (await c.get()).values.filter((v) => v.labels.outcome === outcome).reduce((s, v) => s + v.value, 0);
  await close();
  return {
    events: o.events,
    delivered: delivered.length,
    members,
    recorded,
    duplicates_seen: dups,
    out_of_order: outOfOrder,
    issued: coupons.length,
    capped: await count('over_cap'),
    budget_refusals: await count('no_budget'),
    ...verdict,
    seconds: Math.round(seconds * 10) / 10,
    events_per_s: Math.round(delivered.length / seconds),
  };
}

/** Checks the invariants on the stored coupons. */
export function judge(coupons: Coupon[], budgets: Record<string, number>) {
  const byTrigger = new Map<string, number>();
  const byMemberTemplate = new Map<string, number[]>();
  const byTemplate = new Map<string, number>();
  for (const c of coupons) {
    const k = `${c.ruleId}\u0000${c.triggerKey}\u0000${c.templateId}`;
    byTrigger.set(k, (byTrigger.get(k) ?? 0) + 1);
    const mt = `${c.memberId}\u0000${c.templateId}`;
    const l = byMemberTemplate.get(mt);
    if (l) l.push(c.triggerAt);
    else byMemberTemplate.set(mt, [c.triggerAt]);
    byTemplate.set(c.templateId, (byTemplate.get(c.templateId) ?? 0) + 1);
  }
  let duplicate_issues = 0;
  for (const n of byTrigger.values()) duplicate_issues += n - 1;
  let over_cap = 0;
  for (const [mt, times] of byMemberTemplate) {
    const t = TEMPLATES.find((x) => x.id === mt.split('\u0000')[1]);
    if (!t) continue;
    const w = t.perMember.windowDays * DAY;
    times.sort((a, b) => a - b);
    // any window [times[i], times[i] + w) holding more than max coupons
    let j = 0;
    for (let i = 0; i < times.length; i++) {
      if (j < i) j = i;
      while (j + 1 < times.length && times[j + 1]! < times[i]! + w) j++;
      if (j - i + 1 > t.perMember.max) over_cap++;
    }
  }
  let over_budget = 0;
  for (const [id, n] of byTemplate) over_budget += Math.max(0, n - (budgets[id] ?? Number.POSITIVE_INFINITY));
  return { duplicate_issues, over_cap, over_budget };
}

export const coupons: Scenario<CouponsTortureResult> = {
  name: 'coupons',
  description:
    'member events replayed with duplicates and out of order: no duplicate, over-cap or over-budget coupon',
  options: {
    events: { type: 'string', default: '1000000' },
    seed: { type: 'string', default: '7' },
    'per-member': { type: 'string', default: '40' },
    store: { type: 'string', default: 'memory' },
  },
  mustBeZero: ['duplicate_issues', 'over_cap', 'over_budget'],
  async run(a) {
    const r = await runCouponsTorture({
      events: num(a.events, 1_000_000),
      seed: num(a.seed, 7),
      perMember: num(a['per-member'], 40),
      store: str(a.store, 'memory'),
    });
    log('coupons torture:', r);
    return r;
  },
};
