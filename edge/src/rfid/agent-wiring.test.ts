import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { RfidReaderSim } from '../../../firmware-sim/src/rfid/index.ts';
import type { EdgeAgent } from '../agent.ts';
import { createFakeStore } from '../test-support/fake-store.ts';
import { FakeCloud, startTestEdge, until } from '../test-support/harness.ts';
import { createMockLink } from '../vending/mock-link.ts';

/**
 * The agent with an `rfid` config section: the real driver (binding-mock) against the
 * simulated reader; tag.arrived / tag.departed / rfid.alarm go through the outbox to the
 * (fake) cloud, match their schemas, and show in /status and /metrics.
 */
let cloud: FakeCloud;
let agent: EdgeAgent | undefined;
let sim: RfidReaderSim | undefined;

beforeEach(async () => {
  cloud = new FakeCloud();
  await cloud.start();
});
afterEach(async () => {
  expect(cloud.invalid).toEqual([]);
  await agent?.close();
  agent = undefined;
  await sim?.stop();
  await cloud.close();
});

const EPC = (i: number) => `3034257bf7194e4000000${i.toString(16).padStart(3, '0')}`;

describe('edge agent with an RFID reader', () => {
  it('reports arrivals, departures and antenna faults to the cloud, with /status and metrics', async () => {
    const link = createMockLink('/dev/agent-rfid-edge', '/dev/agent-rfid-reader');
    sim = new RfidReaderSim({
      path: '/dev/agent-rfid-reader',
      binding: link.binding,
      framing: 'r2000',
      reopenMs: 10,
    });
    sim.addTag(EPC(1), 1, 0x50);
    sim.addTag(EPC(2), 2, 0x48);
    await sim.start();
    agent = await startTestEdge(
      cloud,
      {
        rfid: {
          serialPath: '/dev/agent-rfid-edge',
          framing: 'r2000',
          name: 'cab-1-reader',
          antennas: [1, 2],
          roundIntervalMs: 20,
          departRounds: 2,
          departMs: 50,
          responseTimeoutMs: 200,
          retries: 1,
        },
      },
      { store: createFakeStore(), rfidBinding: link.binding },
    );
    const ofType = (t: string) => cloud.events('event').filter((e) => e.type === t);
    await until(() => ofType('tag.arrived').length === 2, 10_000, 'two arrivals in the cloud');
    expect(
      ofType('tag.arrived')
        .map((e) => e.payload)
        .sort((a, b) => String((a as { epc: string }).epc).localeCompare((b as { epc: string }).epc)),
    ).toEqual([
      { reader: 'cab-1-reader', epc: EPC(1), antenna: 1, rssi: 0x50 - 129, at: expect.any(Number) },
      { reader: 'cab-1-reader', epc: EPC(2), antenna: 2, rssi: 0x48 - 129, at: expect.any(Number) },
    ]);
    expect(ofType('tag.arrived')[0]).toMatchObject({ device: 'gw-1', lane: 'event' });
    // The cabinet's handle on the driver.
    expect([...(agent.rfid?.driver.present().keys() ?? [])].sort()).toEqual([EPC(1), EPC(2)]);

    sim.removeTag(EPC(2));
    await until(() => ofType('tag.departed').length === 1, 10_000, 'departure in the cloud');
    expect(ofType('tag.departed')[0]?.payload).toMatchObject({
      reader: 'cab-1-reader',
      epc: EPC(2),
      antenna: 2,
    });

    sim.setAntennaFault(2, true);
    await until(
      () => ofType('rfid.alarm').some((e) => (e.payload as { active: boolean }).active),
      10_000,
      'antenna alarm raised',
    );
    expect(ofType('rfid.alarm')[0]?.payload).toMatchObject({
      reader: 'cab-1-reader',
      code: 'EDGE_ERR_RFID_ANTENNA',
      antenna: 2,
      active: true,
    });
    const status = agent.status().rfid;
    expect(status).toMatchObject({
      name: 'cab-1-reader',
      framing: 'r2000',
      present: 1,
      faults: [{ antenna: 2, code: 'EDGE_ERR_RFID_ANTENNA' }],
    });
    expect(status?.link.up).toBe(true);
    sim.setAntennaFault(2, false);
    await until(
      () => ofType('rfid.alarm').some((e) => !(e.payload as { active: boolean }).active),
      10_000,
      'antenna alarm cleared',
    );
    const metrics = await agent.metrics.registry.metrics();
    expect(metrics).toMatch(/storelink_edge_rfid_events_total\{kind="arrival"\} 2/);
    expect(metrics).toMatch(/storelink_edge_rfid_events_total\{kind="departure"\} 1/);
    expect(metrics).toMatch(/storelink_edge_rfid_antenna_attempts_total\{outcome="antenna_missing"\} [1-9]/);
    expect(metrics).toMatch(/storelink_edge_rfid_link_up 1/);
  });
});
