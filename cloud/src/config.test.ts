import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadCloudConfig, resolveCloudConfig } from './config.ts';

const dir = mkdtempSync(join(tmpdir(), 'storelink-cloud-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, content: unknown) => {
  const p = join(dir, name);
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
};
const configError = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    expect((e as { code?: string }).code).toBe('CLOUD_ERR_CONFIG');
    return (e as Error).message;
  }
  throw new Error('expected CLOUD_ERR_CONFIG');
};

describe('cloud config', () => {
  it('fills defaults for everything, resolving paths against the config file', () => {
    const c = loadCloudConfig(
      file('min.json', { gateways: [{ id: 'gw-1', site: 's', password: 'pw' }] }),
      {},
    );
    expect(c).toMatchObject({
      dataDir: join(dir, '.data/cloud'),
      http: { host: '0.0.0.0', port: 8080 },
      broker: { mode: 'embedded', host: '0.0.0.0', port: 1883 },
      store: { kind: 'pglite', dir: join(dir, '.data/cloud/pglite') },
      signing: { privateKeyFile: join(dir, '.data/cloud/signing-key.pem') },
      service: { username: 'storelink-cloud' },
      commands: { defaultTtlMs: 60000 },
      log: { level: 'info' },
      gateways: [{ id: 'gw-1', site: 's', password: 'pw' }],
    });
    expect(c.service.password.length).toBeGreaterThanOrEqual(16);
    // idempotent
    expect(resolveCloudConfig(c)).toEqual(c);
  });

  it('environment overrides win over the file; a URL alone switches to the external variant', () => {
    const p = file('env.json', { http: { port: 9000 }, broker: { port: 1884 } });
    const c = loadCloudConfig(p, {
      STORELINK_CLOUD_HTTP_PORT: '9100',
      STORELINK_CLOUD_BROKER_URL: 'mqtt://broker:1883',
      STORELINK_CLOUD_BROKER_USERNAME: 'svc',
      STORELINK_CLOUD_STORE_URL: 'postgres://u@db/x',
      STORELINK_CLOUD_LOG_LEVEL: 'debug',
      STORELINK_CLOUD_GATEWAYS: '[{"id":"gw-9","site":"s","password":"p"}]',
      UNRELATED: 'x',
      STORELINK_CLOUD_CONFIG: '/elsewhere.json',
    });
    expect(c.http.port).toBe(9100);
    expect(c.broker).toEqual({ mode: 'external', url: 'mqtt://broker:1883', username: 'svc' });
    expect(c.store).toEqual({ kind: 'postgres', url: 'postgres://u@db/x' });
    expect(c.log.level).toBe('debug');
    expect(c.gateways.map((g) => g.id)).toEqual(['gw-9']);
  });

  it('names the wrong field and why', () => {
    const p = file('bad.json', {
      http: { port: 70000 },
      broker: { mode: 'embedded', port: 1883, colour: 'red' },
      gateways: [{ id: 'gw 1', site: 's', password: 'p' }],
    });
    const msg = configError(() => loadCloudConfig(p, {}));
    expect(msg).toContain('/http/port must be <= 65535');
    expect(msg).toContain('/gateways/0/id must match pattern');
    expect(msg).toContain('/broker has unknown field "colour"');
  });

  it('names a bad mode, a missing url, a duplicate gateway', () => {
    expect(configError(() => resolveCloudConfig({ broker: { mode: 'cloudy' } as never }))).toContain(
      '/broker/mode must be equal to one of the allowed values',
    );
    expect(configError(() => resolveCloudConfig({ broker: { mode: 'external' } as never }))).toContain(
      "/broker must have required property 'url'",
    );
    const g = { id: 'gw-1', site: 's', password: 'p' };
    expect(configError(() => resolveCloudConfig({ gateways: [g, g] }))).toContain(
      '/gateways/1/id "gw-1" is listed twice',
    );
  });

  it('names the environment variable a bad value came from, and unknown variables', () => {
    expect(configError(() => loadCloudConfig(undefined, { STORELINK_CLOUD_HTTP_PORT: 'eighty' }))).toContain(
      'STORELINK_CLOUD_HTTP_PORT (http.port) must be an integer, got "eighty"',
    );
    expect(configError(() => loadCloudConfig(undefined, { STORELINK_CLOUD_HTTP_PORT: '99999' }))).toContain(
      '/http/port must be <= 65535 (from STORELINK_CLOUD_HTTP_PORT)',
    );
    expect(configError(() => loadCloudConfig(undefined, { STORELINK_CLOUD_HTTP_PROT: '1' }))).toContain(
      'STORELINK_CLOUD_HTTP_PROT is not a known variable',
    );
  });

  it('reports an unreadable or non-JSON file', () => {
    expect(configError(() => loadCloudConfig(join(dir, 'missing.json'), {}))).toContain(
      'cannot read config file',
    );
    expect(configError(() => loadCloudConfig(file('x.json', '{ nope'), {}))).toContain('is not valid JSON');
  });
});
