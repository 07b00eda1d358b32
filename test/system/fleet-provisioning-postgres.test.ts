/**
 * Provisioning on a real PostgreSQL 15 (the unit run covers PGlite): the same SQL for
 * certificates, rotation, revocation, registered devices and judged presence, with the
 * embedded broker's mutual TLS listener (docs/fleet-provisioning.md).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CloudApp, startCloud } from '@storelink/cloud';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Postgres, startPostgres } from '../helpers/postgres.ts';
import { cleanupTempDirs } from '../helpers/tmp.ts';
import { waitFor } from '../helpers/wait.ts';

let pg: Postgres;
let cloud: CloudApp;
let dir: string;
const clients: MqttClient[] = [];

beforeAll(async () => {
  pg = await startPostgres();
  dir = mkdtempSync(join(tmpdir(), 'storelink-prov-pg-'));
  cloud = await startCloud(
    {
      dataDir: dir,
      http: { host: '127.0.0.1', port: 0 },
      broker: { mode: 'embedded', host: '127.0.0.1', port: 0, tls: { port: 0 } },
      store: { kind: 'postgres', url: pg.createDatabase('prov') },
      log: { level: 'silent' },
    },
    { logger: pino({ level: 'silent' }) },
  );
}, 120_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
  await cloud?.close();
  await pg?.stop();
  rmSync(dir, { recursive: true, force: true });
  cleanupTempDirs();
});

async function api<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const r = await fetch(`${cloud.httpUrl}/api/v1${path}`, {
    method,
    ...(body !== undefined
      ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }
      : {}),
  });
  return { status: r.status, body: (await r.json()) as T };
}

const viaCert = async (c: { certPem: string; keyPem: string }, clientId: string) => {
  const m = await mqtt.connectAsync(
    cloud.brokerTlsUrl!,
    { clientId, ca: cloud.caPem, cert: c.certPem, key: c.keyPem, reconnectPeriod: 0, connectTimeout: 10_000 },
    false,
  );
  clients.push(m);
  return m;
};

describe('provisioning on PostgreSQL', () => {
  it('certificate, rotation, devices, presence and revocation', async () => {
    const b = await api<{
      password: string;
      certificate: { certPem: string; keyPem: string; fingerprint: string };
    }>('POST', '/gateways/gw-pg/provision', { site: 's1', devices: [{ id: 'fridge-1' }], certificate: {} });
    expect(b.status).toBe(201);
    const first = b.body.certificate;
    const live = await viaCert(first, 'gw-pg');
    await live.publishAsync(
      'sl/v1/s1/gw-pg/state',
      JSON.stringify({ v: 1, state: 'online', bdSeq: 1, gateway: 'gw-pg', site: 's1', at: Date.now() }),
      { qos: 1, retain: true },
    );
    await waitFor(
      async () => (await api<{ state: string }>('GET', '/gateways/gw-pg/presence')).body.state === 'online',
      20_000,
      'online',
    );
    const p = await api<{ devices: { id: string; registered: boolean }[] }>(
      'GET',
      '/gateways/gw-pg/presence',
    );
    expect(p.body.devices).toEqual([expect.objectContaining({ id: 'fridge-1', registered: true })]);

    const second = await api<{ certPem: string; keyPem: string }>('POST', '/gateways/gw-pg/certificate', {});
    expect(second.status).toBe(201);
    await expect(viaCert(first, 'gw-pg-old')).rejects.toThrow(/Not authorized/i);
    expect((await viaCert(second.body, 'gw-pg-new')).connected).toBe(true);

    const closed = new Promise<void>((r) => live.once('close', () => r()));
    const rev = await api<{ disconnected: number }>('POST', '/gateways/gw-pg/revoke', { reason: 'test' });
    expect(rev.body.disconnected).toBe(2);
    await closed;
    await expect(viaCert(second.body, 'gw-pg-again')).rejects.toThrow(/Not authorized/i);
    await expect(
      mqtt.connectAsync(
        cloud.brokerUrl,
        { clientId: 'gw-pg-pw', username: 'gw-pg', password: b.body.password, reconnectPeriod: 0 },
        false,
      ),
    ).rejects.toThrow(/Not authorized/i);
    const list = await api<{ items: { gateway: string; state: string }[] }>('GET', '/fleet/presence');
    expect(list.body.items).toEqual([expect.objectContaining({ gateway: 'gw-pg', state: 'revoked' })]);
  }, 90_000);
});
