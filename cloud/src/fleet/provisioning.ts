import { randomBytes, scrypt } from 'node:crypto';
import { cloudError } from '../errors.ts';
import { recordPresenceTransition } from './presence-history.ts';
import type { Sql, SqlQueryable } from '../store/sql.ts';
import type { IssuedCertificate } from './ca.ts';

/**
 * Gateway provisioning in the store (docs/fleet-provisioning.md), over the `Sql` seam:
 * revocation, password rotation, per-gateway certificates and the devices registered
 * behind each gateway. The gateway row itself (id, site, scrypt password hash) is the
 * one `CloudStore.createGateway` writes: one credential path, extended here.
 */

export interface BrokerCredentials {
  id: string;
  site: string;
  passwordHash: string | null;
  /** [FLEET-REVOKE-1] set: the gateway is refused on every path. */
  revokedAt: number | null;
}

export interface CertificateIdentity {
  gateway: string;
  site: string;
  fingerprint: string;
  notAfter: number;
  retiredReason: 'rotated' | 'revoked' | null;
  revokedAt: number | null;
}

export interface CertificateRecord {
  fingerprint: string;
  gateway: string;
  serial: string;
  notBefore: number;
  notAfter: number;
  issuedAt: number;
  retiredAt: number | null;
  retiredReason: 'rotated' | 'revoked' | null;
}

export interface RegisteredDevice {
  gateway: string;
  id: string;
  kind: string | null;
  /** Edge broker format `scrypt$N$salt$hash` [FLEET-DEVICES-1]. */
  passwordHash: string;
  createdAt: number;
  updatedAt: number;
}

/** What presence needs beyond `GatewayRecord`: cloud-clock times and revocation. */
export interface PresenceRow {
  id: string;
  site: string;
  name: string | null;
  state: 'unknown' | 'online' | 'offline';
  bdSeq: number | null;
  onlineSince: number | null;
  /** Cloud clock: last birth/death/heartbeat applied (gateway_presence.updated_at). */
  lastHeardAt: number | null;
  lastSeen: number | null;
  heartbeat: {
    at: number;
    devicesOnline: string[];
    outbox: { depth: number; oldestAgeMs: number };
  } | null;
  /** Cloud clock: when an ack watermark of this gateway last advanced. */
  lastProgressAt: number | null;
  revokedAt: number | null;
}

export interface DeviceRow {
  id: string;
  kind: string | null;
  registered: boolean;
  online: boolean | null;
  presenceReason: string | null;
  presenceAt: number | null;
  lastSeen: number | null;
}

/** Random secrets handed out once (never stored in clear). */
export function generateSecret(): string {
  return randomBytes(24).toString('base64url');
}

/**
 * A device password hashed in the edge broker's own format (edge/src/broker/auth.ts:
 * scrypt N, r=8, p=1, 32-byte key), so the edge loads it from its config unchanged
 * [FLEET-DEVICES-1].
 */
export async function hashEdgeDevicePassword(password: string, N = 16384): Promise<string> {
  const salt = randomBytes(16);
  const key = await new Promise<Buffer>((resolve, reject) =>
    scrypt(password, salt, 32, { N, r: 8, p: 1, maxmem: 256 * N * 8 }, (err, k) =>
      err ? reject(err) : resolve(k),
    ),
  );
  return `scrypt$${N}$${salt.toString('base64')}$${key.toString('base64')}`;
}

export class SqlProvisioning {
  constructor(private readonly sql: Sql) {}

  /** The broker's password path: id, site, hash and revocation in one read. */
  async credentials(id: string): Promise<BrokerCredentials | undefined> {
    const r = await this.sql.query<{
      id: string;
      site: string;
      password_hash: string | null;
      revoked_at: number | null;
    }>('SELECT id, site, password_hash, revoked_at FROM gateways WHERE id = $1', [id]);
    const row = r.rows[0];
    return row && { id: row.id, site: row.site, passwordHash: row.password_hash, revokedAt: row.revoked_at };
  }

  /** True when the password was rotated through the API (the config seed then keeps out). */
  async passwordRotated(id: string): Promise<boolean> {
    const r = await this.sql.query<{ password_rotated_at: number | null }>(
      'SELECT password_rotated_at FROM gateways WHERE id = $1',
      [id],
    );
    return r.rows[0]?.password_rotated_at != null;
  }

  /** The broker's certificate path: the record of a presented certificate [FLEET-CERT-1]. */
  async certificate(fingerprint: string): Promise<CertificateIdentity | undefined> {
    const r = await this.sql.query<{
      gateway: string;
      site: string;
      fingerprint: string;
      not_after: number;
      retired_reason: 'rotated' | 'revoked' | null;
      revoked_at: number | null;
    }>(
      `SELECT c.gateway, g.site, c.fingerprint, c.not_after, c.retired_reason, g.revoked_at
       FROM gateway_certs c JOIN gateways g ON g.id = c.gateway WHERE c.fingerprint = $1`,
      [fingerprint],
    );
    const row = r.rows[0];
    return (
      row && {
        gateway: row.gateway,
        site: row.site,
        fingerprint: row.fingerprint,
        notAfter: row.not_after,
        retiredReason: row.retired_reason,
        revokedAt: row.revoked_at,
      }
    );
  }

  /** The gateway, or CLOUD_ERR_NOT_FOUND; CLOUD_ERR_GATEWAY_REVOKED when `live` and revoked. */
  async mustExist(id: string, opts: { live: boolean }): Promise<BrokerCredentials> {
    const g = await this.credentials(id);
    if (!g) throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'gateway', id });
    if (opts.live && g.revokedAt !== null) {
      throw cloudError('CLOUD_ERR_GATEWAY_REVOKED', {
        gateway: id,
        reason: 'it cannot be given new credentials',
      });
    }
    return g;
  }

  /**
   * [FLEET-ROTATE-1] The new certificate becomes the only current one: every earlier one is
   * retired as `rotated` in the same transaction, so it is refused at its next connect.
   */
  async recordCertificate(gateway: string, c: IssuedCertificate, now: number): Promise<void> {
    await this.sql.transaction(async (tx) => {
      await lockLiveGateway(tx, gateway);
      await tx.query(
        `UPDATE gateway_certs SET retired_at = $2, retired_reason = 'rotated'
         WHERE gateway = $1 AND retired_at IS NULL`,
        [gateway, now],
      );
      await tx.query(
        `INSERT INTO gateway_certs (fingerprint, gateway, serial, not_before, not_after, issued_at)
         VALUES ($1, $2, $3, $4, $5, $6)`,
        [c.fingerprint, gateway, c.serial, c.notBefore, c.notAfter, now],
      );
    });
  }

  /** [FLEET-ROTATE-2] Replaces the password hash; the old password fails at its next connect. */
  async rotatePassword(gateway: string, passwordHash: string, now: number): Promise<void> {
    await this.sql.transaction(async (tx) => {
      await lockLiveGateway(tx, gateway);
      await tx.query('UPDATE gateways SET password_hash = $2, password_rotated_at = $3 WHERE id = $1', [
        gateway,
        passwordHash,
        now,
      ]);
    });
  }

  /**
   * [FLEET-REVOKE-1] Marks the gateway revoked and retires its certificates. Idempotent:
   * a second revoke keeps the first time and reason. Returns the revocation time.
   */
  async revoke(gateway: string, reason: string, now: number): Promise<number> {
    return this.sql.transaction(async (tx) => {
      const r = await tx.query<{ revoked_at: number | null }>(
        'SELECT revoked_at FROM gateways WHERE id = $1 FOR UPDATE',
        [gateway],
      );
      if (!r.rows[0]) throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'gateway', id: gateway });
      if (r.rows[0].revoked_at !== null) return r.rows[0].revoked_at;
      await tx.query('UPDATE gateways SET revoked_at = $2, revoked_reason = $3 WHERE id = $1', [
        gateway,
        now,
        reason,
      ]);
      await tx.query(
        `UPDATE gateway_certs SET retired_at = $2, retired_reason = 'revoked'
         WHERE gateway = $1 AND retired_at IS NULL`,
        [gateway, now],
      );
      // [PRESENCE-HIST-1] the revocation is history in the transaction that commits it.
      await recordPresenceTransition(tx, {
        gateway,
        at: now,
        state: 'revoked',
        reason,
        bdSeq: null,
        source: 'revoke',
      });
      return now;
    });
  }

  async revocation(gateway: string): Promise<{ revokedAt: number; reason: string | null } | null> {
    const r = await this.sql.query<{ revoked_at: number | null; revoked_reason: string | null }>(
      'SELECT revoked_at, revoked_reason FROM gateways WHERE id = $1',
      [gateway],
    );
    const row = r.rows[0];
    return row?.revoked_at != null ? { revokedAt: row.revoked_at, reason: row.revoked_reason } : null;
  }

  async listCertificates(gateway: string): Promise<CertificateRecord[]> {
    const r = await this.sql.query<{
      fingerprint: string;
      gateway: string;
      serial: string;
      not_before: number;
      not_after: number;
      issued_at: number;
      retired_at: number | null;
      retired_reason: 'rotated' | 'revoked' | null;
    }>(
      `SELECT fingerprint, gateway, serial, not_before, not_after, issued_at, retired_at, retired_reason
       FROM gateway_certs WHERE gateway = $1 ORDER BY issued_at DESC, fingerprint`,
      [gateway],
    );
    return r.rows.map((c) => ({
      fingerprint: c.fingerprint,
      gateway: c.gateway,
      serial: c.serial,
      notBefore: c.not_before,
      notAfter: c.not_after,
      issuedAt: c.issued_at,
      retiredAt: c.retired_at,
      retiredReason: c.retired_reason,
    }));
  }

  /** Registers (or re-keys) devices behind a gateway [FLEET-DEVICES-1]. */
  async upsertDevices(
    gateway: string,
    devices: readonly { id: string; kind: string | null; passwordHash: string }[],
    now: number,
  ): Promise<void> {
    await this.sql.transaction(async (tx) => {
      await lockLiveGateway(tx, gateway);
      await tx.query(
        `INSERT INTO gateway_devices (gateway, id, kind, password_hash, created_at, updated_at)
         SELECT $1, d.id, d.kind, d.password_hash, $2, $2
         FROM jsonb_to_recordset($3::jsonb) AS d(id text, kind text, password_hash text)
         ON CONFLICT (gateway, id) DO UPDATE SET kind = EXCLUDED.kind,
           password_hash = EXCLUDED.password_hash, updated_at = EXCLUDED.updated_at`,
        [
          gateway,
          now,
          JSON.stringify(devices.map((d) => ({ id: d.id, kind: d.kind, password_hash: d.passwordHash }))),
        ],
      );
    });
  }

  async removeDevice(gateway: string, id: string): Promise<boolean> {
    const r = await this.sql.query('DELETE FROM gateway_devices WHERE gateway = $1 AND id = $2', [
      gateway,
      id,
    ]);
    return r.affected > 0;
  }

  async registeredDevices(gateway: string): Promise<RegisteredDevice[]> {
    const r = await this.sql.query<{
      gateway: string;
      id: string;
      kind: string | null;
      password_hash: string;
      created_at: number;
      updated_at: number;
    }>(
      `SELECT gateway, id, kind, password_hash, created_at, updated_at FROM gateway_devices
       WHERE gateway = $1 ORDER BY id`,
      [gateway],
    );
    return r.rows.map((d) => ({
      gateway: d.gateway,
      id: d.id,
      kind: d.kind,
      passwordHash: d.password_hash,
      createdAt: d.created_at,
      updatedAt: d.updated_at,
    }));
  }

  /** Registered devices and devices the edge reported, merged, with reported presence. */
  async devicePresence(gateway: string): Promise<DeviceRow[]> {
    const r = await this.sql.query<{
      id: string;
      kind: string | null;
      registered: boolean;
      online: boolean | null;
      presence_reason: string | null;
      presence_at: number | null;
      last_seen: number | null;
    }>(
      `SELECT COALESCE(r.id, d.id) AS id, r.kind, r.id IS NOT NULL AS registered, d.online,
              d.presence_reason, d.presence_at, d.last_seen
       FROM (SELECT id, kind FROM gateway_devices WHERE gateway = $1) r
       FULL OUTER JOIN (SELECT id, online, presence_reason, presence_at, last_seen FROM devices
                        WHERE gateway = $1) d ON d.id = r.id
       ORDER BY 1`,
      [gateway],
    );
    return r.rows.map((d) => ({
      id: d.id,
      kind: d.kind,
      registered: d.registered,
      online: d.online,
      presenceReason: d.presence_reason,
      presenceAt: d.presence_at,
      lastSeen: d.last_seen,
    }));
  }

  /** Rows for presence (one gateway, or all). */
  presenceRows(gateway?: string): Promise<PresenceRow[]> {
    return readPresenceRows(this.sql, gateway, false);
  }
}

async function lockLiveGateway(tx: SqlQueryable, gateway: string): Promise<void> {
  const r = await tx.query<{ revoked_at: number | null }>(
    'SELECT revoked_at FROM gateways WHERE id = $1 FOR UPDATE',
    [gateway],
  );
  if (!r.rows[0]) throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'gateway', id: gateway });
  if (r.rows[0].revoked_at !== null) {
    throw cloudError('CLOUD_ERR_GATEWAY_REVOKED', { gateway, reason: 'it cannot be given new credentials' });
  }
}

const LAST_HISTORY_COLUMNS = ', h.state AS last_state, h.reason AS last_reason';
const LAST_HISTORY_JOIN = `LEFT JOIN LATERAL (SELECT x.state, x.reason FROM gateway_presence_history x
                        WHERE x.gateway = g.id ORDER BY x.id DESC LIMIT 1) h ON true`;

/** A presence row with the newest presence-history row of its gateway. */
export interface PresenceRowWithHistory extends PresenceRow {
  lastState: string | null;
  lastReason: string | null;
}

/**
 * The one read of presence rows (one gateway, or all), on any queryable; with
 * `withLastHistory` each row also carries its gateway's newest history row (the presence
 * sweep compares the judgement with it, docs/fleet-provisioning.md).
 */
export function readPresenceRows(
  q: SqlQueryable,
  gateway: string | undefined,
  withLastHistory: false,
): Promise<PresenceRow[]>;
export function readPresenceRows(
  q: SqlQueryable,
  gateway: string | undefined,
  withLastHistory: true,
): Promise<PresenceRowWithHistory[]>;
export async function readPresenceRows(
  q: SqlQueryable,
  gateway: string | undefined,
  withLastHistory: boolean,
): Promise<PresenceRow[] | PresenceRowWithHistory[]> {
  const r = await q.query<{
    id: string;
    site: string;
    name: string | null;
    state: PresenceRow['state'] | null;
    bd_seq: number | null;
    online_since: number | null;
    updated_at: number | null;
    last_seen: number | null;
    last_heartbeat: PresenceRow['heartbeat'];
    last_progress_at: number | null;
    revoked_at: number | null;
    last_state?: string | null;
    last_reason?: string | null;
  }>(
    `SELECT g.id, g.site, g.name, p.state, p.bd_seq, p.online_since, p.updated_at, p.last_seen,
            p.last_heartbeat, g.revoked_at,
            (SELECT max(w.updated_at) FROM lane_watermarks w WHERE w.gateway = g.id) AS last_progress_at
            ${withLastHistory ? LAST_HISTORY_COLUMNS : ''}
     FROM gateways g LEFT JOIN gateway_presence p ON p.gateway = g.id
     ${withLastHistory ? LAST_HISTORY_JOIN : ''}
     WHERE ($1::text IS NULL OR g.id = $1) ORDER BY g.id`,
    [gateway ?? null],
  );
  return r.rows.map((p) => {
    const row: PresenceRow = {
      id: p.id,
      site: p.site,
      name: p.name,
      state: p.state ?? 'unknown',
      bdSeq: p.bd_seq,
      onlineSince: p.online_since,
      lastHeardAt: p.updated_at,
      lastSeen: p.last_seen,
      heartbeat: p.last_heartbeat,
      lastProgressAt: p.last_progress_at,
      revokedAt: p.revoked_at,
    };
    return withLastHistory
      ? { ...row, lastState: p.last_state ?? null, lastReason: p.last_reason ?? null }
      : row;
  });
}
