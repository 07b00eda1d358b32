import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFakeStore } from './test-support/fake-store.ts';
import { device, FakeCloud, startTestEdge, until } from './test-support/harness.ts';
import type { EdgeAgent } from './agent.ts';

let cloud: FakeCloud;
let agent: EdgeAgent | undefined;

beforeEach(async () => {
  cloud = new FakeCloud();
  await cloud.start();
});
afterEach(async () => {
  expect(cloud.invalid).toEqual([]);
  await agent?.close();
  agent = undefined;
  await cloud.close();
});

describe('edge agent main path', () => {
  it('takes a device event to the cloud and forgets it only on ack', async () => {
    const store = createFakeStore();
    agent = await startTestEdge(cloud, {}, { store });
    const d = await device(agent, 'fridge-1');
    await d.publishAsync(
      'dev/fridge-1/evt/telemetry',
      JSON.stringify({ id: 'm1', metrics: { tempC: 4.2 } }),
      { qos: 1 },
    );
    await until(() => cloud.events('telemetry').length === 1, 5000, 'event in cloud');
    const ev = cloud.events('telemetry')[0]!;
    expect(ev).toMatchObject({
      type: 'telemetry',
      device: 'fridge-1',
      gateway: 'gw-1',
      site: 'store-1',
      lane: 'telemetry',
      seq: 1,
      mid: 'm1',
    });
    await until(() => store.outbox.acked('telemetry') === 1, 5000, 'ack');
    expect(store.outbox.stats().lanes.telemetry.depth).toBe(0);
    await until(() => cloud.events('event').some((e) => e.type === 'device.online'), 5000, 'online event');
    await d.endAsync();
  });

  it('undoes a half-finished start (HTTP port taken): no broker, no cloud session left behind', async () => {
    agent = await startTestEdge(cloud, {}, { store: createFakeStore() });
    const port = Number(new URL(agent.httpUrl).port);
    const err = await startTestEdge(
      cloud,
      { gateway: 'gw-2', http: { host: '127.0.0.1', port }, cloud: { url: cloud.url, username: 'gw-2' } },
      { store: createFakeStore() },
    ).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as NodeJS.ErrnoException).code).toBe('EADDRINUSE');
    await new Promise((r) => setTimeout(r, 200));
    const clients = (cloud.broker as unknown as { clients: Record<string, unknown> }).clients;
    expect(clients['gw-2']).toBeUndefined();
  });
});
