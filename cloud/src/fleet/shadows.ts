import { type CommandResult, type EventEnvelope, fleet, newId } from '@storelink/protocols';
import type { Logger } from 'pino';
import type { SendCommandInput } from '../commands/service.ts';
import { cloudError } from '../errors.ts';
import type { CloudMetrics } from '../metrics.ts';
import type { Sql, SqlQueryable } from '../store/sql.ts';
import type { CommandRecord } from '../store/store.ts';

/**
 * Desired and reported shadows per gateway and per device (docs/fleet-shadows-rollouts.md).
 *
 * Downlink is the signed command path, not a second one [SHADOW-CMD-1]: each desired
 * change is one `shadow.delta` command carrying the whole desired document and its
 * version, signed, expiring, run once by the edge, redelivered on birth while open
 * [CMD-REDELIVER-1] and re-issued on birth when it expired or was interrupted
 * [SHADOW-REDELIVER-1]. Uplink is the `shadow.reported` event in the ingest transaction.
 */

export type ShadowDoc = fleet.ShadowDoc;
export type ShadowStatus = 'in_sync' | 'pending' | 'failed';

export interface ShadowRecord {
  gateway: string;
  /** null: the gateway's own shadow. */
  device: string | null;
  desired: ShadowDoc;
  desiredVersion: number;
  desiredAt: number;
  reported: ShadowDoc;
  /** The desired version last applied completely (0: none). */
  reportedVersion: number;
  reportedAt: number | null;
  status: ShadowStatus;
  commandId: string | null;
  error: { code: string; message: string } | null;
  updatedAt: number;
}

/** A target's answer to one desired version; rollouts listen to these in the ingest tx. */
export interface ShadowOutcome {
  gateway: string;
  device: string | null;
  version: number;
  status: 'applied' | 'failed';
  previous: ShadowDoc;
  reported: ShadowDoc;
  code?: string;
  message?: string;
}

export type OutcomeListener = (tx: SqlQueryable, outcome: ShadowOutcome) => Promise<void>;

export interface ShadowChange {
  gateway: string;
  device?: string | null;
  /** JSON merge patch on desired: a key set to null leaves management (is removed). */
  patch: ShadowDoc;
  /** [SHADOW-VERSION-1] the desired version the change was made against; omit to merge blindly. */
  expectedVersion?: number;
  /**
   * Runs inside the change's transaction with the new version, before the command is
   * sent: a caller recording the version (a rollout target) can never miss the report.
   */
  withVersion?: (tx: SqlQueryable, version: number) => Promise<void>;
}

export interface ShadowServiceOptions {
  sql: Sql;
  sendCommand: (input: SendCommandInput) => Promise<CommandRecord>;
  getCommand: (id: string) => Promise<CommandRecord | undefined>;
  now: () => number;
  logger?: Logger;
  /** Lifetime of a shadow.delta command; the birth reconcile covers a longer absence. */
  commandTtlMs?: number;
  metrics?: CloudMetrics;
}

const GW = '';
const devKey = (device: string | null | undefined) => device ?? GW;

interface Row {
  gateway: string;
  device: string;
  desired: ShadowDoc;
  desired_version: number;
  desired_at: number;
  reported: ShadowDoc;
  reported_version: number;
  reported_at: number | null;
  status: ShadowStatus;
  command_id: string | null;
  error_code: string | null;
  error_message: string | null;
  updated_at: number;
}

function toRecord(r: Row): ShadowRecord {
  return {
    gateway: r.gateway,
    device: r.device === GW ? null : r.device,
    desired: r.desired,
    desiredVersion: r.desired_version,
    desiredAt: Number(r.desired_at),
    reported: r.reported,
    reportedVersion: r.reported_version,
    reportedAt: r.reported_at === null ? null : Number(r.reported_at),
    status: r.status,
    commandId: r.command_id,
    error: r.error_code ? { code: r.error_code, message: r.error_message ?? '' } : null,
    updatedAt: Number(r.updated_at),
  };
}

/** RFC 7386 merge patch, one level deep (shadow values are replaced whole). */
export function mergeDesired(current: ShadowDoc, patch: ShadowDoc): ShadowDoc {
  const out: ShadowDoc = { ...current };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return out;
}

export class ShadowService {
  private readonly listeners: OutcomeListener[] = [];
  private readonly log: Logger | undefined;
  private readonly ttlMs: number;

  constructor(private readonly o: ShadowServiceOptions) {
    this.log = o.logger?.child({ component: 'shadows' });
    this.ttlMs = o.commandTtlMs ?? 24 * 3600 * 1000;
  }

  onOutcome(l: OutcomeListener): void {
    this.listeners.push(l);
  }

  async get(gateway: string, device?: string | null): Promise<ShadowRecord | undefined> {
    const r = await this.o.sql.query<Row>('SELECT * FROM fleet_shadows WHERE gateway = $1 AND device = $2', [
      gateway,
      devKey(device),
    ]);
    return r.rows[0] ? toRecord(r.rows[0]) : undefined;
  }

  async list(filter: { gateway?: string; status?: ShadowStatus; limit: number }): Promise<ShadowRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.gateway !== undefined) {
      params.push(filter.gateway);
      where.push(`gateway = $${params.length}`);
    }
    if (filter.status !== undefined) {
      params.push(filter.status);
      where.push(`status = $${params.length}`);
    }
    params.push(filter.limit);
    const r = await this.o.sql.query<Row>(
      `SELECT * FROM fleet_shadows ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY gateway, device LIMIT $${params.length}`,
      params,
    );
    return r.rows.map(toRecord);
  }

  /**
   * Changes desired: version check [SHADOW-VERSION-1], merge, version + 1, commit, then
   * one `shadow.delta` command. The row is committed before the command is sent, so a
   * crash in between leaves a pending shadow that the next birth re-issues.
   */
  async change(c: ShadowChange): Promise<ShadowRecord> {
    try {
      return await this.changeDesired(c);
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      if (code === 'CLOUD_ERR_SHADOW_VERSION' || code === 'CLOUD_ERR_BAD_REQUEST')
        this.o.metrics?.shadowRefused.inc({ code });
      throw e;
    }
  }

  private async changeDesired(c: ShadowChange): Promise<ShadowRecord> {
    const device = devKey(c.device);
    const target = device ? `${c.gateway}/${device}` : c.gateway;
    checkPatch(c.patch, device !== GW, target);
    const gw = await this.o.sql.query<{ site: string }>('SELECT site FROM gateways WHERE id = $1', [
      c.gateway,
    ]);
    if (!gw.rows[0]) throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'gateway', id: c.gateway });
    const now = this.o.now();
    const changed = await this.o.sql.transaction(async (tx) => {
      const cur = (
        await tx.query<Row>('SELECT * FROM fleet_shadows WHERE gateway = $1 AND device = $2 FOR UPDATE', [
          c.gateway,
          device,
        ])
      ).rows[0];
      const version = cur?.desired_version ?? 0;
      if (c.expectedVersion !== undefined && c.expectedVersion !== version) {
        throw cloudError('CLOUD_ERR_SHADOW_VERSION', {
          target,
          current: version,
          expected: c.expectedVersion,
        });
      }
      const desired = mergeDesired(cur?.desired ?? {}, c.patch);
      if (cur && fleet.sameJson(desired, cur.desired)) return null;
      const r = await tx.query<Row>(
        `INSERT INTO fleet_shadows (gateway, device, desired, desired_version, desired_at, reported,
           reported_version, status, updated_at)
         VALUES ($1, $2, $3, $4, $5, '{}', 0, 'pending', $5)
         ON CONFLICT (gateway, device) DO UPDATE SET desired = $3, desired_version = $4, desired_at = $5,
           status = 'pending', command_id = NULL, error_code = NULL, error_message = NULL, updated_at = $5
         RETURNING *`,
        [c.gateway, device, JSON.stringify(desired), version + 1, now],
      );
      await c.withVersion?.(tx, version + 1);
      return toRecord(r.rows[0]!);
    });
    if (!changed) return (await this.get(c.gateway, c.device))!;
    this.o.metrics?.shadowChanges.inc({ target: device === GW ? 'gateway' : 'device' });
    this.log?.info(
      { gateway: c.gateway, device: c.device, version: changed.desiredVersion },
      'shadow desired changed',
    );
    return this.issue(changed);
  }

  /** Sends the shadow's current desired as a `shadow.delta` and records the command id. */
  private async issue(s: ShadowRecord): Promise<ShadowRecord> {
    const payload: fleet.ShadowDelta = { version: s.desiredVersion, desired: s.desired };
    if (s.device !== null) payload.device = s.device;
    // The id is recorded before the command exists, so its result can never arrive for a
    // shadow that does not know it yet.
    const commandId = newId(this.o.now());
    await this.o.sql.query(
      `UPDATE fleet_shadows SET command_id = $1 WHERE gateway = $2 AND device = $3 AND desired_version = $4`,
      [commandId, s.gateway, devKey(s.device), s.desiredVersion],
    );
    try {
      await this.o.sendCommand({
        gateway: s.gateway,
        type: fleet.SHADOW_DELTA,
        payload,
        ttlMs: this.ttlMs,
        id: commandId,
      });
    } catch (e) {
      // Stored but not published (broker down): CMD-REDELIVER-1 publishes it at birth;
      // not stored at all: the birth reconcile issues a new one [SHADOW-REDELIVER-1].
      this.log?.warn(
        { gateway: s.gateway, device: s.device, err: (e as Error).message },
        'shadow.delta not published',
      );
    }
    return (await this.get(s.gateway, s.device))!;
  }

  /**
   * At a gateway's birth: every shadow still pending whose command can no longer arrive
   * (expired unanswered, timed out, interrupted by an edge restart, never stored) gets a
   * fresh `shadow.delta` of the current desired [SHADOW-REDELIVER-1]. Open commands are
   * left to CMD-REDELIVER-1.
   */
  async reconcile(gateway: string): Promise<number> {
    const pending = await this.list({ gateway, status: 'pending', limit: 10_000 });
    const now = this.o.now();
    let n = 0;
    for (const s of pending) {
      if (s.reportedVersion >= s.desiredVersion) continue;
      const cmd = s.commandId ? await this.o.getCommand(s.commandId) : undefined;
      const open =
        cmd !== undefined && (cmd.status === 'pending' || cmd.status === 'sent') && cmd.expiresAt > now;
      if (open) continue;
      await this.issue(s);
      n++;
    }
    if (n > 0) this.o.metrics?.shadowReissued.inc(n);
    if (n > 0) this.log?.info({ gateway, shadows: n }, `re-issued ${n} pending shadow(s) at birth`);
    return n;
  }

  /** Ingest hook: `shadow.reported` and failed `shadow.delta` results, in the batch's transaction. */
  async applyEvents(tx: SqlQueryable, events: readonly EventEnvelope[]): Promise<void> {
    for (const ev of events) {
      if (ev.type === fleet.SHADOW_REPORTED)
        await this.applyReported(tx, ev.gateway, ev.payload as fleet.ShadowReported);
      else if (ev.type === 'command.result') {
        const r = ev.payload as CommandResult;
        if (r.type === fleet.SHADOW_DELTA && r.status !== 'ok' && !r.duplicate)
          await this.applyRefusal(tx, r);
      }
    }
  }

  private async applyReported(tx: SqlQueryable, gateway: string, p: fleet.ShadowReported): Promise<void> {
    const device = devKey(p.device);
    const now = this.o.now();
    const applied = p.status === 'applied';
    // An older report arriving late never overwrites a newer one [SHADOW-VERSION-1].
    const r = await tx.query(
      `UPDATE fleet_shadows SET reported = $3, reported_at = $4, updated_at = $4,
         reported_version = CASE WHEN $5 THEN GREATEST(reported_version, $6) ELSE reported_version END,
         status = CASE
           WHEN $5 AND $6 >= desired_version THEN 'in_sync'
           WHEN NOT $5 AND $6 = desired_version THEN 'failed'
           ELSE status END,
         error_code = CASE WHEN $5 THEN NULL ELSE $7 END,
         error_message = CASE WHEN $5 THEN NULL ELSE $8 END
       WHERE gateway = $1 AND device = $2 AND $6 >= reported_version`,
      [
        gateway,
        device,
        JSON.stringify(p.reported),
        now,
        applied,
        p.version,
        p.code ?? null,
        p.message ?? null,
      ],
    );
    if (r.affected === 0) return;
    this.o.metrics?.shadowReports.inc({ status: p.status });
    const outcome: ShadowOutcome = {
      gateway,
      device: device === GW ? null : device,
      version: p.version,
      status: p.status,
      previous: p.previous,
      reported: p.reported,
      ...(p.code !== undefined ? { code: p.code } : {}),
      ...(p.message !== undefined ? { message: p.message } : {}),
    };
    for (const l of this.listeners) await l(tx, outcome);
  }

  /**
   * A `shadow.delta` refused or failed without a report: a stale copy is nothing (a newer
   * version is there); an interrupted or timed-out one stays pending for the birth
   * reconcile; anything else (a key the target cannot take) fails that version.
   */
  private async applyRefusal(tx: SqlQueryable, r: CommandResult): Promise<void> {
    if (r.code === 'EDGE_ERR_SHADOW_STALE' || r.code === 'EDGE_ERR_SHADOW_APPLY') return;
    const keepPending = r.status === 'timeout' || r.code === 'EDGE_ERR_CMD_INTERRUPTED';
    const row = (
      await tx.query<Row>(
        `UPDATE fleet_shadows SET status = $2, error_code = $3, error_message = $4, updated_at = $5
         WHERE command_id = $1 AND status = 'pending' RETURNING *`,
        [
          r.commandId,
          keepPending ? 'pending' : 'failed',
          r.code ?? r.status,
          r.message ?? null,
          this.o.now(),
        ],
      )
    ).rows[0];
    if (!row || keepPending) return;
    this.o.metrics?.shadowReports.inc({ status: 'refused' });
    const outcome: ShadowOutcome = {
      gateway: row.gateway,
      device: row.device === GW ? null : row.device,
      version: row.desired_version,
      status: 'failed',
      previous: {},
      reported: row.reported,
      code: r.code ?? r.status,
      ...(r.message !== undefined ? { message: r.message } : {}),
    };
    for (const l of this.listeners) await l(tx, outcome);
  }
}

/** Shapes the edge would refuse anyway are refused here, before a version is spent. */
function checkPatch(patch: ShadowDoc, isDevice: boolean, target: string): void {
  const fw = patch[fleet.FIRMWARE_KEY];
  if (fw === undefined || fw === null) return;
  if (!isDevice) {
    throw cloudError('CLOUD_ERR_BAD_REQUEST', {
      errors: `/desired/${fleet.FIRMWARE_KEY} is a device key; ${target} is a gateway shadow`,
    });
  }
  const r = fleet.validateFirmwareImage.check(fw);
  if (!r.ok) throw cloudError('CLOUD_ERR_BAD_REQUEST', { errors: `/desired/firmware: ${r.error.message}` });
}
