import { createHash, createHmac } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { newId } from '@storelink/protocols';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { cloudError } from '../errors.ts';
import { bestQuote, issueCoupon, type TemplateInput, validateTemplate } from './coupon-logic.ts';
import type { CouponQuote, CouponRedeemer, CouponRedemption, MemberRef, OrderDraft } from './coupons.ts';
import {
  currentMember,
  type Erased,
  ensureMember,
  eraseMember,
  type IdentityOptions,
  type LinkEvidence,
  linkIds,
  unmerge,
} from './identity.ts';
import { type IdKey, type IdType, idKey, normaliseId, parseIdKey } from './ids.ts';
import { computeProfile, PROFILE_WINDOW_MS, type Profile } from './profile.ts';
import type { MembersRepo, MembersTx } from './repo.ts';
import { type Action, evaluate, type Rule, validateRule } from './rules.ts';
import type { Activity, ActivityKind, Coupon, CouponTemplate, Delivery, MergeRow, TagRow } from './types.ts';

export function createMembersMetrics(registry?: Registry) {
  const registers = registry ? [registry] : [];
  return {
    events: new Counter({
      name: 'storelink_cloud_member_events_total',
      help: 'Member activity events by kind and outcome (recorded, duplicate, refused)',
      labelNames: ['kind', 'outcome'] as const,
      registers,
    }),
    idsRefused: new Counter({
      name: 'storelink_cloud_member_ids_refused_total',
      help: 'Identifiers refused as junk or malformed, by id type [ID-JUNK-1]',
      labelNames: ['type'] as const,
      registers,
    }),
    links: new Counter({
      name: 'storelink_cloud_member_links_total',
      help: 'Identity links by outcome (linked, duplicate, blocked, conflicting)',
      labelNames: ['outcome'] as const,
      registers,
    }),
    coupons: new Counter({
      name: 'storelink_cloud_coupons_total',
      help: 'Coupon issue attempts by outcome (issued, duplicate, over_cap, no_budget, out_of_validity) and redemptions',
      labelNames: ['outcome'] as const,
      registers,
    }),
    deliveries: new Counter({
      name: 'storelink_cloud_coupon_deliveries_total',
      help: 'Coupon deliveries by channel (webhook, display) and result (delivered, retry, failed)',
      labelNames: ['channel', 'result'] as const,
      registers,
    }),
    refusals: new Counter({
      name: 'storelink_cloud_member_refusals_total',
      help: 'Refused member/rule/coupon requests by error code (CLOUD_ERR_RULE_INVALID, CLOUD_ERR_COUPON_TEMPLATE, CLOUD_ERR_COUPON_NOT_APPLICABLE, ...)',
      labelNames: ['code'] as const,
      registers,
    }),
    erasures: new Counter({
      name: 'storelink_cloud_member_erasures_total',
      help: 'Members erased on request (PIPL)',
      registers,
    }),
  };
}
export type MembersMetrics = ReturnType<typeof createMembersMetrics>;

/** `member.erased`: what every holder of a copy must delete (the vision gallery on the edges). */
export interface MemberErasedEvent extends Erased {
  at: number;
}

export interface ActivityInput {
  /** Dedupe key: the edge event id, order id or import id [MEMBER-EVENT-ONCE-1]. */
  key: string;
  /** The id the event was seen with. */
  id: { type: string; value: string };
  /** Other ids the same event proves belong together (a bind, a login). */
  links?: { type: string; value: string }[];
  kind: ActivityKind;
  channel: string;
  store: string;
  gateway?: string | null;
  amountCents?: number;
  at: number;
}

export interface ActivityResult {
  outcome: 'recorded' | 'duplicate' | 'refused';
  memberId?: string;
  reason?: string;
  coupons: Coupon[];
  tags: string[];
}

/** A coupon as the member's channel and the store display receive it. */
export interface CouponMessage {
  couponId: string;
  memberId: string;
  channelIds: Record<string, string[]>;
  template: {
    id: string;
    name: string;
    kind: string;
    amountOffCents?: number;
    percentOff?: number;
    freeSku?: string;
  };
  validFrom: number;
  expiresAt: number;
}

export interface MembersServiceOptions {
  repo: MembersRepo;
  now: () => number;
  newId?: () => string;
  caps?: Partial<Record<IdType, number>>;
  /** Member-channel webhook (mini-program / app backend); none = webhook deliveries stay pending. */
  webhook?: { url: string; secret: string; timeoutMs?: number };
  /** Sends a display command to a gateway (cloud: an `esl.campaign` with one display). */
  showOnDisplay?: (d: {
    gateway: string;
    commandId: string;
    text: string;
    valueCents: number;
    couponId?: string;
  }) => Promise<void>;
  fetch?: typeof fetch;
  metrics?: MembersMetrics;
  logger?: Logger;
  /** Delivery retry: first delay, doubled up to an hour; failed after this many attempts. */
  retryMs?: number;
  maxAttempts?: number;
  /** Told how long each rule evaluation took (ms): bench/members.ts measures with it. */
  onRuleEvaluation?: (ms: number) => void;
}

/**
 * Members and coupons (docs/members.md): identity, activity → profiles, rules → coupons,
 * redemption at checkout, deliveries, erasure. Written against `MembersRepo`, so the same
 * code runs on PGlite, PostgreSQL and in memory (torture).
 */
export class MembersService implements CouponRedeemer {
  readonly metrics: MembersMetrics;
  private readonly now: () => number;
  private readonly ident: IdentityOptions;
  private readonly newId: () => string;
  private readonly emitter = new EventEmitter();
  private rules: { rule: Rule; version: number }[] | undefined;
  private delivering: Promise<number> | undefined;

  constructor(private readonly opts: MembersServiceOptions) {
    this.now = opts.now;
    this.metrics = opts.metrics ?? createMembersMetrics();
    const gen = opts.newId ?? (() => newId(this.now()));
    this.newId = gen;
    this.ident = {
      newMemberId: gen,
      newMergeId: gen,
      ...(opts.caps ? { caps: opts.caps } : {}),
    };
  }

  get repo(): MembersRepo {
    return this.opts.repo;
  }

  // ------------------------------------------------------------ erasure hook

  /**
   * [MEMBER-ERASE-2] `member.erased` is emitted after the erasure committed, with the
   * member id, every member id merged into it and its face-gallery ids; the vision
   * service subscribes and removes the gallery entries on every edge.
   */
  onErase(listener: (e: MemberErasedEvent) => void | Promise<void>): () => void {
    const wrapped = (e: MemberErasedEvent) => {
      Promise.resolve()
        .then(() => listener(e))
        .catch((err: unknown) =>
          this.opts.logger?.error({ err, memberId: e.memberId }, 'member.erased listener failed'),
        );
    };
    this.emitter.on('member.erased', wrapped);
    return () => this.emitter.off('member.erased', wrapped);
  }

  async erase(memberId: string): Promise<MemberErasedEvent> {
    const at = this.now();
    const erased = await this.opts.repo.transaction((tx) => eraseMember(tx, memberId, at));
    this.metrics.erasures.inc();
    const e = { ...erased, at };
    this.emitter.emit('member.erased', e);
    return e;
  }

  // ------------------------------------------------------------ identity

  /** Normalises an id or throws CLOUD_ERR_MEMBER_ID (junk never links anything) [ID-JUNK-1]. */
  idKeyOf(type: string, value: string): IdKey {
    const n = normaliseId(type, value);
    if (!n.ok) {
      this.metrics.idsRefused.inc({ type: type.slice(0, 32) });
      throw cloudError('CLOUD_ERR_MEMBER_ID', {
        idType: type,
        value: String(value).slice(0, 64),
        reason: n.reason,
      });
    }
    return n.key;
  }

  async link(
    a: { type: string; value: string },
    b: { type: string; value: string },
    ev: Omit<LinkEvidence, 'at'> & { at?: number },
  ) {
    const ka = this.idKeyOf(a.type, a.value);
    const kb = this.idKeyOf(b.type, b.value);
    const at = ev.at ?? this.now();
    const r = await this.opts.repo.transaction((tx) => linkIds(tx, ka, kb, { ...ev, at }, this.ident));
    this.metrics.links.inc({ outcome: r.status });
    return r;
  }

  async unmerge(mergeId: string) {
    return this.opts.repo.transaction((tx) => unmerge(tx, mergeId, this.now(), this.ident));
  }

  /** The current member for a ref; undefined when no member holds that id. */
  async resolveRef(ref: MemberRef): Promise<string | undefined> {
    const key = 'memberId' in ref ? idKey('member', ref.memberId) : this.idKeyOf(ref.idType, ref.value);
    return this.opts.repo.memberOf(key);
  }

  async mergeHistory(memberId: string): Promise<MergeRow[]> {
    return this.opts.repo.mergesOf(memberId);
  }

  // ------------------------------------------------------------ profiles

  async profile(
    memberId: string,
  ): Promise<{ memberId: string; ids: { type: string; value: string }[]; tags: TagRow[]; profile: Profile }> {
    return this.opts.repo.transaction(async (tx) => {
      const cur = await currentMember(tx, memberId);
      if (cur === undefined) throw cloudError('CLOUD_ERR_MEMBER_UNKNOWN', { memberId });
      const now = this.now();
      const [ids, tags, acts] = [
        await tx.idsOfMember(cur),
        await tx.tagsOf(cur),
        await tx.activityOf(cur, now - PROFILE_WINDOW_MS),
      ];
      return { memberId: cur, ids: ids.map(parseIdKey), tags, profile: computeProfile(acts, now) };
    });
  }

  async setTag(memberId: string, tag: string, remove = false): Promise<void> {
    await this.opts.repo.transaction(async (tx) => {
      const cur = await currentMember(tx, memberId);
      if (cur === undefined) throw cloudError('CLOUD_ERR_MEMBER_UNKNOWN', { memberId });
      if (remove) {
        for (const t of await tx.tagsOf(cur)) if (t.tag === tag) await this.removeTagEverywhere(tx, cur, tag);
      } else await tx.setTag({ memberId: cur, tag, source: 'staff', at: this.now() });
    });
  }

  private async removeTagEverywhere(tx: MembersTx, member: string, tag: string) {
    for (const k of await tx.idsOfMember(member))
      if (k.startsWith('member:')) await tx.removeTag(k.slice(7), tag);
  }

  // ------------------------------------------------------------ activity → rules → coupons

  /** Records one activity in its own transaction, then delivers what it issued. */
  async record(input: ActivityInput): Promise<ActivityResult> {
    const r = await this.opts.repo.transaction((tx) => this.recordInTx(tx, input));
    if (r.coupons.length) this.kick();
    return r;
  }

  /**
   * Records one activity inside the caller's transaction (the ingest transaction: the
   * event, its effect on the profile and the coupons it triggers commit together).
   * Idempotent on `input.key` [MEMBER-EVENT-ONCE-1]; junk ids are refused and counted.
   */
  async recordInTx(tx: MembersTx, input: ActivityInput): Promise<ActivityResult> {
    const none = { coupons: [], tags: [] };
    const n = normaliseId(input.id.type, input.id.value);
    if (!n.ok) {
      this.metrics.idsRefused.inc({ type: input.id.type.slice(0, 32) });
      this.metrics.events.inc({ kind: input.kind, outcome: 'refused' });
      return { outcome: 'refused', reason: n.reason, ...none };
    }
    const at = input.at;
    let member: string;
    if (n.type === 'member') {
      const cur = (await tx.memberOfIds([n.key])).get(n.key);
      if (cur === undefined) {
        this.metrics.events.inc({ kind: input.kind, outcome: 'refused' });
        return { outcome: 'refused', reason: `unknown member ${n.value}`, ...none };
      }
      member = cur;
    } else member = await ensureMember(tx, n.key, at, this.ident);
    for (const l of input.links ?? []) {
      const o = normaliseId(l.type, l.value);
      if (!o.ok) {
        this.metrics.idsRefused.inc({ type: l.type.slice(0, 32) });
        continue;
      }
      const r = await linkIds(
        tx,
        n.key,
        o.key,
        { source: input.channel, evidence: { event: input.key, kind: input.kind }, at },
        this.ident,
      );
      this.metrics.links.inc({ outcome: r.status });
    }
    member = (await tx.memberOfIds([n.key])).get(n.key) ?? member;
    const act: Activity = {
      key: input.key,
      idKey: n.key,
      kind: input.kind,
      channel: input.channel,
      store: input.store,
      gateway: input.gateway ?? null,
      amountCents: input.amountCents ?? 0,
      at,
    };
    if (!(await tx.insertActivity(act))) {
      this.metrics.events.inc({ kind: input.kind, outcome: 'duplicate' });
      return { outcome: 'duplicate', memberId: member, ...none };
    }
    this.metrics.events.inc({ kind: input.kind, outcome: 'recorded' });
    const t0 = this.opts.onRuleEvaluation ? performance.now() : 0;
    const effects = await this.runRules(tx, member, act, false);
    if (this.opts.onRuleEvaluation) this.opts.onRuleEvaluation(performance.now() - t0);
    return { outcome: 'recorded', memberId: member, coupons: effects.coupons, tags: effects.tags };
  }

  private async runRules(
    tx: MembersTx,
    member: string,
    act: Activity,
    dryRun: boolean,
    only?: { rule: Rule; version: number }[],
  ) {
    const rules = only ?? (await this.loadRules(tx));
    const coupons: Coupon[] = [];
    const tags: string[] = [];
    const explain: {
      ruleId: string;
      version: number;
      matched: boolean;
      reason?: string;
      actions?: Action[];
    }[] = [];
    let profile: Profile | undefined;
    let tagRows: TagRow[] | undefined;
    const now = this.now();
    for (const { rule, version } of rules) {
      const why = await evaluate(rule, {
        event: act,
        profile: async () => {
          if (!profile) {
            const acts = await tx.activityOf(member, now - PROFILE_WINDOW_MS);
            profile = computeProfile(
              acts.filter((a) => a.key !== act.key),
              act.at,
            );
          }
          return profile;
        },
        tags: async () => (tagRows ??= await tx.tagsOf(member)),
        count: async (q) =>
          (await tx.countActivity({ memberId: member, ...q })) -
          (q.kind === act.kind &&
          act.at >= q.from &&
          act.at <= q.to &&
          (q.store === undefined || q.store === act.store) &&
          !dryRun
            ? 1
            : 0),
      });
      explain.push({
        ruleId: rule.id,
        version,
        matched: why === undefined,
        ...(why ? { reason: why } : { actions: rule.actions }),
      });
      if (why !== undefined || dryRun) continue;
      for (const a of rule.actions) {
        if (a.type === 'issue_coupon') {
          const r = await issueCoupon(tx, {
            templateId: a.template,
            memberId: member,
            ruleId: rule.id,
            ruleVersion: version,
            triggerKey: act.key,
            triggerAt: act.at,
            gateway: a.display ? act.gateway : null,
            now,
            newId: this.newId,
          });
          this.metrics.coupons.inc({ outcome: r.outcome });
          if (r.outcome === 'issued' && r.coupon) {
            coupons.push(r.coupon);
            await tx.putDelivery(newDelivery(r.coupon.id, 'webhook', now));
            if (a.display && act.gateway) await tx.putDelivery(newDelivery(r.coupon.id, 'display', now));
          }
        } else if (a.type === 'tag') {
          if (a.remove) await this.removeTagEverywhere(tx, member, a.tag);
          else await tx.setTag({ memberId: member, tag: a.tag, source: 'rule', at: now });
          tags.push(a.tag);
        } else if (a.type === 'notify_display' && act.gateway && this.opts.showOnDisplay) {
          const gateway = act.gateway;
          const commandId = ulidFrom(`notify:${rule.id}:${act.key}`, now);
          // Best effort after this transaction; the command id is derived, so a replay is the same command.
          setImmediate(() => {
            this.opts
              .showOnDisplay?.({ gateway, commandId, text: a.text, valueCents: 0 })
              .catch(() => undefined);
          });
        }
      }
    }
    return { coupons, tags, explain };
  }

  /**
   * [RULE-DRYRUN-1] evaluates a rule (saved or not) against recent activity without any
   * effect: which events would match and what the rule would do.
   */
  async dryRun(body: unknown, q: { sinceMs: number; limit: number }) {
    return this.counted(() => this.dryRunUncounted(body, q));
  }

  private async dryRunUncounted(body: unknown, q: { sinceMs: number; limit: number }) {
    const templates = new Set((await this.opts.repo.listTemplates()).map((t) => t.id));
    const rule = validateRule(body, templates);
    const acts = await this.opts.repo.recentActivity(this.now() - q.sinceMs, q.limit);
    const results: { event: Activity; memberId: string | null; matched: boolean; reason?: string }[] = [];
    await this.opts.repo.transaction(async (tx) => {
      for (const a of acts) {
        const member = (await tx.memberOfIds([a.idKey])).get(a.idKey);
        if (member === undefined) continue;
        const r = await this.runRules(tx, member, a, true, [{ rule, version: 0 }]);
        const e = r.explain[0]!;
        results.push({
          event: a,
          memberId: member,
          matched: e.matched,
          ...(e.reason ? { reason: e.reason } : {}),
        });
      }
    });
    return { rule, evaluated: results.length, matched: results.filter((r) => r.matched).length, results };
  }

  private async loadRules(tx: MembersTx) {
    if (!this.rules) {
      const rows = await tx.latestRules();
      this.rules = rows
        .map((r) => ({ rule: r.body as Rule, version: r.version }))
        .sort((a, b) => (a.rule.id < b.rule.id ? -1 : 1));
    }
    return this.rules;
  }

  /** [RULE-VALID-1] validates and saves a new version of a rule; returns it. */
  async saveRule(body: unknown): Promise<{ rule: Rule; version: number }> {
    return this.counted(() => this.saveRuleUncounted(body));
  }

  /** Counts a coded refusal by code (bad input costs nothing else). */
  private async counted<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      const code = (e as { code?: string }).code;
      if (typeof code === 'string' && code !== 'CLOUD_ERR_STORE') this.metrics.refusals.inc({ code });
      throw e;
    }
  }

  private async saveRuleUncounted(body: unknown): Promise<{ rule: Rule; version: number }> {
    const templates = new Set((await this.opts.repo.listTemplates()).map((t) => t.id));
    const rule = validateRule(body, templates);
    const version = await this.opts.repo.transaction(async (tx) => {
      const v = (await tx.latestRuleVersion(rule.id)) + 1;
      await tx.insertRuleVersion({ id: rule.id, version: v, body: rule, createdAt: this.now() });
      return v;
    });
    this.rules = undefined;
    return { rule, version };
  }

  async putTemplate(body: unknown): Promise<CouponTemplate> {
    return this.counted(() => this.putTemplateUncounted(body));
  }

  private async putTemplateUncounted(body: unknown): Promise<CouponTemplate> {
    const t: TemplateInput = validateTemplate(body);
    const now = this.now();
    return this.opts.repo.transaction(async (tx) => {
      const prev = await tx.getTemplate(t.id);
      const row: CouponTemplate = { ...t, issued: prev?.issued ?? 0, createdAt: prev?.createdAt ?? now };
      await tx.putTemplate(row);
      return (await tx.getTemplate(t.id))!;
    });
  }

  // ------------------------------------------------------------ CouponRedeemer

  private async memberFor(tx: MembersTx, ref: MemberRef): Promise<string | undefined> {
    const key = 'memberId' in ref ? idKey('member', ref.memberId) : this.idKeyOf(ref.idType, ref.value);
    return (await tx.memberOfIds([key])).get(key);
  }

  async quote(member: MemberRef, draft: OrderDraft): Promise<CouponQuote | undefined> {
    return this.opts.repo.transaction(async (tx) => {
      const m = await this.memberFor(tx, member);
      return m === undefined
        ? undefined
        : bestQuote(tx, m, draft, this.now(), { minTotalCents: draft.minTotalCents ?? 0 });
    });
  }

  async redeem(input: Parameters<CouponRedeemer['redeem']>[0]): Promise<CouponRedemption | undefined> {
    return this.counted(() => this.redeemUncounted(input));
  }

  private async redeemUncounted(input: {
    member: MemberRef;
    orderId: string;
    draft: OrderDraft;
    couponId?: string;
  }): Promise<CouponRedemption | undefined> {
    const now = this.now();
    const r = await this.opts.repo.transaction(async (tx) => {
      const prior = await tx.couponByOrder(input.orderId);
      if (prior) return { redemption: toRedemption(prior, input.orderId), fresh: false };
      const m = await this.memberFor(tx, input.member);
      if (m === undefined) {
        if (input.couponId !== undefined)
          throw cloudError('CLOUD_ERR_COUPON_NOT_APPLICABLE', {
            couponId: input.couponId,
            reason: 'unknown member',
          });
        return undefined;
      }
      await tx.lockMember(m);
      const q = await bestQuote(tx, m, input.draft, now, {
        ...(input.couponId !== undefined ? { couponId: input.couponId } : {}),
        minTotalCents: input.draft.minTotalCents ?? 0,
      });
      if (!q) return undefined;
      const c = (await tx.getCoupon(q.couponId))!;
      const done: Coupon = {
        ...c,
        state: 'redeemed',
        orderId: input.orderId,
        redeemedAt: now,
        discountCents: q.discountCents,
        subtotalCents: q.subtotalCents,
      };
      await tx.saveCoupon(done);
      await tx.insertActivity({
        key: `redeem:${input.orderId}`,
        idKey: idKey('member', c.memberId),
        kind: 'coupon_redeemed',
        channel: 'store',
        store: input.draft.site,
        gateway: input.draft.gateway,
        amountCents: q.discountCents,
        at: now,
      });
      return { redemption: toRedemption(done, input.orderId), fresh: true };
    });
    if (r?.fresh) this.metrics.coupons.inc({ outcome: 'redeemed' });
    return r?.redemption;
  }

  async redemptionFor(orderId: string): Promise<CouponRedemption | undefined> {
    return this.opts.repo.transaction(async (tx) => {
      const c = await tx.couponByOrder(orderId);
      return c && toRedemption(c, orderId);
    });
  }

  async release(orderId: string): Promise<void> {
    await this.opts.repo.transaction(async (tx) => {
      const c = await tx.couponByOrder(orderId);
      if (c?.state !== 'redeemed') return;
      await tx.saveCoupon({
        ...c,
        state: 'issued',
        orderId: null,
        redeemedAt: null,
        discountCents: null,
        subtotalCents: null,
      });
      this.metrics.coupons.inc({ outcome: 'released' });
    });
  }

  // ------------------------------------------------------------ deliveries

  /** Asks for a delivery run soon (after the current transaction has committed). */
  kick(delayMs = 0): void {
    setTimeout(() => {
      this.deliverDue().catch((e: unknown) =>
        this.opts.logger?.warn({ err: e }, 'coupon delivery run failed'),
      );
    }, delayMs).unref?.();
  }

  /**
   * [COUPON-DELIVER-1] delivers pending coupons at least once: webhook to the member's
   * channel (signed, the receiver dedupes by coupon id) and the store display (a command
   * whose id is derived from the coupon, so a retry is the same command). Failures retry
   * with back-off, then the delivery is marked failed.
   */
  deliverDue(limit = 100): Promise<number> {
    this.delivering ??= this.runDeliveries(limit).finally(() => {
      this.delivering = undefined;
    });
    return this.delivering;
  }

  private async runDeliveries(limit: number): Promise<number> {
    const now = this.now();
    const due = await this.opts.repo.dueDeliveries(now, limit);
    let done = 0;
    for (const d of due) {
      const msg = await this.messageFor(d.couponId);
      if (!msg) {
        await this.opts.repo.saveDelivery({ ...d, state: 'failed', lastError: 'coupon gone (erased)' });
        continue;
      }
      let error: string | undefined;
      try {
        if (d.channel === 'webhook') error = await this.postWebhook(msg.message);
        else error = await this.showCoupon(msg.coupon, msg.message);
      } catch (e) {
        error = (e as Error).message;
      }
      const attempts = d.attempts + 1;
      if (!error) {
        await this.opts.repo.saveDelivery({
          ...d,
          state: 'delivered',
          attempts,
          lastError: null,
          deliveredAt: this.now(),
        });
        this.metrics.deliveries.inc({ channel: d.channel, result: 'delivered' });
        done++;
      } else {
        const failed = attempts >= (this.opts.maxAttempts ?? 12);
        const retry = Math.min((this.opts.retryMs ?? 5_000) * 2 ** (attempts - 1), 3_600_000);
        await this.opts.repo.saveDelivery({
          ...d,
          state: failed ? 'failed' : 'pending',
          attempts,
          lastError: error,
          nextAt: now + retry,
        });
        this.metrics.deliveries.inc({ channel: d.channel, result: failed ? 'failed' : 'retry' });
      }
    }
    return done;
  }

  private async messageFor(
    couponId: string,
  ): Promise<{ coupon: Coupon; message: CouponMessage } | undefined> {
    return this.opts.repo.transaction(async (tx) => {
      const c = await tx.getCoupon(couponId);
      if (!c) return undefined;
      const t = await tx.getTemplate(c.templateId);
      const member = (await currentMember(tx, c.memberId)) ?? c.memberId;
      const channelIds: Record<string, string[]> = {};
      for (const k of await tx.idsOfMember(member)) {
        const { type, value } = parseIdKey(k);
        if (type === 'member' || type === 'face_id' || type === 'device_id') continue;
        channelIds[type] = [...(channelIds[type] ?? []), value];
      }
      return {
        coupon: c,
        message: {
          couponId: c.id,
          memberId: member,
          channelIds,
          template: {
            id: c.templateId,
            name: t?.name ?? c.templateId,
            kind: t?.kind ?? 'amount_off',
            ...(t?.amountOffCents !== undefined ? { amountOffCents: t.amountOffCents } : {}),
            ...(t?.percentOff !== undefined ? { percentOff: t.percentOff } : {}),
            ...(t?.freeSku !== undefined ? { freeSku: t.freeSku } : {}),
          },
          validFrom: c.validFrom,
          expiresAt: c.expiresAt,
        },
      };
    });
  }

  private async postWebhook(m: CouponMessage): Promise<string | undefined> {
    const w = this.opts.webhook;
    if (!w) return 'no member-channel webhook configured';
    const body = JSON.stringify(m);
    const ts = String(Math.floor(this.now() / 1000));
    const sig = createHmac('sha256', w.secret).update(`${ts}\n${body}`).digest('base64');
    const res = await (this.opts.fetch ?? fetch)(w.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-storelink-timestamp': ts,
        'x-storelink-signature': sig,
      },
      body,
      signal: AbortSignal.timeout(w.timeoutMs ?? 5_000),
    });
    await res.arrayBuffer();
    return res.status >= 200 && res.status < 300 ? undefined : `HTTP ${res.status}`;
  }

  private async showCoupon(c: Coupon, m: CouponMessage): Promise<string | undefined> {
    if (!this.opts.showOnDisplay) return 'no display sender configured';
    if (!c.gateway) return 'coupon has no store gateway';
    await this.opts.showOnDisplay({
      gateway: c.gateway,
      commandId: ulidFrom(`coupon.display:${c.id}`, c.issuedAt),
      text: m.template.name,
      valueCents: m.template.amountOffCents ?? 0,
      couponId: c.id,
    });
    return undefined;
  }

  /** Marks coupons past their expiry as expired (quotes already ignore them). */
  async expireDue(limit = 1000): Promise<number> {
    const now = this.now();
    const list = await this.opts.repo.listCoupons({ state: 'issued', limit });
    let n = 0;
    await this.opts.repo.transaction(async (tx) => {
      for (const c of list)
        if (c.expiresAt <= now) {
          await tx.saveCoupon({ ...c, state: 'expired' });
          n++;
        }
    });
    if (n) this.metrics.coupons.inc({ outcome: 'expired' }, n);
    return n;
  }
}

function newDelivery(couponId: string, channel: Delivery['channel'], now: number): Delivery {
  return {
    couponId,
    channel,
    state: 'pending',
    attempts: 0,
    lastError: null,
    nextAt: now,
    deliveredAt: null,
  };
}

function toRedemption(c: Coupon, orderId: string): CouponRedemption {
  const subtotal = c.subtotalCents ?? 0;
  const discount = c.discountCents ?? 0;
  return {
    couponId: c.id,
    templateId: c.templateId,
    memberId: c.memberId,
    subtotalCents: subtotal,
    discountCents: discount,
    totalCents: subtotal - discount,
    orderId,
    redeemedAt: c.redeemedAt ?? 0,
  };
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
/** A ULID-shaped id derived from a key (time part from `at`), for idempotent commands. */
export function ulidFrom(key: string, at: number): string {
  let t = '';
  let ms = Math.max(0, Math.floor(at));
  for (let i = 0; i < 10; i++) {
    t = CROCKFORD[ms % 32] + t;
    ms = Math.floor(ms / 32);
  }
  const h = createHash('sha256').update(key).digest();
  let r = '';
  for (let i = 0; i < 16; i++) r += CROCKFORD[h[i]! % 32];
  return t + r;
}
