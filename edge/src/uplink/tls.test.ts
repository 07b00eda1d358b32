import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../config.ts';
import { readUplinkTls } from './tls.ts';

const dir = mkdtempSync(join(tmpdir(), 'storelink-uplink-tls-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const base = { site: 's', gateway: 'gw', cloud: { url: 'mqtts://cloud:8883', username: 'gw' } };

describe('uplink TLS material (docs/fleet-provisioning.md)', () => {
  it('reads PEM inline or from files, and re-reads files at every call [FLEET-ROTATE-1]', () => {
    const cert = join(dir, 'gw.pem');
    writeFileSync(cert, 'CERT-1');
    const c = parseConfig(
      { ...base, cloud: { ...base.cloud, caPem: 'CA', certFile: cert, keyPem: 'KEY' } },
      {},
    );
    expect(readUplinkTls(c.cloud)).toEqual({ ca: 'CA', cert: 'CERT-1', key: 'KEY' });
    writeFileSync(cert, 'CERT-2'); // rotated on disk: the next connect presents it
    expect(readUplinkTls(c.cloud).cert).toBe('CERT-2');
    expect(readUplinkTls(parseConfig(base, {}).cloud)).toEqual({});
  });

  it('an unreadable file fails the attempt with the file named', () => {
    const c = parseConfig({ ...base, cloud: { ...base.cloud, caFile: join(dir, 'missing.pem') } }, {});
    expect(() => readUplinkTls(c.cloud)).toThrow(/CA file .*missing\.pem cannot be read/);
  });

  it('the config refuses a certificate without its key, and PEM plus file for one item', () => {
    expect(() => parseConfig({ ...base, cloud: { ...base.cloud, certPem: 'C' } }, {})).toThrow(
      /client certificate needs its key/,
    );
    expect(() => parseConfig({ ...base, cloud: { ...base.cloud, caPem: 'A', caFile: '/x' } }, {})).toThrow(
      /either caPem or caFile/,
    );
  });
});
