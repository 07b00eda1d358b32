import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EdgeAgent } from './agent.ts';
import { device, FakeCloud, startTestEdge, until } from './test-support/harness.ts';

let cloud: FakeCloud;
let agent: EdgeAgent | undefined;
let dir: string;

beforeEach(async () => {
  cloud = new FakeCloud();
  await cloud.start();
  dir = mkdtempSync(join(tmpdir(), 'edge-restart-'));
});
afterEach(async () => {
  expect(cloud.invalid).toEqual([]);
  await agent?.close();
  agent = undefined;
  await cloud.close();
  rmSync(dir, { recursive: true, force: true });
});

const level = () => ({ dataDir: dir, outbox: { kind: 'level' as const } });

describe('restart on the LevelDB store', () => {
  it('keeps unacked events, bdSeq and epoch across a restart and replays from the ack', async () => {
    cloud.autoAck = false;
    agent = await startTestEdge(cloud, level());
    await until(() => agent!.status().uplink.connected, 3000, 'uplink');
    const epoch = agent.store.outbox.epoch;
    const d = await device(agent, 'fridge-1');
    for (let i = 0; i < 4; i++) {
      await d.publishAsync('dev/fridge-1/evt/telemetry', JSON.stringify({ id: `r${i}`, metrics: { n: i } }), {
        qos: 1,
      });
    }
    await until(() => cloud.events('telemetry').length === 4, 3000, 'sent');
    await d.endAsync();
    await agent.close();
    expect(cloud.states.at(-1)!.payload).toMatchObject({ state: 'offline', bdSeq: 1 });

    // Restart: the unacked events are still there and are sent again from the ack (0).
    const before = cloud.batches.length;
    agent = await startTestEdge(cloud, level());
    expect(agent.store.outbox.epoch).toBe(epoch);
    expect(agent.store.outbox.stats().lanes.telemetry.depth).toBe(4);
    await until(() => cloud.states.at(-1)?.payload.state === 'online', 3000, 'birth');
    expect(cloud.states.at(-1)!.payload.bdSeq).toBe(2);
    await until(
      () =>
        cloud.batches
          .slice(before)
          .flatMap((b) => b.events)
          .filter((e) => e.lane === 'telemetry').length >= 4,
      3000,
      'replay',
    );
    const replayed = cloud.batches
      .slice(before)
      .flatMap((b) => b.events.filter((e) => e.lane === 'telemetry'));
    expect(replayed.slice(0, 4).map((e) => e.mid)).toEqual(['r0', 'r1', 'r2', 'r3']);

    // The cloud commits; only now does the edge forget.
    cloud.ack('sl/v1/store-1/gw-1', epoch);
    await until(() => agent!.store.outbox.acked('telemetry') === 4, 3000, 'ack applied');
    expect(agent.store.outbox.stats().lanes.telemetry.depth).toBe(0);
  });
});
