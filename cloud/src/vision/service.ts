import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { vision } from '@storelink/protocols';
import type { Logger } from 'pino';
import type { SendCommandInput } from '../commands/service.ts';
import { cloudError } from '../errors.ts';
import type { Sql, SqlQueryable } from '../store/sql.ts';
import type { CloudStore, CommandRecord } from '../store/store.ts';
import type { Embedder } from './embedder.ts';

/**
 * The cloud side of the face gallery (docs/vision.md):
 * - enrolment from the member's own photo, only with a recorded separate consent
 *   [VISION-CONSENT-2]; the embedding is kept sealed under the cloud's gallery key;
 * - each gateway receives only the members enrolled for its site, sealed under its own
 *   key [VISION-GALLERY-1][VISION-GALLERY-2], with a per-gateway version;
 * - withdrawal or erasure removes the member from every gateway that had it; removal
 *   is confirmed per gateway by the command result and by the heartbeat's gallery
 *   version [VISION-GALLERY-4].
 */

const CLOUD_SCOPE = '*cloud*';

/** The gateway's gallery key: HMAC(master, gateway). The edge is provisioned with it. */
export function galleryKeyFor(master: Buffer, gateway: string): Buffer {
  return createHmac('sha256', master).update(`storelink-gallery-key/${gateway}`).digest();
}

/** The master gallery key from `file` (32 random bytes, base64), created on first use (mode 0600). */
export function loadOrCreateVisionKey(file: string): Buffer {
  if (existsSync(file)) return Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
  const key = randomBytes(32);
  writeFileSync(file, `${key.toString('base64')}\n`, { mode: 0o600 });
  return key;
}

export interface EnrolInput {
  memberId: string;
  photo: Buffer;
  /** Sites whose gateways may recognise the member. */
  sites: string[];
  /** The separate consent for face recognition: when, and the notice text shown. */
  consent: { at: number; text: string };
}

export interface GatewayRemoval {
  gateway: string;
  version: number;
  commandId: string | null;
  commandStatus: string | null;
  /** The gateway's heartbeat reports a gallery version >= this removal's. */
  heartbeatConfirmed: boolean;
  confirmed: boolean;
}

export interface VisionGalleryOptions {
  sql: Sql;
  store: CloudStore;
  sendCommand: (c: SendCommandInput) => Promise<CommandRecord>;
  embedder: Embedder;
  masterKey: Buffer;
  now: () => number;
  logger?: Logger;
}

export class VisionGallery {
  constructor(private readonly o: VisionGalleryOptions) {}

  /** Subscribes to the members service's erasure hook [MEMBER-ERASE-2]. */
  subscribeErasures(members: {
    onErase(fn: (e: { memberId: string; aliases: string[]; faceIds: string[] }) => Promise<void>): unknown;
  }): void {
    members.onErase(async (e) => {
      for (const id of new Set([e.memberId, ...e.aliases, ...e.faceIds])) {
        if (await this.isEnrolled(id)) await this.remove(id, 'erased');
      }
    });
  }

  async isEnrolled(memberId: string): Promise<boolean> {
    const r = await this.o.sql.query('SELECT 1 FROM vision_members WHERE member_id = $1', [memberId]);
    return r.rows.length > 0;
  }

  async enrol(
    input: EnrolInput,
  ): Promise<{ memberId: string; gateways: Array<{ gateway: string; version: number }> }> {
    if (!input.consent.text.trim()) {
      throw cloudError('CLOUD_ERR_VISION_CONSENT', { memberId: input.memberId });
    }
    const embedding = await this.o.embedder.embedPhoto(input.photo);
    const at = this.o.now();
    const sealed = vision.sealEmbedding(this.o.masterKey, CLOUD_SCOPE, input.memberId, embedding);
    await this.o.sql.query(
      `INSERT INTO vision_members (member_id, sealed, sites, consent_at, consent_text, enrolled_at)
       VALUES ($1, $2, $3::jsonb, $4, $5, $6)
       ON CONFLICT (member_id) DO UPDATE SET sealed = $2, sites = $3::jsonb, consent_at = $4,
         consent_text = $5, enrolled_at = $6`,
      [input.memberId, sealed, JSON.stringify(input.sites), input.consent.at, input.consent.text, at],
    );
    const gateways = (await this.o.store.listGateways()).filter((g) => input.sites.includes(g.site));
    const out: Array<{ gateway: string; version: number }> = [];
    for (const g of gateways) {
      const version = await this.nextVersion(g.id, input.memberId, 'upsert', null);
      const key = galleryKeyFor(this.o.masterKey, g.id);
      const cmd = await this.send(g.id, vision.VISION_GALLERY_UPSERT, {
        version,
        entries: [
          { memberId: input.memberId, sealed: vision.sealEmbedding(key, g.id, input.memberId, embedding) },
        ],
      } satisfies vision.GalleryUpsert);
      await this.setCommand(g.id, version, input.memberId, cmd);
      out.push({ gateway: g.id, version });
    }
    this.o.logger?.info({ memberId: input.memberId, gateways: out.length }, 'face enrolled');
    return { memberId: input.memberId, gateways: out };
  }

  /**
   * Consent withdrawn or erasure: the cloud's copy is deleted now; every gateway that
   * ever received the member gets a removal (sent even if the gateway is offline: the
   * command is redelivered at its next birth [CMD-REDELIVER-1]).
   */
  async remove(memberId: string, reason: 'withdrawn' | 'erased'): Promise<GatewayRemoval[]> {
    await this.o.sql.query('DELETE FROM vision_members WHERE member_id = $1', [memberId]);
    const had = await this.o.sql.query<{ gateway: string }>(
      `SELECT DISTINCT gateway FROM vision_gallery_ops WHERE member_id = $1 AND op = 'upsert'`,
      [memberId],
    );
    for (const { gateway } of had.rows) {
      const version = await this.nextVersion(gateway, memberId, 'remove', reason);
      const cmd = await this.send(gateway, vision.VISION_GALLERY_REMOVE, {
        version,
        memberIds: [memberId],
        reason,
      } satisfies vision.GalleryRemove);
      await this.setCommand(gateway, version, memberId, cmd);
    }
    this.o.logger?.info({ memberId, reason, gateways: had.rows.length }, 'face removal sent to gateways');
    return this.removalStatus(memberId);
  }

  /**
   * Sends a gateway every member enrolled for its site, 64 per upsert (a replaced or
   * wiped gateway, or one added to a site after the enrolments). Each chunk is a new
   * version; members erased since stay absent (they are no longer in vision_members).
   */
  async resync(gateway: string): Promise<{ gateway: string; members: number; versions: number[] }> {
    const gw = await this.o.store.getGateway(gateway);
    if (!gw) throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'gateway', id: gateway });
    const rows = await this.o.sql.query<{ member_id: string; sealed: string }>(
      `SELECT member_id, sealed FROM vision_members WHERE sites @> $1::jsonb ORDER BY member_id`,
      [JSON.stringify([gw.site])],
    );
    const key = galleryKeyFor(this.o.masterKey, gateway);
    const versions: number[] = [];
    for (let i = 0; i < rows.rows.length; i += vision.GALLERY_UPSERT_MAX_ENTRIES) {
      const chunk = rows.rows.slice(i, i + vision.GALLERY_UPSERT_MAX_ENTRIES);
      const entries = chunk.map((r) => ({
        memberId: r.member_id,
        sealed: vision.sealEmbedding(
          key,
          gateway,
          r.member_id,
          vision.openEmbedding(this.o.masterKey, CLOUD_SCOPE, r.member_id, r.sealed),
        ),
      }));
      let version = 0;
      for (const e of entries) version = await this.nextVersion(gateway, e.memberId, 'upsert', 'resync');
      const cmd = await this.send(gateway, vision.VISION_GALLERY_UPSERT, { version, entries });
      for (const e of entries) await this.setCommandForMember(gateway, e.memberId, version, cmd);
      versions.push(version);
    }
    this.o.logger?.info({ gateway, members: rows.rows.length }, 'gallery resync sent');
    return { gateway, members: rows.rows.length, versions };
  }

  /** Per gateway: has the latest removal of this member been confirmed? */
  async removalStatus(memberId: string): Promise<GatewayRemoval[]> {
    const r = await this.o.sql.query<{ gateway: string; version: number; command_id: string | null }>(
      `SELECT gateway, MAX(version) AS version, MAX(command_id) AS command_id FROM vision_gallery_ops
        WHERE member_id = $1 AND op = 'remove' GROUP BY gateway ORDER BY gateway`,
      [memberId],
    );
    const out: GatewayRemoval[] = [];
    for (const row of r.rows) {
      const version = Number(row.version);
      const cmd = row.command_id ? await this.o.store.getCommand(row.command_id) : undefined;
      const gw = await this.o.store.getGateway(row.gateway);
      const hb = gw?.presence.heartbeat as { vision?: { galleryVersion?: number } } | null | undefined;
      const heartbeatConfirmed = (hb?.vision?.galleryVersion ?? 0) >= version;
      out.push({
        gateway: row.gateway,
        version,
        commandId: row.command_id,
        commandStatus: cmd?.status ?? null,
        heartbeatConfirmed,
        confirmed: cmd?.status === 'ok' || heartbeatConfirmed,
      });
    }
    return out;
  }

  private async send(gateway: string, type: string, payload: object): Promise<CommandRecord | null> {
    try {
      // A day to live: a gateway offline for less than that still gets it at its next birth.
      return await this.o.sendCommand({ gateway, type, payload, ttlMs: 24 * 3600 * 1000 });
    } catch (e) {
      // Stored before publish: a gateway that is offline gets it on redelivery.
      this.o.logger?.warn({ gateway, type, err: (e as Error).message }, 'gallery command not published now');
      const id = (e as { id?: string }).id;
      return id ? ((await this.o.store.getCommand(id)) ?? null) : null;
    }
  }

  private async nextVersion(
    gateway: string,
    memberId: string,
    op: 'upsert' | 'remove',
    reason: string | null,
  ): Promise<number> {
    return this.o.sql.transaction(async (tx: SqlQueryable) => {
      const r = await tx.query<{ version: number }>(
        `INSERT INTO vision_gateway_gallery (gateway, version) VALUES ($1, 1)
         ON CONFLICT (gateway) DO UPDATE SET version = vision_gateway_gallery.version + 1
         RETURNING version`,
        [gateway],
      );
      const version = Number(r.rows[0]!.version);
      await tx.query(
        `INSERT INTO vision_gallery_ops (gateway, version, member_id, op, reason, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)`,
        [gateway, version, memberId, op, reason, this.o.now()],
      );
      return version;
    });
  }

  /** Resync: each member's op row got its own version; all of a chunk share the chunk's command. */
  private async setCommandForMember(
    gateway: string,
    memberId: string,
    chunkVersion: number,
    cmd: CommandRecord | null,
  ) {
    if (!cmd) return;
    await this.o.sql.query(
      `UPDATE vision_gallery_ops SET command_id = $4 WHERE gateway = $1 AND member_id = $2 AND op = 'upsert'
         AND version <= $3 AND command_id IS NULL`,
      [gateway, memberId, chunkVersion, cmd.id],
    );
  }

  private async setCommand(gateway: string, version: number, memberId: string, cmd: CommandRecord | null) {
    if (!cmd) return;
    await this.o.sql.query(
      'UPDATE vision_gallery_ops SET command_id = $4 WHERE gateway = $1 AND version = $2 AND member_id = $3',
      [gateway, version, memberId, cmd.id],
    );
  }
}
