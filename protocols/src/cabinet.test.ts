import { describe, expect, it } from 'vitest';
import { cabinet } from './index.ts';
import { checkCommandBody } from './commands.ts';
import { checkEventPayload, eventTypeSpec } from './events.ts';

describe('cabinet protocol', () => {
  it('session events are on the tx lane, shelf events on the event lane, all edge-produced', () => {
    for (const t of [
      cabinet.CABINET_SESSION_UNLOCKED,
      cabinet.CABINET_SESSION_OPENED,
      cabinet.CABINET_SESSION_RELOCKED,
      cabinet.CABINET_SESSION_ALARM,
      cabinet.CABINET_SESSION_CLOSED,
    ])
      expect(eventTypeSpec(t)).toMatchObject({ lane: 'tx', source: 'edge' });
    for (const t of [cabinet.SHELF_TAKE, cabinet.SHELF_RETURN])
      expect(eventTypeSpec(t)).toMatchObject({ lane: 'event', source: 'edge' });
  });

  it('closed: what was taken, returned and left unresolved', () => {
    const ok = checkEventPayload(cabinet.CABINET_SESSION_CLOSED, {
      sessionId: 'CS000001',
      at: 1,
      taken: [{ sku: 'cola', qty: 1 }],
      returned: [],
      unresolved: [{ key: 'w:shelf:L2', reason: 'ambiguous', candidates: ['1xcola', '1xsoda'] }],
      sources: ['rfid', 'weight'],
    });
    expect(ok.ok).toBe(true);
    const bad = checkEventPayload(cabinet.CABINET_SESSION_CLOSED, {
      sessionId: 'CS000001',
      at: 1,
      taken: [{ sku: 'cola', qty: 0 }],
      returned: [],
      unresolved: [],
      sources: ['rfid'],
    });
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.error.code).toBe('PROTO_ERR_SCHEMA');
  });

  it('shelf.take: one SKU and count, or ambiguous candidates', () => {
    expect(
      checkEventPayload(cabinet.SHELF_TAKE, {
        shelf: 's1',
        lane: 'L1',
        at: 1,
        deltaGrams: -355,
        sku: 'cola',
        count: 1,
      }).ok,
    ).toBe(true);
    expect(
      checkEventPayload(cabinet.SHELF_TAKE, {
        shelf: 's1',
        lane: 'L1',
        at: 1,
        deltaGrams: -355,
        ambiguous: [
          { sku: 'cola', count: 1 },
          { sku: 'soda', count: 1 },
        ],
      }).ok,
    ).toBe(true);
  });

  it('cabinet.unlock is a gateway command; a bad session id or extra field is refused', () => {
    const base = {
      v: 1 as const,
      id: '01HZZZZZZZZZZZZZZZZZZZZZZZ',
      type: 'cabinet.unlock',
      target: {},
      issuedAt: 1,
      expiresAt: 2,
    };
    expect(checkCommandBody({ ...base, payload: { sessionId: 'CS000001', memberId: 'm1' } }).ok).toBe(true);
    expect(checkCommandBody({ ...base, payload: { sessionId: 'x' } }).ok).toBe(false);
    expect(checkCommandBody({ ...base, payload: { sessionId: 'CS000001', amount: 5 } }).ok).toBe(false);
    expect(
      checkCommandBody({ ...base, target: { device: 'lock-1' }, payload: { sessionId: 'CS000001' } }).ok,
    ).toBe(false);
  });
});
