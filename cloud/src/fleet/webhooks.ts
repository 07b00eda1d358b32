import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { newId } from '@storelink/protocols';
import type { Logger } from 'pino';
import { cloudError } from '../errors.ts';
import type { Sql, SqlQueryable } from '../store/sql.ts';
import type { AlertKind, Transition } from './alerts.ts';

/**
 * Alert webhooks (docs/fleet-alerts-dashboard.md):
 * - [ALERT-HOOK-1] each alert transition queues one delivery row per matching webhook in the
 *   transaction that made the transition (an outbox: a crash after commit still delivers,
 *   a rollback delivers nothing);
 * - [ALERT-HOOK-2] the body is signed: `x-storelink-signature: t=<ms>,v1=<hex HMAC-SHA256 of
 *   "<t>.<body>" with the webhook's secret>`; receivers check it and the age of `t`;
 * - [ALERT-HOOK-3] a delivery is retried with exponential back-off (1 s, 2 s, 4 s, ... capped
 *   at 5 min) until a 2xx answer or `maxAttempts`, then marked failed; the delivery id
 *   (`x-storelink-delivery`) lets a receiver drop a repeat.
 */
export const SIGNATURE_HEADER = 'x-storelink-signature';
export const DELIVERY_HEADER = 'x-storelink-delivery';
export const EVENT_HEADER = 'x-storelink-event';

export interface Webhook {
  id: string;
  url: string;
  /** Only these kinds; null = every kind. */
  kinds: AlertKind[] | null;
  createdAt: number;
}

export interface WebhookDelivery {
  id: string;
  webhookId: string;
  alertId: string;
  transition: 'raised' | 'cleared';
  status: 'pending' | 'delivered' | 'failed';
  attempts: number;
  nextAt: number;
  lastError: string | null;
  lastStatus: number | null;
  createdAt: number;
  deliveredAt: number | null;
}

export function signWebhook(secret: string, t: number, body: string): string {
  const mac = createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
  return `t=${t},v1=${mac}`;
}

/** True when `header` is a valid signature of `body` made less than `toleranceMs` ago. */
export function verifyWebhook(
  secret: string,
  header: string | undefined,
  body: string,
  now: number,
  toleranceMs = 5 * 60_000,
): boolean {
  if (!header) return false;
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
  if (!m) return false;
  const t = Number(m[1]);
  if (Math.abs(now - t) > toleranceMs) return false;
  const want = Buffer.from(signWebhook(secret, t, body).slice(`t=${t},v1=`.length), 'hex');
  const got = Buffer.from(m[2]!, 'hex');
  return want.length === got.length && timingSafeEqual(want, got);
}

export interface WebhookMetrics {
  delivery(outcome: 'delivered' | 'retry' | 'failed', seconds: number): void;
  pending(n: number): void;
}

export interface WebhookOptions {
  sql: Sql;
  now: () => number;
  logger?: Logger;
  metrics?: WebhookMetrics;
  /** fetch seam (tests pass the real one; a receiver is a real HTTP server). */
  fetch?: typeof fetch;
  maxAttempts?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  timeoutMs?: number;
}

type Row = Record<string, unknown>;

const toWebhook = (r: Row): Webhook => ({
  id: r.id as string,
  url: r.url as string,
  kinds: (r.kinds as AlertKind[] | null) ?? null,
  createdAt: Number(r.created_at),
});

const toDelivery = (r: Row): WebhookDelivery => ({
  id: r.id as string,
  webhookId: r.webhook_id as string,
  alertId: r.alert_id as string,
  transition: r.transition as 'raised' | 'cleared',
  status: r.status as WebhookDelivery['status'],
  attempts: Number(r.attempts),
  nextAt: Number(r.next_at),
  lastError: (r.last_error as string | null) ?? null,
  lastStatus: r.last_status === null ? null : Number(r.last_status),
  createdAt: Number(r.created_at),
  deliveredAt: r.delivered_at === null ? null : Number(r.delivered_at),
});

export class Webhooks {
  private running: Promise<number> | null = null;
  private readonly maxAttempts: number;
  private readonly backoffBaseMs: number;
  private readonly backoffMaxMs: number;
  private readonly timeoutMs: number;

  constructor(private readonly opts: WebhookOptions) {
    this.maxAttempts = opts.maxAttempts ?? 10;
    this.backoffBaseMs = opts.backoffBaseMs ?? 1000;
    this.backoffMaxMs = opts.backoffMaxMs ?? 5 * 60_000;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  // ---------- registry ----------

  /** Deny by default: only http(s) URLs; the secret is generated unless given. */
  async create(input: {
    url: string;
    secret?: string;
    kinds?: AlertKind[];
  }): Promise<Webhook & { secret: string }> {
    let url: URL;
    try {
      url = new URL(input.url);
    } catch {
      throw cloudError('CLOUD_ERR_BAD_REQUEST', { errors: `body/url "${input.url}" is not a URL` });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw cloudError('CLOUD_ERR_BAD_REQUEST', {
        errors: `body/url must be http: or https:, not ${url.protocol}`,
      });
    const secret = input.secret ?? randomBytes(24).toString('base64url');
    const id = newId(this.opts.now());
    const r = await this.opts.sql.query<Row>(
      `INSERT INTO fleet_webhooks (id, url, secret, kinds, created_at) VALUES ($1, $2, $3, $4::jsonb, $5) RETURNING *`,
      [id, url.toString(), secret, input.kinds ? JSON.stringify(input.kinds) : null, this.opts.now()],
    );
    return { ...toWebhook(r.rows[0]!), secret };
  }

  async list(): Promise<Webhook[]> {
    const r = await this.opts.sql.query<Row>('SELECT * FROM fleet_webhooks ORDER BY created_at, id');
    return r.rows.map(toWebhook);
  }

  async remove(id: string): Promise<boolean> {
    const r = await this.opts.sql.query('DELETE FROM fleet_webhooks WHERE id = $1', [id]);
    return r.affected > 0;
  }

  async deliveries(filter: {
    webhookId?: string;
    alertId?: string;
    limit: number;
  }): Promise<WebhookDelivery[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.webhookId) where.push(`webhook_id = $${params.push(filter.webhookId)}`);
    if (filter.alertId) where.push(`alert_id = $${params.push(filter.alertId)}`);
    const r = await this.opts.sql.query<Row>(
      `SELECT * FROM fleet_webhook_deliveries ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY created_at DESC, id DESC LIMIT $${params.push(filter.limit)}`,
      params,
    );
    return r.rows.map(toDelivery);
  }

  // ---------- outbox ----------

  /** The alert engine's transition sink: one pending delivery per matching webhook [ALERT-HOOK-1]. */
  readonly enqueue = async (q: SqlQueryable, t: Transition, at: number): Promise<void> => {
    const hooks = await q.query<Row>('SELECT id, kinds FROM fleet_webhooks');
    const body = JSON.stringify({ type: `alert.${t.transition}`, at, alert: t.alert });
    for (const h of hooks.rows) {
      const kinds = h.kinds as AlertKind[] | null;
      if (kinds && !kinds.includes(t.alert.kind)) continue;
      await q.query(
        `INSERT INTO fleet_webhook_deliveries (id, webhook_id, alert_id, transition, body, status, attempts, next_at, created_at)
         VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6)`,
        [newId(at), h.id, t.alert.id, t.transition, body, at],
      );
    }
  };

  /** Sends every due delivery once; one pass at a time. Resolves with how many were tried. */
  deliverDue(): Promise<number> {
    this.running ??= this.runDue().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async runDue(): Promise<number> {
    const now = this.opts.now();
    // Claim by moving next_at past the attempt's timeout, so another cloud process (or a
    // crash mid-send) leaves it to be retried, never sent twice at once.
    const claimed = await this.opts.sql.query<Row>(
      `UPDATE fleet_webhook_deliveries d SET next_at = $2
       FROM fleet_webhooks w
       WHERE d.webhook_id = w.id AND d.id IN (
         SELECT id FROM fleet_webhook_deliveries WHERE status = 'pending' AND next_at <= $1
         ORDER BY next_at, id LIMIT 50 FOR UPDATE SKIP LOCKED)
       RETURNING d.*, w.url, w.secret`,
      [now, now + this.timeoutMs * 2],
    );
    await Promise.all(claimed.rows.map((r) => this.attempt(r)));
    if (this.opts.metrics) {
      const p = await this.opts.sql.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM fleet_webhook_deliveries WHERE status = 'pending'`,
      );
      this.opts.metrics.pending(Number(p.rows[0]!.n));
    }
    return claimed.rows.length;
  }

  private async attempt(r: Row): Promise<void> {
    const id = r.id as string;
    const body = r.body as string;
    const attempts = Number(r.attempts) + 1;
    const started = this.opts.now();
    const t0 = performance.now();
    let status: number | null = null;
    let error: string | null = null;
    try {
      const res = await (this.opts.fetch ?? fetch)(r.url as string, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          [SIGNATURE_HEADER]: signWebhook(r.secret as string, started, body),
          [DELIVERY_HEADER]: id,
          [EVENT_HEADER]: `alert.${r.transition as string}`,
        },
        body,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      status = res.status;
      await res.arrayBuffer().catch(() => undefined);
      if (!res.ok) error = `HTTP ${res.status}`;
    } catch (e) {
      error = (e as Error).message;
    }
    const seconds = (performance.now() - t0) / 1000;
    const at = this.opts.now();
    if (error === null) {
      await this.opts.sql.query(
        `UPDATE fleet_webhook_deliveries SET status = 'delivered', attempts = $2, last_status = $3,
           last_error = NULL, delivered_at = $4 WHERE id = $1`,
        [id, attempts, status, at],
      );
      this.opts.metrics?.delivery('delivered', seconds);
      return;
    }
    const give = attempts >= this.maxAttempts;
    const backoff = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** (attempts - 1));
    await this.opts.sql.query(
      `UPDATE fleet_webhook_deliveries SET status = $2, attempts = $3, last_status = $4, last_error = $5,
         next_at = $6 WHERE id = $1`,
      [id, give ? 'failed' : 'pending', attempts, status, error.slice(0, 500), at + backoff],
    );
    this.opts.metrics?.delivery(give ? 'failed' : 'retry', seconds);
    const err = cloudError('CLOUD_ERR_WEBHOOK_DELIVERY', {
      url: r.url as string,
      attempts,
      reason: error,
    });
    this.opts.logger?.[give ? 'error' : 'warn'](
      { code: err.code, delivery: id, webhook: r.webhook_id, attempts, status },
      err.message,
    );
  }
}
