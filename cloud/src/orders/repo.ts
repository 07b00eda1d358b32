import { isStorelinkError } from '@storelink/protocols';
import { cloudError } from '../errors.ts';
import { insertCommandRow } from '../store/sql-store.ts';
import type { Sql, SqlQueryable } from '../store/sql.ts';
import type { NewCommand } from '../store/store.ts';
import { type Order, type OrderState, TERMINAL_STATES } from './machine.ts';

/**
 * Persistence of orders, payment notifications and refunds. Two implementations of one
 * interface: `SqlOrdersRepo` over the store's `Sql` seam (PGlite and PostgreSQL, the
 * production one) and `MemoryOrdersRepo` (the torture run's 100,000 orders in simulated
 * time; same semantics, transactions serialised by one mutex).
 *
 * All state changes go through `transaction()`: the order row is read with
 * `SELECT ... FOR UPDATE` (the "data lock" of the WeChat Pay notification rules), so two
 * copies of one notification processed concurrently serialise on the row and the second
 * sees the first one's effect [PAY-NOTIFY-ONCE-1].
 */
export type NotificationSource = 'notify' | 'query' | 'close';

export interface NotificationRecord {
  provider: string;
  txId: string;
  orderId: string;
  amountCents: number;
  currency: string;
  source: NotificationSource;
  /** What the notification did: paid, late, duplicate_order, ... */
  outcome: string;
  receivedAt: number;
}

export interface RefundRecord {
  refundNo: string;
  orderId: string;
  amountCents: number;
  status: 'pending' | 'succeeded';
  attempts: number;
  lastError: string | null;
  createdAt: number;
  completedAt: number | null;
}

export interface OrdersTx {
  /** The order, row-locked until the transaction ends. */
  lock(id: string): Promise<Order | undefined>;
  lockByCommand(commandId: string): Promise<Order | undefined>;
  /** false when the id exists already. */
  insert(o: Order): Promise<boolean>;
  /** Writes every mutable field; `refundNo` and `id` are never updated [ORDER-REFUND-NO-1]. */
  save(o: Order): Promise<void>;
  /** [PAY-NOTIFY-ONCE-1] false when (provider, txId) was recorded before: no effect. */
  recordNotification(n: NotificationRecord): Promise<boolean>;
  /** Creates the refund row once; a second call keeps the first (same refund number). */
  ensureRefund(r: { refundNo: string; orderId: string; amountCents: number; at: number }): Promise<void>;
  refundAttempt(refundNo: string, a: { at: number; ok: boolean; error?: string }): Promise<void>;
  /**
   * Stores a prepared command in this transaction [CMD-TX-1]; absent where the repo has
   * no command table (the memory repo of the torture run), and the service then stores
   * the command itself after the commit.
   */
  insertCommand?(c: NewCommand): Promise<void>;
}

export interface OrderFilter {
  gateway?: string;
  state?: OrderState;
  limit: number;
}

export interface OrdersRepo {
  transaction<T>(fn: (tx: OrdersTx) => Promise<T>): Promise<T>;
  get(id: string): Promise<Order | undefined>;
  list(f: OrderFilter): Promise<Order[]>;
  /** Non-terminal orders whose `dueAt` has come, oldest first. */
  due(now: number, limit: number): Promise<Order[]>;
  getRefund(orderId: string): Promise<RefundRecord | undefined>;
  notifications(orderId: string): Promise<NotificationRecord[]>;
}

// ---------------------------------------------------------------- SQL

const ORDER_COLS = `id, gateway, site, slot, sku, amount_cents, currency, state, provider, payment_tx_id, refund_no,
  dispense_command_id, dispense_expires_at, created_at, expires_at, paid_at, settled_at, failure_reason,
  refund_attempts, due_at, updated_at`;

interface OrderRow {
  id: string;
  gateway: string;
  site: string;
  slot: number;
  sku: string | null;
  amount_cents: number;
  currency: string;
  state: OrderState;
  provider: string | null;
  payment_tx_id: string | null;
  refund_no: string;
  dispense_command_id: string | null;
  dispense_expires_at: number | null;
  created_at: number;
  expires_at: number;
  paid_at: number | null;
  settled_at: number | null;
  failure_reason: string | null;
  refund_attempts: number;
  due_at: number | null;
  updated_at: number;
}

function toOrder(r: OrderRow): Order {
  return {
    id: r.id,
    gateway: r.gateway,
    site: r.site,
    slot: r.slot,
    sku: r.sku,
    amountCents: r.amount_cents,
    currency: r.currency,
    state: r.state,
    provider: r.provider,
    paymentTxId: r.payment_tx_id,
    refundNo: r.refund_no,
    dispenseCommandId: r.dispense_command_id,
    dispenseExpiresAt: r.dispense_expires_at,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    paidAt: r.paid_at,
    settledAt: r.settled_at,
    failureReason: r.failure_reason,
    refundAttempts: r.refund_attempts,
    dueAt: r.due_at,
    updatedAt: r.updated_at,
  };
}

/** The order part of a transaction on any `SqlQueryable` (also the ingest transaction). */
export function sqlOrdersTx(q: SqlQueryable): OrdersTx {
  return {
    async lock(id) {
      const r = await q.query<OrderRow>(`SELECT ${ORDER_COLS} FROM orders WHERE id = $1 FOR UPDATE`, [id]);
      return r.rows[0] && toOrder(r.rows[0]);
    },
    async lockByCommand(commandId) {
      const r = await q.query<OrderRow>(
        `SELECT ${ORDER_COLS} FROM orders WHERE dispense_command_id = $1 FOR UPDATE`,
        [commandId],
      );
      return r.rows[0] && toOrder(r.rows[0]);
    },
    async insert(o) {
      const r = await q.query(
        `INSERT INTO orders (${ORDER_COLS}) VALUES
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
         ON CONFLICT (id) DO NOTHING`,
        [
          o.id,
          o.gateway,
          o.site,
          o.slot,
          o.sku,
          o.amountCents,
          o.currency,
          o.state,
          o.provider,
          o.paymentTxId,
          o.refundNo,
          o.dispenseCommandId,
          o.dispenseExpiresAt,
          o.createdAt,
          o.expiresAt,
          o.paidAt,
          o.settledAt,
          o.failureReason,
          o.refundAttempts,
          o.dueAt,
          o.updatedAt,
        ],
      );
      return r.affected === 1;
    },
    async save(o) {
      await q.query(
        `UPDATE orders SET state = $2, provider = $3, payment_tx_id = $4, dispense_command_id = $5,
           dispense_expires_at = $6, paid_at = $7, settled_at = $8, failure_reason = $9, refund_attempts = $10,
           due_at = $11, updated_at = $12
         WHERE id = $1`,
        [
          o.id,
          o.state,
          o.provider,
          o.paymentTxId,
          o.dispenseCommandId,
          o.dispenseExpiresAt,
          o.paidAt,
          o.settledAt,
          o.failureReason,
          o.refundAttempts,
          o.dueAt,
          o.updatedAt,
        ],
      );
    },
    async insertCommand(c) {
      await insertCommandRow(q, c);
    },
    async recordNotification(n) {
      const r = await q.query(
        `INSERT INTO payment_notifications (provider, tx_id, order_id, amount_cents, currency, source, outcome, received_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (provider, tx_id) DO NOTHING`,
        [n.provider, n.txId, n.orderId, n.amountCents, n.currency, n.source, n.outcome, n.receivedAt],
      );
      return r.affected === 1;
    },
    async ensureRefund(r) {
      await q.query(
        `INSERT INTO refunds (refund_no, order_id, amount_cents, status, created_at)
         VALUES ($1, $2, $3, 'pending', $4) ON CONFLICT DO NOTHING`,
        [r.refundNo, r.orderId, r.amountCents, r.at],
      );
    },
    async refundAttempt(refundNo, a) {
      await q.query(
        `UPDATE refunds SET attempts = attempts + 1,
           status = CASE WHEN $2 THEN 'succeeded' ELSE status END,
           completed_at = CASE WHEN $2 THEN $3 ELSE completed_at END,
           last_error = $4
         WHERE refund_no = $1`,
        [refundNo, a.ok, a.at, a.error ?? null],
      );
    },
  };
}

export class SqlOrdersRepo implements OrdersRepo {
  constructor(private readonly sql: Sql) {}

  transaction<T>(fn: (tx: OrdersTx) => Promise<T>): Promise<T> {
    return guard(() => this.sql.transaction((q) => fn(sqlOrdersTx(q))));
  }

  async get(id: string): Promise<Order | undefined> {
    const r = await guard(() =>
      this.sql.query<OrderRow>(`SELECT ${ORDER_COLS} FROM orders WHERE id = $1`, [id]),
    );
    return r.rows[0] && toOrder(r.rows[0]);
  }

  async list(f: OrderFilter): Promise<Order[]> {
    const r = await guard(() =>
      this.sql.query<OrderRow>(
        `SELECT ${ORDER_COLS} FROM orders WHERE ($1::text IS NULL OR gateway = $1) AND ($2::text IS NULL OR state = $2)
         ORDER BY created_at DESC, id DESC LIMIT $3`,
        [f.gateway ?? null, f.state ?? null, f.limit],
      ),
    );
    return r.rows.map(toOrder);
  }

  async due(now: number, limit: number): Promise<Order[]> {
    const r = await guard(() =>
      this.sql.query<OrderRow>(
        `SELECT ${ORDER_COLS} FROM orders WHERE due_at IS NOT NULL AND due_at <= $1 ORDER BY due_at, id LIMIT $2`,
        [now, limit],
      ),
    );
    return r.rows.map(toOrder);
  }

  async getRefund(orderId: string): Promise<RefundRecord | undefined> {
    const r = await guard(() =>
      this.sql.query<{
        refund_no: string;
        order_id: string;
        amount_cents: number;
        status: RefundRecord['status'];
        attempts: number;
        last_error: string | null;
        created_at: number;
        completed_at: number | null;
      }>('SELECT * FROM refunds WHERE order_id = $1', [orderId]),
    );
    const x = r.rows[0];
    return (
      x && {
        refundNo: x.refund_no,
        orderId: x.order_id,
        amountCents: x.amount_cents,
        status: x.status,
        attempts: x.attempts,
        lastError: x.last_error,
        createdAt: x.created_at,
        completedAt: x.completed_at,
      }
    );
  }

  async notifications(orderId: string): Promise<NotificationRecord[]> {
    const r = await guard(() =>
      this.sql.query<{
        provider: string;
        tx_id: string;
        order_id: string;
        amount_cents: number;
        currency: string;
        source: NotificationSource;
        outcome: string;
        received_at: number;
      }>('SELECT * FROM payment_notifications WHERE order_id = $1 ORDER BY received_at, tx_id', [orderId]),
    );
    return r.rows.map((x) => ({
      provider: x.provider,
      txId: x.tx_id,
      orderId: x.order_id,
      amountCents: x.amount_cents,
      currency: x.currency,
      source: x.source,
      outcome: x.outcome,
      receivedAt: x.received_at,
    }));
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

// ---------------------------------------------------------------- memory

/**
 * In-memory repo with the SQL one's semantics: one transaction at a time (a mutex, as
 * strong as row locks), writes undone when the function throws. `due()` keeps an index
 * of non-terminal orders only, so 100,000 settled orders cost nothing per sweep.
 */
export class MemoryOrdersRepo implements OrdersRepo {
  readonly orders = new Map<string, Order>();
  private readonly byCommand = new Map<string, string>();
  private readonly open = new Set<string>();
  readonly notes = new Map<string, NotificationRecord>();
  readonly refunds = new Map<string, RefundRecord>();
  private tail: Promise<unknown> = Promise.resolve();

  transaction<T>(fn: (tx: OrdersTx) => Promise<T>): Promise<T> {
    const run = this.tail.then(() => this.runTx(fn));
    this.tail = run.catch(() => undefined);
    return run;
  }

  private async runTx<T>(fn: (tx: OrdersTx) => Promise<T>): Promise<T> {
    const undo: (() => void)[] = [];
    const setOrder = (o: Order) => {
      const prev = this.orders.get(o.id);
      undo.push(() => {
        if (prev) this.index(prev);
        else {
          this.orders.delete(o.id);
          this.open.delete(o.id);
        }
      });
      this.index(o);
    };
    const tx: OrdersTx = {
      lock: async (id) => this.orders.get(id),
      lockByCommand: async (c) => {
        const id = this.byCommand.get(c);
        return id === undefined ? undefined : this.orders.get(id);
      },
      insert: async (o) => {
        if (this.orders.has(o.id)) return false;
        setOrder(o);
        return true;
      },
      save: async (o) => {
        const prev = this.orders.get(o.id);
        if (!prev) return;
        // [ORDER-REFUND-NO-1] as in SQL: the refund number column is never updated.
        setOrder({ ...o, refundNo: prev.refundNo });
      },
      recordNotification: async (n) => {
        const k = `${n.provider}\u0000${n.txId}`;
        if (this.notes.has(k)) return false;
        this.notes.set(k, n);
        undo.push(() => this.notes.delete(k));
        return true;
      },
      ensureRefund: async (r) => {
        if (this.refunds.has(r.orderId)) return;
        this.refunds.set(r.orderId, {
          refundNo: r.refundNo,
          orderId: r.orderId,
          amountCents: r.amountCents,
          status: 'pending',
          attempts: 0,
          lastError: null,
          createdAt: r.at,
          completedAt: null,
        });
        undo.push(() => this.refunds.delete(r.orderId));
      },
      refundAttempt: async (refundNo, a) => {
        for (const r of this.refunds.values()) {
          if (r.refundNo !== refundNo) continue;
          const prev = { ...r };
          undo.push(() => Object.assign(r, prev));
          r.attempts += 1;
          r.lastError = a.error ?? null;
          if (a.ok) {
            r.status = 'succeeded';
            r.completedAt = a.at;
          }
        }
      },
    };
    try {
      return await fn(tx);
    } catch (e) {
      for (const u of undo.reverse()) u();
      throw e;
    }
  }

  private index(o: Order): void {
    this.orders.set(o.id, o);
    if (o.dispenseCommandId) this.byCommand.set(o.dispenseCommandId, o.id);
    if (o.dueAt !== null && !TERMINAL_STATES.has(o.state)) this.open.add(o.id);
    else this.open.delete(o.id);
  }

  async get(id: string) {
    return this.orders.get(id);
  }

  async list(f: OrderFilter) {
    return [...this.orders.values()]
      .filter(
        (o) =>
          (f.gateway === undefined || o.gateway === f.gateway) &&
          (f.state === undefined || o.state === f.state),
      )
      .sort((a, b) => b.createdAt - a.createdAt || (a.id < b.id ? 1 : -1))
      .slice(0, f.limit);
  }

  async due(now: number, limit: number) {
    const out: Order[] = [];
    for (const id of this.open) {
      const o = this.orders.get(id)!;
      if (o.dueAt !== null && o.dueAt <= now) out.push(o);
    }
    out.sort((a, b) => a.dueAt! - b.dueAt! || (a.id < b.id ? -1 : 1));
    return out.slice(0, limit);
  }

  async getRefund(orderId: string) {
    return this.refunds.get(orderId);
  }

  async notifications(orderId: string) {
    return [...this.notes.values()].filter((n) => n.orderId === orderId);
  }
}
