/**
 * [CMD-REDELIVER-1]: a command issued while its gateway is offline (here: before the
 * edge ever connected, so no session could have queued it) is delivered when the
 * gateway's birth reaches the cloud, and still runs exactly once.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CloudApp, startCloud } from '@storelink/cloud';
import { type EdgeAgent, startEdge } from '@storelink/edge';
import { pino } from 'pino';
import { waitFor } from '../helpers/wait.ts';
import { afterAll, expect, it } from 'vitest';

const silent = pino({ level: 'silent' });
const dir = mkdtempSync(join(tmpdir(), 'storelink-redeliver-'));
let cloud: CloudApp | undefined;
let edge: EdgeAgent | undefined;

afterAll(async () => {
  await edge?.close();
  await cloud?.close();
  rmSync(dir, { recursive: true, force: true });
});

const until = <T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 20_000) =>
  waitFor(probe, ms, what, 50);

it('delivers a command issued while the gateway was offline once it comes online, and runs it once', async () => {
  cloud = await startCloud(
    {
      dataDir: join(dir, 'cloud'),
      http: { host: '127.0.0.1', port: 0 },
      broker: { mode: 'embedded', host: '127.0.0.1', port: 0 },
      store: { kind: 'pglite', dir: join(dir, 'cloud', 'pg') },
      signing: { privateKeyFile: join(dir, 'cloud', 'key.pem') },
      service: { username: 'svc', password: 'svc-secret' },
      gateways: [{ id: 'gw-r', site: 'site-r', password: 'gw-secret' }],
      log: { level: 'silent' },
    },
    { logger: silent },
  );
  const issued = await cloud.sendCommand({
    gateway: 'gw-r',
    type: 'ping',
    payload: { echo: 'while offline' },
  });
  expect(issued.status).toBe('sent');

  edge = await startEdge(
    {
      site: 'site-r',
      gateway: 'gw-r',
      dataDir: join(dir, 'edge'),
      broker: { host: '127.0.0.1', port: 0, wsPort: null },
      http: { host: '127.0.0.1', port: 0 },
      cloud: {
        url: cloud.brokerUrl,
        username: 'gw-r',
        password: 'gw-secret',
        publicKeyPem: cloud.publicKeyPem,
      },
      log: { level: 'silent' },
    },
    { logger: silent },
  );
  const done = await until('the command result', async () => {
    const c = await cloud!.store.getCommand(issued.id);
    return c && c.status !== 'sent' && c.status !== 'pending' ? c : undefined;
  });
  expect(done.status).toBe('ok');
  expect(done.duplicateResult).toBeFalsy();
  expect(
    await cloud.metrics.registry.getSingleMetricAsString('storelink_cloud_commands_redelivered_total'),
  ).toMatch(/storelink_cloud_commands_redelivered_total 1\b/);
});
