import { randomBytes } from 'node:crypto';
import { cabinet as cab } from '@storelink/protocols';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { cloudError } from '../errors.ts';
import type { CouponRedeemer } from '../members/coupons.ts';
import { dispenseCommandIdFor } from '../orders/service.ts';
import type { AgreementChargeClient } from '../payments/provider.ts';
import type { CabinetRepo, CabinetSession, CabinetTx, LineItem } from './repo.ts';

/**
 * Cabinet checkout in the cloud (docs/cabinet.md):
 *
 *   scan ──▶ unlocking ──opened──▶ open ──closed (taken)──▶ charging ──charge ok──▶ charged
 *              │                    │           └─closed (nothing taken)─▶ closed
 *              └──relocked (door never opened)─▶ relocked      charging ──refused / no price──▶ review
 *              └──unlock refused/expired─▶ rejected (a later `closed` from the edge still charges)
 *
 * - [CAB-AUTH-1] deny by default: a scan unlocks only for a member with an active payment
 *   agreement, on a known gateway; the unlock is the signed, expiring, run-once command.
 * - [CAB-CHARGE-1] one session, one order, at most one charge: the session row moves to
 *   `charging` once, under its row lock, in the same transaction as the ingest of the
 *   `closed` event (a duplicate event finds it past `open` and does nothing); the order
 *   id (out_trade_no) is derived from the session id, and the provider deducts at most
 *   once per out_trade_no [CAB-CHARGE-2], so a retry after a lost answer, a crash between
 *   charge and commit, or two sweepers never charge twice.
 * - [CAB-PRICE-1] the amount is the sum of cloud prices of the taken SKUs; a taken SKU
 *   without a price sends the session to `review` (never guessed, never charged 0).
 * - [CAB-COUPON-1] the member's best coupon (members' CouponRedeemer, optional) is
 *   redeemed keyed by the order id before the charge, so a retried charge keeps the same
 *   discount and never uses a second coupon.
 */
export interface CabinetTiming {
  /** Lifetime of the cabinet.unlock command. */
  unlockTtlMs: number;
  /** A session still `unlocking` this long after its command expired is `rejected`. */
  unlockGraceMs: number;
  /** First retry of a failed charge (doubles, up to an hour). */
  retryMs: number;
}
export const DEFAULT_CABINET_TIMING: CabinetTiming = {
  unlockTtlMs: 30_000,
  unlockGraceMs: 60_000,
  retryMs: 10_000,
};

export interface UnlockCommand {
  id: string;
  gateway: string;
  payload: cab.CabinetUnlock;
  ttlMs: number;
}

export function createCabinetMetrics(registry?: Registry) {
  const registers = registry ? [registry] : [];
  return {
    sessions: new Counter({
      name: 'storelink_cloud_cabinet_sessions_total',
      help: 'Cabinet session transitions, by the state reached',
      labelNames: ['state'] as const,
      registers,
    }),
    scans: new Counter({
      name: 'storelink_cloud_cabinet_scans_total',
      help: 'Cabinet QR scans, by outcome (unlocking, no_agreement, unknown_gateway)',
      labelNames: ['outcome'] as const,
      registers,
    }),
    events: new Counter({
      name: 'storelink_cloud_cabinet_events_total',
      help: 'Cabinet session events ingested, by type and effect (applied, duplicate, unknown_session, wrong_gateway)',
      labelNames: ['type', 'effect'] as const,
      registers,
    }),
    charges: new Counter({
      name: 'storelink_cloud_cabinet_charges_total',
      help: 'Agreement charge calls for cabinet orders, by result (success, processing, refused, error, free)',
      labelNames: ['result'] as const,
      registers,
    }),
  };
}
export type CabinetMetrics = ReturnType<typeof createCabinetMetrics>;

export interface CabinetServiceOptions {
  repo: CabinetRepo;
  /** Agreement-capable payment clients by provider name. */
  payments: Record<string, AgreementChargeClient>;
  sendUnlock: (c: UnlockCommand) => Promise<void>;
  /** The site of a registered gateway (undefined: unknown gateway → refused). */
  siteOf: (gateway: string) => Promise<string | undefined>;
  /** Members' coupons (cloud/src/members); optional [CAB-COUPON-1]. */
  coupons?: CouponRedeemer;
  now: () => number;
  timing?: Partial<CabinetTiming>;
  metrics?: CabinetMetrics;
  logger?: Logger;
  /** Session ids (tests and the torture make them deterministic). */
  newSessionId?: () => string;
}

export type EventEffect = 'applied' | 'duplicate' | 'unknown_session' | 'wrong_gateway' | 'ignored';

/** out_trade_no of a session's order [CAB-CHARGE-1]: derived, so every retry names the same trade. */
export function orderIdForSession(sessionId: string): string {
  return `C${sessionId}`;
}

/** The unlock command id, derived from the session like vend.dispense from the order [CAB-ONCE-1]. */
export function unlockCommandIdFor(sessionId: string, createdAt: number): string {
  return dispenseCommandIdFor(`cabinet.unlock:${sessionId}`, createdAt);
}

function randomSessionId(): string {
  return `CS${Date.now().toString(36).toUpperCase()}${randomBytes(6).toString('hex').toUpperCase()}`;
}

export class CabinetService {
  readonly timing: CabinetTiming;
  readonly metrics: CabinetMetrics;
  private readonly now: () => number;

  constructor(private readonly o: CabinetServiceOptions) {
    this.timing = { ...DEFAULT_CABINET_TIMING, ...o.timing };
    this.metrics = o.metrics ?? createCabinetMetrics();
    this.now = o.now;
  }

  get repo(): CabinetRepo {
    return this.o.repo;
  }

  /** A member scanned the cabinet's QR code [CAB-AUTH-1]. */
  async scan(i: { gateway: string; memberId: string; sessionId?: string }): Promise<CabinetSession> {
    const site = await this.o.siteOf(i.gateway);
    if (!site) {
      this.metrics.scans.inc({ outcome: 'unknown_gateway' });
      throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'gateway', id: i.gateway });
    }
    const a = await this.o.repo.agreement(i.memberId);
    if (!a?.active) {
      this.metrics.scans.inc({ outcome: 'no_agreement' });
      throw cloudError('CLOUD_ERR_CAB_NO_AGREEMENT', { memberId: i.memberId });
    }
    if (!this.o.payments[a.provider]) {
      this.metrics.scans.inc({ outcome: 'no_provider' });
      throw cloudError('CLOUD_ERR_CAB_PROVIDER', { provider: a.provider });
    }
    const now = this.now();
    const id = i.sessionId ?? (this.o.newSessionId ?? randomSessionId)();
    const s: CabinetSession = {
      id,
      gateway: i.gateway,
      site,
      memberId: i.memberId,
      provider: a.provider,
      agreementId: a.agreementId,
      state: 'unlocking',
      commandId: unlockCommandIdFor(id, now),
      orderId: orderIdForSession(id),
      items: [],
      returned: [],
      unresolved: [],
      subtotalCents: 0,
      discountCents: 0,
      totalCents: 0,
      couponId: null,
      priced: false,
      chargeTxId: null,
      chargeAttempts: 0,
      failure: null,
      createdAt: now,
      closedAt: null,
      chargedAt: null,
      // The sweeper rejects it if the edge never answers.
      dueAt: now + this.timing.unlockTtlMs + this.timing.unlockGraceMs,
      updatedAt: now,
    };
    const ok = await this.o.repo.transaction((tx) => tx.insert(s));
    if (!ok)
      throw cloudError('CLOUD_ERR_CONFLICT', { what: 'cabinet session', id, reason: 'session id is taken' });
    this.metrics.scans.inc({ outcome: 'unlocking' });
    this.metrics.sessions.inc({ state: 'unlocking' });
    try {
      await this.o.sendUnlock({
        id: s.commandId,
        gateway: s.gateway,
        payload: { sessionId: id, memberId: i.memberId },
        ttlMs: this.timing.unlockTtlMs,
      });
    } catch (e) {
      // Not sent: nothing can open; the sweeper rejects the session after the command's life.
      this.o.logger?.warn({ err: e, sessionId: id }, 'cabinet.unlock could not be sent');
    }
    return s;
  }

  /**
   * One event from the edge, inside the ingest transaction (event and effect commit
   * together; ingest dedupes by (gateway, lane, seq), and this is idempotent per session
   * state on top) [CAB-CHARGE-1].
   */
  async applyEvent(
    tx: CabinetTx,
    gateway: string,
    type: string,
    payload: unknown,
    at: number,
  ): Promise<EventEffect> {
    const effect = await this.applyEventInner(tx, gateway, type, payload, at);
    if (effect !== 'ignored') this.metrics.events.inc({ type, effect });
    return effect;
  }

  private async applyEventInner(
    tx: CabinetTx,
    gateway: string,
    type: string,
    payload: unknown,
    at: number,
  ): Promise<EventEffect> {
    let s: CabinetSession | undefined;
    if (type === 'command.result') {
      const p = payload as { commandId: string; type: string; status: string; code?: string };
      if (p.type !== cab.CABINET_UNLOCK) return 'ignored';
      s = await tx.lockByCommand(p.commandId);
      if (!s) return 'unknown_session';
      if (s.gateway !== gateway) return 'wrong_gateway';
      if (p.status === 'ok') return 'ignored'; // the session events tell the rest
      if (s.state !== 'unlocking') return 'duplicate';
      return this.move(tx, s, 'rejected', at, { failure: p.code ?? p.status });
    }
    if (!type.startsWith('cabinet.session.')) return 'ignored';
    const p = payload as { sessionId: string };
    s = await tx.lock(p.sessionId);
    if (!s) return 'unknown_session';
    if (s.gateway !== gateway) return 'wrong_gateway';
    const waiting = s.state === 'unlocking' || s.state === 'rejected';
    switch (type) {
      case cab.CABINET_SESSION_OPENED:
        return waiting ? this.move(tx, s, 'open', at) : 'duplicate';
      case cab.CABINET_SESSION_RELOCKED:
        return waiting || s.state === 'open'
          ? this.move(tx, s, 'relocked', at, { closedAt: at })
          : 'duplicate';
      case cab.CABINET_SESSION_CLOSED:
        if (!(waiting || s.state === 'open')) return 'duplicate';
        return this.closed(tx, s, payload as cab.CabinetSessionClosed, at);
      default:
        // unlocked, alarm: recorded as events; no state change.
        return 'applied';
    }
  }

  private async closed(tx: CabinetTx, s: CabinetSession, p: cab.CabinetSessionClosed, at: number) {
    s.returned = p.returned;
    s.unresolved = p.unresolved;
    if (p.taken.length === 0) return this.move(tx, s, 'closed', at, { closedAt: at });
    const prices = await tx.prices(s.site);
    const items: LineItem[] = [];
    const unpriced: string[] = [];
    for (const t of p.taken) {
      const price = prices.get(t.sku);
      if (price === undefined) unpriced.push(t.sku);
      else items.push({ sku: t.sku, qty: t.qty, priceCents: price });
    }
    s.items = items;
    s.subtotalCents = items.reduce((sum, i) => sum + i.priceCents * i.qty, 0);
    s.totalCents = s.subtotalCents;
    if (unpriced.length > 0) {
      // [CAB-PRICE-1]
      return this.move(tx, s, 'review', at, { closedAt: at, failure: `no price for ${unpriced.join(',')}` });
    }
    return this.move(tx, s, 'charging', at, { closedAt: at, dueAt: at });
  }

  private async move(
    tx: CabinetTx,
    s: CabinetSession,
    state: CabinetSession['state'],
    at: number,
    extra: Partial<Pick<CabinetSession, 'failure' | 'closedAt' | 'dueAt'>> = {},
  ): Promise<EventEffect> {
    const dueAt = extra.dueAt !== undefined ? extra.dueAt : state === 'rejected' ? s.dueAt : null;
    await tx.save({ ...s, ...extra, state, dueAt, updatedAt: at });
    this.metrics.sessions.inc({ state });
    return 'applied';
  }

  /**
   * The charge of a `charging` session, after the ingest commit (and from the sweeper).
   * [CAB-COUPON-1] price once (coupon keyed by the order id), then [CAB-CHARGE-2] deduct
   * with the session's fixed out_trade_no.
   */
  async tryCharge(id: string): Promise<'charged' | 'retry' | 'review' | 'not_charging'> {
    let s = await this.o.repo.get(id);
    if (s?.state !== 'charging') return 'not_charging';
    if (!s.priced) s = await this.price(s);
    const client = this.o.payments[s.provider];
    let result: 'success' | 'processing' | 'refused' | 'error' | 'free';
    let txId: string | null = null;
    let reason: string | undefined;
    if (s.totalCents === 0) result = 'free';
    else if (!client) {
      result = 'error';
      reason = `no agreement client for ${s.provider}`;
    } else {
      try {
        const r = await client.chargeAgreement({
          outTradeNo: s.orderId,
          agreementId: s.agreementId,
          amountCents: s.totalCents,
          currency: 'CNY',
          description: `cabinet ${s.gateway} session ${s.id}`,
        });
        result = r.status === 'SUCCESS' ? 'success' : r.status === 'PROCESSING' ? 'processing' : 'refused';
        txId = r.transactionId ?? null;
        reason = r.reason;
      } catch (e) {
        result = 'error';
        reason = (e as Error).message;
      }
    }
    this.metrics.charges.inc({ result });
    const now = this.now();
    return this.o.repo.transaction(async (tx) => {
      const cur = await tx.lock(id);
      if (cur?.state !== 'charging') return 'not_charging' as const;
      if (result === 'success' || result === 'free') {
        await tx.save({
          ...cur,
          state: 'charged',
          chargeTxId: txId,
          chargedAt: now,
          dueAt: null,
          updatedAt: now,
        });
        this.metrics.sessions.inc({ state: 'charged' });
        return 'charged' as const;
      }
      if (result === 'refused') {
        await tx.save({ ...cur, state: 'review', failure: reason ?? 'refused', dueAt: null, updatedAt: now });
        this.metrics.sessions.inc({ state: 'review' });
        this.o.logger?.warn({ sessionId: id, reason }, 'cabinet charge refused; session needs review');
        return 'review' as const;
      }
      const attempts = cur.chargeAttempts + 1;
      await tx.save({
        ...cur,
        chargeAttempts: attempts,
        failure: reason ?? result,
        dueAt: now + Math.min(this.timing.retryMs * 2 ** Math.min(attempts - 1, 16), 3600_000),
        updatedAt: now,
      });
      return 'retry' as const;
    });
  }

  private async price(s: CabinetSession): Promise<CabinetSession> {
    let discount = 0;
    let couponId: string | null = null;
    if (this.o.coupons) {
      try {
        const r = await this.o.coupons.redeem({
          member: { memberId: s.memberId },
          orderId: s.orderId,
          draft: {
            site: s.site,
            gateway: s.gateway,
            items: s.items.map((i) => ({ sku: i.sku, priceCents: i.priceCents, qty: i.qty })),
            currency: 'CNY',
          },
        });
        if (r) {
          discount = Math.min(r.discountCents, s.subtotalCents);
          couponId = r.couponId;
        }
      } catch (e) {
        // A coupon service failure must not block the charge: full price, logged.
        this.o.logger?.warn({ err: e, sessionId: s.id }, 'coupon redemption failed; charging full price');
      }
    }
    const now = this.now();
    return this.o.repo.transaction(async (tx) => {
      const cur = await tx.lock(s.id);
      if (!cur) throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'cabinet session', id: s.id });
      if (cur.priced) return cur;
      const next = {
        ...cur,
        priced: true,
        couponId,
        discountCents: discount,
        totalCents: cur.subtotalCents - discount,
        updatedAt: now,
      };
      await tx.save(next);
      return next;
    });
  }

  /** Sweeper step: charges due, unlocks never answered. Returns how many sessions it looked at. */
  async sweep(limit = 100): Promise<number> {
    const now = this.now();
    const due = await this.o.repo.due(now, limit);
    for (const s of due) {
      if (s.state === 'charging') await this.tryCharge(s.id);
      else if (s.state === 'unlocking') {
        await this.o.repo.transaction(async (tx) => {
          const cur = await tx.lock(s.id);
          if (cur?.state !== 'unlocking') return;
          await tx.save({
            ...cur,
            state: 'rejected',
            failure: 'no answer from the cabinet',
            dueAt: null,
            updatedAt: now,
          });
          this.metrics.sessions.inc({ state: 'rejected' });
        });
      } else {
        await this.o.repo.transaction(async (tx) => {
          const cur = await tx.lock(s.id);
          if (cur && cur.dueAt !== null && cur.state !== 'charging')
            await tx.save({ ...cur, dueAt: null, updatedAt: now });
        });
      }
    }
    return due.length;
  }
}
