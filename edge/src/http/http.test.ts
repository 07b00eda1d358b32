import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import type { EdgeAgent, EdgeStatus } from '../agent.ts';
import { build } from './index.ts';
import { device, FakeCloud, startTestEdge, until } from '../test-support/harness.ts';

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

describe('local HTTP', () => {
  it('serves health, readiness, status and metrics (real memory outbox)', async () => {
    agent = await startTestEdge(cloud); // config outbox.kind = memory: the real store
    const d = await device(agent, 'fridge-1');
    await d.publishAsync('dev/fridge-1/evt/telemetry', JSON.stringify({ id: 'h1', metrics: { t: 1 } }), {
      qos: 1,
    });
    await d.publishAsync('dev/fridge-1/evt/telemetry', '{bad', { qos: 1 });
    await until(() => agent!.store.outbox.acked('telemetry') === 1, 5000, 'acked');

    const health = await fetch(`${agent.httpUrl}/healthz`);
    expect(health.status).toBe(200);
    const ready = await fetch(`${agent.httpUrl}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({
      ready: true,
      checks: { broker: true, store: true, cloud: true },
    });

    const status = (await (await fetch(`${agent.httpUrl}/status`)).json()) as EdgeStatus;
    expect(status).toMatchObject({ gateway: 'gw-1', site: 'store-1' });
    expect(status.devices.find((x) => x.id === 'fridge-1')).toMatchObject({
      online: true,
      events: 1,
      rejected: 1,
      kind: 'fridge',
    });
    expect(status.outbox.lanes.telemetry).toMatchObject({ ackedSeq: 1, depth: 0 });
    expect(status.outbox).toHaveProperty('drainPerSecond');
    expect(status.outbox).toHaveProperty('etaSeconds');
    expect(status.outbox.lanes.telemetry.drainPerSecond).toBeGreaterThan(0);
    expect(status.outbox.lanes.telemetry.etaSeconds).toBe(0);
    expect(status.uplink).toMatchObject({ connected: true, bdSeq: 1 });
    expect(status.uplink.lastAckAt).toBeGreaterThan(0);

    const metrics = await (await fetch(`${agent.httpUrl}/metrics`)).text();
    for (const name of [
      'storelink_edge_events_accepted_total{type="telemetry",lane="telemetry"} 1',
      'storelink_edge_rejected_total{code="PROTO_ERR_MALFORMED_JSON"} 1',
      'storelink_edge_outbox_depth{lane="telemetry"} 0',
      'storelink_edge_uplink_acked_seq{lane="telemetry"} 1',
      'storelink_edge_uplink_connected 1',
      'storelink_edge_devices_online 1',
      'storelink_edge_uplink_batches_sent_total',
      'storelink_edge_command_latency_seconds_bucket',
      'storelink_edge_outbox_dropped_events',
    ]) {
      expect(metrics).toContain(name);
    }
    await d.endAsync();
  });

  it('keeps metrics per agent and stops serving once closed', async () => {
    agent = await startTestEdge(cloud);
    const other = await startTestEdge(cloud, {
      gateway: 'gw-2',
      cloud: { url: cloud.url, username: 'gw-2' },
    });
    const d = await device(other, 'fridge-1');
    await d.publishAsync('dev/fridge-1/evt/telemetry', JSON.stringify({ metrics: { t: 1 } }), { qos: 1 });
    const mine = await agent.metrics.registry.metrics();
    expect(mine).not.toContain('storelink_edge_events_accepted_total{type="telemetry"');
    await d.endAsync();
    await other.close();
    const url = agent.httpUrl;
    await agent.close();
    agent = undefined;
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
  });
});

describe('build()', () => {
  it('answers /readyz 503 naming the failed check', async () => {
    const app = build({
      registry: new Registry(),
      status: () => ({}),
      ready: () => ({ ready: false, checks: { broker: false, store: true, cloud: false } }),
    });
    const r = await app.inject({ method: 'GET', url: '/readyz' });
    expect(r.statusCode).toBe(503);
    expect(r.json()).toEqual({ ready: false, checks: { broker: false, store: true, cloud: false } });
    expect((await app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    await app.close();
  });
});
