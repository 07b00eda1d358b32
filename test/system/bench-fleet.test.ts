/**
 * A short `npm run bench -- fleet` (100 simulated gateways against one cloud process):
 * every gateway connects and its birth is applied, every heartbeat is ingested, every
 * command round trip completes. Figures are printed, not asserted (no timing assertions
 * in tests); the long run is `npm run bench -- fleet --gateways 2000 --json`.
 */
import { expect, it } from 'vitest';
import { runFleetBench } from '../../bench/fleet.ts';

it('100 gateways: connect, heartbeats, command round trips, nothing lost', async () => {
  const r = await runFleetBench({
    gateways: 100,
    concurrency: 25,
    heartbeatMs: 1000,
    seconds: 3,
    commands: 30,
    commandConcurrency: 5,
  });
  process.stderr.write(`bench fleet (100): ${JSON.stringify(r)}\n`);
  expect(r.connect_failed).toBe(0);
  expect(r.commands_lost).toBe(0);
  expect(r.heartbeats_dropped).toBe(0);
  expect(r.heartbeats_rejected).toBe(0);
  expect(r.heartbeat_ingested_per_s).toBeGreaterThan(0);
  expect(r.command_p99_ms).toBeGreaterThan(0);
  expect(r.cloud_rss_mb).toBeGreaterThan(0);
}, 240_000);
