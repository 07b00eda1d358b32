import { type EventEnvelope, newId } from '@storelink/protocols';
import type { Logger } from 'pino';
import type { Sql, SqlQueryable } from '../store/sql.ts';
import {
  ALERT_KINDS,
  type AlertKind,
  type AlertSeverity,
  type AlertThresholds,
  backlogObservation,
  DEFAULT_THRESHOLDS,
  type GatewayView,
  type Observation,
  observe,
  offlineObservation,
} from './alerts-rules.ts';

export * from './alerts-rules.ts';

/**
 * The alert engine (docs/fleet-alerts-dashboard.md). Two entry points:
 * - `applyEvents`: an ingest hook, run inside the batch's transaction, so an alert moves
 *   exactly when the events that caused it commit (a rolled-back batch moves nothing and is
 *   seen again on the resend);
 * - `sweep`: the periodic pass for conditions that are about time passing (offline, upload
 *   backlog, door open too long), with the clock injected.
 * Every transition (raised, cleared) queues one webhook delivery per matching webhook in
 * the same transaction [ALERT-HOOK-1].
 */
export type AlertState = 'active' | 'cleared';

export interface Alert {
  id: string;
  kind: AlertKind;
  gateway: string;
  site: string;
  /** Device, tag or slot the alert is about; '' for the gateway itself. */
  subject: string;
  state: AlertState;
  severity: AlertSeverity;
  message: string;
  value: number | null;
  raisedAt: number;
  lastSeenAt: number;
  /** How many times the condition was seen while active [ALERT-DEDUPE-1]. */
  occurrences: number;
  clearedAt: number | null;
  clearReason: string | null;
}

export interface AlertFilter {
  state?: AlertState;
  gateway?: string;
  kind?: AlertKind;
  limit: number;
}

export type Transition = { transition: 'raised' | 'cleared'; alert: Alert };

export interface AlertMetrics {
  raised(kind: AlertKind): void;
  cleared(kind: AlertKind): void;
  active(counts: Partial<Record<AlertKind, number>>): void;
}

type Row = Record<string, unknown>;

function toAlert(r: Row): Alert {
  return {
    id: r.id as string,
    kind: r.kind as AlertKind,
    gateway: r.gateway as string,
    site: r.site as string,
    subject: r.subject as string,
    state: r.state as AlertState,
    severity: r.severity as AlertSeverity,
    message: r.message as string,
    value: r.value === null || r.value === undefined ? null : Number(r.value),
    raisedAt: Number(r.raised_at),
    lastSeenAt: Number(r.last_seen_at),
    occurrences: Number(r.occurrences),
    clearedAt: r.cleared_at === null ? null : Number(r.cleared_at),
    clearReason: (r.clear_reason as string | null) ?? null,
  };
}

/** Called for every committed-with-the-transaction transition (webhook outbox, metrics). */
export type TransitionSink = (q: SqlQueryable, t: Transition, at: number) => Promise<void>;

export interface AlertEngineOptions {
  sql: Sql;
  now: () => number;
  logger?: Logger;
  metrics?: AlertMetrics;
  /** Overrides of the stored thresholds, applied at start (then stored). */
  thresholds?: Partial<AlertThresholds>;
}

export class AlertEngine {
  private thresholds: AlertThresholds = { ...DEFAULT_THRESHOLDS };
  private readonly sinks: TransitionSink[] = [];
  private sweeping: Promise<void> | null = null;

  constructor(private readonly opts: AlertEngineOptions) {}

  /** Loads the stored thresholds (and stores the start overrides over them). */
  async init(): Promise<void> {
    await this.loadThresholds();
    if (this.opts.thresholds && Object.keys(this.opts.thresholds).length > 0)
      await this.setThresholds(this.opts.thresholds);
  }

  onTransition(sink: TransitionSink): void {
    this.sinks.push(sink);
  }

  get currentThresholds(): AlertThresholds {
    return { ...this.thresholds };
  }

  private async loadThresholds(q: SqlQueryable = this.opts.sql): Promise<void> {
    const r = await q.query<{ thresholds: Partial<AlertThresholds> }>(
      'SELECT thresholds FROM fleet_alert_settings WHERE id = 1',
    );
    this.thresholds = { ...DEFAULT_THRESHOLDS, ...(r.rows[0]?.thresholds ?? {}) };
  }

  /** [ALERT-CONFIG-1] stored, so every cloud process and every restart uses them. */
  async setThresholds(patch: Partial<AlertThresholds>): Promise<AlertThresholds> {
    const next = { ...this.thresholds, ...patch };
    await this.opts.sql.query(
      `INSERT INTO fleet_alert_settings (id, thresholds, updated_at) VALUES (1, $1::jsonb, $2)
       ON CONFLICT (id) DO UPDATE SET thresholds = EXCLUDED.thresholds, updated_at = EXCLUDED.updated_at`,
      [JSON.stringify(next), this.opts.now()],
    );
    this.thresholds = next;
    return { ...next };
  }

  // ---------- reads ----------

  async list(f: AlertFilter): Promise<Alert[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (f.state) where.push(`state = $${params.push(f.state)}`);
    if (f.gateway) where.push(`gateway = $${params.push(f.gateway)}`);
    if (f.kind) where.push(`kind = $${params.push(f.kind)}`);
    const r = await this.opts.sql.query<Row>(
      `SELECT * FROM fleet_alerts ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY raised_at DESC, id DESC LIMIT $${params.push(f.limit)}`,
      params,
    );
    return r.rows.map(toAlert);
  }

  async get(id: string): Promise<Alert | undefined> {
    const r = await this.opts.sql.query<Row>('SELECT * FROM fleet_alerts WHERE id = $1', [id]);
    return r.rows[0] ? toAlert(r.rows[0]) : undefined;
  }

  async activeCounts(): Promise<Partial<Record<AlertKind, number>>> {
    const r = await this.opts.sql.query<{ kind: AlertKind; n: number }>(
      `SELECT kind, count(*)::int AS n FROM fleet_alerts WHERE state = 'active' GROUP BY kind`,
    );
    const out: Partial<Record<AlertKind, number>> = {};
    for (const k of ALERT_KINDS) out[k] = 0;
    for (const row of r.rows) out[row.kind] = Number(row.n);
    return out;
  }

  // ---------- evaluation ----------

  /** The ingest hook: runs in the batch's transaction (cloud/src/store/sql-store.ts IngestEventHook). */
  async applyEvents(
    q: SqlQueryable,
    batch: { gateway: string; site: string; events: readonly EventEnvelope[]; receivedAt: number },
  ): Promise<void> {
    for (const e of batch.events) {
      for (const o of observe(e, this.thresholds, batch.receivedAt))
        await this.apply(q, batch.gateway, batch.site, o, batch.receivedAt);
    }
  }

  /**
   * The time-based pass: offline, upload backlog, door open too long. Runs one at a time
   * (a slow store never stacks sweeps). Also refreshes the thresholds from the store.
   */
  sweep(gateways: () => Promise<GatewayView[]>): Promise<void> {
    this.sweeping ??= this.runSweep(gateways).finally(() => {
      this.sweeping = null;
    });
    return this.sweeping;
  }

  private async runSweep(gateways: () => Promise<GatewayView[]>): Promise<void> {
    await this.loadThresholds();
    const now = this.opts.now();
    const t = this.thresholds;
    // A clear is a no-op unless that alert is active: skip it, so a sweep over a healthy
    // fleet of thousands costs one query, not two per gateway.
    const active = await this.opts.sql.query<{ kind: string; gateway: string }>(
      `SELECT kind, gateway FROM fleet_alerts
       WHERE state = 'active' AND kind IN ('gateway_offline', 'upload_backlog')`,
    );
    const activeKeys = new Set(active.rows.map((r) => `${r.kind}/${r.gateway}`));
    for (const g of await gateways()) {
      const obs = [offlineObservation(g, t, now), backlogObservation(g, t, now)].filter(
        (o): o is Observation => o !== null && (o.op !== 'clear' || activeKeys.has(`${o.kind}/${g.id}`)),
      );
      if (obs.length === 0) continue;
      await this.opts.sql.transaction(async (q) => {
        for (const o of obs) await this.apply(q, g.id, g.site, o, now);
      });
    }
    await this.sweepDoors(now);
    this.opts.metrics?.active(await this.activeCounts());
  }

  /** [ALERT-DOOR-1] a door still open `doorOpenMs` after it opened raises door_open. */
  private async sweepDoors(now: number): Promise<void> {
    const t = this.thresholds;
    const r = await this.opts.sql.query<Row>(
      `SELECT gateway, site, subject, since FROM fleet_alert_conditions
       WHERE kind = 'door_open' AND since IS NOT NULL AND since <= $1`,
      [now - t.doorOpenMs],
    );
    for (const row of r.rows) {
      const forMs = now - Number(row.since);
      await this.opts.sql.transaction((q) =>
        this.apply(
          q,
          row.gateway as string,
          row.site as string,
          {
            op: 'raise',
            kind: 'door_open',
            subject: row.subject as string,
            severity: 'warning',
            message: `${row.subject as string}: door open for ${Math.round(forMs / 1000)} s`,
            value: forMs,
          },
          now,
        ),
      );
    }
  }

  /** One observation → at most one transition. */
  private async apply(q: SqlQueryable, gateway: string, site: string, o: Observation, at: number) {
    switch (o.op) {
      case 'raise':
        return this.raise(q, gateway, site, o, at);
      case 'clear':
        return this.clear(q, gateway, o.kind, o.subject, o.reason, at);
      case 'door':
        return this.door(q, gateway, site, o.subject, o.open, o.at, at);
      case 'vend':
        return this.vend(q, gateway, site, o.subject, o.failed, o.reason, at);
    }
  }

  /**
   * [ALERT-DEDUPE-1] one active alert per (kind, gateway, subject): raising it again only
   * refreshes it (last seen, occurrences, message, value); a new row (and a `raised`
   * delivery) only when none is active.
   */
  private async raise(
    q: SqlQueryable,
    gateway: string,
    site: string,
    o: Extract<Observation, { op: 'raise' }>,
    at: number,
  ): Promise<void> {
    const r = await q.query<Row & { inserted: boolean }>(
      `INSERT INTO fleet_alerts (id, kind, gateway, site, subject, state, severity, message, value,
                                 raised_at, last_seen_at, occurrences)
       VALUES ($1, $2, $3, $4, $5, 'active', $6, $7, $8, $9, $9, 1)
       ON CONFLICT (kind, gateway, subject) WHERE state = 'active' DO UPDATE SET
         last_seen_at = GREATEST(fleet_alerts.last_seen_at, EXCLUDED.last_seen_at),
         occurrences = fleet_alerts.occurrences + 1,
         message = EXCLUDED.message, value = EXCLUDED.value, severity = EXCLUDED.severity
       RETURNING *, (xmax = 0) AS inserted`,
      [newId(at), o.kind, gateway, site, o.subject, o.severity, o.message, o.value, at],
    );
    const row = r.rows[0]!;
    if (!row.inserted) return;
    const alert = toAlert(row);
    this.opts.metrics?.raised(o.kind);
    this.opts.logger?.warn({ alert: alert.id, kind: o.kind, gateway, subject: o.subject }, o.message);
    for (const s of this.sinks) await s(q, { transition: 'raised', alert }, at);
  }

  /** [ALERT-CLEAR-1] the condition ended: the active alert (if any) is cleared with the reason. */
  private async clear(
    q: SqlQueryable,
    gateway: string,
    kind: AlertKind,
    subject: string,
    reason: string,
    at: number,
  ): Promise<void> {
    const r = await q.query<Row>(
      `UPDATE fleet_alerts SET state = 'cleared', cleared_at = $4, clear_reason = $5
       WHERE kind = $1 AND gateway = $2 AND subject = $3 AND state = 'active' RETURNING *`,
      [kind, gateway, subject, at, reason],
    );
    const row = r.rows[0];
    if (!row) return;
    const alert = toAlert(row);
    this.opts.metrics?.cleared(kind);
    this.opts.logger?.info({ alert: alert.id, kind, gateway, subject }, `alert cleared: ${reason}`);
    for (const s of this.sinks) await s(q, { transition: 'cleared', alert }, at);
  }

  /** Door open: remember since when (the sweep raises); door closed: forget and clear. */
  private async door(
    q: SqlQueryable,
    gateway: string,
    site: string,
    subject: string,
    open: boolean,
    eventAt: number,
    at: number,
  ): Promise<void> {
    if (open) {
      // Keep the first opening: repeated "open" reports do not restart the timer.
      await q.query(
        `INSERT INTO fleet_alert_conditions (kind, gateway, subject, site, since, count, updated_at)
         VALUES ('door_open', $1, $2, $3, $4, 0, $5)
         ON CONFLICT (kind, gateway, subject) DO UPDATE SET
           since = COALESCE(fleet_alert_conditions.since, EXCLUDED.since), updated_at = EXCLUDED.updated_at`,
        [gateway, subject, site, eventAt, at],
      );
      return;
    }
    await q.query(
      `DELETE FROM fleet_alert_conditions WHERE kind = 'door_open' AND gateway = $1 AND subject = $2`,
      [gateway, subject],
    );
    await this.clear(q, gateway, 'door_open', subject, 'door closed', at);
  }

  /** [ALERT-VEND-1] `vendFailures` failed vends in a row raise; a dispensed vend resets and clears. */
  private async vend(
    q: SqlQueryable,
    gateway: string,
    site: string,
    subject: string,
    failed: boolean,
    reason: string | undefined,
    at: number,
  ): Promise<void> {
    if (!failed) {
      await q.query(
        `DELETE FROM fleet_alert_conditions WHERE kind = 'vend_failures' AND gateway = $1 AND subject = $2`,
        [gateway, subject],
      );
      await this.clear(q, gateway, 'vend_failures', subject, 'a vend succeeded', at);
      return;
    }
    const r = await q.query<{ count: number }>(
      `INSERT INTO fleet_alert_conditions (kind, gateway, subject, site, since, count, updated_at)
       VALUES ('vend_failures', $1, $2, $3, $4, 1, $4)
       ON CONFLICT (kind, gateway, subject) DO UPDATE SET
         count = fleet_alert_conditions.count + 1, updated_at = EXCLUDED.updated_at
       RETURNING count`,
      [gateway, subject, site, at],
    );
    const n = Number(r.rows[0]!.count);
    if (n >= this.thresholds.vendFailures)
      await this.raise(
        q,
        gateway,
        site,
        {
          op: 'raise',
          kind: 'vend_failures',
          subject,
          severity: 'critical',
          message: `${subject}: ${n} failed vends in a row${reason ? ` (last: ${reason})` : ''}`,
          value: n,
        },
        at,
      );
  }
}
