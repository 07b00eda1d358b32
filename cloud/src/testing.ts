import {
  type CommandResult,
  type EventEnvelope,
  type Lane,
  newId,
  type UplinkBatch,
} from '@storelink/protocols';

/**
 * Builders for test batches, shared by the store conformance suite, the ingest tests
 * and the system tests. They build what a well-behaved edge would send.
 */

export interface GatewayRef {
  gateway: string;
  site: string;
}

export function telemetryEvent(
  gw: GatewayRef,
  seq: number,
  opts: { device?: string; at?: number } = {},
): EventEnvelope {
  const at = opts.at ?? 1_763_900_000_000 + seq;
  return {
    id: newId(at),
    type: 'telemetry',
    device: opts.device ?? 'fridge-1',
    gateway: gw.gateway,
    site: gw.site,
    ts: at,
    rts: at,
    lane: 'telemetry',
    seq,
    payload: { metrics: { tempC: 4 + (seq % 10) / 10 } },
  };
}

export function laneEvent(
  gw: GatewayRef,
  lane: Lane,
  seq: number,
  type: string,
  payload: unknown,
  opts: { device?: string; at?: number } = {},
): EventEnvelope {
  const at = opts.at ?? 1_763_900_000_000 + seq;
  return {
    id: newId(at),
    type,
    device: opts.device ?? 'fridge-1',
    gateway: gw.gateway,
    site: gw.site,
    ts: at,
    rts: at,
    lane,
    seq,
    payload,
  };
}

export function presenceEvent(gw: GatewayRef, seq: number, device: string, online: boolean, at?: number) {
  return laneEvent(
    gw,
    'event',
    seq,
    online ? 'device.online' : 'device.offline',
    { reason: online ? 'connected' : 'disconnected', clientId: device },
    { device, ...(at !== undefined ? { at } : {}) },
  );
}

export function commandResultEvent(
  gw: GatewayRef,
  seq: number,
  result: Partial<CommandResult> & Pick<CommandResult, 'commandId' | 'status'>,
  device = gw.gateway,
): EventEnvelope {
  const payload: CommandResult = {
    type: 'ping',
    receivedAt: 1_763_900_000_000,
    completedAt: 1_763_900_000_001,
    ...result,
  };
  return laneEvent(gw, 'tx', seq, 'command.result', payload, { device });
}

export function batchOf(
  gw: GatewayRef,
  epoch: string,
  events: EventEnvelope[],
  floors: UplinkBatch['floors'] = {},
  sentAt = 1_763_900_001_000,
): UplinkBatch {
  return { v: 1, gateway: gw.gateway, site: gw.site, epoch, sentAt, floors, events };
}

/** `n` telemetry events with seqs from..from+n-1. */
export function telemetryRun(gw: GatewayRef, from: number, n: number, device?: string): EventEnvelope[] {
  return Array.from({ length: n }, (_, i) => telemetryEvent(gw, from + i, device ? { device } : {}));
}
