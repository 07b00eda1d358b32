import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { envVariables, loadConfig, parseConfig } from './config.ts';

const base = {
  site: 's1',
  gateway: 'gw-1',
  cloud: { url: 'mqtt://127.0.0.1:1884', username: 'gw-1', password: 'pw' },
  devices: [{ id: 'fridge-1', password: 'secret' }],
};

function errorOf(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (e) {
    return e as { code: string; message: string };
  }
  throw new Error('expected an error');
}

describe('edge config', () => {
  it('fills defaults', () => {
    const c = parseConfig(base);
    expect(c.broker.port).toBe(1883);
    expect(c.outbox.kind).toBe('level');
    expect(c.outbox.lanes.telemetry.ttlMs).toBeGreaterThan(0);
    expect(c.cloud.batchMaxEvents).toBe(2000);
    expect(c.log.level).toBe('info');
  });

  it('names the wrong field and why', () => {
    const e = errorOf(() => parseConfig({ ...base, broker: { port: 70000 } }));
    expect(e.code).toBe('EDGE_ERR_CONFIG');
    expect(e.message).toContain('/broker/port must be <= 65535');
    const e2 = errorOf(() => parseConfig({ ...base, outbox: { kind: 'redis' } }));
    expect(e2.message).toContain('/outbox/kind');
    const e3 = errorOf(() => parseConfig({ ...base, brokr: {} }));
    expect(e3.message).toContain('unknown field "brokr"');
    const e4 = errorOf(() => parseConfig({ ...base, devices: [{ id: 'a' }] }));
    expect(e4.message).toContain('/devices/0 needs exactly one of password or passwordHash');
  });

  it('applies STORELINK_EDGE_* overrides with types', () => {
    const c = parseConfig(base, {
      STORELINK_EDGE_CLOUD_URL: 'mqtt://cloud:1883',
      STORELINK_EDGE_CLOUD_BATCH_MAX_EVENTS: '42',
      STORELINK_EDGE_BROKER_WS_PORT: 'null',
      STORELINK_EDGE_OUTBOX_LANES_TELEMETRY_TTL_MS: '1000',
    });
    expect(c.cloud.url).toBe('mqtt://cloud:1883');
    expect(c.cloud.batchMaxEvents).toBe(42);
    expect(c.broker.wsPort).toBeNull();
    expect(c.outbox.lanes.telemetry.ttlMs).toBe(1000);
    const e = errorOf(() => parseConfig(base, { STORELINK_EDGE_HTTP_PORT: 'abc' }));
    expect(e.message).toContain('/http/port must be integer');
    expect(envVariables().map((v) => v.name)).toContain('STORELINK_EDGE_CLOUD_RETRANSMIT_MS');
  });

  it('loads a file and reports unreadable ones', () => {
    const dir = mkdtempSync(join(tmpdir(), 'edge-cfg-'));
    const path = join(dir, 'edge.json');
    writeFileSync(path, JSON.stringify(base));
    expect(loadConfig(path, {}).gateway).toBe('gw-1');
    writeFileSync(path, '{ nope');
    expect(errorOf(() => loadConfig(path, {})).message).toContain('is not valid JSON');
    expect(errorOf(() => loadConfig(join(dir, 'missing.json'), {})).message).toContain('cannot read');
  });
});
