/**
 * Provisioning end to end: the cloud (embedded broker with its mutual TLS listener)
 * issues a bundle; the real edge agent uses it as its config — certificate files for
 * mqtts://, device credentials for its local broker — and a device connects with the
 * password the bundle gave it. Then the gateway is revoked: the edge is dropped at once
 * and every reconnect is refused (docs/fleet-provisioning.md [FLEET-REVOKE-1]).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CloudApp, startCloud } from '@storelink/cloud';
import { type EdgeAgent, startEdge } from '@storelink/edge';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait.ts';

const silent = pino({ level: 'silent' });
const GW = 'gw-prov';

let dir: string;
let cloud: CloudApp;
let edge: EdgeAgent | undefined;
let device: MqttClient | undefined;

async function api<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const r = await fetch(`${cloud.httpUrl}/api/v1${path}`, {
    method,
    ...(body !== undefined
      ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }
      : {}),
  });
  return { status: r.status, body: (await r.json()) as T };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'storelink-prov-'));
  cloud = await startCloud(
    {
      dataDir: join(dir, 'cloud'),
      http: { host: '127.0.0.1', port: 0 },
      broker: { mode: 'embedded', host: '127.0.0.1', port: 0, tls: { port: 0 } },
      log: { level: 'silent' },
    },
    { logger: silent },
  );
}, 60_000);

afterAll(async () => {
  await device?.endAsync(true);
  await edge?.close();
  await cloud?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Bundle {
  devices: { id: string; password: string }[];
  edge: {
    site: string;
    gateway: string;
    cloud: {
      url: string;
      username: string;
      password: string;
      caPem: string;
      certPem: string;
      keyPem: string;
    };
    devices: { id: string; kind?: string; passwordHash: string }[];
  };
}

describe('provisioning bundle drives a real edge over mutual TLS', () => {
  it('connects with the issued certificate, its device with the issued password; revocation drops it for good', async () => {
    const { status, body: b } = await api<Bundle>('POST', `/gateways/${GW}/provision`, {
      site: 'store-1',
      devices: [{ id: 'fridge-1', kind: 'fridge' }],
      certificate: {},
    });
    expect(status).toBe(201);
    expect(b.edge.cloud.url).toMatch(/^mqtts:\/\//);
    // As an installer would: PEMs to files, the rest into the edge config. The edge is
    // given no password: the certificate alone authenticates it.
    const files = { ca: join(dir, 'ca.pem'), cert: join(dir, 'gw.pem'), key: join(dir, 'gw.key') };
    writeFileSync(files.ca, b.edge.cloud.caPem);
    writeFileSync(files.cert, b.edge.cloud.certPem);
    writeFileSync(files.key, b.edge.cloud.keyPem, { mode: 0o600 });
    edge = await startEdge(
      {
        site: b.edge.site,
        gateway: b.edge.gateway,
        dataDir: join(dir, 'edge'),
        broker: { host: '127.0.0.1', port: 0, wsPort: null },
        http: { host: '127.0.0.1', port: 0 },
        cloud: {
          url: b.edge.cloud.url,
          username: b.edge.cloud.username,
          caFile: files.ca,
          certFile: files.cert,
          keyFile: files.key,
          reconnectMinMs: 100,
          reconnectMaxMs: 300,
        },
        devices: b.edge.devices,
        heartbeatMs: 200,
        log: { level: 'silent' },
      },
      { logger: silent },
    );
    await waitFor(
      async () => (await api<{ state: string }>('GET', `/gateways/${GW}/presence`)).body.state === 'online',
      20_000,
      'the gateway online over mutual TLS',
    );

    // The device authenticates at the edge with the password the bundle returned.
    const pw = b.devices.find((d) => d.id === 'fridge-1')!.password;
    device = await mqtt.connectAsync(`mqtt://127.0.0.1:${edge.brokerPort}`, {
      clientId: 'fridge-1',
      username: 'fridge-1',
      password: pw,
      reconnectPeriod: 0,
    });
    const fridge = await waitFor(
      async () => {
        const p = await api<{ devices: { id: string; registered: boolean; online: boolean | null }[] }>(
          'GET',
          `/gateways/${GW}/presence`,
        );
        return p.body.devices.find((d) => d.id === 'fridge-1' && d.online === true);
      },
      20_000,
      'the device online in the cloud',
    );
    expect(fridge.registered).toBe(true);

    // Revocation: the edge is disconnected now and never gets back in.
    const r = await api<{ disconnected: number }>('POST', `/gateways/${GW}/revoke`, { reason: 'test' });
    expect(r.body.disconnected).toBe(1);
    const e = edge;
    await waitFor(() => !e.status().uplink.connected, 10_000, 'the edge disconnected');
    const reconnects = e.status().uplink.reconnects;
    await waitFor(
      () =>
        e.status().uplink.reconnects >= reconnects + 2 &&
        /not authorized/i.test(e.status().uplink.lastError ?? ''),
      20_000,
      'two refused reconnects',
    );
    expect(e.status().uplink.connected).toBe(false);
    expect((await api<{ state: string }>('GET', `/gateways/${GW}/presence`)).body.state).toBe('revoked');
  }, 90_000);
});
