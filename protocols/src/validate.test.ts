import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkCommandBody } from './commands.ts';
import { validateUplinkBatch } from './envelope.ts';
import { checkDeviceEvent } from './events.ts';
import { newId } from './ids.ts';
import { parseJsonPayload } from './validate.ts';

describe('device payloads', () => {
  it('accepts telemetry and reports its lane, ts and message id', () => {
    const r = checkDeviceEvent('telemetry', { id: 'f1-1', ts: 5, metrics: { tempC: 4.1, door: 'closed' } });
    expect(r.ok && { lane: r.spec.lane, ts: r.ts, mid: r.mid }).toEqual({
      lane: 'telemetry',
      ts: 5,
      mid: 'f1-1',
    });
  });

  it('names the wrong field', () => {
    const r = checkDeviceEvent('telemetry', { metrics: { tempC: [1] }, extra: 1 });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe('PROTO_ERR_SCHEMA');
      expect(r.error.message).toContain('/metrics/tempC');
      expect(r.error.message).toContain('unknown field "extra"');
    }
  });

  it('refuses unknown types and edge-only types from devices', () => {
    for (const type of ['nope', 'command.result', 'device.online']) {
      const r = checkDeviceEvent(type, {});
      expect(r.ok ? 'ok' : r.error.code).toBe('PROTO_ERR_UNKNOWN_TYPE');
    }
  });

  it('parses JSON under a size limit with coded errors', () => {
    expect(parseJsonPayload(Buffer.from('{"a":1}'), 100)).toEqual({
      ok: true,
      value: { a: 1 },
      text: '{"a":1}',
    });
    const bad = parseJsonPayload(Buffer.from('{"a":'), 100);
    expect(bad.ok ? 'ok' : bad.error.code).toBe('PROTO_ERR_MALFORMED_JSON');
    const big = parseJsonPayload(Buffer.alloc(101, 32), 100);
    expect(big.ok ? 'ok' : big.error.code).toBe('PROTO_ERR_OVERSIZE');
  });

  it('never throws on arbitrary bytes (fuzz)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.string({ maxLength: 20 }), (bytes, type) => {
        const parsed = parseJsonPayload(bytes, 256);
        if (parsed.ok) checkDeviceEvent(type, parsed.value);
      }),
      { numRuns: 500 },
    );
  });
});

describe('commands and batches', () => {
  it('checks target rules per command type', () => {
    const base = { v: 1 as const, id: newId(), issuedAt: 1, expiresAt: 2 };
    expect(checkCommandBody({ ...base, type: 'device.config', target: {}, payload: { config: {} } }).ok).toBe(
      false,
    );
    expect(checkCommandBody({ ...base, type: 'ping', target: {}, payload: {} }).ok).toBe(true);
    const unknown = checkCommandBody({ ...base, type: 'launch', target: {}, payload: {} });
    expect(unknown.ok ? 'ok' : unknown.error.code).toBe('PROTO_ERR_UNKNOWN_TYPE');
  });

  it('validates an uplink batch', () => {
    const event = {
      id: newId(),
      type: 'telemetry',
      device: 'd1',
      gateway: 'g1',
      site: 's1',
      ts: 1,
      rts: 2,
      lane: 'telemetry',
      seq: 1,
      payload: { metrics: { a: 1 } },
    };
    const batch = {
      v: 1,
      gateway: 'g1',
      site: 's1',
      epoch: newId(),
      sentAt: 3,
      floors: { telemetry: 1 },
      events: [event],
    };
    expect(validateUplinkBatch(batch)).toBe(true);
    expect(validateUplinkBatch({ ...batch, events: [{ ...event, seq: 0 }] })).toBe(false);
    expect(validateUplinkBatch({ ...batch, floors: { bogus: 1 } })).toBe(false);
  });
});
