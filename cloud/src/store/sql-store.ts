import {
  type Ack,
  type CommandResult,
  type EventEnvelope,
  type GatewayState,
  type Heartbeat,
  isStorelinkError,
  type Lane,
  LANES,
  type UplinkBatch,
} from '@storelink/protocols';
import { cloudError } from '../errors.ts';
import { recordPresenceTransition } from '../fleet/presence-history.ts';
import { migrate } from './migrations.ts';
import type { Sql, SqlQueryable } from './sql.ts';
import type {
  CloudStore,
  CommandRecord,
  CommandResultApplied,
  DeviceRecord,
  EventFilter,
  GapRecord,
  GatewayCredentials,
  GatewayRecord,
  InTransitHole,
  IngestResult,
  LaneCount,
  LaneEventsQuery,
  NewCommand,
  StateOutcome,
  StoredEvent,
} from './store.ts';

/**
 * Extension point: runs inside the ingest transaction after the batch's new events are
 * inserted (each event is seen once, exactly when it is first stored), so a capability's
 * side effect commits or rolls back with the events (vending: cloud/src/orders). A throw
 * rolls the batch back and it is not acknowledged (the edge resends it).
 */
export type IngestEventHook = (
  tx: SqlQueryable,
  batch: { gateway: string; site: string; events: readonly EventEnvelope[]; receivedAt: number },
) => Promise<void>;

/** The one CloudStore implementation, over either driver (see sql.ts). */
export class SqlCloudStore implements CloudStore {
  private readonly ingestHooks: IngestEventHook[] = [];
  private constructor(readonly sql: Sql) {}

  onIngestEvents(hook: IngestEventHook): void {
    this.ingestHooks.push(hook);
  }

  /** Runs the migrations, then returns the store. */
  static async open(sql: Sql): Promise<SqlCloudStore> {
    await migrate(sql);
    return new SqlCloudStore(sql);
  }

  async ping(): Promise<void> {
    await guard(() => this.sql.query('SELECT 1'));
  }

  async close(): Promise<void> {
    await this.sql.close();
  }

  // ---------- gateways ----------

  async createGateway(
    g: { id: string; site: string; name?: string | null; passwordHash: string },
    now: number,
  ): Promise<GatewayRecord> {
    await guard(async () => {
      await this.sql.transaction(async (tx) => {
        const r = await tx.query(
          `INSERT INTO gateways (id, site, name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (id) DO NOTHING`,
          [g.id, g.site, g.name ?? null, g.passwordHash, now],
        );
        if (r.affected === 0) {
          throw cloudError('CLOUD_ERR_CONFLICT', { what: 'gateway', id: g.id, reason: 'it is registered' });
        }
        await tx.query(
          'INSERT INTO gateway_presence (gateway, updated_at) VALUES ($1, $2) ON CONFLICT DO NOTHING',
          [g.id, now],
        );
      });
    });
    return (await this.getGateway(g.id))!;
  }

  async upsertGateway(
    g: { id: string; site: string; name?: string | null; passwordHash: string },
    now: number,
  ): Promise<void> {
    await guard(() =>
      this.sql.transaction(async (tx) => {
        await tx.query(
          `INSERT INTO gateways (id, site, name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (id) DO UPDATE SET site = EXCLUDED.site, name = COALESCE(EXCLUDED.name, gateways.name),
             password_hash = EXCLUDED.password_hash`,
          [g.id, g.site, g.name ?? null, g.passwordHash, now],
        );
        await tx.query(
          'INSERT INTO gateway_presence (gateway, updated_at) VALUES ($1, $2) ON CONFLICT DO NOTHING',
          [g.id, now],
        );
      }),
    );
  }

  async getGatewayCredentials(id: string): Promise<GatewayCredentials | undefined> {
    const r = await guard(() =>
      this.sql.query<{ id: string; site: string; password_hash: string | null }>(
        'SELECT id, site, password_hash FROM gateways WHERE id = $1',
        [id],
      ),
    );
    const row = r.rows[0];
    return row && { id: row.id, site: row.site, passwordHash: row.password_hash };
  }

  async getGateway(id: string): Promise<GatewayRecord | undefined> {
    const r = await guard(() => this.sql.query<GatewayRow>(`${GATEWAY_SELECT} WHERE g.id = $1`, [id]));
    return r.rows[0] && toGateway(r.rows[0]);
  }

  async listGateways(): Promise<GatewayRecord[]> {
    const r = await guard(() => this.sql.query<GatewayRow>(`${GATEWAY_SELECT} ORDER BY g.id`));
    return r.rows.map(toGateway);
  }

  // ---------- presence ----------

  async applyGatewayState(s: GatewayState, receivedAt: number): Promise<StateOutcome> {
    return guard(() =>
      this.sql.transaction(async (tx) => {
        const known = await ensureGateway(tx, s.gateway, s.site, receivedAt);
        if (!known) return { applied: false, reason: 'site_mismatch' } as const;
        const cur = (
          await tx.query<{ state: string; bd_seq: number | null; epoch: string | null }>(
            'SELECT state, bd_seq, epoch FROM gateway_presence WHERE gateway = $1 FOR UPDATE',
            [s.gateway],
          )
        ).rows[0]!;
        if (s.state === 'online') {
          // [PRESENCE-BDSEQ-1] A birth is only ever published by a live session, so it wins
          // unless it is older than the session we know — except when it names another
          // epoch: a gateway whose store was rebuilt restarts its bdSeq too.
          const stale =
            cur.bd_seq !== null && s.bdSeq < cur.bd_seq && (s.epoch === undefined || s.epoch === cur.epoch);
          if (stale) {
            await touch(tx, s.gateway, receivedAt);
            return { applied: false, reason: 'stale_birth' } as const;
          }
          await tx.query(
            `UPDATE gateway_presence SET state = 'online', bd_seq = $2, epoch = COALESCE($3, epoch),
               version = COALESCE($4, version), online_since = $5, state_at = $5,
               last_seen = GREATEST(COALESCE(last_seen, 0), $6), updated_at = $6
             WHERE gateway = $1`,
            [s.gateway, s.bdSeq, s.epoch ?? null, s.version ?? null, s.at, receivedAt],
          );
          // [PRESENCE-HIST-1] the transition commits with the state it records.
          await recordPresenceTransition(tx, {
            gateway: s.gateway,
            at: receivedAt,
            state: 'online',
            reason: 'birth',
            bdSeq: s.bdSeq,
            source: 'birth',
          });
          return { applied: true, state: 'online' } as const;
        }
        // Death. [PRESENCE-BDSEQ-1] An older session's will never marks a live gateway
        // offline. A death NEWER than the session we know means we missed that
        // session's birth; that session is dead now, and so is every older one.
        if (cur.bd_seq !== null && s.bdSeq < cur.bd_seq) {
          return { applied: false, reason: 'stale_death' } as const;
        }
        if (cur.bd_seq !== null && s.bdSeq === cur.bd_seq && cur.state !== 'online') {
          return { applied: false, reason: 'not_online' } as const;
        }
        await tx.query(
          `UPDATE gateway_presence SET state = 'offline', bd_seq = $2, online_since = NULL, state_at = $3,
             updated_at = $4 WHERE gateway = $1`,
          [s.gateway, s.bdSeq, s.at, receivedAt],
        );
        // [PRESENCE-HIST-1] only an applied death is history; a stale one returned above.
        await recordPresenceTransition(tx, {
          gateway: s.gateway,
          at: receivedAt,
          state: 'offline',
          reason: 'death',
          bdSeq: s.bdSeq,
          source: 'death',
        });
        return { applied: true, state: 'offline' } as const;
      }),
    );
  }

  async recordHeartbeat(hb: Heartbeat, receivedAt: number): Promise<boolean> {
    return guard(() =>
      this.sql.transaction(async (tx) => {
        if (!(await ensureGateway(tx, hb.gateway, hb.site, receivedAt))) return false;
        // A heartbeat of an older session says nothing about the current one. One of a
        // newer session means its birth was missed: the gateway is online in it.
        const json = JSON.stringify(hb);
        // Hot path: a heartbeat of the current session changes no state (and no history).
        const same = await tx.query(
          `UPDATE gateway_presence SET last_heartbeat = $2::jsonb,
             last_seen = GREATEST(COALESCE(last_seen, 0), $3), updated_at = $3
           WHERE gateway = $1 AND bd_seq = $4`,
          [hb.gateway, json, receivedAt, hb.bdSeq],
        );
        if (same.affected > 0) return true;
        // `old` locks the row first, so `born` compares with the session this update replaces.
        const r = await tx.query<{ born: boolean }>(
          `WITH old AS (SELECT bd_seq AS prev_bd_seq FROM gateway_presence WHERE gateway = $1 FOR UPDATE)
           UPDATE gateway_presence SET last_heartbeat = $2::jsonb,
             last_seen = GREATEST(COALESCE(last_seen, 0), $3),
             state = CASE WHEN bd_seq IS NULL OR $4 > bd_seq THEN 'online' ELSE state END,
             online_since = CASE WHEN bd_seq IS NULL OR $4 > bd_seq THEN $5 ELSE online_since END,
             bd_seq = GREATEST(COALESCE(bd_seq, $4), $4),
             updated_at = $3
           FROM old WHERE gateway = $1 AND (bd_seq IS NULL OR bd_seq <= $4)
           RETURNING (old.prev_bd_seq IS NULL OR $4 > old.prev_bd_seq) AS born`,
          [hb.gateway, json, receivedAt, hb.bdSeq, hb.at],
        );
        if (r.affected === 0) await touch(tx, hb.gateway, receivedAt);
        else if (r.rows[0]?.born) {
          // [PRESENCE-HIST-1] a newer session's heartbeat brought the gateway online.
          await recordPresenceTransition(tx, {
            gateway: hb.gateway,
            at: receivedAt,
            state: 'online',
            reason: 'missed_birth',
            bdSeq: hb.bdSeq,
            source: 'heartbeat',
          });
        }
        return r.affected > 0;
      }),
    );
  }

  // ---------- ingest ----------

  async ingestBatch(batch: UplinkBatch, receivedAt: number): Promise<IngestResult> {
    return guard(() => this.sql.transaction((tx) => ingestInTx(tx, batch, receivedAt, this.ingestHooks)));
  }

  // ---------- queries ----------

  async listDevices(filter: { gateway?: string; online?: boolean } = {}): Promise<DeviceRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.gateway !== undefined) {
      params.push(filter.gateway);
      where.push(`gateway = $${params.length}`);
    }
    // "offline" includes devices never reported online: they are not online.
    if (filter.online !== undefined) where.push(filter.online ? 'online IS TRUE' : 'online IS NOT TRUE');
    const r = await guard(() =>
      this.sql.query<DeviceRow>(
        `SELECT gateway, id, online, presence_reason, presence_at, first_seen, last_seen, last_event_type
         FROM devices ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY gateway, id`,
        params,
      ),
    );
    return r.rows.map((d) => ({
      gateway: d.gateway,
      id: d.id,
      online: d.online,
      presenceReason: d.presence_reason,
      presenceAt: d.presence_at,
      firstSeen: d.first_seen,
      lastSeen: d.last_seen,
      lastEventType: d.last_event_type,
    }));
  }

  async recentEvents(f: EventFilter): Promise<StoredEvent[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    for (const [col, v] of [
      ['gateway', f.gateway],
      ['device', f.device],
      ['type', f.type],
      ['lane', f.lane],
    ] as const) {
      if (v === undefined) continue;
      params.push(v);
      where.push(`${col} = $${params.length}`);
    }
    params.push(f.limit);
    const r = await guard(() =>
      this.sql.query<EventRow>(
        `SELECT ${EVENT_COLS} FROM events ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
         ORDER BY received_at DESC, seq DESC LIMIT $${params.length}`,
        params,
      ),
    );
    return r.rows.map(toEvent);
  }

  async laneEvents(q: LaneEventsQuery): Promise<StoredEvent[]> {
    const r = await guard(async () => {
      const epoch = q.epoch ?? (await this.latestEpoch(q.gateway));
      if (epoch === undefined) return { rows: [] as EventRow[] };
      return this.sql.query<EventRow>(
        `SELECT ${EVENT_COLS} FROM events WHERE gateway = $1 AND epoch = $2 AND lane = $3 AND seq > $4
         ORDER BY seq LIMIT $5`,
        [q.gateway, epoch, q.lane, q.after, q.limit],
      );
    });
    return r.rows.map(toEvent);
  }

  private async latestEpoch(gateway: string): Promise<string | undefined> {
    const r = await this.sql.query<{ epoch: string | null }>(
      'SELECT max(epoch) AS epoch FROM lane_watermarks WHERE gateway = $1',
      [gateway],
    );
    return r.rows[0]?.epoch ?? undefined;
  }

  async laneCounts(gateway: string): Promise<LaneCount[]> {
    const r = await guard(() =>
      this.sql.query<{
        epoch: string;
        lane: Lane;
        acked: number;
        stored: number;
        min_seq: number | null;
        max_seq: number | null;
        gaps: number;
        gap_seqs: number;
      }>(
        `SELECT w.epoch, w.lane, w.acked,
                COALESCE(e.n, 0) AS stored, e.min_seq, e.max_seq,
                COALESCE(g.n, 0) AS gaps, COALESCE(g.seqs, 0) AS gap_seqs
         FROM lane_watermarks w
         LEFT JOIN (SELECT epoch, lane, count(*)::int8 AS n, min(seq) AS min_seq, max(seq) AS max_seq
                    FROM events WHERE gateway = $1 GROUP BY epoch, lane) e
                ON e.epoch = w.epoch AND e.lane = w.lane
         LEFT JOIN (SELECT epoch, lane, count(*)::int8 AS n, sum(to_seq - from_seq + 1)::int8 AS seqs
                    FROM gaps WHERE gateway = $1 GROUP BY epoch, lane) g
                ON g.epoch = w.epoch AND g.lane = w.lane
         WHERE w.gateway = $1
         ORDER BY w.epoch, w.lane`,
        [gateway],
      ),
    );
    return r.rows.map((x) => ({
      epoch: x.epoch,
      lane: x.lane,
      stored: x.stored,
      minSeq: x.min_seq,
      maxSeq: x.max_seq,
      acked: x.acked,
      gaps: x.gaps,
      gapSeqs: x.gap_seqs,
    }));
  }

  async listGaps(gateway: string, filter: { epoch?: string; lane?: Lane } = {}): Promise<GapRecord[]> {
    const r = await guard(() =>
      this.sql.query<GapRow>(
        `SELECT gateway, epoch, lane, from_seq, to_seq, reason, at FROM gaps
         WHERE gateway = $1 AND ($2::text IS NULL OR epoch = $2) AND ($3::text IS NULL OR lane = $3)
         ORDER BY epoch, lane, from_seq`,
        [gateway, filter.epoch ?? null, filter.lane ?? null],
      ),
    );
    return r.rows.map(toGap);
  }

  // ---------- commands ----------

  async insertCommand(c: NewCommand): Promise<CommandRecord> {
    return guard(() => insertCommandRow(this.sql, c));
  }

  async markCommandSent(id: string, sentAt: number): Promise<void> {
    // The result may already be in (it raced the broker's PUBACK): keep it.
    await guard(() =>
      this.sql.query(
        `UPDATE commands SET sent_at = $2, status = CASE WHEN status = 'pending' THEN 'sent' ELSE status END
         WHERE id = $1`,
        [id, sentAt],
      ),
    );
  }

  async getCommand(id: string): Promise<CommandRecord | undefined> {
    const r = await guard(() =>
      this.sql.query<CommandRow>(`SELECT ${COMMAND_COLS} FROM commands WHERE id = $1`, [id]),
    );
    return r.rows[0] && toCommand(r.rows[0]);
  }

  async listCommands(f: { gateway?: string; limit: number }): Promise<CommandRecord[]> {
    const r = await guard(() =>
      this.sql.query<CommandRow>(
        `SELECT ${COMMAND_COLS} FROM commands WHERE ($1::text IS NULL OR gateway = $1)
         ORDER BY issued_at DESC, id DESC LIMIT $2`,
        [f.gateway ?? null, f.limit],
      ),
    );
    return r.rows.map(toCommand);
  }
}

// ---------- the ingest transaction, in named steps ----------

/**
 * One batch, one transaction [OUTBOX-ACK-2]:
 * 1. the gateway is known and of this site;
 * 2. insert every event, conflicts on (gateway, epoch, lane, seq) skipped [INGEST-EXACTLY-ONCE-1];
 * 3. side effects of the events actually inserted (so each takes effect once): devices,
 *    device presence, command results;
 * 4. per lane: floors → gaps [OUTBOX-ACK-3], then the watermark climbs over every
 *    contiguous committed seq; a hole not covered by a floor holds it;
 * 5. read back every watermark of (gateway, epoch) for the Ack.
 */
async function ingestInTx(
  tx: SqlQueryable,
  batch: UplinkBatch,
  receivedAt: number,
  hooks: readonly IngestEventHook[] = [],
): Promise<IngestResult> {
  const { gateway, epoch } = batch;
  // The hot path: one statement both checks the gateway's site and records it as seen.
  const seen = await tx.query<{ site: string }>(
    `UPDATE gateway_presence AS p SET last_seen = GREATEST(COALESCE(p.last_seen, 0), $2)
     FROM gateways AS g WHERE g.id = p.gateway AND p.gateway = $1 RETURNING g.site`,
    [gateway, receivedAt],
  );
  const site = seen.rows[0]?.site;
  if (site === undefined) {
    if (!(await ensureGateway(tx, gateway, batch.site, receivedAt))) {
      throw mismatch(
        gateway,
        (await tx.query<{ site: string }>('SELECT site FROM gateways WHERE id = $1', [gateway])).rows[0]
          ?.site,
        batch.site,
      );
    }
    await touch(tx, gateway, receivedAt);
  } else if (site !== batch.site) {
    throw mismatch(gateway, site, batch.site);
  }

  const inserted = await insertEvents(tx, batch, receivedAt);
  const insertedByLane: Partial<Record<Lane, number>> = {};
  const duplicatesByLane: Partial<Record<Lane, number>> = {};
  for (const e of batch.events) duplicatesByLane[e.lane] = (duplicatesByLane[e.lane] ?? 0) + 1;
  for (const e of inserted) {
    insertedByLane[e.lane] = (insertedByLane[e.lane] ?? 0) + 1;
    duplicatesByLane[e.lane]! -= 1;
  }
  for (const l of LANES) if (duplicatesByLane[l] === 0) delete duplicatesByLane[l];

  await upsertDevices(tx, gateway, epoch, inserted);
  const commandResults = await applyCommandResults(tx, gateway, inserted, receivedAt);
  if (inserted.length > 0)
    for (const h of hooks) await h(tx, { gateway, site: batch.site, events: inserted, receivedAt });

  const lanes = new Set<Lane>(batch.events.map((e) => e.lane));
  for (const l of LANES) if (batch.floors[l] !== undefined) lanes.add(l);
  const { gaps, holes } = await advanceWatermarks(tx, batch, [...lanes], receivedAt);

  const acks: Ack['acks'] = {};
  const w = await tx.query<{ lane: Lane; acked: number }>(
    'SELECT lane, acked FROM lane_watermarks WHERE gateway = $1 AND epoch = $2',
    [gateway, epoch],
  );
  for (const row of w.rows) acks[row.lane] = row.acked;

  return {
    epoch,
    inserted: inserted.length,
    duplicates: batch.events.length - inserted.length,
    insertedByLane,
    duplicatesByLane,
    acks,
    gaps,
    holes,
    commandResults,
  };
}

/** Step 2: one INSERT for the whole batch; returns the events that were new. */
async function insertEvents(
  tx: SqlQueryable,
  batch: UplinkBatch,
  receivedAt: number,
): Promise<EventEnvelope[]> {
  if (batch.events.length === 0) return [];
  const rows = batch.events.map((e) => ({
    lane: e.lane,
    seq: e.seq,
    id: e.id,
    type: e.type,
    device: e.device,
    ts: e.ts,
    rts: e.rts,
    mid: e.mid ?? null,
    payload: e.payload ?? null,
  }));
  const rowsJson = JSON.stringify(rows);
  // No RETURNING: shipping 500 rows back costs more than the insert's own index work
  // (measured on PGlite). The affected count says whether anything was a duplicate.
  const r = await tx.query(
    `INSERT INTO events (gateway, epoch, lane, seq, id, type, device, site, ts, rts, mid, payload, received_at)
     SELECT $1, $2, r.lane, r.seq, r.id, r.type, r.device, $3, r.ts, r.rts, r.mid, r.payload, $4
     FROM jsonb_to_recordset($5::jsonb)
       AS r(lane text, seq bigint, id text, type text, device text, ts bigint, rts bigint, mid text, payload jsonb)
     ON CONFLICT (gateway, epoch, lane, seq) DO NOTHING`,
    [batch.gateway, batch.epoch, batch.site, receivedAt, rowsJson],
  );
  if (r.affected === batch.events.length) return batch.events;
  if (r.affected === 0) return [];
  // Some were duplicates: the rows THIS transaction wrote are the ones whose xmin is our
  // transaction id (no subtransactions here), whatever a concurrent writer did.
  const mine = await tx.query<{ lane: Lane; seq: number }>(
    `SELECT e.lane, e.seq FROM events e
     JOIN jsonb_to_recordset($3::jsonb) AS r(lane text, seq bigint) ON e.lane = r.lane AND e.seq = r.seq
     WHERE e.gateway = $1 AND e.epoch = $2 AND e.xmin = pg_current_xact_id()::xid`,
    [batch.gateway, batch.epoch, rowsJson],
  );
  const fresh = new Set(mine.rows.map((x) => `${x.lane}:${x.seq}`));
  // Two copies of one (lane, seq) inside a batch: only the first was inserted.
  const out: EventEnvelope[] = [];
  for (const e of batch.events) {
    if (fresh.delete(`${e.lane}:${e.seq}`)) out.push(e);
  }
  return out;
}

/** Step 3a: every device seen is upserted; presence moves only forward in (epoch, seq). */
async function upsertDevices(
  tx: SqlQueryable,
  gateway: string,
  epoch: string,
  events: readonly EventEnvelope[],
): Promise<void> {
  if (events.length === 0) return;
  type Dev = {
    id: string;
    last_seen: number;
    last_type: string;
    online: boolean | null;
    presence_seq: number | null;
    reason: string | null;
    presence_at: number | null;
  };
  const devs = new Map<string, Dev>();
  for (const e of events) {
    let d = devs.get(e.device);
    if (!d) {
      d = {
        id: e.device,
        last_seen: e.rts,
        last_type: e.type,
        online: null,
        presence_seq: null,
        reason: null,
        presence_at: null,
      };
      devs.set(e.device, d);
    } else if (e.rts >= d.last_seen) {
      d.last_seen = e.rts;
      d.last_type = e.type;
    }
    if ((e.type === 'device.online' || e.type === 'device.offline') && (d.presence_seq ?? 0) < e.seq) {
      d.online = e.type === 'device.online';
      d.presence_seq = e.seq;
      d.reason = (e.payload as { reason?: string } | null)?.reason ?? null;
      d.presence_at = e.rts;
    }
  }
  const newer = `EXCLUDED.presence_seq IS NOT NULL AND (devices.presence_seq IS NULL
    OR (EXCLUDED.presence_epoch, EXCLUDED.presence_seq) > (devices.presence_epoch, devices.presence_seq))`;
  await tx.query(
    `INSERT INTO devices (gateway, id, online, presence_epoch, presence_seq, presence_reason, presence_at,
                          first_seen, last_seen, last_event_type)
     SELECT $1, r.id, r.online, CASE WHEN r.presence_seq IS NULL THEN NULL ELSE $2 END, r.presence_seq, r.reason,
            r.presence_at, r.last_seen, r.last_seen, r.last_type
     FROM jsonb_to_recordset($3::jsonb)
       AS r(id text, online boolean, presence_seq bigint, reason text, presence_at bigint, last_seen bigint, last_type text)
     ON CONFLICT (gateway, id) DO UPDATE SET
       last_event_type = CASE WHEN EXCLUDED.last_seen >= devices.last_seen THEN EXCLUDED.last_event_type
                              ELSE devices.last_event_type END,
       last_seen = GREATEST(devices.last_seen, EXCLUDED.last_seen),
       first_seen = LEAST(devices.first_seen, EXCLUDED.first_seen),
       online = CASE WHEN ${newer} THEN EXCLUDED.online ELSE devices.online END,
       presence_reason = CASE WHEN ${newer} THEN EXCLUDED.presence_reason ELSE devices.presence_reason END,
       presence_at = CASE WHEN ${newer} THEN EXCLUDED.presence_at ELSE devices.presence_at END,
       presence_epoch = CASE WHEN ${newer} THEN EXCLUDED.presence_epoch ELSE devices.presence_epoch END,
       presence_seq = CASE WHEN ${newer} THEN EXCLUDED.presence_seq ELSE devices.presence_seq END`,
    [gateway, epoch, JSON.stringify([...devs.values()])],
  );
}

/**
 * Step 3b: command results complete their command row in the ingest transaction. Only a
 * command of THIS gateway can be completed by it. A `duplicate: true` report never
 * overwrites a first result [CMD-ONCE-1]; a first result replaces a duplicate report.
 */
async function applyCommandResults(
  tx: SqlQueryable,
  gateway: string,
  events: readonly EventEnvelope[],
  receivedAt: number,
): Promise<CommandResultApplied[]> {
  const byId = new Map<string, CommandResult>();
  for (const e of events) {
    if (e.type !== 'command.result') continue;
    const p = e.payload as CommandResult;
    const prev = byId.get(p.commandId);
    if (!prev || (prev.duplicate && !p.duplicate)) byId.set(p.commandId, p);
  }
  if (byId.size === 0) return [];
  const rows = [...byId.values()].map((p) => ({
    id: p.commandId,
    status: p.status,
    code: p.code ?? null,
    message: p.message ?? null,
    result: p.result ?? null,
    completed_at: p.completedAt,
    duplicate: p.duplicate === true,
  }));
  const r = await tx.query<{ id: string; status: CommandResultApplied['status']; issued_at: number }>(
    `UPDATE commands AS c SET status = r.status, code = r.code, message = r.message, result = r.result,
            completed_at = r.completed_at, result_received_at = $2, duplicate_result = r.duplicate
     FROM jsonb_to_recordset($3::jsonb)
       AS r(id text, status text, code text, message text, result jsonb, completed_at bigint, duplicate boolean)
     WHERE c.id = r.id AND c.gateway = $1
       AND (c.result_received_at IS NULL OR (c.duplicate_result AND NOT r.duplicate))
     RETURNING c.id, c.status, c.issued_at`,
    [gateway, receivedAt, JSON.stringify(rows)],
  );
  return r.rows.map((x) => ({ id: x.id, status: x.status, rttMs: receivedAt - x.issued_at }));
}

/** Step 4: floors → gaps, then climb over contiguous committed seqs. */
async function advanceWatermarks(
  tx: SqlQueryable,
  batch: UplinkBatch,
  lanes: Lane[],
  at: number,
): Promise<{ gaps: GapRecord[]; holes: InTransitHole[] }> {
  const { gateway, epoch } = batch;
  const gaps: GapRecord[] = [];
  const holes: InTransitHole[] = [];
  if (lanes.length === 0) return { gaps, holes };
  // Creates the missing rows and, through the (no-op) DO UPDATE, row-locks the existing
  // ones and returns their watermark: two cloud processes on one PostgreSQL never move
  // one watermark at once.
  const cur = await tx.query<{ lane: Lane; acked: number }>(
    `INSERT INTO lane_watermarks AS w (gateway, epoch, lane, acked, updated_at)
     SELECT $1, $2, l, 0, $3 FROM jsonb_array_elements_text($4::jsonb) AS l
     ON CONFLICT (gateway, epoch, lane) DO UPDATE SET updated_at = w.updated_at
     RETURNING lane, acked`,
    [gateway, epoch, at, JSON.stringify(lanes)],
  );
  const updates: { lane: Lane; acked: number }[] = [];
  for (const { lane, acked: before } of cur.rows) {
    let wm = before;
    const floor = batch.floors[lane];
    // [OUTBOX-ACK-3] below the floor the edge holds nothing: whatever we lack there was
    // dropped at the edge (and counted there). Record it and move past it.
    if (floor !== undefined && floor - 1 > wm) {
      const stored = await tx.query<{ seq: number }>(
        `SELECT seq FROM events WHERE gateway = $1 AND epoch = $2 AND lane = $3 AND seq > $4 AND seq < $5
         ORDER BY seq`,
        [gateway, epoch, lane, wm, floor],
      );
      let next = wm + 1;
      for (const { seq } of [...stored.rows, { seq: floor }]) {
        if (seq > next) {
          gaps.push({ gateway, epoch, lane, fromSeq: next, toSeq: seq - 1, reason: 'dropped_at_edge', at });
        }
        next = seq + 1;
      }
      wm = floor - 1;
    }
    // [OUTBOX-ACK-2] climb over the run of committed seqs that starts right above the
    // watermark (seq - row_number() is constant exactly along a gap-free run). Only
    // events above the watermark are scanned: the batch, plus what waits above a hole.
    const climb = await tx.query<{ top: number | null; next_stored: number | null }>(
      `WITH above AS (
         SELECT seq, seq - row_number() OVER (ORDER BY seq) AS d
         FROM events WHERE gateway = $1 AND epoch = $2 AND lane = $3 AND seq > $4)
       SELECT (SELECT max(seq) FROM above WHERE d = $4) AS top,
              (SELECT min(seq) FROM above WHERE d <> $4) AS next_stored`,
      [gateway, epoch, lane, wm],
    );
    const { top, next_stored } = climb.rows[0]!;
    if (top !== null) wm = top;
    if (next_stored !== null) holes.push({ lane, fromSeq: wm + 1, toSeq: next_stored - 1 });
    if (wm !== before) updates.push({ lane, acked: wm });
  }
  if (gaps.length > 0) {
    await tx.query(
      `INSERT INTO gaps (gateway, epoch, lane, from_seq, to_seq, reason, at)
       SELECT $1, $2, r.lane, r.from_seq, r.to_seq, 'dropped_at_edge', $3
       FROM jsonb_to_recordset($4::jsonb) AS r(lane text, from_seq bigint, to_seq bigint)`,
      [
        gateway,
        epoch,
        at,
        JSON.stringify(gaps.map((g) => ({ lane: g.lane, from_seq: g.fromSeq, to_seq: g.toSeq }))),
      ],
    );
  }
  if (updates.length > 0) {
    await tx.query(
      `UPDATE lane_watermarks AS w SET acked = r.acked, updated_at = $3
       FROM jsonb_to_recordset($4::jsonb) AS r(lane text, acked bigint)
       WHERE w.gateway = $1 AND w.epoch = $2 AND w.lane = r.lane AND r.acked > w.acked`,
      [gateway, epoch, at, JSON.stringify(updates)],
    );
  }
  return { gaps, holes };
}

// ---------- helpers ----------

function mismatch(gateway: string, registered: string | undefined, claimed: string) {
  return cloudError('CLOUD_ERR_BATCH_REJECTED', {
    gateway,
    reason: `gateway is registered for site "${registered}", the batch says "${claimed}"`,
  });
}

/**
 * A gateway that speaks through an external broker may not be registered here: it is
 * recorded from its traffic (no password). Returns false when it is registered for
 * another site.
 */
async function ensureGateway(tx: SqlQueryable, id: string, site: string, now: number): Promise<boolean> {
  const r = await tx.query<{ site: string }>('SELECT site FROM gateways WHERE id = $1', [id]);
  if (r.rows[0]) return r.rows[0].site === site;
  await tx.query('INSERT INTO gateways (id, site, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [
    id,
    site,
    now,
  ]);
  await tx.query(
    'INSERT INTO gateway_presence (gateway, updated_at) VALUES ($1, $2) ON CONFLICT DO NOTHING',
    [id, now],
  );
  return true;
}

async function touch(tx: SqlQueryable, gateway: string, now: number): Promise<void> {
  await tx.query(
    'UPDATE gateway_presence SET last_seen = GREATEST(COALESCE(last_seen, 0), $2) WHERE gateway = $1',
    [gateway, now],
  );
}

/** Driver errors leave the store as CLOUD_ERR_STORE (with the cause); coded errors pass. */
async function guard<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (isStorelinkError(e)) throw e;
    throw cloudError('CLOUD_ERR_STORE', { reason: (e as Error).message }, { cause: e });
  }
}

const GATEWAY_SELECT = `SELECT g.id, g.site, g.name, g.created_at, g.password_hash IS NOT NULL AS has_password,
  p.state, p.bd_seq, p.epoch, p.version, p.online_since, p.state_at, p.last_seen, p.last_heartbeat
  FROM gateways g LEFT JOIN gateway_presence p ON p.gateway = g.id`;

interface GatewayRow {
  id: string;
  site: string;
  name: string | null;
  created_at: number;
  has_password: boolean;
  state: GatewayRecord['presence']['state'] | null;
  bd_seq: number | null;
  epoch: string | null;
  version: string | null;
  online_since: number | null;
  state_at: number | null;
  last_seen: number | null;
  last_heartbeat: Heartbeat | null;
}

function toGateway(r: GatewayRow): GatewayRecord {
  return {
    id: r.id,
    site: r.site,
    name: r.name,
    createdAt: r.created_at,
    hasPassword: r.has_password,
    presence: {
      state: r.state ?? 'unknown',
      bdSeq: r.bd_seq,
      epoch: r.epoch,
      version: r.version,
      onlineSince: r.online_since,
      stateAt: r.state_at,
      lastSeen: r.last_seen,
      heartbeat: r.last_heartbeat,
    },
  };
}

interface DeviceRow {
  gateway: string;
  id: string;
  online: boolean | null;
  presence_reason: string | null;
  presence_at: number | null;
  first_seen: number;
  last_seen: number;
  last_event_type: string;
}

const EVENT_COLS = 'gateway, epoch, lane, seq, id, type, device, site, ts, rts, mid, payload, received_at';

interface EventRow {
  gateway: string;
  epoch: string;
  lane: Lane;
  seq: number;
  id: string;
  type: string;
  device: string;
  site: string;
  ts: number;
  rts: number;
  mid: string | null;
  payload: unknown;
  received_at: number;
}

function toEvent(r: EventRow): StoredEvent {
  return {
    id: r.id,
    type: r.type,
    device: r.device,
    gateway: r.gateway,
    site: r.site,
    ts: r.ts,
    rts: r.rts,
    lane: r.lane,
    seq: r.seq,
    ...(r.mid !== null ? { mid: r.mid } : {}),
    payload: r.payload,
    epoch: r.epoch,
    receivedAt: r.received_at,
  };
}

interface GapRow {
  gateway: string;
  epoch: string;
  lane: Lane;
  from_seq: number;
  to_seq: number;
  reason: 'dropped_at_edge';
  at: number;
}

function toGap(r: GapRow): GapRecord {
  return {
    gateway: r.gateway,
    epoch: r.epoch,
    lane: r.lane,
    fromSeq: r.from_seq,
    toSeq: r.to_seq,
    reason: r.reason,
    at: r.at,
  };
}

const COMMAND_COLS = `id, gateway, site, device, type, payload, issued_at, expires_at, sig, status, result, code, message,
  sent_at, completed_at, result_received_at, duplicate_result`;

interface CommandRow {
  id: string;
  gateway: string;
  site: string;
  device: string | null;
  type: string;
  payload: unknown;
  issued_at: number;
  expires_at: number;
  sig: string;
  status: CommandRecord['status'];
  result: unknown;
  code: string | null;
  message: string | null;
  sent_at: number | null;
  completed_at: number | null;
  result_received_at: number | null;
  duplicate_result: boolean | null;
}

function toCommand(r: CommandRow): CommandRecord {
  return {
    id: r.id,
    gateway: r.gateway,
    site: r.site,
    device: r.device,
    type: r.type,
    payload: r.payload,
    issuedAt: r.issued_at,
    expiresAt: r.expires_at,
    sig: r.sig,
    status: r.status,
    result: r.result,
    code: r.code,
    message: r.message,
    sentAt: r.sent_at,
    completedAt: r.completed_at,
    resultReceivedAt: r.result_received_at,
    rttMs: r.result_received_at === null ? null : r.result_received_at - r.issued_at,
    duplicateResult: r.duplicate_result,
  };
}

/**
 * The one INSERT of a command row, on any queryable: the store's own connection, or a
 * transaction of another service that issues a command as part of its own change (the
 * payment that decides a dispense stores its command in the same transaction [CMD-TX-1]).
 */
export async function insertCommandRow(q: SqlQueryable, c: NewCommand): Promise<CommandRecord> {
  const r = await q.query<CommandRow>(
    `INSERT INTO commands (id, gateway, site, device, type, payload, issued_at, expires_at, sig)
     VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, $9) RETURNING ${COMMAND_COLS}`,
    [
      c.id,
      c.gateway,
      c.site,
      c.device,
      c.type,
      JSON.stringify(c.payload ?? null),
      c.issuedAt,
      c.expiresAt,
      c.sig,
    ],
  );
  return toCommand(r.rows[0]!);
}
