import type { PresenceRow } from './provisioning.ts';

/**
 * Presence that does not lie (docs/fleet-provisioning.md "Presence").
 *
 * The store keeps what the gateway said (birth/death with bdSeq [PRESENCE-BDSEQ-1],
 * the last heartbeat); this module judges it against the cloud clock:
 * - `revoked`  — the gateway's credentials are revoked [PRESENCE-STATE-1];
 * - `unknown`  — never heard a birth;
 * - `offline`  — the current session's death (or a newer one) was applied;
 * - `stalled`  — the birth stands but the gateway is not uploading [PRESENCE-STALL-1]:
 *     `no_heartbeat`: nothing (heartbeat, birth) heard within `heartbeatTimeoutMs`;
 *     `backlog_not_draining`: the last heartbeat reports events waiting in the outbox
 *     while no ack watermark of the gateway advanced for `stallAfterMs`;
 * - `online`   — birth stands, heartbeats arrive, the backlog (if any) drains.
 */

export type FleetPresenceState = 'unknown' | 'online' | 'stalled' | 'offline' | 'revoked';
export type StallReason = 'no_heartbeat' | 'backlog_not_draining';

export interface PresencePolicy {
  /** No heartbeat (or birth) for this long: `stalled/no_heartbeat`. Default 3 edge heartbeats. */
  heartbeatTimeoutMs: number;
  /** Backlog reported and no watermark progress for this long: `stalled/backlog_not_draining`. */
  stallAfterMs: number;
}

export const DEFAULT_PRESENCE_POLICY: PresencePolicy = { heartbeatTimeoutMs: 35_000, stallAfterMs: 60_000 };

export interface FleetPresence {
  gateway: string;
  site: string;
  name: string | null;
  state: FleetPresenceState;
  reason: StallReason | null;
  bdSeq: number | null;
  onlineSince: number | null;
  lastHeardAt: number | null;
  lastProgressAt: number | null;
  /** From the last heartbeat: events waiting at the edge and the age of the oldest. */
  outboxDepth: number | null;
  oldestEventAgeMs: number | null;
  devicesOnline: string[];
  revokedAt: number | null;
}

export function derivePresence(row: PresenceRow, policy: PresencePolicy, now: number): FleetPresence {
  const hb = row.heartbeat;
  const base = {
    gateway: row.id,
    site: row.site,
    name: row.name,
    bdSeq: row.bdSeq,
    onlineSince: row.onlineSince,
    lastHeardAt: row.lastHeardAt,
    lastProgressAt: row.lastProgressAt,
    outboxDepth: hb ? hb.outbox.depth : null,
    oldestEventAgeMs: hb ? hb.outbox.oldestAgeMs : null,
    devicesOnline: row.state === 'online' && hb ? hb.devicesOnline : [],
    revokedAt: row.revokedAt,
  };
  const is = (state: FleetPresenceState, reason: StallReason | null = null): FleetPresence => ({
    ...base,
    state,
    reason,
  });
  // [PRESENCE-STATE-1] Revocation is the operator's word and beats what the gateway says.
  if (row.revokedAt !== null) return is('revoked');
  if (row.state !== 'online') return is(row.state);
  // [PRESENCE-STALL-1] Online by its birth, but is it talking?
  if (row.lastHeardAt === null || now - row.lastHeardAt > policy.heartbeatTimeoutMs) {
    return is('stalled', 'no_heartbeat');
  }
  if (hb && hb.outbox.depth > 0) {
    // Progress is judged from the later of the last watermark advance and the birth of
    // this session (a gateway that just came back with a backlog gets a full window).
    const since = Math.max(row.lastProgressAt ?? 0, row.onlineSince ?? 0);
    if (now - since > policy.stallAfterMs) return is('stalled', 'backlog_not_draining');
  }
  return is('online');
}

export const PRESENCE_STATES: readonly FleetPresenceState[] = [
  'unknown',
  'online',
  'stalled',
  'offline',
  'revoked',
];

/**
 * Makes `gauge` (storelink_cloud_fleet_gateways{state}) count the fleet by judged presence
 * at every scrape. A failed read keeps the previous figures (the scrape still succeeds).
 */
export function collectPresenceGauge(
  gauge: { set(labels: { state: string }, value: number): void },
  rows: () => Promise<PresenceRow[]>,
  policy: PresencePolicy,
  now: () => number,
  onError: (e: unknown) => void,
): void {
  (gauge as unknown as { collect: () => Promise<void> }).collect = async () => {
    try {
      const t = now();
      const counts = new Map<string, number>(PRESENCE_STATES.map((s) => [s, 0]));
      for (const r of await rows()) {
        const s = derivePresence(r, policy, t).state;
        counts.set(s, (counts.get(s) ?? 0) + 1);
      }
      for (const [state, n] of counts) gauge.set({ state }, n);
    } catch (e) {
      onError(e);
    }
  };
}
