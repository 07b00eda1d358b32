import type { EventEnvelope } from '@storelink/protocols';

/**
 * Alert rules as pure functions (docs/fleet-alerts-dashboard.md). Each turns an ingested
 * event (or, for the sweep, a gateway's presence) into condition observations; the engine
 * (alerts.ts) turns observations into raised / refreshed / cleared alert rows. Keeping the
 * rules free of I/O lets the unit tests run every rule over hand-made events.
 */
export const ALERT_KINDS = [
  'gateway_offline',
  'upload_backlog',
  'temperature',
  'door_open',
  'low_stock',
  'tag_battery_low',
  'vend_failures',
] as const;
export type AlertKind = (typeof ALERT_KINDS)[number];
export type AlertSeverity = 'info' | 'warning' | 'critical';

/** Every threshold an operator can change (PUT /api/v1/alerts/settings) [ALERT-CONFIG-1]. */
export interface AlertThresholds {
  /** A gateway offline (death applied, or silent) for longer than this raises gateway_offline. */
  offlineAfterMs: number;
  /** The oldest unacknowledged outbox event older than this raises upload_backlog. */
  backlogAgeMs: number;
  /** Fridge / machine temperature outside [tempMinC, tempMaxC] raises temperature. */
  tempMinC: number;
  tempMaxC: number;
  /** A temperature alert clears only this far back inside the range (no flapping). */
  tempClearMarginC: number;
  /** A door open for longer than this raises door_open. */
  doorOpenMs: number;
  /** A slot with this many items or fewer raises low_stock. */
  lowStockCount: number;
  /** An ESL tag reporting a battery at or below this raises tag_battery_low. */
  tagBatteryLowMv: number;
  /** This many failed vends in a row on one machine raise vend_failures. */
  vendFailures: number;
  /** A gateway silent (no state, heartbeat or batch) for this long counts as offline. */
  silentAfterMs: number;
}

export const DEFAULT_THRESHOLDS: AlertThresholds = {
  offlineAfterMs: 5 * 60_000,
  backlogAgeMs: 10 * 60_000,
  tempMinC: 0,
  tempMaxC: 8,
  tempClearMarginC: 0.5,
  doorOpenMs: 2 * 60_000,
  lowStockCount: 2,
  tagBatteryLowMv: 2400,
  vendFailures: 3,
  silentAfterMs: 3 * 60_000,
};

/** What a rule saw: raise (or refresh) the alert for `key`, or clear it. */
export type Observation =
  | {
      op: 'raise';
      kind: AlertKind;
      subject: string;
      severity: AlertSeverity;
      message: string;
      value: number | null;
    }
  | { op: 'clear'; kind: AlertKind; subject: string; reason: string }
  /** Stateful conditions (door, vend failures) keep a small memory row per subject. */
  | { op: 'door'; subject: string; open: boolean; at: number }
  | { op: 'vend'; subject: string; failed: boolean; reason: string | undefined };

type Payload = Record<string, unknown>;
const isObj = (v: unknown): v is Payload => typeof v === 'object' && v !== null && !Array.isArray(v);

/** [ALERT-TEMP-1] out of range raises; back inside by the margin clears; in the band between, nothing changes. */
export function temperatureObservation(subject: string, c: number, t: AlertThresholds): Observation | null {
  if (c > t.tempMaxC || c < t.tempMinC) {
    const side = c > t.tempMaxC ? `above the ${t.tempMaxC} °C limit` : `below the ${t.tempMinC} °C limit`;
    return {
      op: 'raise',
      kind: 'temperature',
      subject,
      severity: c > t.tempMaxC + 4 || c < t.tempMinC - 4 ? 'critical' : 'warning',
      message: `${subject}: ${c.toFixed(1)} °C, ${side}`,
      value: c,
    };
  }
  if (c <= t.tempMaxC - t.tempClearMarginC && c >= t.tempMinC + t.tempClearMarginC)
    return { op: 'clear', kind: 'temperature', subject, reason: `${c.toFixed(1)} °C, back in range` };
  return null;
}

function stockObservation(subject: string, count: number, t: AlertThresholds): Observation {
  return count <= t.lowStockCount
    ? {
        op: 'raise',
        kind: 'low_stock',
        subject,
        severity: count === 0 ? 'critical' : 'warning',
        message: `${subject}: ${count} left (threshold ${t.lowStockCount})`,
        value: count,
      }
    : { op: 'clear', kind: 'low_stock', subject, reason: `${count} in stock` };
}

function batteryObservation(tag: string, mv: number, t: AlertThresholds): Observation {
  return mv <= t.tagBatteryLowMv
    ? {
        op: 'raise',
        kind: 'tag_battery_low',
        subject: tag,
        severity: 'warning',
        message: `tag ${tag}: battery ${mv} mV (threshold ${t.tagBatteryLowMv} mV)`,
        value: mv,
      }
    : { op: 'clear', kind: 'tag_battery_low', subject: tag, reason: `battery ${mv} mV` };
}

/** The event's own time, never later than when the cloud received it (edge clocks drift). */
const eventTime = (e: EventEnvelope, receivedAt: number) => Math.min(e.ts, receivedAt);

/**
 * The observations one ingested event carries. Sources (protocols): `telemetry` from the
 * fridge sim (metrics.tempC, metrics.door), `vend.telemetry` / `vend.alarm` from the VMC
 * driver (temperature in deci-°C, stock per slot, door), `esl.tag_status` (battery per
 * tag), `vend.result` (dispensed / failed).
 */
export function observe(e: EventEnvelope, t: AlertThresholds, receivedAt: number): Observation[] {
  const p = e.payload;
  if (!isObj(p)) return [];
  const at = eventTime(e, receivedAt);
  switch (e.type) {
    case 'telemetry': {
      const m = p.metrics;
      if (!isObj(m)) return [];
      const out: Observation[] = [];
      if (typeof m.tempC === 'number') {
        const o = temperatureObservation(e.device, m.tempC, t);
        if (o) out.push(o);
      }
      if (m.door === 'open' || m.door === 'closed')
        out.push({ op: 'door', subject: e.device, open: m.door === 'open', at });
      return out;
    }
    case 'vend.telemetry':
    case 'vend.alarm': {
      if (p.kind === 'temperature' && typeof p.deciCelsius === 'number') {
        const o = temperatureObservation(e.device, p.deciCelsius / 10, t);
        return o ? [o] : [];
      }
      if (p.kind === 'stock' && typeof p.slot === 'number' && typeof p.count === 'number')
        return [stockObservation(`${e.device}/slot-${p.slot}`, p.count, t)];
      if (p.kind === 'door' && typeof p.open === 'boolean')
        return [{ op: 'door', subject: e.device, open: p.open, at }];
      return [];
    }
    case 'esl.tag_status': {
      if (!Array.isArray(p.tags)) return [];
      return p.tags
        .filter((x): x is Payload => isObj(x) && typeof x.tag === 'string' && typeof x.batteryMv === 'number')
        .map((x) => batteryObservation(x.tag as string, x.batteryMv as number, t));
    }
    case 'vend.result': {
      if (p.outcome !== 'dispensed' && p.outcome !== 'failed') return [];
      return [
        {
          op: 'vend',
          subject: e.device,
          failed: p.outcome === 'failed',
          reason: typeof p.reason === 'string' ? p.reason : undefined,
        },
      ];
    }
    default:
      return [];
  }
}

/** What the sweep knows about one gateway (from its presence row). */
export interface GatewayView {
  id: string;
  site: string;
  state: 'unknown' | 'online' | 'offline';
  /** When it went offline (the applied death's time), or null. */
  stateAt: number | null;
  lastSeen: number | null;
  /** Last heartbeat: its outbox's oldest unacknowledged event age, and when it was received. */
  backlog: { depth: number; oldestAgeMs: number; heardAt: number } | null;
}

/**
 * [ALERT-OFFLINE-1] offline = death applied, or nothing heard for `silentAfterMs` (a dead
 * link with no will delivered). Raised once either has lasted `offlineAfterMs`.
 */
export function offlineObservation(g: GatewayView, t: AlertThresholds, now: number): Observation | null {
  if (g.state === 'unknown' && g.lastSeen === null) return null; // never connected: not "down"
  const silentSince = g.lastSeen !== null ? g.lastSeen : null;
  let downSince: number | null = null;
  if (g.state === 'offline') downSince = g.stateAt ?? silentSince;
  else if (silentSince !== null && now - silentSince >= t.silentAfterMs) downSince = silentSince;
  if (downSince === null) return { op: 'clear', kind: 'gateway_offline', subject: '', reason: 'online' };
  const forMs = now - downSince;
  if (forMs < t.offlineAfterMs) return null;
  return {
    op: 'raise',
    kind: 'gateway_offline',
    subject: '',
    severity: 'critical',
    message: `gateway ${g.id} offline for ${Math.round(forMs / 60_000)} min`,
    value: forMs,
  };
}

/**
 * [ALERT-BACKLOG-1] the edge outbox's oldest unacknowledged event (heartbeat `outbox.oldestAgeMs`),
 * aged by the time since that heartbeat, older than `backlogAgeMs`. An empty outbox clears.
 */
export function backlogObservation(g: GatewayView, t: AlertThresholds, now: number): Observation | null {
  if (!g.backlog) return null;
  const { depth, oldestAgeMs, heardAt } = g.backlog;
  if (depth === 0) return { op: 'clear', kind: 'upload_backlog', subject: '', reason: 'outbox empty' };
  const age = oldestAgeMs + Math.max(0, now - heardAt);
  if (age < t.backlogAgeMs)
    return {
      op: 'clear',
      kind: 'upload_backlog',
      subject: '',
      reason: `oldest event ${Math.round(age / 1000)} s`,
    };
  return {
    op: 'raise',
    kind: 'upload_backlog',
    subject: '',
    severity: 'warning',
    message: `gateway ${g.id}: ${depth} events waiting, oldest ${Math.round(age / 60_000)} min`,
    value: age,
  };
}
