/**
 * Measures what provisioning costs (docs/fleet-provisioning.md "Figures"):
 *   npx tsx cloud/src/fleet/provisioning-measure.ts [connects]
 * prints JSON: certificate issue time, and connect+CONNACK latency over the password path
 * (plain TCP, scrypt check) vs the certificate path (TLS handshake + one indexed lookup),
 * sequential, against one embedded cloud with a PGlite store.
 */
import 'reflect-metadata';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import pino from 'pino';
import { startCloud } from '../index.ts';

const N = Number(process.argv[2] ?? 50);
const dir = mkdtempSync(join(tmpdir(), 'storelink-prov-measure-'));
const cloud = await startCloud(
  {
    dataDir: dir,
    http: { host: '127.0.0.1', port: 0 },
    broker: { mode: 'embedded', host: '127.0.0.1', port: 0, tls: { port: 0 } },
  },
  { logger: pino({ level: 'silent' }) },
);
const post = async (path: string, body: unknown) => {
  const r = await fetch(`${cloud.httpUrl}/api/v1${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json() as Promise<Record<string, never>>;
};
const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return Number(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!.toFixed(2));
};
const time = async (fn: () => Promise<unknown>) => {
  const t = performance.now();
  await fn();
  return performance.now() - t;
};

try {
  const b = (await post('/gateways/gw-m/provision', { site: 's', certificate: {} })) as unknown as {
    password: string;
    certificate: { certPem: string; keyPem: string };
  };
  const issue: number[] = [];
  for (let i = 0; i < 20; i++) issue.push(await time(() => post('/gateways/gw-m/certificate', {})));
  const cur = (await post('/gateways/gw-m/certificate', {})) as unknown as {
    certPem: string;
    keyPem: string;
  };
  const pw: number[] = [];
  const cert: number[] = [];
  for (let i = 0; i < N; i++) {
    pw.push(
      await time(async () => {
        const c = await mqtt.connectAsync(cloud.brokerUrl, {
          clientId: `m-pw-${i}`,
          username: 'gw-m',
          password: b.password,
          reconnectPeriod: 0,
        });
        await c.endAsync(true);
      }),
    );
    cert.push(
      await time(async () => {
        const c = await mqtt.connectAsync(cloud.brokerTlsUrl!, {
          clientId: `m-cert-${i}`,
          ca: cloud.caPem,
          cert: cur.certPem,
          key: cur.keyPem,
          reconnectPeriod: 0,
        });
        await c.endAsync(true);
      }),
    );
  }
  process.stdout.write(
    `${JSON.stringify({
      connects: N,
      issue_cert_ms: { p50: pct(issue, 50), p99: pct(issue, 99) },
      connect_password_ms: { p50: pct(pw, 50), p99: pct(pw, 99) },
      connect_certificate_ms: { p50: pct(cert, 50), p99: pct(cert, 99) },
      ratio_cert_to_password_p50: Number((pct(cert, 50) / pct(pw, 50)).toFixed(2)),
    })}\n`,
  );
} finally {
  await cloud.close();
  rmSync(dir, { recursive: true, force: true });
}
