import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Sql } from '../store/sql.ts';
import type { MembersRepo } from './repo.ts';
import { MembersService } from './service.ts';

/**
 * The members conformance suite (house style 1): the same service behaviour on every
 * `MembersRepo` — memory and PGlite in the unit run, PostgreSQL in the system run.
 */
const DAY = 86_400_000;
const T0 = 1_763_900_000_000;

export interface SuiteTarget {
  /** A repo with no member data (called per test). */
  fresh(): Promise<MembersRepo>;
  close?(): Promise<void>;
}

export function runMembersSuite(name: string, open: () => Promise<SuiteTarget>) {
  let target: SuiteTarget;
  async function setup() {
    const repo = await target.fresh();
    const close = async () => undefined;
    let now = T0;
    let n = 0;
    const svc = new MembersService({
      repo,
      now: () => now,
      newId: () => `X${String(++n).padStart(8, '0')}`,
    });
    return { repo, svc, close, at: (t: number) => (now = t) };
  }

  const template = {
    id: 'welcome-back',
    name: '3 yuan off, welcome back',
    kind: 'amount_off',
    amountOffCents: 300,
    validDays: 7,
    perMember: { max: 1, windowDays: 30 },
    budget: 3,
  };
  const rule = {
    id: 'recognised-buyer',
    name: 'recognised at a store after a purchase in the last 30 days',
    on: ['recognized'],
    conditions: [{ type: 'count', kind: 'purchase', withinDays: 30, op: 'gte', value: 1 }],
    actions: [
      { type: 'issue_coupon', template: 'welcome-back', display: true },
      { type: 'tag', tag: 'returning' },
    ],
  };

  async function buyerWithMember(svc: MembersService, openid: string, at: number) {
    const r = await svc.record({
      key: `order:${openid}`,
      id: { type: 'wechat_openid', value: openid },
      kind: 'purchase',
      channel: 'wechat',
      store: 'store-1',
      gateway: 'gw-1',
      amountCents: 450,
      at,
    });
    return r.memberId!;
  }

  describe(`members suite: ${name}`, { timeout: 120_000 }, () => {
    beforeAll(async () => {
      target = await open();
    }, 180_000);
    afterAll(async () => {
      await target?.close?.();
    }, 60_000);
    it('profiles count visits, purchases and spend per channel and store; RFM and tier', async () => {
      const { svc, close } = await setup();
      const m = await buyerWithMember(svc, 'oBuyer1', T0 - 2 * DAY);
      await svc.record({
        key: 'rec-1',
        id: { type: 'member', value: m },
        kind: 'recognized',
        channel: 'store',
        store: 'store-2',
        at: T0 - DAY,
      });
      await svc.record({
        key: 'tm-1',
        id: { type: 'wechat_openid', value: 'oBuyer1' },
        kind: 'purchase',
        channel: 'tmall',
        store: '',
        amountCents: 10_000,
        at: T0 - DAY,
      });
      const dup = await svc.record({
        key: 'tm-1',
        id: { type: 'wechat_openid', value: 'oBuyer1' },
        kind: 'purchase',
        channel: 'tmall',
        store: '',
        amountCents: 10_000,
        at: T0 - DAY,
      });
      expect(dup.outcome).toBe('duplicate');
      const p = await svc.profile(m);
      expect(p.profile).toMatchObject({
        purchases: 2,
        spendCents: 10_450,
        recognitions: 1,
        visits: 3,
        lastSeen: T0 - DAY,
      });
      expect(p.profile.rfm).toMatchObject({ r: 5, f: 2, m: 3 });
      expect(p.profile.tier).toBe('active');
      expect(p.profile.byChannelStore).toEqual([
        { channel: 'store', store: 'store-2', visits: 1, purchases: 0, spendCents: 0, lastSeen: T0 - DAY },
        { channel: 'tmall', store: '', visits: 1, purchases: 1, spendCents: 10_000, lastSeen: T0 - DAY },
        {
          channel: 'wechat',
          store: 'store-1',
          visits: 1,
          purchases: 1,
          spendCents: 450,
          lastSeen: T0 - 2 * DAY,
        },
      ]);
      await close();
    });

    it('rules are validated on save with clear errors and versioned', async () => {
      const { svc, repo, close } = await setup();
      await expect(svc.saveRule(rule)).rejects.toMatchObject({
        code: 'CLOUD_ERR_RULE_INVALID',
        message: expect.stringContaining('/actions/0/template "welcome-back" is not a coupon template'),
      });
      await svc.putTemplate(template);
      await expect(
        svc.saveRule({
          ...rule,
          conditions: [{ type: 'count', kind: 'purchase', withinDays: 30, op: 'about', value: 1 }],
        }),
      ).rejects.toMatchObject({
        code: 'CLOUD_ERR_RULE_INVALID',
        message: expect.stringContaining('/conditions/0'),
      });
      await expect(svc.saveRule({ ...rule, colour: 'red' })).rejects.toMatchObject({
        message: expect.stringContaining('unknown field "colour"'),
      });
      const refused = (await svc.metrics.refusals.get()).values.find(
        (v) => v.labels.code === 'CLOUD_ERR_RULE_INVALID',
      );
      expect(refused?.value).toBe(3);
      expect((await svc.saveRule(rule)).version).toBe(1);
      expect((await svc.saveRule({ ...rule, name: 'v2' })).version).toBe(2);
      expect((await repo.ruleVersions(rule.id)).map((v) => v.version)).toEqual([1, 2]);
      expect((await repo.latestRules()).map((r) => [r.id, r.version])).toEqual([[rule.id, 2]]);
      await expect(svc.putTemplate({ ...template, amountOffCents: undefined })).rejects.toMatchObject({
        code: 'CLOUD_ERR_COUPON_TEMPLATE',
      });
      await close();
    });

    it('a recognition after a purchase issues one coupon: once per event, per-member cap, budget', async () => {
      const { svc, repo, close, at } = await setup();
      await svc.putTemplate(template);
      await svc.saveRule(rule);
      const m = await buyerWithMember(svc, 'oBuyer2', T0 - DAY);
      const rec = (key: string, t: number, member = m) =>
        svc.record({
          key,
          id: { type: 'member', value: member },
          kind: 'recognized',
          channel: 'store',
          store: 'store-1',
          gateway: 'gw-1',
          at: t,
        });
      // no purchase yet for a stranger: no coupon
      const first = await rec('rec-a', T0);
      expect(first.coupons).toHaveLength(1);
      expect(first.tags).toEqual(['returning']);
      expect((await rec('rec-a', T0)).outcome).toBe('duplicate');
      // a second recognition (another event) inside the 30-day window: over the cap
      expect((await rec('rec-b', T0 + DAY)).coupons).toHaveLength(0);
      // a late, out-of-order event 10 days before the first: still inside its window
      expect((await rec('rec-early', T0 - 10 * DAY)).coupons).toHaveLength(0);
      const cs = await repo.listCoupons({ memberId: m, limit: 10 });
      expect(cs).toHaveLength(1);
      expect(cs[0]).toMatchObject({
        templateId: 'welcome-back',
        ruleId: rule.id,
        ruleVersion: 1,
        triggerKey: 'rec-a',
        state: 'issued',
        gateway: 'gw-1',
      });
      // budget 3: three other members get one each, the fifth member none
      const got: number[] = [];
      for (let i = 0; i < 4; i++) {
        const o = await buyerWithMember(svc, `oOther${i}`, T0 - DAY);
        got.push((await rec(`rec-o${i}`, T0, o)).coupons.length);
      }
      expect(got).toEqual([1, 1, 0, 0]);
      expect((await repo.listTemplates())[0]!.issued).toBe(3);
      // a stranger without a purchase gets nothing
      const s = await svc.record({
        key: 'visit-s',
        id: { type: 'device_id', value: 'dev-stranger' },
        kind: 'visit',
        channel: 'app',
        store: 'store-1',
        at: T0,
      });
      expect((await rec('rec-s', T0, s.memberId!)).coupons).toHaveLength(0);
      at(T0 + 60_000);
      expect(await svc.profile(m)).toMatchObject({ tags: [{ tag: 'returning', source: 'rule' }] });
      await close();
    });

    it('dry-run evaluates a rule against recent events without any effect', async () => {
      const { svc, repo, close } = await setup();
      await svc.putTemplate(template);
      const m = await buyerWithMember(svc, 'oDry', T0 - DAY);
      await svc.record({
        key: 'rec-d',
        id: { type: 'member', value: m },
        kind: 'recognized',
        channel: 'store',
        store: 'store-1',
        at: T0 - 1000,
      });
      const r = await svc.dryRun(
        { ...rule, conditions: [{ type: 'count', kind: 'purchase', withinDays: 30, op: 'eq', value: 0 }] },
        { sinceMs: 7 * DAY, limit: 100 },
      );
      expect(r.evaluated).toBe(2);
      expect(r.matched).toBe(0);
      expect(r.results.find((x) => x.event.key === 'rec-d')?.reason).toBe(
        '1 purchase in 30 days is not eq 0',
      );
      const r2 = await svc.dryRun(rule, { sinceMs: 7 * DAY, limit: 100 });
      expect(r2.matched).toBe(1);
      expect(await repo.listCoupons({ limit: 10 })).toHaveLength(0);
      await close();
    });

    it('redemption: best coupon, idempotent per order, release, expiry, stores and SKUs', async () => {
      const { svc, close, at } = await setup();
      await svc.putTemplate(template);
      await svc.putTemplate({
        id: 'pct',
        name: '10% off drinks',
        kind: 'percent_off',
        percentOff: 10,
        validDays: 1,
        skus: ['cola'],
        perMember: { max: 5, windowDays: 1 },
      });
      await svc.saveRule({
        ...rule,
        actions: [
          { type: 'issue_coupon', template: 'welcome-back' },
          { type: 'issue_coupon', template: 'pct' },
        ],
      });
      const m = await buyerWithMember(svc, 'oRedeem', T0 - DAY);
      await svc.record({
        key: 'rec-r',
        id: { type: 'member', value: m },
        kind: 'recognized',
        channel: 'store',
        store: 'store-1',
        at: T0,
      });
      const draft = {
        site: 'store-1',
        gateway: 'gw-1',
        items: [{ sku: 'cola', priceCents: 250, qty: 2 }],
        minTotalCents: 1,
      };
      const ref = { idType: 'wechat_openid', value: 'oRedeem' };
      expect(await svc.quote(ref, draft)).toMatchObject({
        templateId: 'welcome-back',
        discountCents: 300,
        totalCents: 200,
      });
      expect(
        await svc.quote(ref, { ...draft, items: [{ sku: 'cola', priceCents: 100, qty: 1 }] }),
      ).toMatchObject({ discountCents: 99, totalCents: 1 });
      const r1 = await svc.redeem({ member: ref, orderId: 'ORD-1', draft });
      expect(r1).toMatchObject({
        templateId: 'welcome-back',
        discountCents: 300,
        totalCents: 200,
        orderId: 'ORD-1',
      });
      expect(await svc.redeem({ member: ref, orderId: 'ORD-1', draft })).toEqual(r1);
      // the next order gets the next best coupon (10% of the cola)
      expect(await svc.redeem({ member: ref, orderId: 'ORD-2', draft })).toMatchObject({
        templateId: 'pct',
        discountCents: 50,
      });
      expect(await svc.redeem({ member: ref, orderId: 'ORD-3', draft })).toBeUndefined();
      await svc.release('ORD-1');
      await svc.release('ORD-1');
      await expect(
        svc.redeem({ member: ref, orderId: 'ORD-4', draft: { ...draft, site: 'store-9' }, couponId: 'nope' }),
      ).rejects.toMatchObject({ code: 'CLOUD_ERR_COUPON_NOT_APPLICABLE' });
      expect(await svc.quote({ memberId: m }, draft)).toMatchObject({ templateId: 'welcome-back' });
      expect((await svc.profile(m)).profile.byChannelStore.find((s) => s.channel === 'store')).toBeDefined();
      at(T0 + 8 * DAY);
      expect(await svc.quote(ref, draft)).toBeUndefined();
      expect(await svc.expireDue()).toBe(1);
      await close();
    });

    it('merge with evidence, profile follows, unmerge splits it back; erase removes everything and tells listeners', async () => {
      const { svc, repo, close } = await setup();
      const a = await buyerWithMember(svc, 'oMergeA', T0 - DAY);
      const b = (
        await svc.record({
          key: 'app-1',
          id: { type: 'app_user_id', value: 'u-77' },
          kind: 'visit',
          channel: 'app',
          store: '',
          at: T0 - DAY,
        })
      ).memberId!;
      await svc.link(
        { type: 'app_user_id', value: 'u-77' },
        { type: 'face_id', value: 'g-1' },
        { source: 'enrol', evidence: {} },
      );
      expect(a).not.toBe(b);
      const r = await svc.link(
        { type: 'wechat_openid', value: 'oMergeA' },
        { type: 'phone', value: '13912340000' },
        { source: 'import', evidence: { batch: 'crm-1' } },
      );
      expect(r.merges).toHaveLength(0);
      const r2 = await svc.link(
        { type: 'phone', value: '+86 139 1234 0000' },
        { type: 'app_user_id', value: 'u-77' },
        { source: 'app', evidence: { login: 'L1' } },
      );
      expect(r2.status).toBe('linked');
      expect(r2.merges).toHaveLength(1);
      const into = r2.memberA;
      expect(r2.memberB).toBe(into);
      const history = await svc.mergeHistory(into);
      expect(history).toMatchObject([
        {
          into,
          linkA: 'app_user_id:U-77',
          linkB: 'phone:13912340000',
          evidence: { source: 'app', login: 'L1' },
        },
      ]);
      const merged = await svc.profile(into);
      expect(merged.profile).toMatchObject({ purchases: 1, visits: 2 });
      expect(await svc.resolveRef({ memberId: a })).toBe(into);
      expect(await svc.resolveRef({ memberId: b })).toBe(into);
      await svc.unmerge(r2.merges[0]!.id);
      expect(await svc.resolveRef({ memberId: a })).toBe(a);
      expect(await svc.resolveRef({ memberId: b })).toBe(b);
      expect((await svc.profile(a)).profile).toMatchObject({ purchases: 1, visits: 1 });
      expect((await svc.profile(b)).profile).toMatchObject({ purchases: 0, visits: 1 });
      expect(
        (
          await svc.link(
            { type: 'phone', value: '13912340000' },
            { type: 'app_user_id', value: 'u-77' },
            { source: 'app', evidence: {} },
          )
        ).status,
      ).toBe('blocked');

      const heard: unknown[] = [];
      svc.onErase((e) => {
        heard.push(e);
      });
      const e = await svc.erase(b);
      expect(e).toMatchObject({ memberId: b, aliases: [b], faceIds: ['g-1'] });
      await expect(svc.profile(b)).rejects.toMatchObject({ code: 'CLOUD_ERR_MEMBER_UNKNOWN' });
      expect(await repo.memberOf('app_user_id:U-77')).toBeUndefined();
      expect(await repo.memberOf('face_id:g-1')).toBeUndefined();
      expect((await repo.getMember(b))?.erasedAt).not.toBeNull();
      expect(await svc.resolveRef({ memberId: a })).toBe(a);
      await new Promise<void>((r) => setImmediate(r));
      expect(heard).toHaveLength(1);
      await close();
    });
  });
}

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
