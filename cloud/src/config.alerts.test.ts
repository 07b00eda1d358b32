import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadCloudConfig, resolveCloudConfig } from './config.ts';
import { DEFAULT_THRESHOLDS } from './fleet/alerts.ts';
import { alertsConfig, startCloud } from './index.ts';
import { silentLogger } from './test-support.ts';

/** The config file's `alerts` section and STORELINK_CLOUD_ALERTS_* [ALERT-CONFIG-1]. */

const dir = mkdtempSync(join(tmpdir(), 'storelink-cloud-config-alerts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, content: unknown) => {
  const p = join(dir, name);
  writeFileSync(p, JSON.stringify(content));
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

describe('cloud config: alerts section [ALERT-CONFIG-1]', () => {
  it('defaults to no overrides and 200 presence history rows per gateway', () => {
    const c = resolveCloudConfig({});
    expect(c.alerts).toEqual({ thresholds: {} });
    expect(c.fleet.presenceHistoryKeep).toBe(200);
    expect(resolveCloudConfig(c)).toEqual(c); // idempotent
  });

  it('takes thresholds from the file and the environment (the environment wins; decimals allowed)', () => {
    const c = loadCloudConfig(
      file('alerts.json', {
        alerts: { thresholds: { tempMaxC: 6, offlineAfterMs: 120_000 }, sweepIntervalMs: 2000 },
      }),
      {
        STORELINK_CLOUD_ALERTS_TEMP_MAX_C: '6.5',
        STORELINK_CLOUD_ALERTS_TEMP_MIN_C: '-2',
        STORELINK_CLOUD_ALERTS_VEND_FAILURES: '5',
        STORELINK_CLOUD_FLEET_PRESENCE_HISTORY_KEEP: '50',
      },
    );
    expect(c.alerts).toEqual({
      thresholds: { tempMaxC: 6.5, tempMinC: -2, offlineAfterMs: 120_000, vendFailures: 5 },
      sweepIntervalMs: 2000,
    });
    expect(c.fleet.presenceHistoryKeep).toBe(50);
  });

  it('names the field, the variable and the fix for bad values', () => {
    expect(
      configError(() => loadCloudConfig(undefined, { STORELINK_CLOUD_ALERTS_TEMP_MAX_C: 'warm' })),
    ).toMatch(
      /STORELINK_CLOUD_ALERTS_TEMP_MAX_C \(alerts\.thresholds\.tempMaxC\) must be a number, got "warm"/,
    );
    expect(
      configError(() => loadCloudConfig(undefined, { STORELINK_CLOUD_ALERTS_OFFLINE_AFTER_MS: '1.5' })),
    ).toMatch(
      /STORELINK_CLOUD_ALERTS_OFFLINE_AFTER_MS \(alerts\.thresholds\.offlineAfterMs\) must be an integer/,
    );
    expect(
      configError(() => loadCloudConfig(undefined, { STORELINK_CLOUD_ALERTS_DOOR_OPEN_MS: '10' })),
    ).toMatch(/\/alerts\/thresholds\/doorOpenMs.*>= 1000.*\(from STORELINK_CLOUD_ALERTS_DOOR_OPEN_MS\)/);
    expect(
      configError(() => resolveCloudConfig({ alerts: { thresholds: { tempMax: 5 } } } as never)),
    ).toMatch(/\/alerts\/thresholds.*tempMax/);
    expect(
      configError(() => resolveCloudConfig({ alerts: { thresholds: { tempMinC: 9, tempMaxC: 8 } } })),
    ).toMatch(/\/alerts\/thresholds\/tempMinC \(9\) must be below tempMaxC \(8\)/);
    expect(configError(() => resolveCloudConfig({ fleet: { presenceHistoryKeep: 0 } }))).toMatch(
      /\/fleet\/presenceHistoryKeep/,
    );
  });

  it('startCloud options win over the file, field by field', () => {
    const c = resolveCloudConfig({
      alerts: { thresholds: { tempMaxC: 6, lowStockCount: 4 }, sweepIntervalMs: 2000 },
    });
    expect(alertsConfig(c, { thresholds: { tempMaxC: 9 }, deliverIntervalMs: 0 })).toEqual({
      sweepIntervalMs: 2000,
      deliverIntervalMs: 0,
      thresholds: { tempMaxC: 9, lowStockCount: 4 },
    });
    expect(alertsConfig(c, { sweepIntervalMs: 0 }).sweepIntervalMs).toBe(0);
  });

  it('seeds the stored thresholds at start: named fields from the file, the rest as stored', async () => {
    const dataDir = join(dir, 'cloud');
    const start = (env: Record<string, string>) =>
      startCloud(
        loadCloudConfig(
          file('start.json', {
            dataDir,
            http: { host: '127.0.0.1', port: 0 },
            broker: { mode: 'embedded', host: '127.0.0.1', port: 0 },
            store: { kind: 'pglite', worker: false },
          }),
          env,
        ),
        { logger: silentLogger(), alerts: { sweepIntervalMs: 0, deliverIntervalMs: 0 } },
      );
    let cloud = await start({ STORELINK_CLOUD_ALERTS_TEMP_MAX_C: '6' });
    try {
      expect(cloud.alerts!.engine.currentThresholds).toEqual({ ...DEFAULT_THRESHOLDS, tempMaxC: 6 });
      const put = await fetch(`${cloud.httpUrl}/api/v1/alerts/settings`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ tempMinC: 1, lowStockCount: 7 }),
      });
      expect(put.status).toBe(200);
      // The presence history route is wired: an unknown gateway is a coded 404.
      const h = await fetch(`${cloud.httpUrl}/api/v1/gateways/nope/presence/history`);
      expect(h.status).toBe(404);
      expect(((await h.json()) as { code: string }).code).toBe('CLOUD_ERR_NOT_FOUND');
    } finally {
      await cloud.close();
    }
    // Restart: the file now names tempMaxC 7 and lowStockCount 3; tempMinC keeps the API's 1.
    cloud = await start({
      STORELINK_CLOUD_ALERTS_TEMP_MAX_C: '7',
      STORELINK_CLOUD_ALERTS_LOW_STOCK_COUNT: '3',
    });
    try {
      expect(cloud.alerts!.engine.currentThresholds).toEqual({
        ...DEFAULT_THRESHOLDS,
        tempMaxC: 7,
        tempMinC: 1,
        lowStockCount: 3,
      });
      const got = await fetch(`${cloud.httpUrl}/api/v1/alerts/settings`);
      expect(await got.json()).toMatchObject({ tempMaxC: 7, tempMinC: 1, lowStockCount: 3 });
    } finally {
      await cloud.close();
    }
  }, 120_000);
});
