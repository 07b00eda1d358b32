import { type EventEnvelope, esl, newId } from '@storelink/protocols';
import type { Logger } from 'pino';
import { cloudError } from '../errors.ts';
import type { Sql, SqlQueryable } from '../store/sql.ts';

/**
 * The price book and ESL campaigns (docs/esl.md).
 *
 * A price change, or a promotion starting or ending, becomes a campaign: one row per
 * tag (and signage display) showing an affected SKU, and `esl.campaign` commands to each
 * gateway. The edge renders, pushes and reports `esl.tag_state` events; the ingest hook
 * moves each row along `sent → pushed → confirmed | failed | superseded | cancelled`.
 * [ESL-CONFIRM-1] Only the tag's confirmation of the content hash makes `confirmed`, and
 * it is counted once (a row already confirmed is never updated again).
 * [ESL-LATEST-1] A newer campaign for a tag supersedes its unconfirmed row in older ones.
 */

export const CAMPAIGN_STATES = ['sent', 'pushed', 'confirmed', 'failed', 'superseded', 'cancelled'] as const;
export type CampaignTagState = (typeof CAMPAIGN_STATES)[number];
export const REPORT_REASONS = [
  'no_checkin',
  'low_battery',
  'transfer_failed',
  'queue_full',
  'superseded',
  'cancelled',
  'pending',
] as const;
export type ReportReason = (typeof REPORT_REASONS)[number];

export type SendCommand = (c: {
  gateway: string;
  type: string;
  payload: unknown;
  ttlMs?: number;
}) => Promise<unknown>;

export interface PriceBookOptions {
  sql: Sql;
  sendCommand: SendCommand;
  now: () => number;
  logger?: Logger;
  /** How long a campaign runs before unconfirmed tags are reported (default 30 min: 3 × the 600 s back-off). */
  deadlineMs?: number;
}

export interface TagInput {
  mac: string;
  kind?: 'tag' | 'display';
  site: string;
  gateway: string;
  ap?: string;
  sku: string;
  size: esl.EslSize;
  bpp: esl.EslBpp;
}

export interface Progress {
  id: string;
  site: string;
  reason: string;
  total: number;
  counts: Record<CampaignTagState, number>;
  /** Every tag is in a final state (confirmed, failed, superseded, cancelled). */
  complete: boolean;
  createdAt: number;
  deadlineAt: number;
  cancelledAt: number | null;
}

export interface ReportEntry {
  tag: string;
  sku: string;
  state: CampaignTagState;
  reason: ReportReason;
  batteryMv: number | null;
  lastCheckin: number | null;
}

export interface CampaignReport {
  id: string;
  total: number;
  confirmed: number;
  notConfirmed: ReportEntry[];
  byReason: Partial<Record<ReportReason, number>>;
}

const CHUNK = 500;
const FINAL = new Set<CampaignTagState>(['confirmed', 'failed', 'superseded', 'cancelled']);

/** Which states a reported state may replace (counted-once and latest-wins rules). */
const FROM: Record<esl.TagState, CampaignTagState[]> = {
  pushed: ['sent'],
  confirmed: ['sent', 'pushed', 'failed'],
  failed: ['sent', 'pushed'],
  superseded: ['sent', 'pushed', 'failed'],
  cancelled: ['sent', 'pushed', 'failed'],
};

export class PriceBook {
  private readonly sql: Sql;
  private readonly now: () => number;
  private readonly deadlineMs: number;

  constructor(private readonly o: PriceBookOptions) {
    this.sql = o.sql;
    this.now = o.now;
    this.deadlineMs = o.deadlineMs ?? 30 * 60_000;
  }

  // ---------- price book ----------

  async upsertSku(s: { sku: string; name: string; barcode?: string | null }): Promise<void> {
    await this.sql.query(
      `INSERT INTO price_skus (sku, name, barcode, updated_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (sku) DO UPDATE SET name = $2, barcode = $3, updated_at = $4`,
      [s.sku, s.name, s.barcode ?? null, this.now()],
    );
  }

  async upsertTemplate(size: esl.EslSize, code: 'barcode' | 'qr' | 'none'): Promise<void> {
    await this.sql.query(
      `INSERT INTO price_templates (size, code, updated_at) VALUES ($1, $2, $3)
       ON CONFLICT (size) DO UPDATE SET code = $2, updated_at = $3`,
      [size, code, this.now()],
    );
  }

  async upsertTag(t: TagInput): Promise<void> {
    await this.sql.query(
      `INSERT INTO esl_tags (mac, kind, site, gateway, ap, sku, size, bpp, updated_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       ON CONFLICT (mac) DO UPDATE SET kind = $2, site = $3, gateway = $4, ap = $5, sku = $6,
         size = $7, bpp = $8, updated_at = $9`,
      [t.mac, t.kind ?? 'tag', t.site, t.gateway, t.ap ?? null, t.sku, t.size, t.bpp, this.now()],
    );
  }

  /**
   * Sets prices for a site; unless `campaign: false`, the tags showing the changed SKUs
   * get a campaign. Returns its id (null when nothing changed or no tag shows them).
   */
  async setPrices(
    site: string,
    items: Array<{ sku: string; priceCents: number; currency?: string }>,
    opts: { campaign?: boolean } = {},
  ): Promise<{ campaignId: string | null; changed: number }> {
    const now = this.now();
    const changed: string[] = [];
    await this.sql.transaction(async (tx) => {
      for (const it of items) {
        const r = await tx.query(
          `INSERT INTO price_prices (site, sku, price_cents, currency, updated_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (site, sku) DO UPDATE SET price_cents = $3, currency = $4, updated_at = $5
           WHERE price_prices.price_cents <> $3 OR price_prices.currency <> $4`,
          [site, it.sku, it.priceCents, it.currency ?? 'EUR', now],
        );
        if (r.affected > 0) changed.push(it.sku);
      }
    });
    if (opts.campaign === false || changed.length === 0) return { campaignId: null, changed: changed.length };
    const c = await this.createCampaign(site, { skus: changed, reason: 'price_change' });
    return { campaignId: c?.id ?? null, changed: changed.length };
  }

  async upsertPromotion(p: {
    id?: string;
    site: string;
    sku: string;
    promoCents: number;
    startsAt: number;
    endsAt: number;
  }): Promise<{ id: string }> {
    if (p.endsAt <= p.startsAt)
      throw cloudError('CLOUD_ERR_BAD_REQUEST', { errors: 'endsAt must be after startsAt' });
    const id = p.id ?? newId(this.now());
    await this.sql.query(
      `INSERT INTO price_promotions (id, site, sku, promo_cents, starts_at, ends_at, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (id) DO UPDATE SET site = $2, sku = $3, promo_cents = $4, starts_at = $5, ends_at = $6,
         started_campaign = NULL, ended_campaign = NULL`,
      [id, p.site, p.sku, p.promoCents, p.startsAt, p.endsAt, this.now()],
    );
    return { id };
  }

  /**
   * Promotion scheduler: each promotion whose start (or end) has passed gets one
   * campaign for its SKU. Run on an interval with the injected clock.
   */
  async tick(): Promise<string[]> {
    const now = this.now();
    const due = await this.sql.query<{ id: string; site: string; sku: string; kind: 'start' | 'end' }>(
      `SELECT id, site, sku, 'start' AS kind FROM price_promotions
         WHERE started_campaign IS NULL AND starts_at <= $1 AND ends_at > $1
       UNION ALL
       SELECT id, site, sku, 'end' AS kind FROM price_promotions
         WHERE ended_campaign IS NULL AND ends_at <= $1 AND started_campaign IS NOT NULL
       ORDER BY id`,
      [now],
    );
    const ids: string[] = [];
    for (const d of due.rows) {
      const c = await this.createCampaign(d.site, {
        skus: [d.sku],
        reason: d.kind === 'start' ? 'promotion_start' : 'promotion_end',
      });
      const col = d.kind === 'start' ? 'started_campaign' : 'ended_campaign';
      await this.sql.query(`UPDATE price_promotions SET ${col} = $2 WHERE id = $1`, [d.id, c?.id ?? '-']);
      if (c) ids.push(c.id);
    }
    return ids;
  }

  /** What a tag showing `sku` at `site` must display now. */
  private async contents(
    q: SqlQueryable,
    site: string,
    skus: readonly string[] | undefined,
  ): Promise<
    Array<{
      mac: string;
      kind: 'tag' | 'display';
      gateway: string;
      ap: string | null;
      size: esl.EslSize;
      bpp: esl.EslBpp;
      sku: string;
      content: esl.LabelContent;
    }>
  > {
    const now = this.now();
    const r = await q.query<{
      mac: string;
      kind: 'tag' | 'display';
      gateway: string;
      ap: string | null;
      size: esl.EslSize;
      bpp: number;
      sku: string;
      name: string | null;
      barcode: string | null;
      price_cents: number | null;
      currency: string | null;
      promo_cents: number | null;
      ends_at: number | null;
      code: string | null;
    }>(
      `SELECT t.mac, t.kind, t.gateway, t.ap, t.size, t.bpp, t.sku, s.name, s.barcode, p.price_cents, p.currency,
              pr.promo_cents, pr.ends_at, tp.code
         FROM esl_tags t
         LEFT JOIN price_skus s ON s.sku = t.sku
         LEFT JOIN price_prices p ON p.site = t.site AND p.sku = t.sku
         LEFT JOIN LATERAL (
           SELECT promo_cents, ends_at FROM price_promotions x
            WHERE x.site = t.site AND x.sku = t.sku AND x.starts_at <= $2 AND x.ends_at > $2
            ORDER BY x.starts_at DESC, x.id DESC LIMIT 1) pr ON true
         LEFT JOIN price_templates tp ON tp.size = t.size
        WHERE t.site = $1 AND ($3::text[] IS NULL OR t.sku = ANY($3::text[]))
        ORDER BY t.mac`,
      [site, now, skus ? `{${skus.map((s) => `"${s.replace(/["\\]/g, '\\$&')}"`).join(',')}}` : null],
    );
    const out = [];
    for (const row of r.rows) {
      if (row.price_cents === null) continue; // no price for this site: nothing to show yet
      const content: esl.LabelContent = {
        sku: row.sku,
        name: row.name ?? row.sku,
        priceCents: Number(row.price_cents),
        currency: row.currency ?? 'EUR',
      };
      if (row.barcode) content.barcode = row.barcode;
      if (row.code) content.code = row.code as 'barcode';
      if (row.promo_cents !== null) {
        content.promoCents = Number(row.promo_cents);
        content.promoEndsAt = Number(row.ends_at);
      }
      out.push({
        mac: row.mac,
        kind: row.kind,
        gateway: row.gateway,
        ap: row.ap,
        size: row.size,
        bpp: row.bpp as esl.EslBpp,
        sku: row.sku,
        content,
      });
    }
    return out;
  }

  // ---------- campaigns ----------

  async createCampaign(
    site: string,
    opts: { skus?: string[]; reason?: string; deadlineMs?: number } = {},
  ): Promise<{ id: string; total: number } | null> {
    const now = this.now();
    const id = newId(now);
    const reason = opts.reason ?? 'manual';
    const planned = await this.sql.transaction(async (tx) => {
      const items = await this.contents(tx, site, opts.skus);
      if (items.length === 0) return null;
      await tx.query(
        `INSERT INTO price_campaigns (id, site, reason, total, created_at, deadline_at) VALUES ($1, $2, $3, $4, $5, $6)`,
        [id, site, reason, items.length, now, now + (opts.deadlineMs ?? this.deadlineMs)],
      );
      const macs = `{${items.map((i) => i.mac).join(',')}}`;
      // [ESL-LATEST-1] older unconfirmed rows of these tags will never be displayed.
      await tx.query(
        `UPDATE price_campaign_tags SET state = 'superseded', reason = NULL, updated_at = $2
          WHERE tag = ANY($1::text[]) AND state IN ('sent', 'pushed', 'failed')`,
        [macs, now],
      );
      for (let i = 0; i < items.length; i += CHUNK) {
        const part = items.slice(i, i + CHUNK);
        const values: unknown[] = [];
        const rows = part.map((it, k) => {
          values.push(id, it.mac, it.gateway, it.sku, now);
          const b = k * 5;
          return `($${b + 1}, $${b + 2}, $${b + 3}, $${b + 4}, 'sent', $${b + 5})`;
        });
        await tx.query(
          `INSERT INTO price_campaign_tags (campaign_id, tag, gateway, sku, state, updated_at) VALUES ${rows.join(',')}`,
          values,
        );
      }
      return items;
    });
    if (!planned) return null;
    // Commands after the commit: a result can only ever find its rows.
    const byGateway = new Map<string, typeof planned>();
    for (const it of planned) {
      const l = byGateway.get(it.gateway) ?? [];
      l.push(it);
      byGateway.set(it.gateway, l);
    }
    for (const [gateway, list] of byGateway) {
      const tags = list.filter((i) => i.kind === 'tag');
      const displays = list.filter((i) => i.kind === 'display');
      for (let i = 0; i < Math.max(tags.length, 1); i += CHUNK) {
        const payload: esl.EslCampaign = {
          campaignId: id,
          items: tags.slice(i, i + CHUNK).map((t) => ({
            tag: t.mac,
            size: t.size,
            bpp: t.bpp,
            ...(t.ap ? { ap: t.ap } : {}),
            content: t.content,
          })),
        };
        if (i === 0 && displays.length > 0)
          payload.displays = displays.slice(0, 100).map((d) => ({ display: d.mac, content: d.content }));
        if (payload.items.length === 0 && !payload.displays) continue;
        await this.o.sendCommand({ gateway, type: esl.ESL_CAMPAIGN, payload, ttlMs: this.deadlineMs });
      }
    }
    this.o.logger?.info({ campaign: id, site, reason, tags: planned.length }, 'price campaign created');
    return { id, total: planned.length };
  }

  async progress(id: string): Promise<Progress> {
    const c = await this.campaign(id);
    const r = await this.sql.query<{ state: CampaignTagState; n: number }>(
      'SELECT state, count(*)::int AS n FROM price_campaign_tags WHERE campaign_id = $1 GROUP BY state',
      [id],
    );
    const counts = Object.fromEntries(CAMPAIGN_STATES.map((s) => [s, 0])) as Record<CampaignTagState, number>;
    for (const row of r.rows) counts[row.state] = Number(row.n);
    const open = counts.sent + counts.pushed;
    return { ...c, counts, complete: open === 0 };
  }

  private async campaign(id: string) {
    const r = await this.sql.query<{
      id: string;
      site: string;
      reason: string;
      total: number;
      created_at: number;
      deadline_at: number;
      cancelled_at: number | null;
    }>('SELECT * FROM price_campaigns WHERE id = $1', [id]);
    const c = r.rows[0];
    if (!c) throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'campaign', id });
    return {
      id: c.id,
      site: c.site,
      reason: c.reason,
      total: Number(c.total),
      createdAt: Number(c.created_at),
      deadlineAt: Number(c.deadline_at),
      cancelledAt: c.cancelled_at === null ? null : Number(c.cancelled_at),
    };
  }

  async tags(
    id: string,
    opts: { state?: CampaignTagState; limit?: number; after?: string } = {},
  ): Promise<
    Array<{
      tag: string;
      sku: string;
      state: CampaignTagState;
      reason: string | null;
      dataVer: string | null;
      updatedAt: number;
    }>
  > {
    await this.campaign(id);
    const r = await this.sql.query<{
      tag: string;
      sku: string;
      state: CampaignTagState;
      reason: string | null;
      data_ver: string | null;
      updated_at: number;
    }>(
      `SELECT tag, sku, state, reason, data_ver, updated_at FROM price_campaign_tags
        WHERE campaign_id = $1 AND ($2::text IS NULL OR state = $2) AND tag > $3
        ORDER BY tag LIMIT $4`,
      [id, opts.state ?? null, opts.after ?? '', opts.limit ?? 1000],
    );
    return r.rows.map((x) => ({
      tag: x.tag,
      sku: x.sku,
      state: x.state,
      reason: x.reason,
      dataVer: x.data_ver,
      updatedAt: Number(x.updated_at),
    }));
  }

  async cancel(id: string): Promise<Progress> {
    const c = await this.campaign(id);
    const now = this.now();
    const gws = await this.sql.transaction(async (tx) => {
      await tx.query('UPDATE price_campaigns SET cancelled_at = COALESCE(cancelled_at, $2) WHERE id = $1', [
        id,
        now,
      ]);
      const g = await tx.query<{ gateway: string }>(
        `UPDATE price_campaign_tags SET state = 'cancelled', updated_at = $2
          WHERE campaign_id = $1 AND state IN ('sent', 'pushed', 'failed') RETURNING gateway`,
        [id, now],
      );
      return [...new Set(g.rows.map((x) => x.gateway))];
    });
    for (const gateway of gws)
      await this.o.sendCommand({ gateway, type: esl.ESL_CANCEL, payload: { campaignId: c.id } });
    return this.progress(id);
  }

  /**
   * Every tag that did not confirm, and why: the edge's failure reason; superseded or
   * cancelled; past the deadline with no edge verdict, the tag's own record decides
   * (low battery, or no check-in since the campaign started); otherwise still pending.
   */
  async report(id: string): Promise<CampaignReport> {
    const c = await this.campaign(id);
    const now = this.now();
    const r = await this.sql.query<{
      tag: string;
      sku: string;
      state: CampaignTagState;
      reason: string | null;
      battery_mv: number | null;
      last_checkin: number | null;
      low_battery: boolean | null;
    }>(
      `SELECT ct.tag, ct.sku, ct.state, ct.reason, t.battery_mv, t.last_checkin, t.low_battery
         FROM price_campaign_tags ct LEFT JOIN esl_tags t ON t.mac = ct.tag
        WHERE ct.campaign_id = $1 AND ct.state <> 'confirmed' ORDER BY ct.tag`,
      [id],
    );
    const notConfirmed: ReportEntry[] = r.rows.map((x) => {
      let reason: ReportReason;
      if (x.state === 'failed') reason = (x.reason as ReportReason) ?? 'transfer_failed';
      else if (x.state === 'superseded' || x.state === 'cancelled') reason = x.state;
      else if (now < c.deadlineAt) reason = 'pending';
      else if (x.low_battery) reason = 'low_battery';
      else if (x.last_checkin === null || Number(x.last_checkin) < c.createdAt) reason = 'no_checkin';
      else reason = 'transfer_failed';
      return {
        tag: x.tag,
        sku: x.sku,
        state: x.state,
        reason,
        batteryMv: x.battery_mv === null ? null : Number(x.battery_mv),
        lastCheckin: x.last_checkin === null ? null : Number(x.last_checkin),
      };
    });
    const byReason: Partial<Record<ReportReason, number>> = {};
    for (const e of notConfirmed) byReason[e.reason] = (byReason[e.reason] ?? 0) + 1;
    return { id, total: c.total, confirmed: c.total - notConfirmed.length, notConfirmed, byReason };
  }

  // ---------- ingest (edge → cloud) ----------

  /** Ingest hook: runs in the ingest transaction, once per newly stored event. */
  async applyEvents(tx: SqlQueryable, events: readonly EventEnvelope[]): Promise<void> {
    for (const e of events) {
      if (e.type === esl.ESL_TAG_STATE) await this.applyTagState(tx, e.payload as esl.EslTagState);
      else if (e.type === esl.ESL_TAG_STATUS) {
        const p = e.payload as {
          tags: Array<{
            tag: string;
            ap: string;
            batteryMv: number;
            temperature: number;
            rssi: number;
            lastCheckin: number;
          }>;
        };
        for (const t of p.tags)
          await tx.query(
            `UPDATE esl_tags SET ap = $2::text, battery_mv = $3::integer, temperature = $4::integer,
               rssi = $5::integer, last_checkin = GREATEST(COALESCE(last_checkin, 0), $6::bigint)
             WHERE mac = $1`,
            [t.tag, t.ap, t.batteryMv, t.temperature, t.rssi, t.lastCheckin],
          );
      } else if (e.type === esl.ESL_ALERT) {
        const p = e.payload as {
          tag: string;
          code: 'LOW_BATTERY' | 'SILENT';
          active: boolean;
          batteryMv?: number;
          lastCheckin?: number;
        };
        const col = p.code === 'LOW_BATTERY' ? 'low_battery' : 'silent';
        await tx.query(
          `UPDATE esl_tags SET ${col} = $2::boolean, battery_mv = COALESCE($3::integer, battery_mv),
             last_checkin = GREATEST(COALESCE(last_checkin, 0), COALESCE($4::bigint, 0)) WHERE mac = $1`,
          [p.tag, p.active, p.batteryMv ?? null, p.lastCheckin ?? null],
        );
      }
    }
  }

  async applyTagState(tx: SqlQueryable, p: esl.EslTagState): Promise<boolean> {
    const r = await tx.query(
      `UPDATE price_campaign_tags
          SET state = $3::text, reason = $4::text, data_ver = COALESCE($5::text, data_ver), updated_at = $6::bigint,
              confirmed_at = CASE WHEN $3::text = 'confirmed' THEN $6::bigint ELSE confirmed_at END
        WHERE campaign_id = $1 AND tag = $2 AND state = ANY($7::text[])`,
      [
        p.campaignId,
        p.tag,
        p.state,
        p.reason ?? null,
        p.dataVer ?? null,
        p.at,
        `{${FROM[p.state].join(',')}}`,
      ],
    );
    return r.affected > 0;
  }

  isFinal(s: CampaignTagState): boolean {
    return FINAL.has(s);
  }
}
