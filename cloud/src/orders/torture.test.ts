import { describe, expect, it } from 'vitest';
// The torture model lives in bench/ (npm run torture -- vending); a short run is a unit test.
import { runVendingTorture } from '../../../bench/torture-vending.ts';

describe('vending torture (short run, simulated time)', () => {
  it('2,000 orders with faults at every hop: no double dispense, every payment settled, refund numbers stable', async () => {
    const r = await runVendingTorture({ orders: 2000, seed: 42 });
    expect(r.orders).toBe(2000);
    expect(r.double_dispense).toBe(0);
    expect(r.paid_not_settled).toBe(0);
    expect(r.refund_id_changed).toBe(0);
    expect(r.dispensed + r.refunded + r.expired_unpaid).toBe(2000);
    // the faults really happened
    for (const k of [
      'commands_lost',
      'results_delayed',
      'edge_restarts',
      'jams',
      'provider_lost',
      'notify_ack_lost',
    ])
      expect(r.counts[k] ?? 0, k).toBeGreaterThan(0);
    expect(r.refunded).toBeGreaterThan(0);
  });

  it('is deterministic for a seed', async () => {
    const a = await runVendingTorture({ orders: 300, seed: 5 });
    const b = await runVendingTorture({ orders: 300, seed: 5 });
    const strip = ({ seconds: _s, ...rest }: typeof a) => rest;
    expect(strip(a)).toEqual(strip(b));
  });

  it('detects a broken edge ledger (double_dispense) and a changed refund number (refund_id_changed)', async () => {
    const ledger = await runVendingTorture({ orders: 1500, seed: 3, faultScale: 3, sabotage: 'edge-ledger' });
    expect(ledger.double_dispense).toBeGreaterThan(0);
    const refund = await runVendingTorture({
      orders: 1500,
      seed: 3,
      faultScale: 3,
      sabotage: 'refund-number',
    });
    expect(refund.refund_id_changed).toBeGreaterThan(0);
  });
});

describe('vending torture on the SQL repo (PGlite)', () => {
  it('the same model over SqlOrdersRepo keeps the invariants', async () => {
    const r = await runVendingTorture({ orders: 250, seed: 11, faultScale: 2, store: 'pglite' });
    expect(r.orders).toBe(250);
    expect(r.double_dispense).toBe(0);
    expect(r.paid_not_settled).toBe(0);
    expect(r.refund_id_changed).toBe(0);
    expect(r.refunded).toBeGreaterThan(0);
    expect(r.dispensed).toBeGreaterThan(0);
  });
});
