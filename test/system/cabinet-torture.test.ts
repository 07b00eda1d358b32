import { describe, expect, it } from 'vitest';
// The torture model lives in bench/ (npm run torture -- cabinet); a short run is a system test.
import { runCabinetTorture } from '../../bench/torture-cabinet.ts';

describe('system: cabinet torture (short runs, simulated time)', () => {
  it('2,000 sessions with missed reads, bounces, restarts and duplicates: never charged twice', async () => {
    const r = await runCabinetTorture({ sessions: 2000, seed: 7 });
    expect(r.sessions).toBe(2000);
    expect(r.double_charged).toBe(0);
    expect(r.charged).toBeGreaterThan(1500);
    // every wrong item has a named cause; none is unexplained
    expect(Object.keys(r.causes).filter((c) => c.includes('unexplained'))).toEqual([]);
    expect(r.wrong_items).toBe(Object.values(r.causes).reduce((s, n) => s + n, 0));
    expect(r.wrong_items).toBeLessThan(20);
    // the faults really happened
    for (const k of [
      'sim_rfid_misses',
      'sim_door_bounces',
      'edge_restarts',
      'edge_resumed',
      'events_duplicated',
      'events_duplicate_dropped_by_ingest',
      'unlock_duplicated',
      'provider_apiErrors',
      'provider_lostResponses',
      'provider_replays',
      'edge_relocked',
      'edge_alarms_door_held',
    ])
      expect(r.counts[k] ?? 0, k).toBeGreaterThan(0);
  }, 120_000);

  it('is deterministic for a seed', async () => {
    const a = await runCabinetTorture({ sessions: 300, seed: 5 });
    const b = await runCabinetTorture({ sessions: 300, seed: 5 });
    const strip = ({ seconds: _s, ...rest }: typeof a) => rest;
    expect(strip(a)).toEqual(strip(b));
  }, 60_000);

  it('detects a charge retried under a new out_trade_no (double_charged)', async () => {
    const r = await runCabinetTorture({ sessions: 800, seed: 3, faultScale: 3, sabotage: 'charge-key' });
    expect(r.double_charged).toBeGreaterThan(0);
  }, 60_000);

  it('a reader that misses half its reads: false thefts are reported with their cause', async () => {
    const r = await runCabinetTorture({ sessions: 600, seed: 9, missRate: 0.5 });
    expect(r.double_charged).toBe(0);
    expect(r.counts.snapshot_rfid_tag_missed ?? 0).toBeGreaterThan(0);
    const rfid = Object.entries(r.causes).filter(([c]) => c.includes('rfid_missed_read'));
    expect(rfid.length).toBeGreaterThan(0);
  }, 60_000);
});
