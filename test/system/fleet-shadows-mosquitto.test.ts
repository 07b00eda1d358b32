/**
 * Shadows across real processes and a broker nobody here wrote (docs/fleet-shadows-rollouts.md):
 * Mosquitto as the cloud broker (external mode), the cloud and the edge as their own
 * processes, a simulated fridge on the edge's broker. The edge is SIGKILLed, shadows of
 * the gateway and of the fridge are changed while it is down, and both reach it when it
 * is started again [SHADOW-REDELIVER-1][SHADOW-DEVICE-2]; a change against an old version
 * is refused [SHADOW-VERSION-1].
 */
import { SimFridge } from '@storelink/firmware-sim';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Stack, startStack, waitFor } from '../helpers/stack.ts';

let stack: Stack;
let fridge: SimFridge;

interface Shadow {
  desiredVersion: number;
  reportedVersion: number;
  status: string;
  reported: Record<string, unknown>;
}

const shadow = async (path: string): Promise<Shadow> => {
  const r = await stack.cloudApi(`/api/v1/shadows/${path}`);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status} ${await r.text()}`);
  return (await r.json()) as Shadow;
};
const patch = (path: string, body: unknown) =>
  stack.cloudApi(`/api/v1/shadows/${path}`, { method: 'PATCH', body: JSON.stringify(body) });

beforeAll(async () => {
  stack = await startStack({ cloudBroker: 'mosquitto', devices: [{ id: 'fr-1', password: 'pw-fr-1' }] });
  fridge = new SimFridge({
    id: 'fr-1',
    password: 'pw-fr-1',
    brokerUrl: stack.edgeBrokerUrl,
    intervalMs: 60_000,
    reconnectPeriodMs: 200,
  }).start();
  await fridge.ready(20_000);
}, 120_000);

afterAll(async () => {
  await fridge?.stop({ force: true });
  await stack?.close();
});

it('shadow changes made while the edge process is killed reach it and its device when it restarts', async () => {
  // A first version while everything runs, so the edge has applied state on disk.
  expect((await patch(stack.gateway, { desired: { labels: { zone: 'a' } }, version: 0 })).status).toBe(200);
  await waitFor(
    async () => (await shadow(stack.gateway)).status === 'in_sync',
    30_000,
    'first version applied',
  );

  await stack.edge.kill('SIGKILL');
  const gw = await patch(stack.gateway, {
    desired: { labels: { zone: 'b' }, logLevel: 'error' },
    version: 1,
  });
  expect(gw.status).toBe(200);
  const dev = await patch(`${stack.gateway}/devices/fr-1`, {
    desired: { setpointC: 2.5, intervalMs: 45_000 },
    version: 0,
  });
  expect(dev.status).toBe(200);
  const stale = await patch(stack.gateway, { desired: { logLevel: 'debug' }, version: 1 });
  expect(stale.status).toBe(409);
  expect(((await stale.json()) as { code: string }).code).toBe('CLOUD_ERR_SHADOW_VERSION');
  expect((await shadow(stack.gateway)).status).toBe('pending');

  await stack.edge.start();
  const g = await waitFor(
    async () => {
      const s = await shadow(stack.gateway);
      return s.status === 'in_sync' ? s : undefined;
    },
    60_000,
    'gateway shadow in sync after the restart',
  );
  expect(g).toMatchObject({
    desiredVersion: 2,
    reportedVersion: 2,
    reported: { labels: { zone: 'b' }, logLevel: 'error' },
  });
  const d = await waitFor(
    async () => {
      const s = await shadow(`${stack.gateway}/devices/fr-1`);
      return s.status === 'in_sync' ? s : undefined;
    },
    60_000,
    'device shadow in sync after the restart',
  );
  expect(d.reported).toMatchObject({ setpointC: 2.5, intervalMs: 45_000 });
  expect(fridge.config()).toMatchObject({ setpointC: 2.5, intervalMs: 45_000 });
}, 180_000);
