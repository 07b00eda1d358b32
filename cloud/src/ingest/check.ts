import {
  checkEventPayload,
  eventTypeSpec,
  type GatewayAddress,
  type GatewayState,
  type Heartbeat,
  LIMITS,
  parseJsonPayload,
  type UplinkBatch,
  validateGatewayState,
  validateHeartbeat,
  validateUplinkBatch,
} from '@storelink/protocols';

/**
 * Pure checks of what arrives on a gateway's topics: parse, schema, and that the
 * message is about the gateway whose topic it came on. Each returns the typed message
 * or a reason (and the protocol code behind it) for the refusal.
 */

export type Checked<T> = { ok: true; value: T } | { ok: false; code: string; reason: string };

/** Event types whose payload the cloud itself interprets: their payload must be valid. */
const INTERPRETED = new Set(['command.result', 'device.online', 'device.offline']);

/** Largest state or heartbeat message accepted. */
export const STATE_LIMIT_BYTES = 64 * 1024;

const fail = (code: string, reason: string) => ({ ok: false, code, reason }) as const;

function sameGateway(
  addr: GatewayAddress,
  msg: { gateway: string; site: string },
  what: string,
): string | null {
  if (msg.gateway !== addr.gateway || msg.site !== addr.site) {
    return `${what} names gateway "${msg.gateway}" at site "${msg.site}" but came on the topic of "${addr.gateway}" at "${addr.site}"`;
  }
  return null;
}

/**
 * An uplink batch is refused as a whole (and not acknowledged) when it is not JSON, too
 * big, off schema, about another gateway, carries two different events under one
 * (lane, seq), puts a known type on the wrong lane, or carries an invalid payload of a
 * type the cloud acts on. Payloads of other types are stored as sent: the edge already
 * validated them, and a cloud older than the edge must not block a lane on a type it
 * does not know yet.
 */
export function checkUplink(addr: GatewayAddress, payload: Buffer): Checked<UplinkBatch> {
  const parsed = parseJsonPayload(payload, LIMITS.uplinkBatchBytes);
  if (!parsed.ok) return fail(parsed.error.code, parsed.error.message);
  const v = validateUplinkBatch.check(parsed.value);
  if (!v.ok) return fail(v.error.code, v.error.message);
  const batch = v.value;
  const wrong = sameGateway(addr, batch, 'batch');
  if (wrong) return fail('CLOUD_ERR_BATCH_REJECTED', wrong);
  const seen = new Map<string, string>();
  for (let i = 0; i < batch.events.length; i++) {
    const e = batch.events[i]!;
    if (e.gateway !== batch.gateway || e.site !== batch.site) {
      return fail(
        'CLOUD_ERR_BATCH_REJECTED',
        `/events/${i} belongs to gateway "${e.gateway}" at site "${e.site}"`,
      );
    }
    const key = `${e.lane}:${e.seq}`;
    const other = seen.get(key);
    if (other !== undefined && other !== e.id) {
      return fail('CLOUD_ERR_BATCH_REJECTED', `/events/${i} reuses ${e.lane} seq ${e.seq} for another event`);
    }
    seen.set(key, e.id);
    const spec = eventTypeSpec(e.type);
    if (spec && spec.lane !== e.lane) {
      return fail(
        'CLOUD_ERR_BATCH_REJECTED',
        `/events/${i} is a ${e.type} on lane ${e.lane}, it belongs on ${spec.lane}`,
      );
    }
    if (INTERPRETED.has(e.type)) {
      const p = checkEventPayload(e.type, e.payload);
      if (!p.ok) return fail(p.error.code, `/events/${i}: ${p.error.message}`);
    }
  }
  return { ok: true, value: batch };
}

export function checkState(addr: GatewayAddress, payload: Buffer): Checked<GatewayState> {
  const parsed = parseJsonPayload(payload, STATE_LIMIT_BYTES);
  if (!parsed.ok) return fail(parsed.error.code, parsed.error.message);
  const v = validateGatewayState.check(parsed.value);
  if (!v.ok) return fail(v.error.code, v.error.message);
  const wrong = sameGateway(addr, v.value, 'state');
  return wrong ? fail('CLOUD_ERR_STATE_REJECTED', wrong) : v;
}

export function checkHeartbeat(addr: GatewayAddress, payload: Buffer): Checked<Heartbeat> {
  const parsed = parseJsonPayload(payload, STATE_LIMIT_BYTES);
  if (!parsed.ok) return fail(parsed.error.code, parsed.error.message);
  const v = validateHeartbeat.check(parsed.value);
  if (!v.ok) return fail(v.error.code, v.error.message);
  const wrong = sameGateway(addr, v.value, 'heartbeat');
  return wrong ? fail('CLOUD_ERR_STATE_REJECTED', wrong) : v;
}
