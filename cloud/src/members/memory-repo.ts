import type { IdKey } from './ids.ts';
import type { MembersRepo, MembersTx } from './repo.ts';
import type {
  Activity,
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
 * In-memory `MembersRepo` with the SQL one's semantics (see repo.ts): one transaction at
 * a time (a mutex, as strong as the row locks), every write undone when the function
 * throws, the same unique keys (link pair, activity key, (rule, trigger) of a coupon).
 */
export class MemoryMembersRepo implements MembersRepo {
  readonly ids = new Map<IdKey, string>();
  readonly idsByMember = new Map<string, Set<IdKey>>();
  readonly links = new Map<string, LinkRow>();
  readonly linksByKey = new Map<IdKey, Set<string>>();
  readonly members = new Map<string, MemberRow>();
  readonly merges = new Map<string, MergeRow>();
  readonly activity = new Map<string, Activity>();
  readonly activityById = new Map<IdKey, Activity[]>();
  readonly tags = new Map<string, Map<string, TagRow>>();
  readonly templates = new Map<string, CouponTemplate>();
  readonly coupons = new Map<string, Coupon>();
  readonly couponsByTrigger = new Map<string, string>();
  readonly couponsByMember = new Map<string, Coupon[]>();
  readonly deliveries = new Map<string, Delivery>();
  readonly rules = new Map<string, RuleVersion[]>();
  private tail: Promise<unknown> = Promise.resolve();

  transaction<T>(fn: (tx: MembersTx) => Promise<T>): Promise<T> {
    const run = this.tail.then(() => this.runTx(fn));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private aliases(memberId: string): string[] {
    const out: string[] = [];
    for (const k of this.idsByMember.get(memberId) ?? []) if (k.startsWith('member:')) out.push(k.slice(7));
    return out;
  }

  private setIndex<K, V>(m: Map<K, Set<V>>, k: K, v: V, add: boolean) {
    let s = m.get(k);
    if (add) {
      if (!s) {
        s = new Set();
        m.set(k, s);
      }
      s.add(v);
    } else s?.delete(v);
  }

  private async runTx<T>(fn: (tx: MembersTx) => Promise<T>): Promise<T> {
    const undo: (() => void)[] = [];
    const putMap = <K, V>(m: Map<K, V>, k: K, v: V) => {
      const had = m.has(k);
      const prev = m.get(k);
      undo.push(() => (had ? m.set(k, prev as V) : m.delete(k)));
      m.set(k, v);
    };
    const delMap = <K, V>(m: Map<K, V>, k: K) => {
      if (!m.has(k)) return;
      const prev = m.get(k) as V;
      undo.push(() => m.set(k, prev));
      m.delete(k);
    };
    const assign = (key: IdKey, memberId: string | undefined) => {
      const prev = this.ids.get(key);
      const apply = (to: string | undefined, from: string | undefined) => {
        if (from !== undefined) this.setIndex(this.idsByMember, from, key, false);
        if (to !== undefined) {
          this.ids.set(key, to);
          this.setIndex(this.idsByMember, to, key, true);
        } else this.ids.delete(key);
      };
      apply(memberId, prev);
      undo.push(() => apply(prev, memberId));
    };
    const linkKey = (a: IdKey, b: IdKey) => `${a}\u0000${b}`;
    const couponMember = (c: Coupon) => c.memberId;
    const tx: MembersTx = {
      memberOfIds: async (keys) => {
        const out = new Map<IdKey, string>();
        for (const k of keys) {
          const m = this.ids.get(k);
          if (m !== undefined) out.set(k, m);
        }
        return out;
      },
      idsOfMember: async (id) => [...(this.idsByMember.get(id) ?? [])].sort(),
      assignId: async (key, memberId) => assign(key, memberId),
      removeIds: async (keys) => {
        for (const k of keys) if (this.ids.has(k)) assign(k, undefined);
      },
      activeLinksTouching: async (keys) => {
        const out = new Map<string, LinkRow>();
        for (const k of keys)
          for (const lk of this.linksByKey.get(k) ?? []) {
            const l = this.links.get(lk);
            if (l && l.revokedAt === null) out.set(lk, l);
          }
        return [...out.values()];
      },
      getLink: async (a, b) => this.links.get(linkKey(a, b)),
      insertLink: async (l) => {
        const k = linkKey(l.a, l.b);
        if (this.links.has(k)) return false;
        putMap(this.links, k, { ...l });
        for (const e of [l.a, l.b]) {
          this.setIndex(this.linksByKey, e, k, true);
          undo.push(() => this.setIndex(this.linksByKey, e, k, false));
        }
        return true;
      },
      revokeLink: async (a, b, at) => {
        const l = this.links.get(linkKey(a, b));
        if (l) putMap(this.links, linkKey(a, b), { ...l, revokedAt: at });
      },
      deleteLinksTouching: async (keys) => {
        for (const k of keys)
          for (const lk of [...(this.linksByKey.get(k) ?? [])]) {
            const l = this.links.get(lk);
            if (!l) continue;
            delMap(this.links, lk);
            for (const e of [l.a, l.b]) {
              this.setIndex(this.linksByKey, e, lk, false);
              undo.push(() => this.setIndex(this.linksByKey, e, lk, true));
            }
          }
      },
      insertMember: async (m) => putMap(this.members, m.id, { ...m }),
      lockMember: async (id) => {
        const m = this.members.get(id);
        return m && { ...m };
      },
      saveMember: async (m) => putMap(this.members, m.id, { ...m }),
      insertMerge: async (m) => putMap(this.merges, m.id, { ...m }),
      getMerge: async (id) => {
        const m = this.merges.get(id);
        return m && { ...m };
      },
      mergesByLink: async (a, b) =>
        [...this.merges.values()]
          .filter((m) => m.linkA === a && m.linkB === b && m.undoneAt === null)
          .map((m) => ({ ...m })),
      saveMerge: async (m) => putMap(this.merges, m.id, { ...m }),
      deleteMergesOf: async (ids) => {
        const s = new Set(ids);
        for (const [k, m] of this.merges) if (s.has(m.into) || s.has(m.from)) delMap(this.merges, k);
      },
      insertActivity: async (a) => {
        if (this.activity.has(a.key)) return false;
        putMap(this.activity, a.key, a);
        let list = this.activityById.get(a.idKey);
        if (!list) {
          list = [];
          this.activityById.set(a.idKey, list);
        }
        list.push(a);
        const l = list;
        undo.push(() => l.splice(l.indexOf(a), 1));
        return true;
      },
      activityOf: async (memberId, since) => {
        const out: Activity[] = [];
        for (const k of this.idsByMember.get(memberId) ?? [])
          for (const a of this.activityById.get(k) ?? []) if (a.at >= since) out.push(a);
        return out.sort((x, y) => x.at - y.at || (x.key < y.key ? -1 : 1));
      },
      countActivity: async (c) => {
        let n = 0;
        for (const k of this.idsByMember.get(c.memberId) ?? [])
          for (const a of this.activityById.get(k) ?? [])
            if (
              a.kind === c.kind &&
              a.at >= c.from &&
              a.at <= c.to &&
              (c.store === undefined || a.store === c.store)
            )
              n++;
        return n;
      },
      deleteActivityOf: async (keys) => {
        for (const k of keys) {
          for (const a of this.activityById.get(k) ?? []) delMap(this.activity, a.key);
          delMap(this.activityById, k);
        }
      },
      setTag: async (t) => {
        let m = this.tags.get(t.memberId);
        if (!m) {
          m = new Map();
          this.tags.set(t.memberId, m);
        }
        putMap(m, t.tag, t);
      },
      removeTag: async (memberId, tag) => {
        const m = this.tags.get(memberId);
        if (m) delMap(m, tag);
      },
      tagsOf: async (memberId) => {
        const by = new Map<string, TagRow>();
        for (const alias of this.aliases(memberId))
          for (const t of this.tags.get(alias)?.values() ?? []) {
            const cur = by.get(t.tag);
            if (!cur || cur.at < t.at) by.set(t.tag, { ...t, memberId });
          }
        return [...by.values()].sort((a, b) => (a.tag < b.tag ? -1 : 1));
      },
      deleteTagsOf: async (ids) => {
        for (const id of ids) delMap(this.tags, id);
      },
      getTemplate: async (id) => {
        const t = this.templates.get(id);
        return t && { ...t };
      },
      putTemplate: async (t) => {
        const prev = this.templates.get(t.id);
        putMap(this.templates, t.id, {
          ...t,
          issued: prev?.issued ?? t.issued,
          createdAt: prev?.createdAt ?? t.createdAt,
        });
      },
      takeBudget: async (id) => {
        const t = this.templates.get(id);
        if (!t || (t.budget !== undefined && t.issued >= t.budget)) return false;
        putMap(this.templates, id, { ...t, issued: t.issued + 1 });
        return true;
      },
      insertCoupon: async (c) => {
        const tk = `${c.ruleId}\u0000${c.triggerKey}\u0000${c.templateId}`;
        if (this.couponsByTrigger.has(tk)) return false;
        putMap(this.couponsByTrigger, tk, c.id);
        putMap(this.coupons, c.id, { ...c });
        let list = this.couponsByMember.get(c.memberId);
        if (!list) {
          list = [];
          this.couponsByMember.set(c.memberId, list);
        }
        list.push(this.coupons.get(c.id)!);
        const l = list;
        undo.push(() => l.pop());
        return true;
      },
      couponByTrigger: async (ruleId, triggerKey, templateId) => {
        const id = this.couponsByTrigger.get(`${ruleId}\u0000${triggerKey}\u0000${templateId}`);
        const c = id === undefined ? undefined : this.coupons.get(id);
        return c && { ...c };
      },
      getCoupon: async (id) => {
        const c = this.coupons.get(id);
        return c && { ...c };
      },
      saveCoupon: async (c) => {
        const cur = this.coupons.get(c.id);
        if (!cur) return;
        const prev = { ...cur };
        undo.push(() => Object.assign(cur, prev));
        Object.assign(cur, {
          state: c.state,
          orderId: c.orderId,
          redeemedAt: c.redeemedAt,
          discountCents: c.discountCents,
          subtotalCents: c.subtotalCents,
        });
      },
      couponsOf: async (memberId) =>
        this.aliases(memberId)
          .flatMap((a) => this.couponsByMember.get(a) ?? [])
          .map((c) => ({ ...c }))
          .sort((a, b) => a.issuedAt - b.issuedAt || (a.id < b.id ? -1 : 1)),
      countCoupons: async (q) => {
        let n = 0;
        for (const a of this.aliases(q.memberId))
          for (const c of this.couponsByMember.get(a) ?? [])
            if (
              c.templateId === q.templateId &&
              c.state !== 'void' &&
              c.triggerAt > q.from &&
              c.triggerAt < q.to
            )
              n++;
        return n;
      },
      couponByOrder: async (orderId) => {
        for (const c of this.coupons.values()) if (c.orderId === orderId) return { ...c };
        return undefined;
      },
      deleteCouponsOf: async (ids) => {
        const s = new Set(ids);
        for (const [id, c] of this.coupons)
          if (s.has(couponMember(c))) {
            delMap(this.coupons, id);
            delMap(this.couponsByTrigger, `${c.ruleId}\u0000${c.triggerKey}\u0000${c.templateId}`);
            delMap(this.deliveries, `${id}\u0000webhook`);
            delMap(this.deliveries, `${id}\u0000display`);
          }
        for (const id of ids) delMap(this.couponsByMember, id);
      },
      putDelivery: async (d) => putMap(this.deliveries, `${d.couponId}\u0000${d.channel}`, { ...d }),
      insertRuleVersion: async (r) => {
        const list = this.rules.get(r.id) ?? [];
        if (list.some((x) => x.version === r.version)) return false;
        putMap(this.rules, r.id, [...list, r]);
        return true;
      },
      latestRules: async () =>
        [...this.rules.values()].map((l) => l.reduce((a, b) => (a.version > b.version ? a : b))),
      latestRuleVersion: async (id) => Math.max(0, ...(this.rules.get(id) ?? []).map((r) => r.version)),
    };
    try {
      return await fn(tx);
    } catch (e) {
      for (const u of undo.reverse()) u();
      throw e;
    }
  }

  async getMember(id: string) {
    return this.members.get(id);
  }

  async listMembers(f: { idKey?: IdKey; tag?: string; limit: number }) {
    return [...this.members.values()]
      .filter((m) => m.mergedInto === null && m.erasedAt === null)
      .filter((m) => f.idKey === undefined || this.ids.get(f.idKey) === m.id)
      .filter((m) => f.tag === undefined || this.aliases(m.id).some((a) => this.tags.get(a)?.has(f.tag!)))
      .sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? -1 : 1))
      .slice(0, f.limit);
  }

  async mergesOf(memberId: string) {
    const al = new Set([memberId, ...this.aliases(memberId)]);
    return [...this.merges.values()]
      .filter((m) => al.has(m.into) || m.from === memberId)
      .sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1));
  }

  async listTemplates() {
    return [...this.templates.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  async latestRules() {
    return [...this.rules.values()].map((l) => l.reduce((a, b) => (a.version > b.version ? a : b)));
  }

  async ruleVersions(id: string) {
    return [...(this.rules.get(id) ?? [])].sort((a, b) => a.version - b.version);
  }

  async recentActivity(since: number, limit: number) {
    return [...this.activity.values()]
      .filter((a) => a.at >= since)
      .sort((a, b) => a.at - b.at || (a.key < b.key ? -1 : 1))
      .slice(0, limit);
  }

  async dueDeliveries(now: number, limit: number) {
    return [...this.deliveries.values()]
      .filter((d) => d.state === 'pending' && d.nextAt <= now)
      .sort((a, b) => a.nextAt - b.nextAt)
      .slice(0, limit);
  }

  async saveDelivery(d: Delivery) {
    await this.transaction((tx) => tx.putDelivery(d));
  }

  async listCoupons(f: { memberId?: string; state?: string; limit: number }) {
    const al = f.memberId === undefined ? undefined : new Set(this.aliases(f.memberId));
    return [...this.coupons.values()]
      .filter(
        (c) => (al === undefined || al.has(c.memberId)) && (f.state === undefined || c.state === f.state),
      )
      .sort((a, b) => b.issuedAt - a.issuedAt || (a.id < b.id ? -1 : 1))
      .slice(0, f.limit)
      .map((c) => ({ ...c }));
  }

  async memberOf(key: IdKey) {
    return this.ids.get(key);
  }
}
