import { createHash } from 'node:crypto';
import { fleet, newId } from '@storelink/protocols';
import type { Logger } from 'pino';
import { cloudError } from '../errors.ts';
import type { CloudMetrics } from '../metrics.ts';
import type { Sql, SqlQueryable } from '../store/sql.ts';
import type { ShadowDoc, ShadowOutcome, ShadowRecord, ShadowService } from './shadows.ts';

/**
 * Staged rollouts of configuration and firmware over shadows
 * (docs/fleet-shadows-rollouts.md). A rollout is a change of desired shadows made wave by
 * wave: each target's shadow gets the change (so an offline gateway gets it when it
 * returns [SHADOW-REDELIVER-1]), the wave completes when `successThreshold` of its
 * targets applied it [ROLLOUT-WAVE-1], the rollout halts when `errorThreshold` of a
 * wave failed and then rolls back by default [ROLLOUT-HALT-1], and a rollback puts the
 * previous values (or firmware) back on every target already changed [ROLLOUT-BACK-1].
 */

export type RolloutKind = 'config' | 'firmware';
export type RolloutScope = 'gateway' | 'device';
export const ROLLOUT_STATES = [
  'running',
  'awaiting_approval',
  'paused',
  'halted',
  'completed',
  'rolling_back',
  'rolled_back',
  'cancelled',
] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];
export const TARGET_STATES = [
  'pending',
  'sent',
  'succeeded',
  'failed',
  'skipped',
  'cancelled',
  'rolling_back',
  'rolled_back',
  'rollback_failed',
] as const;
export type TargetState = (typeof TARGET_STATES)[number];

export interface WaveSpec {
  /** Gateways of this wave (with `sites`: either matches). */
  gateways?: string[];
  sites?: string[];
  /** At most this percentage of all the rollout's candidates, picked in a stable order. */
  percent?: number;
  /** Wait for POST .../approve before this wave starts [ROLLOUT-APPROVE-1]. */
  approval?: boolean;
}

export interface RolloutSpec {
  name?: string;
  kind: RolloutKind;
  /** config only: the gateways' own shadows or their devices' (firmware: always devices). */
  scope?: RolloutScope;
  /** config: the merge patch applied to each target's desired shadow. */
  config?: ShadowDoc;
  /** firmware: a version of the firmware catalogue. */
  firmware?: { version: string };
  /** device scope: only these device ids (default: every device the cloud has seen). */
  devices?: string[];
  waves: WaveSpec[];
  /** Fraction of a wave that must succeed before the next starts (default 1). */
  successThreshold?: number;
  /** Fraction of a wave whose failure halts the rollout (default 0.2; 0 = any failure). */
  errorThreshold?: number;
  /** Roll back automatically on halt (default true). */
  autoRollback?: boolean;
}

export type Counts = Record<TargetState, number>;

export interface RolloutRecord {
  id: string;
  name: string;
  kind: RolloutKind;
  scope: RolloutScope;
  change: ShadowDoc;
  waves: WaveSpec[];
  successThreshold: number;
  errorThreshold: number;
  autoRollback: boolean;
  state: RolloutState;
  currentWave: number;
  reason: string | null;
  createdAt: number;
  updatedAt: number;
  counts: Counts;
  waveCounts: Array<{ wave: number; total: number; counts: Counts }>;
}

export interface TargetRecord {
  gateway: string;
  device: string | null;
  wave: number;
  state: TargetState;
  version: number | null;
  previous: ShadowDoc | null;
  rollbackVersion: number | null;
  code: string | null;
  message: string | null;
  updatedAt: number;
}

export interface FirmwareEntry extends fleet.FirmwareImage {
  createdAt: number;
}

export interface RolloutServiceOptions {
  sql: Sql;
  shadows: ShadowService;
  now: () => number;
  logger?: Logger;
  metrics?: CloudMetrics;
}

interface RolloutRow {
  id: string;
  name: string;
  kind: RolloutKind;
  scope: RolloutScope;
  change: ShadowDoc;
  waves: WaveSpec[];
  success_threshold: number;
  error_threshold: number;
  auto_rollback: boolean;
  state: RolloutState;
  current_wave: number;
  reason: string | null;
  created_at: number;
  updated_at: number;
}

interface TargetRow {
  rollout_id: string;
  gateway: string;
  device: string;
  wave: number;
  state: TargetState;
  version: number | null;
  previous: ShadowDoc | null;
  rollback_version: number | null;
  code: string | null;
  message: string | null;
  /** The target answered the rollout's version (applied or failed). */
  answered: boolean;
  updated_at: number;
}

interface Candidate {
  gateway: string;
  site: string;
  device: string;
}

const GW = '';
const ACTIVE: readonly RolloutState[] = ['running', 'rolling_back'];
const zeroCounts = (): Counts => Object.fromEntries(TARGET_STATES.map((s) => [s, 0])) as Counts;
const stableOrder = (c: Candidate) => createHash('sha256').update(`${c.gateway}/${c.device}`).digest('hex');

export class RolloutService {
  private readonly log: Logger | undefined;
  private readonly chains = new Map<string, Promise<unknown>>();

  constructor(private readonly o: RolloutServiceOptions) {
    this.log = o.logger?.child({ component: 'rollouts' });
    o.shadows.onOutcome((tx, outcome) => this.onOutcome(tx, outcome));
  }

  // ---------- firmware catalogue ----------

  async putFirmware(image: fleet.FirmwareImage): Promise<FirmwareEntry> {
    const now = this.o.now();
    await this.o.sql.query(
      `INSERT INTO fleet_firmware (version, url, sha256, size, created_at) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (version) DO UPDATE SET url = $2, sha256 = $3, size = $4`,
      [image.version, image.url, image.sha256, image.size, now],
    );
    return (await this.firmware(image.version))!;
  }

  async firmware(version: string): Promise<FirmwareEntry | undefined> {
    const r = await this.o.sql.query<{
      version: string;
      url: string;
      sha256: string;
      size: number;
      created_at: number;
    }>('SELECT * FROM fleet_firmware WHERE version = $1', [version]);
    const row = r.rows[0];
    return row
      ? {
          version: row.version,
          url: row.url,
          sha256: row.sha256,
          size: Number(row.size),
          createdAt: Number(row.created_at),
        }
      : undefined;
  }

  async listFirmware(): Promise<FirmwareEntry[]> {
    const r = await this.o.sql.query<{ version: string }>(
      'SELECT version FROM fleet_firmware ORDER BY created_at, version',
    );
    const out: FirmwareEntry[] = [];
    for (const row of r.rows) out.push((await this.firmware(row.version))!);
    return out;
  }

  // ---------- create and read ----------

  async create(spec: RolloutSpec): Promise<RolloutRecord> {
    const scope: RolloutScope = spec.kind === 'firmware' ? 'device' : (spec.scope ?? 'gateway');
    const change = await this.changeOf(spec);
    const waves = await this.assignWaves(spec, scope);
    const total = waves.reduce((n, w) => n + w.length, 0);
    if (total === 0)
      throw cloudError('CLOUD_ERR_ROLLOUT_SPEC', { reason: 'no gateway or device matches any wave' });
    const now = this.o.now();
    const id = newId(now);
    const first = spec.waves[0]?.approval === true ? 'awaiting_approval' : 'running';
    await this.o.sql.transaction(async (tx) => {
      await tx.query(
        `INSERT INTO fleet_rollouts (id, name, kind, scope, change, waves, success_threshold, error_threshold,
           auto_rollback, state, current_wave, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, $11)`,
        [
          id,
          spec.name ?? `${spec.kind} ${id}`,
          spec.kind,
          scope,
          JSON.stringify(change),
          JSON.stringify(spec.waves),
          spec.successThreshold ?? 1,
          spec.errorThreshold ?? 0.2,
          spec.autoRollback ?? true,
          first,
          now,
        ],
      );
      for (const [wave, targets] of waves.entries()) {
        for (const t of targets) {
          await tx.query(
            `INSERT INTO fleet_rollout_targets (rollout_id, gateway, device, wave, state, updated_at)
             VALUES ($1, $2, $3, $4, 'pending', $5)`,
            [id, t.gateway, t.device, wave, now],
          );
        }
      }
    });
    this.log?.info(
      { id, kind: spec.kind, targets: total, waves: waves.map((w) => w.length) },
      'rollout created',
    );
    await this.step(id);
    return (await this.get(id))!;
  }

  async get(id: string): Promise<RolloutRecord | undefined> {
    const r = (await this.o.sql.query<RolloutRow>('SELECT * FROM fleet_rollouts WHERE id = $1', [id]))
      .rows[0];
    if (!r) return undefined;
    const c = await this.o.sql.query<{ wave: number; state: TargetState; n: number }>(
      `SELECT wave, state, count(*)::int AS n FROM fleet_rollout_targets WHERE rollout_id = $1 GROUP BY wave, state`,
      [id],
    );
    const counts = zeroCounts();
    const waveCounts = r.waves.map((_, wave) => ({ wave, total: 0, counts: zeroCounts() }));
    for (const row of c.rows) {
      counts[row.state] += Number(row.n);
      const w = waveCounts[row.wave];
      if (w) {
        w.counts[row.state] += Number(row.n);
        w.total += Number(row.n);
      }
    }
    return {
      id: r.id,
      name: r.name,
      kind: r.kind,
      scope: r.scope,
      change: r.change,
      waves: r.waves,
      successThreshold: Number(r.success_threshold),
      errorThreshold: Number(r.error_threshold),
      autoRollback: r.auto_rollback,
      state: r.state,
      currentWave: r.current_wave,
      reason: r.reason,
      createdAt: Number(r.created_at),
      updatedAt: Number(r.updated_at),
      counts,
      waveCounts,
    };
  }

  async list(limit = 100): Promise<RolloutRecord[]> {
    const r = await this.o.sql.query<{ id: string }>(
      'SELECT id FROM fleet_rollouts ORDER BY id DESC LIMIT $1',
      [limit],
    );
    const out: RolloutRecord[] = [];
    for (const row of r.rows) out.push((await this.get(row.id))!);
    return out;
  }

  async targets(id: string): Promise<TargetRecord[]> {
    await this.mustGet(id);
    const r = await this.o.sql.query<TargetRow>(
      'SELECT * FROM fleet_rollout_targets WHERE rollout_id = $1 ORDER BY wave, gateway, device',
      [id],
    );
    return r.rows.map((t) => ({
      gateway: t.gateway,
      device: t.device === GW ? null : t.device,
      wave: t.wave,
      state: t.state,
      version: t.version,
      previous: t.previous,
      rollbackVersion: t.rollback_version,
      code: t.code,
      message: t.message,
      updatedAt: Number(t.updated_at),
    }));
  }

  // ---------- operator actions ----------

  /** Starts the wave waiting for approval [ROLLOUT-APPROVE-1]. */
  approve(id: string): Promise<RolloutRecord> {
    return this.transition(id, 'approve', ['awaiting_approval'], 'running');
  }

  pause(id: string): Promise<RolloutRecord> {
    return this.transition(id, 'pause', ['running', 'awaiting_approval'], 'paused');
  }

  /**
   * Continues a paused or halted rollout. Resuming a halted one accepts its failures:
   * the failed targets of the current wave become `skipped` and the thresholds are
   * judged on the rest [ROLLOUT-HALT-1].
   */
  async resume(id: string): Promise<RolloutRecord> {
    return this.serial(id, async () => {
      const r = await this.mustGet(id);
      if (r.state !== 'paused' && r.state !== 'halted')
        throw cloudError('CLOUD_ERR_ROLLOUT_STATE', { id, action: 'resume', state: r.state });
      const now = this.o.now();
      if (r.state === 'halted') {
        await this.o.sql.query(
          `UPDATE fleet_rollout_targets SET state = 'skipped', updated_at = $3
           WHERE rollout_id = $1 AND wave = $2 AND state = 'failed'`,
          [id, r.currentWave, now],
        );
      }
      await this.setState(id, 'running', null);
      await this.advance(id);
      return (await this.get(id))!;
    });
  }

  /** Rolls back every target already changed [ROLLOUT-BACK-1]; the rest is cancelled. */
  async rollback(id: string, reason = 'rollback requested'): Promise<RolloutRecord> {
    return this.serial(id, async () => {
      const r = await this.mustGet(id);
      if (r.state === 'rolling_back' || r.state === 'rolled_back' || r.state === 'cancelled')
        throw cloudError('CLOUD_ERR_ROLLOUT_STATE', { id, action: 'roll back', state: r.state });
      await this.startRollback(r, reason);
      return (await this.get(id))!;
    });
  }

  /** Stops a rollout where it is: targets not yet sent are cancelled, changed ones stay. */
  async cancel(id: string): Promise<RolloutRecord> {
    return this.serial(id, async () => {
      const r = await this.mustGet(id);
      if (
        r.state === 'completed' ||
        r.state === 'rolled_back' ||
        r.state === 'cancelled' ||
        r.state === 'rolling_back'
      )
        throw cloudError('CLOUD_ERR_ROLLOUT_STATE', { id, action: 'cancel', state: r.state });
      await this.cancelPending(id);
      await this.setState(id, 'cancelled', 'cancelled by the operator');
      return (await this.get(id))!;
    });
  }

  // ---------- the engine ----------

  /** Moves every active rollout forward (timer and tests). */
  async tick(): Promise<void> {
    const r = await this.o.sql.query<{ id: string }>(
      `SELECT id FROM fleet_rollouts WHERE state IN ('running', 'rolling_back') ORDER BY id`,
    );
    for (const row of r.rows) await this.step(row.id);
  }

  /** Moves one rollout forward as far as the targets' outcomes allow. */
  step(id: string): Promise<void> {
    return this.serial(id, () => this.advance(id));
  }

  private async advance(id: string): Promise<void> {
    for (;;) {
      await this.syncWithShadows(id);
      const r = await this.mustGet(id);
      if (r.state === 'rolling_back') {
        await this.rollbackAnswered(r);
        return this.finishRollback((await this.get(id))!);
      }
      if (r.state !== 'running') return;
      await this.sendPending(r);
      const w = (await this.get(id))!.waveCounts[r.currentWave]!;
      const failed = w.counts.failed;
      const succeeded = w.counts.succeeded;
      const judged = w.total - w.counts.skipped;
      if (failed > 0 && failed >= r.errorThreshold * judged) {
        // [ROLLOUT-HALT-1]
        const reason = `wave ${r.currentWave}: ${failed} of ${judged} target(s) failed (error threshold ${r.errorThreshold})`;
        this.log?.warn({ id, wave: r.currentWave, failed, judged }, `rollout halted: ${reason}`);
        this.o.metrics?.rolloutsHalted.inc();
        if (r.autoRollback) return this.startRollback(r, `halted: ${reason}`);
        await this.setState(id, 'halted', reason);
        return;
      }
      // [ROLLOUT-WAVE-1] the wave is done when enough succeeded (the rest keeps its desired).
      if (judged > 0 && succeeded < r.successThreshold * judged) return;
      const next = r.currentWave + 1;
      if (next >= r.waves.length) {
        await this.setState(id, 'completed', null);
        this.log?.info({ id }, 'rollout completed');
        return;
      }
      await this.o.sql.query('UPDATE fleet_rollouts SET current_wave = $2, updated_at = $3 WHERE id = $1', [
        id,
        next,
        this.o.now(),
      ]);
      if (r.waves[next]?.approval) {
        await this.setState(id, 'awaiting_approval', `wave ${next} waits for approval`);
        return;
      }
    }
  }

  /**
   * Safety net under the outcome path: a target whose shadow already shows the outcome of
   * its version (applied at or beyond it, or failed at it) takes that state, should its
   * report have been missed. Normally a no-op: the report updates both in one transaction.
   */
  private async syncWithShadows(id: string): Promise<void> {
    const now = this.o.now();
    await this.o.sql.query(
      `UPDATE fleet_rollout_targets t SET
         state = CASE WHEN s.reported_version >= t.version THEN 'succeeded' ELSE 'failed' END,
         code = CASE WHEN s.reported_version >= t.version THEN t.code ELSE s.error_code END,
         message = CASE WHEN s.reported_version >= t.version THEN t.message ELSE s.error_message END,
         updated_at = $2
       FROM fleet_shadows s
       WHERE t.rollout_id = $1 AND t.state = 'sent' AND s.gateway = t.gateway AND s.device = t.device
         AND (s.reported_version >= t.version OR (s.status = 'failed' AND s.desired_version = t.version))`,
      [id, now],
    );
    await this.o.sql.query(
      `UPDATE fleet_rollout_targets t SET
         state = CASE WHEN s.reported_version >= t.rollback_version THEN 'rolled_back' ELSE 'rollback_failed' END,
         code = CASE WHEN s.reported_version >= t.rollback_version THEN t.code ELSE s.error_code END,
         updated_at = $2
       FROM fleet_shadows s
       WHERE t.rollout_id = $1 AND t.state = 'rolling_back' AND t.rollback_version IS NOT NULL
         AND s.gateway = t.gateway AND s.device = t.device
         AND (s.reported_version >= t.rollback_version
              OR (s.status = 'failed' AND s.desired_version = t.rollback_version))`,
      [id, now],
    );
  }

  /** Gives each pending target of the current wave the change (a desired shadow version). */
  private async sendPending(r: RolloutRecord): Promise<void> {
    const pending = await this.o.sql.query<TargetRow>(
      `SELECT * FROM fleet_rollout_targets WHERE rollout_id = $1 AND wave = $2 AND state = 'pending'`,
      [r.id, r.currentWave],
    );
    for (const t of pending.rows) {
      const device = t.device === GW ? null : t.device;
      const before = await this.o.shadows.get(t.gateway, device);
      // The cloud's view of what the changed keys were; the edge's report refines it.
      const previous: ShadowDoc = {};
      for (const k of Object.keys(r.change)) previous[k] = before?.reported[k] ?? null;
      let s: ShadowRecord;
      let recorded = false;
      try {
        s = await this.o.shadows.change({
          gateway: t.gateway,
          device,
          patch: r.change,
          // Recorded with the desired version, before its command leaves [ROLLOUT-WAVE-1].
          withVersion: async (tx, version) => {
            await tx.query(
              `UPDATE fleet_rollout_targets SET state = 'sent', version = $4, previous = $5, updated_at = $6
               WHERE rollout_id = $1 AND gateway = $2 AND device = $3 AND state = 'pending'`,
              [r.id, t.gateway, t.device, version, JSON.stringify(previous), this.o.now()],
            );
            recorded = true;
          },
        });
      } catch (e) {
        await this.setTarget(r.id, t, 'failed', { code: codeOf(e), message: (e as Error).message });
        continue;
      }
      if (recorded) continue;
      // Desired already held the change: no new version, judge by the shadow as it is.
      const done = s.reportedVersion >= s.desiredVersion && s.status === 'in_sync';
      await this.o.sql.query(
        `UPDATE fleet_rollout_targets SET state = $4, version = $5, previous = $6, updated_at = $7
         WHERE rollout_id = $1 AND gateway = $2 AND device = $3 AND state = 'pending'`,
        [
          r.id,
          t.gateway,
          t.device,
          done ? 'succeeded' : 'sent',
          s.desiredVersion,
          JSON.stringify(previous),
          this.o.now(),
        ],
      );
    }
  }

  private async startRollback(r: RolloutRecord, reason: string): Promise<void> {
    await this.cancelPending(r.id);
    await this.setState(r.id, 'rolling_back', reason);
    const changed = await this.o.sql.query<TargetRow>(
      `SELECT * FROM fleet_rollout_targets WHERE rollout_id = $1 AND state IN ('sent', 'succeeded', 'failed')`,
      [r.id],
    );
    for (const t of changed.rows) await this.rollbackTarget(r, t);
    await this.finishRollback((await this.get(r.id))!);
  }

  /** Targets that were waiting for their own answer before being rolled back, and now have it. */
  private async rollbackAnswered(r: RolloutRecord): Promise<void> {
    const ready = await this.o.sql.query<TargetRow>(
      `SELECT * FROM fleet_rollout_targets
       WHERE rollout_id = $1 AND state = 'rolling_back' AND rollback_version IS NULL AND answered`,
      [r.id],
    );
    for (const t of ready.rows) await this.rollbackTarget(r, t);
  }

  /** Puts one target's previous values back as a new desired version [ROLLOUT-BACK-1]. */
  private async rollbackTarget(r: RolloutRecord, t: TargetRow): Promise<void> {
    const device = t.device === GW ? null : t.device;
    const previous = t.previous ?? {};
    const unknown = Object.keys(r.change).filter((k) => previous[k] === undefined || previous[k] === null);
    if (unknown.length > 0 && !t.answered && t.state === 'sent') {
      // Sent, not answered, and the cloud never saw what it had: its own answer will say
      // (the edge reports `previous`); until then the target waits in rolling_back.
      await this.o.sql.query(
        `UPDATE fleet_rollout_targets SET state = 'rolling_back', rollback_version = NULL, updated_at = $4
         WHERE rollout_id = $1 AND gateway = $2 AND device = $3`,
        [r.id, t.gateway, t.device, this.o.now()],
      );
      return;
    }
    const failed = t.state === 'failed' || t.code !== null;
    let patch: ShadowDoc;
    if (r.kind === 'firmware') {
      const prev = (previous[fleet.FIRMWARE_KEY] as { version?: string } | null | undefined)?.version;
      const image = prev ? await this.firmware(prev) : undefined;
      if (!prev && failed) {
        // Never installed and its running version unknown: stop managing firmware there.
        patch = { [fleet.FIRMWARE_KEY]: null };
      } else if (!image) {
        const why = prev
          ? `previous firmware ${prev} is not in the catalogue (PUT /api/v1/rollouts/firmware/${prev})`
          : 'the previous firmware version is unknown (the device never reported one)';
        await this.setTarget(r.id, t, 'rollback_failed', { code: 'CLOUD_ERR_ROLLOUT_SPEC', message: why });
        return;
      } else {
        patch = {
          [fleet.FIRMWARE_KEY]: {
            version: image.version,
            url: image.url,
            sha256: image.sha256,
            size: image.size,
          },
        };
      }
    } else {
      patch = Object.fromEntries(Object.keys(r.change).map((k) => [k, previous[k] ?? null]));
    }
    try {
      let recorded = false;
      const s = await this.o.shadows.change({
        gateway: t.gateway,
        device,
        patch,
        withVersion: async (tx, version) => {
          await tx.query(
            `UPDATE fleet_rollout_targets SET state = 'rolling_back', rollback_version = $4, updated_at = $5
             WHERE rollout_id = $1 AND gateway = $2 AND device = $3`,
            [r.id, t.gateway, t.device, version, this.o.now()],
          );
          recorded = true;
        },
      });
      if (recorded) return;
      const done = s.reportedVersion >= s.desiredVersion && s.status === 'in_sync';
      await this.o.sql.query(
        `UPDATE fleet_rollout_targets SET state = $4, rollback_version = $5, updated_at = $6
         WHERE rollout_id = $1 AND gateway = $2 AND device = $3`,
        [r.id, t.gateway, t.device, done ? 'rolled_back' : 'rolling_back', s.desiredVersion, this.o.now()],
      );
    } catch (e) {
      await this.setTarget(r.id, t, 'rollback_failed', { code: codeOf(e), message: (e as Error).message });
    }
  }

  private async finishRollback(r: RolloutRecord): Promise<void> {
    if (r.counts.rolling_back > 0) return;
    await this.setState(r.id, 'rolled_back', r.reason);
    this.log?.info(
      { id: r.id, rolledBack: r.counts.rolled_back, failed: r.counts.rollback_failed },
      'rollout rolled back',
    );
  }

  /**
   * Shadow outcomes, inside the ingest transaction: a target's rollout version (or its
   * rollback version) applied or failed. A later desired version applied includes the
   * rollout's change, so `<=` [SHADOW-VERSION-1].
   */
  private async onOutcome(tx: SqlQueryable, o: ShadowOutcome): Promise<void> {
    const device = o.device ?? GW;
    const rows = await tx.query<TargetRow & { change: ShadowDoc }>(
      `SELECT t.*, r.change FROM fleet_rollout_targets t JOIN fleet_rollouts r ON r.id = t.rollout_id
       WHERE t.gateway = $1 AND t.device = $2 AND t.state IN ('sent', 'rolling_back')`,
      [o.gateway, device],
    );
    const now = this.o.now();
    let touched = false;
    for (const t of rows.rows) {
      const waiting = t.state === 'rolling_back' && t.rollback_version === null && !t.answered;
      if ((t.state === 'sent' || waiting) && t.version !== null && t.version <= o.version) {
        // What the changed keys were: the edge's `previous`, else what it reports now
        // for a key it did not change (a reverted firmware runs the previous image).
        const previous: ShadowDoc = { ...(t.previous ?? {}) };
        for (const k of Object.keys(t.change)) {
          if (k in o.previous) previous[k] = o.previous[k];
          else if (o.status === 'failed' && k in o.reported) previous[k] = o.reported[k];
        }
        await tx.query(
          `UPDATE fleet_rollout_targets SET state = $4, previous = $5, code = $6, message = $7, updated_at = $8,
             answered = true
           WHERE rollout_id = $1 AND gateway = $2 AND device = $3`,
          [
            t.rollout_id,
            t.gateway,
            t.device,
            waiting ? 'rolling_back' : o.status === 'applied' ? 'succeeded' : 'failed',
            JSON.stringify(previous),
            o.code ?? null,
            o.message?.slice(0, 1024) ?? null,
            now,
          ],
        );
        this.o.metrics?.rolloutTargets.inc({ outcome: o.status === 'applied' ? 'succeeded' : 'failed' });
        touched = true;
      } else if (
        t.state === 'rolling_back' &&
        t.rollback_version !== null &&
        t.rollback_version <= o.version
      ) {
        // A successful rollback keeps the code of the failure that caused it.
        await tx.query(
          `UPDATE fleet_rollout_targets SET state = $4, updated_at = $7,
             code = CASE WHEN $4 = 'rollback_failed' THEN $5 ELSE code END,
             message = CASE WHEN $4 = 'rollback_failed' THEN $6 ELSE message END
           WHERE rollout_id = $1 AND gateway = $2 AND device = $3`,
          [
            t.rollout_id,
            t.gateway,
            t.device,
            o.status === 'applied' ? 'rolled_back' : 'rollback_failed',
            o.code ?? null,
            o.message?.slice(0, 1024) ?? null,
            now,
          ],
        );
        this.o.metrics?.rolloutTargets.inc({
          outcome: o.status === 'applied' ? 'rolled_back' : 'rollback_failed',
        });
        touched = true;
      }
    }
    // The engine reads committed rows: nudge it shortly after this transaction.
    if (touched) setTimeout(() => void this.tick().catch(() => undefined), 25).unref();
  }

  // ---------- helpers ----------

  private async changeOf(spec: RolloutSpec): Promise<ShadowDoc> {
    if (spec.kind === 'firmware') {
      if (!spec.firmware)
        throw cloudError('CLOUD_ERR_ROLLOUT_SPEC', { reason: 'a firmware rollout needs /firmware/version' });
      const image = await this.firmware(spec.firmware.version);
      if (!image)
        throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'firmware version', id: spec.firmware.version });
      return {
        [fleet.FIRMWARE_KEY]: {
          version: image.version,
          url: image.url,
          sha256: image.sha256,
          size: image.size,
        },
      };
    }
    if (!spec.config || Object.keys(spec.config).length === 0)
      throw cloudError('CLOUD_ERR_ROLLOUT_SPEC', { reason: 'a config rollout needs a non-empty /config' });
    if (fleet.FIRMWARE_KEY in spec.config)
      throw cloudError('CLOUD_ERR_ROLLOUT_SPEC', {
        reason: 'firmware goes in a firmware rollout, not in /config',
      });
    return spec.config;
  }

  private async assignWaves(spec: RolloutSpec, scope: RolloutScope): Promise<Candidate[][]> {
    const all = await this.candidates(spec, scope);
    all.sort((a, b) => (stableOrder(a) < stableOrder(b) ? -1 : 1));
    const taken = new Set<string>();
    const key = (c: Candidate) => `${c.gateway}/${c.device}`;
    return spec.waves.map((w) => {
      const gws = w.gateways ? new Set(w.gateways) : undefined;
      const sites = w.sites ? new Set(w.sites) : undefined;
      let picked = all.filter(
        (c) =>
          !taken.has(key(c)) &&
          ((!gws && !sites) || gws?.has(c.gateway) === true || sites?.has(c.site) === true),
      );
      if (w.percent !== undefined) picked = picked.slice(0, Math.ceil((w.percent / 100) * all.length));
      for (const c of picked) taken.add(key(c));
      return picked;
    });
  }

  private async candidates(spec: RolloutSpec, scope: RolloutScope): Promise<Candidate[]> {
    if (scope === 'gateway') {
      const r = await this.o.sql.query<{ id: string; site: string }>('SELECT id, site FROM gateways');
      return r.rows.map((g) => ({ gateway: g.id, site: g.site, device: GW }));
    }
    // Devices the cloud has seen behind each gateway (the gateway's own events excluded).
    const r = await this.o.sql.query<{ gateway: string; id: string; site: string }>(
      `SELECT d.gateway, d.id, g.site FROM devices d JOIN gateways g ON g.id = d.gateway WHERE d.id <> d.gateway`,
    );
    const only = spec.devices ? new Set(spec.devices) : undefined;
    return r.rows
      .filter((d) => !only || only.has(d.id))
      .map((d) => ({ gateway: d.gateway, site: d.site, device: d.id }));
  }

  private async cancelPending(id: string): Promise<void> {
    await this.o.sql.query(
      `UPDATE fleet_rollout_targets SET state = 'cancelled', updated_at = $2 WHERE rollout_id = $1 AND state = 'pending'`,
      [id, this.o.now()],
    );
  }

  private async setTarget(
    id: string,
    t: TargetRow,
    state: TargetState,
    e: { code: string; message: string },
  ): Promise<void> {
    await this.o.sql.query(
      `UPDATE fleet_rollout_targets SET state = $4, code = $5, message = $6, updated_at = $7
       WHERE rollout_id = $1 AND gateway = $2 AND device = $3`,
      [id, t.gateway, t.device, state, e.code.slice(0, 64), e.message.slice(0, 1024), this.o.now()],
    );
  }

  private async setState(id: string, state: RolloutState, reason: string | null): Promise<void> {
    await this.o.sql.query(
      'UPDATE fleet_rollouts SET state = $2, reason = $3, updated_at = $4 WHERE id = $1',
      [id, state, reason, this.o.now()],
    );
  }

  private async transition(
    id: string,
    action: string,
    from: readonly RolloutState[],
    to: RolloutState,
  ): Promise<RolloutRecord> {
    return this.serial(id, async () => {
      const r = await this.mustGet(id);
      if (!from.includes(r.state))
        throw cloudError('CLOUD_ERR_ROLLOUT_STATE', { id, action, state: r.state });
      await this.setState(id, to, null);
      if (ACTIVE.includes(to)) await this.advance(id);
      return (await this.get(id))!;
    });
  }

  private async mustGet(id: string): Promise<RolloutRecord> {
    const r = await this.get(id);
    if (!r) throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'rollout', id });
    return r;
  }

  /** One engine step or operator action at a time per rollout. */
  private serial<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.chains.get(id) ?? Promise.resolve();
    const run = prev.catch(() => undefined).then(fn);
    this.chains.set(id, run);
    return run.finally(() => {
      if (this.chains.get(id) === run) this.chains.delete(id);
    });
  }
}

function codeOf(e: unknown): string {
  const c = (e as { code?: unknown }).code;
  return typeof c === 'string' ? c : 'CLOUD_ERR_INTERNAL';
}
