import 'reflect-metadata';
import { scryptSync, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { gatewayTopic } from '@storelink/protocols';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CloudApp, startCloud } from '../index.ts';
import { silentLogger, tempDir } from '../test-support.ts';

/**
 * Provisioning against the embedded cloud broker with a real mutual TLS listener: the
 * gateways are raw mqtt.js clients presenting the certificates the API issued.
 */

let cloud: CloudApp;
const tmp = tempDir();

beforeAll(async () => {
  cloud = await startCloud(
    {
      dataDir: tmp.dir,
      http: { host: '127.0.0.1', port: 0 },
      broker: { mode: 'embedded', host: '127.0.0.1', port: 0, tls: { port: 0 } },
    },
    { logger: silentLogger() },
  );
});

afterAll(async () => {
  await cloud?.close();
  tmp.remove();
});

const metric = async (name: string, labels: Record<string, string> = {}) => {
  const m = (await cloud.metrics.registry.getSingleMetric(name)?.get())?.values ?? [];
  return m
    .filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))
    .reduce((a, v) => a + v.value, 0);
};

async function api<T = Record<string, unknown>>(
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const res = await fetch(`${cloud.httpUrl}/api/v1${path}`, {
    method,
    ...(body !== undefined
      ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }
      : {}),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

interface Bundle {
  password: string;
  devices: { id: string; kind: string | null; password: string }[];
  certificate: { certPem: string; keyPem?: string; caPem: string; fingerprint: string };
  edge: { cloud: { url: string; username: string }; devices: { id: string; passwordHash: string }[] };
}

async function provision(id: string, extra: Record<string, unknown> = {}): Promise<Bundle> {
  const r = await api<Bundle>('POST', `/gateways/${id}/provision`, { site: 's1', certificate: {}, ...extra });
  expect(r.status).toBe(201);
  return r.body;
}

const clients: MqttClient[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
});

/** A connection over the TLS listener with a client certificate. */
async function viaCert(
  cert: { certPem: string; keyPem: string },
  clientId: string,
  extra: Partial<IClientOptions> = {},
): Promise<MqttClient> {
  const c = await mqtt.connectAsync(
    cloud.brokerTlsUrl!,
    {
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      clientId,
      ca: cloud.caPem,
      cert: cert.certPem,
      key: cert.keyPem,
      ...extra,
    },
    false,
  );
  clients.push(c);
  return c;
}

async function viaPassword(username: string, password: string, clientId: string): Promise<MqttClient> {
  const c = await mqtt.connectAsync(
    cloud.brokerUrl,
    { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000, clientId, username, password },
    false,
  );
  clients.push(c);
  return c;
}

const closed = (c: MqttClient) => new Promise<void>((r) => (c.connected ? c.once('close', () => r()) : r()));

describe('provisioning bundle [FLEET-DEVICES-1] [FLEET-CERT-1]', () => {
  it('registers a gateway with its devices and a certificate that connects over mutual TLS', async () => {
    const b = await provision('gw-a', { devices: [{ id: 'fridge-1', kind: 'fridge' }, { id: 'door-1' }] });
    expect(b.edge.cloud.url).toBe(cloud.brokerTlsUrl);
    expect(b.edge.cloud.username).toBe('gw-a');
    expect(b.devices.map((d) => d.id)).toEqual(['fridge-1', 'door-1']);
    // The edge's own hash format: scrypt$N$salt$hash over the returned password.
    const edgeDev = b.edge.devices.find((d) => d.id === 'fridge-1')!;
    const [, n, salt, hash] = edgeDev.passwordHash.split('$');
    const pw = b.devices.find((d) => d.id === 'fridge-1')!.password;
    const again = scryptSync(pw, Buffer.from(salt!, 'base64'), 32, {
      N: Number(n),
      r: 8,
      p: 1,
      maxmem: 256 << 20,
    });
    expect(again.toString('base64')).toBe(hash);
    const listed = await api<{ items: { id: string; passwordHash: string }[] }>(
      'GET',
      '/gateways/gw-a/edge-devices',
    );
    expect(listed.body.items.map((d) => d.id)).toEqual(['door-1', 'fridge-1']);

    // The certificate: signed by the fleet CA, CN = gateway id, clientAuth.
    const cert = new x509.X509Certificate(b.certificate.certPem);
    expect(cert.subject).toContain('CN=gw-a');
    expect(await cert.verify({ publicKey: new x509.X509Certificate(cloud.caPem).publicKey })).toBe(true);

    const c = await viaCert({ certPem: b.certificate.certPem, keyPem: b.certificate.keyPem! }, 'gw-a');
    const granted = await c.subscribeAsync(gatewayTopic({ site: 's1', gateway: 'gw-a' }, 'ack'), { qos: 1 });
    expect(granted[0]!.qos).toBe(1);
    // It may not speak for another gateway (ACL by the certificate's identity).
    await expect(
      c.subscribeAsync(gatewayTopic({ site: 's1', gateway: 'gw-x' }, 'ack'), { qos: 1 }),
    ).rejects.toThrow(/Subscribe error/);
    expect(await metric('storelink_cloud_broker_refused_total', { reason: 'acl_subscribe' })).toBe(1);
    expect(c.connected).toBe(true);
    // The password of the bundle works on the plain listener too (one credential path).
    const p = await viaPassword('gw-a', b.password, 'gw-a-pw');
    expect(p.connected).toBe(true);
  });

  it('refuses a certificate from another CA, a missing certificate and a username that is not the CN', async () => {
    const b = await provision('gw-m');
    // Another CA's certificate with the same CN.
    const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
      'sign',
      'verify',
    ])) as unknown as webcrypto.CryptoKeyPair;
    const rogue = await x509.X509CertificateGenerator.createSelfSigned({
      name: 'CN=gw-m',
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    });
    const keyPem = toPem(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey as never), 'PRIVATE KEY');
    await expect(viaCert({ certPem: rogue.toString('pem'), keyPem }, 'gw-m-rogue')).rejects.toThrow(
      /Not authorized/i,
    );
    expect(await metric('storelink_cloud_broker_refused_total', { reason: 'cert_untrusted' })).toBe(1);
    await expect(
      mqtt.connectAsync(
        cloud.brokerTlsUrl!,
        {
          protocolVersion: 4,
          reconnectPeriod: 0,
          clientId: 'nocert',
          ca: cloud.caPem,
          username: 'gw-m',
          password: b.password,
        },
        false,
      ),
    ).rejects.toThrow(/Not authorized/i);
    expect(await metric('storelink_cloud_broker_refused_total', { reason: 'cert_missing' })).toBe(1);
    await expect(
      viaCert({ certPem: b.certificate.certPem, keyPem: b.certificate.keyPem! }, 'gw-m-as-a', {
        username: 'gw-a',
      }),
    ).rejects.toThrow(/Not authorized/i);
    expect(await metric('storelink_cloud_broker_refused_total', { reason: 'cert_mismatch' })).toBe(1);
  });

  it('rejects bad provisioning input with a code and stores nothing', async () => {
    const dup = await api('POST', '/gateways/gw-d/provision', {
      site: 's1',
      devices: [{ id: 'x1' }, { id: 'x1' }],
    });
    expect(dup.status).toBe(400);
    expect(dup.body.code).toBe('CLOUD_ERR_BAD_REQUEST');
    expect((await api('GET', '/gateways/gw-d/presence')).status).toBe(404);
    const short = await api('POST', '/gateways/gw-d/provision', { site: 's1', password: 'short' });
    expect(short.status).toBe(400);
    await provision('gw-d');
    const again = await api('POST', '/gateways/gw-d/provision', { site: 's1' });
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('CLOUD_ERR_CONFLICT');
  });
});

describe('rotation [FLEET-ROTATE-1] [FLEET-ROTATE-2]', () => {
  it('a rotated certificate: the new one connects, the old one is refused at its next connect', async () => {
    const b = await provision('gw-c');
    const first = { certPem: b.certificate.certPem, keyPem: b.certificate.keyPem! };
    const live = await viaCert(first, 'gw-c-1');
    const r = await api<{ certPem: string; keyPem: string; fingerprint: string }>(
      'POST',
      '/gateways/gw-c/certificate',
      {},
    );
    expect(r.status).toBe(201);
    const second = { certPem: r.body.certPem, keyPem: r.body.keyPem };
    expect(await viaCert(second, 'gw-c-2')).toBeTruthy();
    await expect(viaCert(first, 'gw-c-3')).rejects.toThrow(/Not authorized/i);
    expect(await metric('storelink_cloud_broker_refused_total', { reason: 'cert_rotated' })).toBe(1);
    // Rotation takes effect at the next connect: the session that was up stays up.
    expect(live.connected).toBe(true);
    const certs = await api<{ items: { fingerprint: string; retiredReason: string | null }[] }>(
      'GET',
      '/gateways/gw-c/certificates',
    );
    expect(certs.body.items).toEqual([
      expect.objectContaining({ fingerprint: r.body.fingerprint, retiredReason: null }),
      expect.objectContaining({ fingerprint: b.certificate.fingerprint, retiredReason: 'rotated' }),
    ]);
  });

  it('a certificate for a CSR: the key never leaves the gateway', async () => {
    await provision('gw-csr', { certificate: undefined });
    const keys = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, [
      'sign',
      'verify',
    ])) as unknown as webcrypto.CryptoKeyPair;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: 'CN=someone-else',
      keys,
      signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
    });
    const r = await api<{ certPem: string; keyPem?: string }>('POST', '/gateways/gw-csr/certificate', {
      csrPem: csr.toString('pem'),
    });
    expect(r.status).toBe(201);
    expect(r.body.keyPem).toBeUndefined();
    // Whatever the CSR asked for, the certificate names the gateway.
    expect(new x509.X509Certificate(r.body.certPem).subject).toContain('CN=gw-csr');
    const keyPem = toPem(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey as never), 'PRIVATE KEY');
    expect((await viaCert({ certPem: r.body.certPem, keyPem }, 'gw-csr')).connected).toBe(true);
    const bad = await api('POST', '/gateways/gw-csr/certificate', { csrPem: 'not a csr' });
    expect(bad.status).toBe(400);
  });

  it('a rotated password: the old one is refused at the next connect, the new one works', async () => {
    const b = await provision('gw-p', { certificate: undefined });
    const r = await api<{ password: string }>('POST', '/gateways/gw-p/password', {});
    expect(r.status).toBe(200);
    expect(r.body.password).not.toBe(b.password);
    await expect(viaPassword('gw-p', b.password, 'gw-p-old')).rejects.toThrow(/Bad username or password/i);
    expect((await viaPassword('gw-p', r.body.password, 'gw-p-new')).connected).toBe(true);
  });
});

describe('revocation [FLEET-REVOKE-1]', () => {
  it('disconnects a live gateway on both paths now and refuses it on both paths after', async () => {
    const b = await provision('gw-r');
    const cert = { certPem: b.certificate.certPem, keyPem: b.certificate.keyPem! };
    const overTls = await viaCert(cert, 'gw-r-tls');
    const overPw = await viaPassword('gw-r', b.password, 'gw-r-pw');
    const gone = Promise.all([closed(overTls), closed(overPw)]);

    const r = await api<{ disconnected: number }>('POST', '/gateways/gw-r/revoke', { reason: 'stolen' });
    expect(r.status).toBe(200);
    expect(r.body.disconnected).toBe(2);
    await gone;

    const before = await metric('storelink_cloud_broker_refused_total', { reason: 'revoked' });
    await expect(viaCert(cert, 'gw-r-tls')).rejects.toThrow(/Not authorized/i);
    await expect(viaPassword('gw-r', b.password, 'gw-r-pw')).rejects.toThrow(/Not authorized/i);
    expect(await metric('storelink_cloud_broker_refused_total', { reason: 'revoked' })).toBe(before + 2);

    // No new credentials for a revoked gateway; presence says revoked.
    const rot = await api('POST', '/gateways/gw-r/password', {});
    expect(rot.status).toBe(409);
    expect(rot.body.code).toBe('CLOUD_ERR_GATEWAY_REVOKED');
    expect((await api('POST', '/gateways/gw-r/certificate', {})).status).toBe(409);
    const p = await api<{ state: string; revokedAt: number }>('GET', '/gateways/gw-r/presence');
    expect(p.body.state).toBe('revoked');
    // A second revoke keeps the first time.
    const again = await api<{ revokedAt: number; disconnected: number }>('POST', '/gateways/gw-r/revoke', {
      reason: 'again',
    });
    expect(again.body).toMatchObject({ revokedAt: p.body.revokedAt, disconnected: 0 });
  });

  it('a gateway revoked while offline is refused at its first connect and listed as revoked', async () => {
    const b = await provision('gw-r2', { certificate: undefined });
    await api('POST', '/gateways/gw-r2/revoke', { reason: 'decommissioned' });
    await expect(viaPassword('gw-r2', b.password, 'gw-r2')).rejects.toThrow(/Not authorized/i);
    const list = await api<{ items: { gateway: string }[] }>('GET', '/fleet/presence?state=revoked');
    expect(list.body.items.map((g) => g.gateway)).toEqual(['gw-r', 'gw-r2']);
  });
});

function toPem(der: ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der).toString('base64');
  return `-----BEGIN ${label}-----\n${b64.match(/.{1,64}/g)!.join('\n')}\n-----END ${label}-----\n`;
}

describe('config seed and rotation [FLEET-ROTATE-3]', () => {
  it('a password rotated through the API survives a restart with the old password still in the config', async () => {
    const dir = tempDir();
    const config = {
      dataDir: dir.dir,
      http: { host: '127.0.0.1', port: 0 },
      broker: { mode: 'embedded' as const, host: '127.0.0.1', port: 0 },
      gateways: [{ id: 'gw-seed', site: 's1', password: 'seeded-password-1' }],
    };
    let c = await startCloud(config, { logger: silentLogger() });
    try {
      const r = await fetch(`${c.httpUrl}/api/v1/gateways/gw-seed/password`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      const { password } = (await r.json()) as { password: string };
      await c.close();
      c = await startCloud(config, { logger: silentLogger() });
      const opts = { protocolVersion: 4 as const, reconnectPeriod: 0, username: 'gw-seed' };
      await expect(
        mqtt.connectAsync(
          c.brokerUrl,
          { ...opts, clientId: 'seed-old', password: 'seeded-password-1' },
          false,
        ),
      ).rejects.toThrow(/Bad username or password/i);
      const ok = await mqtt.connectAsync(c.brokerUrl, { ...opts, clientId: 'seed-new', password }, false);
      expect(ok.connected).toBe(true);
      await ok.endAsync(true);
    } finally {
      await c.close();
      dir.remove();
    }
  }, 60_000);
});
