import type { Sql, SqlQueryable } from '../store/sql.ts';

/**
 * Cabinet sessions, their one order, members' payment agreements and cabinet prices
 * (docs/cabinet.md). Two implementations of one interface, as for vending orders:
 * `SqlCabinetRepo` over the store's `Sql` seam (PGlite and PostgreSQL; migration 80) and
 * `MemoryCabinetRepo` (the torture run; transactions serialised by one mutex, undone on
 * throw — the same semantics as a row lock + ROLLBACK).
 */
export const CABINET_SESSION_STATES = [
  'unlocking',
  'open',
  'relocked',
  'rejected',
  'closed',
  'charging',
  'charged',
  'review',
] as const;
export type CabinetSessionState = (typeof CABINET_SESSION_STATES)[number];

export interface LineItem {
  sku: string;
  qty: number;
  priceCents: number;
}

export interface CabinetSession {
  id: string;
  gateway: string;
  site: string;
  memberId: string;
  provider: string;
  agreementId: string;
  state: CabinetSessionState;
  commandId: string;
  /** out_trade_no of the session's one charge: derived from the session id [CAB-CHARGE-1]. */
  orderId: string;
  items: LineItem[];
  returned: Array<{ sku: string; qty: number }>;
  unresolved: unknown[];
  subtotalCents: number;
  discountCents: number;
  totalCents: number;
  couponId: string | null;
  /** The coupon step ran (with or without a coupon): the total is final. */
  priced: boolean;
  chargeTxId: string | null;
  chargeAttempts: number;
  failure: string | null;
  createdAt: number;
  closedAt: number | null;
  chargedAt: number | null;
  dueAt: number | null;
  updatedAt: number;
}

export interface Agreement {
  memberId: string;
  provider: string;
  agreementId: string;
  active: boolean;
}

export interface CabinetTx {
  lock(id: string): Promise<CabinetSession | undefined>;
  lockByCommand(commandId: string): Promise<CabinetSession | undefined>;
  insert(s: CabinetSession): Promise<boolean>;
  save(s: CabinetSession): Promise<void>;
  /** Cabinet prices of a site, read inside the transaction (never through the outer connection). */
  prices(site: string): Promise<Map<string, number>>;
}

export interface CabinetRepo {
  transaction<T>(fn: (tx: CabinetTx) => Promise<T>): Promise<T>;
  get(id: string): Promise<CabinetSession | undefined>;
  list(f: { gateway?: string; state?: CabinetSessionState; limit: number }): Promise<CabinetSession[]>;
  due(now: number, limit: number): Promise<CabinetSession[]>;
  agreement(memberId: string): Promise<Agreement | undefined>;
  setAgreement(a: Agreement, at: number): Promise<void>;
  prices(site: string): Promise<Map<string, number>>;
  setPrices(site: string, items: ReadonlyArray<{ sku: string; priceCents: number }>): Promise<void>;
}

// ---------------------------------------------------------------- SQL

const COLS = `id, gateway, site, member_id, provider, agreement_id, state, command_id, order_id, items, returned,
  unresolved, subtotal_cents, discount_cents, total_cents, coupon_id, priced, charge_tx_id, charge_attempts, failure,
  created_at, closed_at, charged_at, due_at, updated_at`;

interface Row {
  id: string;
  gateway: string;
  site: string;
  member_id: string;
  provider: string;
  agreement_id: string;
  state: CabinetSessionState;
  command_id: string;
  order_id: string;
  items: LineItem[];
  returned: Array<{ sku: string; qty: number }>;
  unresolved: unknown[];
  subtotal_cents: number;
  discount_cents: number;
  total_cents: number;
  coupon_id: string | null;
  priced: boolean;
  charge_tx_id: string | null;
  charge_attempts: number;
  failure: string | null;
  created_at: number;
  closed_at: number | null;
  charged_at: number | null;
  due_at: number | null;
  updated_at: number;
}

const toSession = (r: Row): CabinetSession => ({
  id: r.id,
  gateway: r.gateway,
  site: r.site,
  memberId: r.member_id,
  provider: r.provider,
  agreementId: r.agreement_id,
  state: r.state,
  commandId: r.command_id,
  orderId: r.order_id,
  items: r.items,
  returned: r.returned,
  unresolved: r.unresolved,
  subtotalCents: r.subtotal_cents,
  discountCents: r.discount_cents,
  totalCents: r.total_cents,
  couponId: r.coupon_id,
  priced: r.priced,
  chargeTxId: r.charge_tx_id,
  chargeAttempts: r.charge_attempts,
  failure: r.failure,
  createdAt: r.created_at,
  closedAt: r.closed_at,
  chargedAt: r.charged_at,
  dueAt: r.due_at,
  updatedAt: r.updated_at,
});

const params = (s: CabinetSession): unknown[] => [
  s.id,
  s.gateway,
  s.site,
  s.memberId,
  s.provider,
  s.agreementId,
  s.state,
  s.commandId,
  s.orderId,
  JSON.stringify(s.items),
  JSON.stringify(s.returned),
  JSON.stringify(s.unresolved),
  s.subtotalCents,
  s.discountCents,
  s.totalCents,
  s.couponId,
  s.priced,
  s.chargeTxId,
  s.chargeAttempts,
  s.failure,
  s.createdAt,
  s.closedAt,
  s.chargedAt,
  s.dueAt,
  s.updatedAt,
];

/** The session part of a transaction on any `SqlQueryable` (also the ingest transaction). */
export function sqlCabinetTx(q: SqlQueryable): CabinetTx {
  return {
    async lock(id) {
      const r = await q.query<Row>(`SELECT ${COLS} FROM cabinet_sessions WHERE id = $1 FOR UPDATE`, [id]);
      return r.rows[0] && toSession(r.rows[0]);
    },
    async prices(site) {
      const r = await q.query<{ sku: string; price_cents: number }>(
        'SELECT sku, price_cents FROM cabinet_prices WHERE site = $1',
        [site],
      );
      return new Map(r.rows.map((x) => [x.sku, x.price_cents]));
    },
    async lockByCommand(commandId) {
      const r = await q.query<Row>(`SELECT ${COLS} FROM cabinet_sessions WHERE command_id = $1 FOR UPDATE`, [
        commandId,
      ]);
      return r.rows[0] && toSession(r.rows[0]);
    },
    async insert(s) {
      const r = await q.query(
        `INSERT INTO cabinet_sessions (${COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
         $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25) ON CONFLICT (id) DO NOTHING`,
        params(s),
      );
      return r.affected === 1;
    },
    async save(s) {
      // id, gateway, member, agreement, command and order ids never change.
      await q.query(
        `UPDATE cabinet_sessions SET state = $2, items = $3, returned = $4, unresolved = $5, subtotal_cents = $6,
           discount_cents = $7, total_cents = $8, coupon_id = $9, priced = $10, charge_tx_id = $11,
           charge_attempts = $12, failure = $13, closed_at = $14, charged_at = $15, due_at = $16, updated_at = $17
         WHERE id = $1`,
        [
          s.id,
          s.state,
          JSON.stringify(s.items),
          JSON.stringify(s.returned),
          JSON.stringify(s.unresolved),
          s.subtotalCents,
          s.discountCents,
          s.totalCents,
          s.couponId,
          s.priced,
          s.chargeTxId,
          s.chargeAttempts,
          s.failure,
          s.closedAt,
          s.chargedAt,
          s.dueAt,
          s.updatedAt,
        ],
      );
    },
  };
}

export class SqlCabinetRepo implements CabinetRepo {
  constructor(private readonly sql: Sql) {}

  transaction<T>(fn: (tx: CabinetTx) => Promise<T>): Promise<T> {
    return this.sql.transaction((q) => fn(sqlCabinetTx(q)));
  }

  async get(id: string) {
    const r = await this.sql.query<Row>(`SELECT ${COLS} FROM cabinet_sessions WHERE id = $1`, [id]);
    return r.rows[0] && toSession(r.rows[0]);
  }

  async list(f: { gateway?: string; state?: CabinetSessionState; limit: number }) {
    const r = await this.sql.query<Row>(
      `SELECT ${COLS} FROM cabinet_sessions WHERE ($1::text IS NULL OR gateway = $1) AND ($2::text IS NULL OR state = $2)
       ORDER BY created_at DESC, id DESC LIMIT $3`,
      [f.gateway ?? null, f.state ?? null, f.limit],
    );
    return r.rows.map(toSession);
  }

  async due(now: number, limit: number) {
    const r = await this.sql.query<Row>(
      `SELECT ${COLS} FROM cabinet_sessions WHERE due_at IS NOT NULL AND due_at <= $1 ORDER BY due_at LIMIT $2`,
      [now, limit],
    );
    return r.rows.map(toSession);
  }

  async agreement(memberId: string) {
    const r = await this.sql.query<{
      member_id: string;
      provider: string;
      agreement_id: string;
      active: boolean;
    }>('SELECT member_id, provider, agreement_id, active FROM cabinet_agreements WHERE member_id = $1', [
      memberId,
    ]);
    const a = r.rows[0];
    return (
      a && { memberId: a.member_id, provider: a.provider, agreementId: a.agreement_id, active: a.active }
    );
  }

  async setAgreement(a: Agreement, at: number) {
    await this.sql.query(
      `INSERT INTO cabinet_agreements (member_id, provider, agreement_id, active, updated_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (member_id) DO UPDATE SET provider = $2, agreement_id = $3, active = $4, updated_at = $5`,
      [a.memberId, a.provider, a.agreementId, a.active, at],
    );
  }

  async prices(site: string) {
    return sqlCabinetTx(this.sql).prices(site);
  }

  async setPrices(site: string, items: ReadonlyArray<{ sku: string; priceCents: number }>) {
    await this.sql.transaction(async (q) => {
      for (const i of items) {
        await q.query(
          `INSERT INTO cabinet_prices (site, sku, price_cents) VALUES ($1, $2, $3)
           ON CONFLICT (site, sku) DO UPDATE SET price_cents = $3`,
          [site, i.sku, i.priceCents],
        );
      }
    });
  }
}

// The tables are created by migration 80 in cloud/src/store/migrations.ts.

// ---------------------------------------------------------------- memory

export class MemoryCabinetRepo implements CabinetRepo {
  readonly sessions = new Map<string, CabinetSession>();
  private readonly byCommand = new Map<string, string>();
  readonly agreements = new Map<string, Agreement>();
  readonly priceBook = new Map<string, Map<string, number>>();
  private tail: Promise<unknown> = Promise.resolve();

  transaction<T>(fn: (tx: CabinetTx) => Promise<T>): Promise<T> {
    const run = this.tail.then(() => this.runTx(fn));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async runTx<T>(fn: (tx: CabinetTx) => Promise<T>): Promise<T> {
    const undo: Array<() => void> = [];
    const set = (s: CabinetSession) => {
      const prev = this.sessions.get(s.id);
      undo.push(() => {
        if (prev) this.sessions.set(prev.id, prev);
        else {
          this.sessions.delete(s.id);
          this.byCommand.delete(s.commandId);
        }
      });
      this.sessions.set(s.id, structuredClone(s));
      this.byCommand.set(s.commandId, s.id);
    };
    const copy = (s: CabinetSession | undefined) => (s ? structuredClone(s) : undefined);
    const tx: CabinetTx = {
      lock: async (id) => copy(this.sessions.get(id)),
      lockByCommand: async (c) => {
        const id = this.byCommand.get(c);
        return id === undefined ? undefined : copy(this.sessions.get(id));
      },
      insert: async (s) => {
        if (this.sessions.has(s.id)) return false;
        for (const x of this.sessions.values()) if (x.orderId === s.orderId) return false;
        set(s);
        return true;
      },
      save: async (s) => {
        if (this.sessions.has(s.id)) set(s);
      },
      prices: async (site) => new Map(this.priceBook.get(site) ?? []),
    };
    try {
      return await fn(tx);
    } catch (e) {
      for (const u of undo.reverse()) u();
      throw e;
    }
  }

  async get(id: string) {
    const s = this.sessions.get(id);
    return s && structuredClone(s);
  }

  async list(f: { gateway?: string; state?: CabinetSessionState; limit: number }) {
    return [...this.sessions.values()]
      .filter(
        (s) =>
          (f.gateway === undefined || s.gateway === f.gateway) &&
          (f.state === undefined || s.state === f.state),
      )
      .slice(0, f.limit)
      .map((s) => structuredClone(s));
  }

  async due(now: number, limit: number) {
    return [...this.sessions.values()]
      .filter((s) => s.dueAt !== null && s.dueAt <= now)
      .sort((a, b) => a.dueAt! - b.dueAt!)
      .slice(0, limit)
      .map((s) => structuredClone(s));
  }

  async agreement(memberId: string) {
    const a = this.agreements.get(memberId);
    return a && { ...a };
  }

  async setAgreement(a: Agreement) {
    this.agreements.set(a.memberId, { ...a });
  }

  async prices(site: string) {
    return new Map(this.priceBook.get(site) ?? []);
  }

  async setPrices(site: string, items: ReadonlyArray<{ sku: string; priceCents: number }>) {
    const m = this.priceBook.get(site) ?? new Map<string, number>();
    for (const i of items) m.set(i.sku, i.priceCents);
    this.priceBook.set(site, m);
  }
}
