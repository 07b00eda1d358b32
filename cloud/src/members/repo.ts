import { isStorelinkError } from '@storelink/protocols';
import { cloudError } from '../errors.ts';
import type { Sql, SqlQueryable } from '../store/sql.ts';
import type { IdKey } from './ids.ts';
import type {
  Activity,
  ActivityKind,
  Coupon,
  CouponTemplate,
  Delivery,
  LinkRow,
  MemberRow,
  MergeRow,
  RuleVersion,
  TagRow,
} from './types.ts';

/**
 * Persistence of members, links, activity, tags, rules and coupons. Two implementations
 * of one interface (house style 1): `SqlMembersRepo` over the store's `Sql` seam (PGlite
 * and PostgreSQL) and `MemoryMembersRepo` (property tests and the million-event coupon
 * torture; same semantics, transactions serialised by one mutex and undone on throw).
 * The domain logic (identity.ts, coupon-service.ts, service.ts) is written once against
 * `MembersTx`; a conformance suite (repo.conformance.ts) runs on both.
 */
export interface MembersTx {
  // identity
  memberOfIds(keys: readonly IdKey[]): Promise<Map<IdKey, string>>;
  idsOfMember(memberId: string): Promise<IdKey[]>;
  assignId(key: IdKey, memberId: string, at: number): Promise<void>;
  removeIds(keys: readonly IdKey[]): Promise<void>;
  activeLinksTouching(keys: readonly IdKey[]): Promise<LinkRow[]>;
  getLink(a: IdKey, b: IdKey): Promise<LinkRow | undefined>;
  insertLink(l: LinkRow): Promise<boolean>;
  revokeLink(a: IdKey, b: IdKey, at: number): Promise<void>;
  deleteLinksTouching(keys: readonly IdKey[]): Promise<void>;
  insertMember(m: MemberRow): Promise<void>;
  /** Row-locked until the transaction ends (frequency caps serialise on it). */
  lockMember(id: string): Promise<MemberRow | undefined>;
  saveMember(m: MemberRow): Promise<void>;
  insertMerge(m: MergeRow): Promise<void>;
  getMerge(id: string): Promise<MergeRow | undefined>;
  /** Merges not undone that this link caused (one link may move ids out of several members). */
  mergesByLink(a: IdKey, b: IdKey): Promise<MergeRow[]>;
  saveMerge(m: MergeRow): Promise<void>;
  deleteMergesOf(memberIds: readonly string[]): Promise<void>;
  // activity
  insertActivity(a: Activity): Promise<boolean>;
  activityOf(memberId: string, since: number): Promise<Activity[]>;
  countActivity(q: {
    memberId: string;
    kind: ActivityKind;
    from: number;
    to: number;
    store?: string;
  }): Promise<number>;
  deleteActivityOf(keys: readonly IdKey[]): Promise<void>;
  // tags
  setTag(t: TagRow): Promise<void>;
  removeTag(memberId: string, tag: string): Promise<void>;
  tagsOf(memberId: string): Promise<TagRow[]>;
  deleteTagsOf(memberIds: readonly string[]): Promise<void>;
  // coupons
  getTemplate(id: string): Promise<CouponTemplate | undefined>;
  putTemplate(t: CouponTemplate): Promise<void>;
  /** [COUPON-BUDGET-1] atomically counts one issue against the budget; false when spent. */
  takeBudget(templateId: string): Promise<boolean>;
  insertCoupon(c: Coupon): Promise<boolean>;
  couponByTrigger(ruleId: string, triggerKey: string, templateId: string): Promise<Coupon | undefined>;
  getCoupon(id: string): Promise<Coupon | undefined>;
  saveCoupon(c: Coupon): Promise<void>;
  /** Coupons of the member and of every member merged into it. */
  couponsOf(memberId: string): Promise<Coupon[]>;
  countCoupons(q: { memberId: string; templateId: string; from: number; to: number }): Promise<number>;
  couponByOrder(orderId: string): Promise<Coupon | undefined>;
  deleteCouponsOf(memberIds: readonly string[]): Promise<void>;
  putDelivery(d: Delivery): Promise<void>;
  // rules
  insertRuleVersion(r: RuleVersion): Promise<boolean>;
  latestRuleVersion(id: string): Promise<number>;
  /** Latest version of every rule (read inside the caller's transaction: no second connection). */
  latestRules(): Promise<RuleVersion[]>;
}

export interface MembersRepo {
  transaction<T>(fn: (tx: MembersTx) => Promise<T>): Promise<T>;
  getMember(id: string): Promise<MemberRow | undefined>;
  listMembers(q: { idKey?: IdKey; tag?: string; limit: number }): Promise<MemberRow[]>;
  mergesOf(memberId: string): Promise<MergeRow[]>;
  listTemplates(): Promise<CouponTemplate[]>;
  /** Latest version of every rule. */
  latestRules(): Promise<RuleVersion[]>;
  ruleVersions(id: string): Promise<RuleVersion[]>;
  recentActivity(since: number, limit: number): Promise<Activity[]>;
  dueDeliveries(now: number, limit: number): Promise<Delivery[]>;
  saveDelivery(d: Delivery): Promise<void>;
  listCoupons(q: { memberId?: string; state?: string; limit: number }): Promise<Coupon[]>;
  /** Lock-free member lookup by an id (hot path). */
  memberOf(key: IdKey): Promise<string | undefined>;
}

// ---------------------------------------------------------------- SQL

const j = (v: unknown) => JSON.stringify(v);

interface CouponDbRow {
  id: string;
  template_id: string;
  member_id: string;
  rule_id: string;
  rule_version: number;
  trigger_key: string;
  trigger_at: number;
  state: Coupon['state'];
  issued_at: number;
  valid_from: number;
  expires_at: number;
  order_id: string | null;
  redeemed_at: number | null;
  discount_cents: number | null;
  subtotal_cents: number | null;
  gateway: string | null;
}
const COUPON_COLS = `id, template_id, member_id, rule_id, rule_version, trigger_key, trigger_at, state, issued_at,
  valid_from, expires_at, order_id, redeemed_at, discount_cents, subtotal_cents, gateway`;
function toCoupon(r: CouponDbRow): Coupon {
  return {
    id: r.id,
    templateId: r.template_id,
    memberId: r.member_id,
    ruleId: r.rule_id,
    ruleVersion: r.rule_version,
    triggerKey: r.trigger_key,
    triggerAt: r.trigger_at,
    state: r.state,
    issuedAt: r.issued_at,
    validFrom: r.valid_from,
    expiresAt: r.expires_at,
    orderId: r.order_id,
    redeemedAt: r.redeemed_at,
    discountCents: r.discount_cents,
    subtotalCents: r.subtotal_cents,
    gateway: r.gateway,
  };
}
function couponParams(c: Coupon): unknown[] {
  return [
    c.id,
    c.templateId,
    c.memberId,
    c.ruleId,
    c.ruleVersion,
    c.triggerKey,
    c.triggerAt,
    c.state,
    c.issuedAt,
    c.validFrom,
    c.expiresAt,
    c.orderId,
    c.redeemedAt,
    c.discountCents,
    c.subtotalCents,
    c.gateway,
  ];
}
interface MemberDbRow {
  id: string;
  created_at: number;
  merged_into: string | null;
  erased_at: number | null;
}
const toMember = (r: MemberDbRow): MemberRow => ({
  id: r.id,
  createdAt: r.created_at,
  mergedInto: r.merged_into,
  erasedAt: r.erased_at,
});
interface LinkDbRow {
  a: string;
  b: string;
  source: string;
  evidence: Record<string, unknown>;
  at: number;
  revoked_at: number | null;
}
const toLink = (r: LinkDbRow): LinkRow => ({
  a: r.a,
  b: r.b,
  source: r.source,
  evidence: r.evidence,
  at: r.at,
  revokedAt: r.revoked_at,
});
interface MergeDbRow {
  id: string;
  into_member: string;
  from_member: string;
  link_a: string;
  link_b: string;
  from_ids: string[];
  evidence: Record<string, unknown>;
  at: number;
  undone_at: number | null;
}
const toMerge = (r: MergeDbRow): MergeRow => ({
  id: r.id,
  into: r.into_member,
  from: r.from_member,
  linkA: r.link_a,
  linkB: r.link_b,
  fromIds: r.from_ids,
  evidence: r.evidence,
  at: r.at,
  undoneAt: r.undone_at,
});
interface ActivityDbRow {
  key: string;
  id_key: string;
  kind: ActivityKind;
  channel: string;
  store: string;
  gateway: string | null;
  amount_cents: number;
  at: number;
}
const toActivity = (r: ActivityDbRow): Activity => ({
  key: r.key,
  idKey: r.id_key,
  kind: r.kind,
  channel: r.channel,
  store: r.store,
  gateway: r.gateway,
  amountCents: r.amount_cents,
  at: r.at,
});
interface TemplateDbRow {
  id: string;
  body: Omit<CouponTemplate, 'id' | 'issued' | 'createdAt'>;
  issued: number;
  created_at: number;
}
const toTemplate = (r: TemplateDbRow): CouponTemplate => ({
  ...r.body,
  id: r.id,
  issued: r.issued,
  createdAt: r.created_at,
});
interface DeliveryDbRow {
  coupon_id: string;
  channel: Delivery['channel'];
  state: Delivery['state'];
  attempts: number;
  last_error: string | null;
  next_at: number;
  delivered_at: number | null;
}
const toDelivery = (r: DeliveryDbRow): Delivery => ({
  couponId: r.coupon_id,
  channel: r.channel,
  state: r.state,
  attempts: r.attempts,
  lastError: r.last_error,
  nextAt: r.next_at,
  deliveredAt: r.delivered_at,
});

/** Member ids that resolve to `$1` (itself and everything merged into it). */
const ALIASES = `SELECT value FROM member_ids WHERE member_id = $1 AND type = 'member'`;

export function sqlMembersTx(q: SqlQueryable): MembersTx {
  return {
    async memberOfIds(keys) {
      if (keys.length === 0) return new Map();
      const r = await q.query<{ key: string; member_id: string }>(
        'SELECT key, member_id FROM member_ids WHERE key = ANY($1::text[])',
        [keys],
      );
      return new Map(r.rows.map((x) => [x.key, x.member_id]));
    },
    async idsOfMember(memberId) {
      const r = await q.query<{ key: string }>(
        'SELECT key FROM member_ids WHERE member_id = $1 ORDER BY key',
        [memberId],
      );
      return r.rows.map((x) => x.key);
    },
    async assignId(key, memberId, at) {
      const i = key.indexOf(':');
      await q.query(
        `INSERT INTO member_ids (key, type, value, member_id, linked_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (key) DO UPDATE SET member_id = EXCLUDED.member_id, linked_at = EXCLUDED.linked_at`,
        [key, key.slice(0, i), key.slice(i + 1), memberId, at],
      );
    },
    async removeIds(keys) {
      if (keys.length) await q.query('DELETE FROM member_ids WHERE key = ANY($1::text[])', [keys]);
    },
    async activeLinksTouching(keys) {
      if (keys.length === 0) return [];
      const r = await q.query<LinkDbRow>(
        `SELECT * FROM member_links WHERE revoked_at IS NULL AND (a = ANY($1::text[]) OR b = ANY($1::text[]))`,
        [keys],
      );
      return r.rows.map(toLink);
    },
    async getLink(a, b) {
      const r = await q.query<LinkDbRow>('SELECT * FROM member_links WHERE a = $1 AND b = $2', [a, b]);
      return r.rows[0] && toLink(r.rows[0]);
    },
    async insertLink(l) {
      const r = await q.query(
        `INSERT INTO member_links (a, b, source, evidence, at, revoked_at) VALUES ($1, $2, $3, $4::jsonb, $5, $6)
         ON CONFLICT (a, b) DO NOTHING`,
        [l.a, l.b, l.source, j(l.evidence), l.at, l.revokedAt],
      );
      return r.affected === 1;
    },
    async revokeLink(a, b, at) {
      await q.query('UPDATE member_links SET revoked_at = $3 WHERE a = $1 AND b = $2', [a, b, at]);
    },
    async deleteLinksTouching(keys) {
      if (keys.length)
        await q.query('DELETE FROM member_links WHERE a = ANY($1::text[]) OR b = ANY($1::text[])', [keys]);
    },
    async insertMember(m) {
      await q.query('INSERT INTO members (id, created_at, merged_into, erased_at) VALUES ($1, $2, $3, $4)', [
        m.id,
        m.createdAt,
        m.mergedInto,
        m.erasedAt,
      ]);
    },
    async lockMember(id) {
      const r = await q.query<MemberDbRow>('SELECT * FROM members WHERE id = $1 FOR UPDATE', [id]);
      return r.rows[0] && toMember(r.rows[0]);
    },
    async saveMember(m) {
      await q.query('UPDATE members SET merged_into = $2, erased_at = $3 WHERE id = $1', [
        m.id,
        m.mergedInto,
        m.erasedAt,
      ]);
    },
    async insertMerge(m) {
      await q.query(
        `INSERT INTO member_merges (id, into_member, from_member, link_a, link_b, from_ids, evidence, at, undone_at)
         VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9)`,
        [m.id, m.into, m.from, m.linkA, m.linkB, j(m.fromIds), j(m.evidence), m.at, m.undoneAt],
      );
    },
    async getMerge(id) {
      const r = await q.query<MergeDbRow>('SELECT * FROM member_merges WHERE id = $1 FOR UPDATE', [id]);
      return r.rows[0] && toMerge(r.rows[0]);
    },
    async mergesByLink(a, b) {
      const r = await q.query<MergeDbRow>(
        'SELECT * FROM member_merges WHERE link_a = $1 AND link_b = $2 AND undone_at IS NULL ORDER BY at, id',
        [a, b],
      );
      return r.rows.map(toMerge);
    },
    async saveMerge(m) {
      await q.query('UPDATE member_merges SET undone_at = $2 WHERE id = $1', [m.id, m.undoneAt]);
    },
    async deleteMergesOf(ids) {
      if (ids.length)
        await q.query(
          'DELETE FROM member_merges WHERE into_member = ANY($1::text[]) OR from_member = ANY($1::text[])',
          [ids],
        );
    },
    async insertActivity(a) {
      const r = await q.query(
        `INSERT INTO member_activity (key, id_key, kind, channel, store, gateway, amount_cents, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (key) DO NOTHING`,
        [a.key, a.idKey, a.kind, a.channel, a.store, a.gateway, a.amountCents, a.at],
      );
      return r.affected === 1;
    },
    async activityOf(memberId, since) {
      const r = await q.query<ActivityDbRow>(
        `SELECT a.* FROM member_activity a JOIN member_ids i ON i.key = a.id_key
         WHERE i.member_id = $1 AND a.at >= $2 ORDER BY a.at, a.key`,
        [memberId, since],
      );
      return r.rows.map(toActivity);
    },
    async countActivity(c) {
      const r = await q.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM member_activity a JOIN member_ids i ON i.key = a.id_key
         WHERE i.member_id = $1 AND a.kind = $2 AND a.at >= $3 AND a.at <= $4 AND ($5::text IS NULL OR a.store = $5)`,
        [c.memberId, c.kind, c.from, c.to, c.store ?? null],
      );
      return r.rows[0]?.n ?? 0;
    },
    async deleteActivityOf(keys) {
      if (keys.length) await q.query('DELETE FROM member_activity WHERE id_key = ANY($1::text[])', [keys]);
    },
    async setTag(t) {
      await q.query(
        `INSERT INTO member_tags (member_id, tag, source, at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (member_id, tag) DO UPDATE SET source = EXCLUDED.source, at = EXCLUDED.at`,
        [t.memberId, t.tag, t.source, t.at],
      );
    },
    async removeTag(memberId, tag) {
      await q.query('DELETE FROM member_tags WHERE member_id = $1 AND tag = $2', [memberId, tag]);
    },
    async tagsOf(memberId) {
      const r = await q.query<{ member_id: string; tag: string; source: TagRow['source']; at: number }>(
        `SELECT DISTINCT ON (tag) t.member_id, t.tag, t.source, t.at FROM member_tags t
         WHERE t.member_id IN (${ALIASES}) ORDER BY tag, at DESC`,
        [memberId],
      );
      return r.rows.map((x) => ({ memberId, tag: x.tag, source: x.source, at: x.at }));
    },
    async deleteTagsOf(ids) {
      if (ids.length) await q.query('DELETE FROM member_tags WHERE member_id = ANY($1::text[])', [ids]);
    },
    async getTemplate(id) {
      const r = await q.query<TemplateDbRow>('SELECT * FROM coupon_templates WHERE id = $1', [id]);
      return r.rows[0] && toTemplate(r.rows[0]);
    },
    async putTemplate(t) {
      const { id, issued, createdAt, ...body } = t;
      await q.query(
        `INSERT INTO coupon_templates (id, body, issued, created_at) VALUES ($1, $2::jsonb, $3, $4)
         ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body`,
        [id, j(body), issued, createdAt],
      );
    },
    async takeBudget(templateId) {
      const r = await q.query(
        `UPDATE coupon_templates SET issued = issued + 1
         WHERE id = $1 AND (body->>'budget' IS NULL OR issued < (body->>'budget')::int)`,
        [templateId],
      );
      return r.affected === 1;
    },
    async insertCoupon(c) {
      const r = await q.query(
        `INSERT INTO coupons (${COUPON_COLS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)
         ON CONFLICT (rule_id, trigger_key, template_id) DO NOTHING`,
        couponParams(c),
      );
      return r.affected === 1;
    },
    async couponByTrigger(ruleId, triggerKey, templateId) {
      const r = await q.query<CouponDbRow>(
        `SELECT ${COUPON_COLS} FROM coupons WHERE rule_id = $1 AND trigger_key = $2 AND template_id = $3`,
        [ruleId, triggerKey, templateId],
      );
      return r.rows[0] && toCoupon(r.rows[0]);
    },
    async getCoupon(id) {
      const r = await q.query<CouponDbRow>(`SELECT ${COUPON_COLS} FROM coupons WHERE id = $1 FOR UPDATE`, [
        id,
      ]);
      return r.rows[0] && toCoupon(r.rows[0]);
    },
    async saveCoupon(c) {
      await q.query(
        `UPDATE coupons SET state = $2, order_id = $3, redeemed_at = $4, discount_cents = $5, subtotal_cents = $6
         WHERE id = $1`,
        [c.id, c.state, c.orderId, c.redeemedAt, c.discountCents, c.subtotalCents],
      );
    },
    async couponsOf(memberId) {
      const r = await q.query<CouponDbRow>(
        `SELECT ${COUPON_COLS} FROM coupons WHERE member_id IN (${ALIASES}) ORDER BY issued_at, id`,
        [memberId],
      );
      return r.rows.map(toCoupon);
    },
    async countCoupons(c) {
      const r = await q.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM coupons WHERE member_id IN (${ALIASES}) AND template_id = $2
         AND state <> 'void' AND trigger_at > $3 AND trigger_at < $4`,
        [c.memberId, c.templateId, c.from, c.to],
      );
      return r.rows[0]?.n ?? 0;
    },
    async couponByOrder(orderId) {
      const r = await q.query<CouponDbRow>(
        `SELECT ${COUPON_COLS} FROM coupons WHERE order_id = $1 FOR UPDATE`,
        [orderId],
      );
      return r.rows[0] && toCoupon(r.rows[0]);
    },
    async deleteCouponsOf(ids) {
      if (ids.length === 0) return;
      await q.query(
        'DELETE FROM coupon_deliveries WHERE coupon_id IN (SELECT id FROM coupons WHERE member_id = ANY($1::text[]))',
        [ids],
      );
      await q.query('DELETE FROM coupons WHERE member_id = ANY($1::text[])', [ids]);
    },
    async putDelivery(d) {
      await q.query(
        `INSERT INTO coupon_deliveries (coupon_id, channel, state, attempts, last_error, next_at, delivered_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (coupon_id, channel) DO UPDATE SET state = EXCLUDED.state,
         attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error, next_at = EXCLUDED.next_at,
         delivered_at = EXCLUDED.delivered_at`,
        [d.couponId, d.channel, d.state, d.attempts, d.lastError, d.nextAt, d.deliveredAt],
      );
    },
    async insertRuleVersion(r) {
      const x = await q.query(
        `INSERT INTO member_rules (id, version, body, created_at) VALUES ($1, $2, $3::jsonb, $4)
         ON CONFLICT (id, version) DO NOTHING`,
        [r.id, r.version, j(r.body), r.createdAt],
      );
      return x.affected === 1;
    },
    async latestRules() {
      const r = await q.query<{ id: string; version: number; body: unknown; created_at: number }>(
        'SELECT DISTINCT ON (id) * FROM member_rules ORDER BY id, version DESC',
      );
      return r.rows.map((x) => ({ id: x.id, version: x.version, body: x.body, createdAt: x.created_at }));
    },
    async latestRuleVersion(id) {
      const r = await q.query<{ v: number | null }>(
        'SELECT max(version) AS v FROM member_rules WHERE id = $1',
        [id],
      );
      return r.rows[0]?.v ?? 0;
    },
  };
}

export class SqlMembersRepo implements MembersRepo {
  constructor(readonly sql: Sql) {}

  transaction<T>(fn: (tx: MembersTx) => Promise<T>): Promise<T> {
    return guard(() => this.sql.transaction((q) => fn(sqlMembersTx(q))));
  }

  async getMember(id: string) {
    const r = await guard(() => this.sql.query<MemberDbRow>('SELECT * FROM members WHERE id = $1', [id]));
    return r.rows[0] && toMember(r.rows[0]);
  }

  async listMembers(f: { idKey?: IdKey; tag?: string; limit: number }) {
    const r = await guard(() =>
      this.sql.query<MemberDbRow>(
        `SELECT m.* FROM members m WHERE m.merged_into IS NULL AND m.erased_at IS NULL
           AND ($1::text IS NULL OR m.id IN (SELECT member_id FROM member_ids WHERE key = $1))
           AND ($2::text IS NULL OR m.id IN (SELECT i.member_id FROM member_tags t JOIN member_ids i
                ON i.key = 'member:' || t.member_id WHERE t.tag = $2))
         ORDER BY m.created_at DESC, m.id LIMIT $3`,
        [f.idKey ?? null, f.tag ?? null, f.limit],
      ),
    );
    return r.rows.map(toMember);
  }

  async mergesOf(memberId: string) {
    const r = await guard(() =>
      this.sql.query<MergeDbRow>(
        `SELECT * FROM member_merges WHERE into_member = $1 OR from_member = $1
           OR into_member IN (${ALIASES}) ORDER BY at, id`,
        [memberId],
      ),
    );
    return r.rows.map(toMerge);
  }

  async listTemplates() {
    const r = await guard(() => this.sql.query<TemplateDbRow>('SELECT * FROM coupon_templates ORDER BY id'));
    return r.rows.map(toTemplate);
  }

  async latestRules() {
    const r = await guard(() =>
      this.sql.query<{ id: string; version: number; body: unknown; created_at: number }>(
        'SELECT DISTINCT ON (id) * FROM member_rules ORDER BY id, version DESC',
      ),
    );
    return r.rows.map((x) => ({ id: x.id, version: x.version, body: x.body, createdAt: x.created_at }));
  }

  async ruleVersions(id: string) {
    const r = await guard(() =>
      this.sql.query<{ id: string; version: number; body: unknown; created_at: number }>(
        'SELECT * FROM member_rules WHERE id = $1 ORDER BY version',
        [id],
      ),
    );
    return r.rows.map((x) => ({ id: x.id, version: x.version, body: x.body, createdAt: x.created_at }));
  }

  async recentActivity(since: number, limit: number) {
    const r = await guard(() =>
      this.sql.query<ActivityDbRow>(
        'SELECT * FROM member_activity WHERE at >= $1 ORDER BY at, key LIMIT $2',
        [since, limit],
      ),
    );
    return r.rows.map(toActivity);
  }

  async dueDeliveries(now: number, limit: number) {
    const r = await guard(() =>
      this.sql.query<DeliveryDbRow>(
        `SELECT * FROM coupon_deliveries WHERE state = 'pending' AND next_at <= $1 ORDER BY next_at LIMIT $2`,
        [now, limit],
      ),
    );
    return r.rows.map(toDelivery);
  }

  async saveDelivery(d: Delivery) {
    await this.transaction((tx) => tx.putDelivery(d));
  }

  async listCoupons(f: { memberId?: string; state?: string; limit: number }) {
    const r = await guard(() =>
      this.sql.query<CouponDbRow>(
        `SELECT ${COUPON_COLS} FROM coupons WHERE ($1::text IS NULL OR member_id IN (${ALIASES.replace('$1', '$1::text')}))
           AND ($2::text IS NULL OR state = $2) ORDER BY issued_at DESC, id LIMIT $3`,
        [f.memberId ?? null, f.state ?? null, f.limit],
      ),
    );
    return r.rows.map(toCoupon);
  }

  async memberOf(key: IdKey) {
    const r = await guard(() =>
      this.sql.query<{ member_id: string }>('SELECT member_id FROM member_ids WHERE key = $1', [key]),
    );
    return r.rows[0]?.member_id;
  }
}

async function guard<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (isStorelinkError(e)) throw e;
    throw cloudError('CLOUD_ERR_STORE', { reason: (e as Error).message }, { cause: e });
  }
}
