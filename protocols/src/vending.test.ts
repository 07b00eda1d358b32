import { describe, expect, it } from 'vitest';
import { checkCommandBody } from './commands.ts';
import { checkEventPayload, eventTypeSpec } from './events.ts';
import { VEND_DISPENSE, VEND_RESULT, VEND_TELEMETRY } from './vending.ts';

describe('vending protocol types', () => {
  const cmd = (payload: unknown, target: { device?: string } = {}) => ({
    v: 1 as const,
    id: '01KAQ0000000000000000000AA',
    type: VEND_DISPENSE,
    target,
    issuedAt: 1,
    expiresAt: 2,
    payload,
  });

  it('vend.dispense is a gateway command with {orderId, slot, priceCents}', () => {
    expect(checkCommandBody(cmd({ orderId: 'ORD000001', slot: 3, priceCents: 350 })).ok).toBe(true);
    expect(checkCommandBody(cmd({ orderId: 'ORD000001', slot: 3 })).ok).toBe(false);
    expect(checkCommandBody(cmd({ orderId: 'ORD000001', slot: 3, priceCents: 350, extra: 1 })).ok).toBe(
      false,
    );
    expect(
      checkCommandBody(cmd({ orderId: 'ORD000001', slot: 3, priceCents: 350 }, { device: 'vmc' })).ok,
    ).toBe(false);
  });

  it('vend.result takes the edge driver outcome as is; telemetry kinds validate', () => {
    expect(eventTypeSpec(VEND_RESULT)).toMatchObject({ lane: 'tx', source: 'edge' });
    const outcome = {
      orderId: 'ORD000001',
      outcome: 'failed',
      reason: 'no_drop',
      code: 'EDGE_ERR_VMC_NO_DROP',
      slot: 3,
      durationMs: 4100,
      approvedAfterMs: 120,
      dropSeen: false,
    };
    expect(checkEventPayload(VEND_RESULT, outcome).ok).toBe(true);
    expect(checkEventPayload(VEND_RESULT, { ...outcome, reason: 'gremlins' }).ok).toBe(false);
    expect(checkEventPayload(VEND_RESULT, { ...outcome, outcome: 'maybe' }).ok).toBe(false);
    expect(checkEventPayload(VEND_TELEMETRY, { kind: 'stock', slot: 3, count: 9 }).ok).toBe(true);
    expect(checkEventPayload(VEND_TELEMETRY, { kind: 'event', code: 'EJL', active: true }).ok).toBe(true);
    expect(checkEventPayload(VEND_TELEMETRY, { kind: 'stock', slot: 3 }).ok).toBe(false);
  });
});
